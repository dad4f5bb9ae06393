// tests/contract/validate.mjs: drives a live users + orders pair over HTTP and checks each
// response against api/openapi.yaml: the status is documented for the operation, the body
// validates against that response's schema (Ajv, JSON Schema 2020-12, formats), required
// headers are present and valid. Started by tests/scripts/contract.sh with USERS_URL,
// ORDERS_URL and optionally ORDERS_NOUSERS_URL (an orders process whose users are down).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SPEC_PATH = process.env.OPENAPI || path.resolve(HERE, '../../api/openapi.yaml');
const USERS = (process.env.USERS_URL || '').replace(/\/$/, '');
const ORDERS = (process.env.ORDERS_URL || '').replace(/\/$/, '');
const ORDERS_NOUSERS = (process.env.ORDERS_NOUSERS_URL || '').replace(/\/$/, '');
const REQUEST_TIMEOUT_MS = 5000; // per request; the servers answer loopback calls at once
const TOTAL_TIMEOUT_MS = 120000; // the whole run, so a hung server cannot stall CTest

if (!USERS || !ORDERS) {
    console.error('validate.mjs: set USERS_URL and ORDERS_URL (e.g. http://127.0.0.1:8081)');
    process.exit(2);
}

// ---------------------------------------------------------------------------------------
// The contract: operations by id, schemas compiled once by Ajv.

const spec = YAML.parse(readFileSync(SPEC_PATH, 'utf8'));
const SPEC_ID = 'urn:cmesh:openapi';
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

function pointer(ref) {
    if (!ref.startsWith('#/')) throw new Error(`only local $refs are supported: ${ref}`);
    return ref
        .slice(2)
        .split('/')
        .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
        .reduce((o, k) => {
            if (o == null || !(k in o)) throw new Error(`unresolved $ref ${ref}`);
            return o[k];
        }, spec);
}

// Responses, headers and parameters may be $refs (possibly chained): follow them.
function deref(obj) {
    const seen = new Set();
    while (obj && typeof obj === 'object' && typeof obj.$ref === 'string') {
        if (seen.has(obj.$ref)) throw new Error(`$ref cycle at ${obj.$ref}`);
        seen.add(obj.$ref);
        obj = pointer(obj.$ref);
    }
    return obj;
}

// Schemas keep their $refs; they are pointed at one Ajv document holding every component.
// Specification extensions (x-*) are dropped: Ajv's strict mode would refuse them. Keys of
// name-to-schema maps (properties, $defs, ...) are names, not keywords, and stay.
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'dependentSchemas']);
function rewriteRefs(node, prefix, isMap = false) {
    if (Array.isArray(node)) return node.map((n) => rewriteRefs(n, prefix));
    if (!node || typeof node !== 'object') return node;
    const out = {};
    for (const [k, v] of Object.entries(node)) {
        if (!isMap && k.startsWith('x-')) continue;
        if (!isMap && k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/'))
            out[k] = prefix + '#/$defs/' + v.slice('#/components/schemas/'.length);
        else out[k] = rewriteRefs(v, prefix, !isMap && SCHEMA_MAPS.has(k));
    }
    return out;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
addFormats(ajv);
ajv.addVocabulary(['example', 'xml', 'externalDocs']); // OpenAPI annotations, not assertions
ajv.addSchema({ $id: SPEC_ID, $defs: rewriteRefs(spec.components?.schemas || {}, '', true) });

const operations = new Map(); // operationId -> { method, path, op }
for (const [p, item] of Object.entries(spec.paths || {})) {
    for (const m of METHODS) {
        if (item[m]?.operationId) operations.set(item[m].operationId, { method: m, path: p, op: item[m] });
    }
}

const validators = new Map();
function validatorFor(key, schema) {
    if (!validators.has(key)) validators.set(key, ajv.compile(rewriteRefs(schema, SPEC_ID)));
    return validators.get(key);
}

function schemaErrors(validate) {
    return validate.errors.map((e) => `${e.instancePath || '(root)'} ${e.message}`).join('; ');
}

// Checks one response against one documented response object; returns a list of problems.
function conformResponse(key, doc, res) {
    const errs = [];
    for (const [name, hdrRef] of Object.entries(doc.headers || {})) {
        const hdr = deref(hdrRef);
        const value = res.headers.get(name);
        if (value == null) {
            if (hdr.required) errs.push(`missing header ${name}`);
            continue;
        }
        if (!hdr.schema) continue;
        const schema = deref(hdr.schema);
        const typed = schema.type === 'integer' && /^-?[0-9]+$/.test(value) ? Number(value) : value;
        const v = validatorFor(`${key} header ${name}`, hdr.schema);
        if (!v(typed)) errs.push(`header ${name}: ${JSON.stringify(value)} ${schemaErrors(v)}`);
    }
    const content = doc.content || {};
    const mediaTypes = Object.keys(content);
    if (mediaTypes.length === 0) {
        if (res.text.length > 0) errs.push(`body must be empty, got ${res.text.length} bytes`);
        return errs;
    }
    const ctype = (res.headers.get('content-type') || '').split(';')[0].trim().toLowerCase();
    if (!mediaTypes.includes(ctype)) {
        errs.push(`Content-Type ${JSON.stringify(ctype)} is not one of ${mediaTypes.join(', ')}`);
        return errs;
    }
    const schema = content[ctype].schema;
    if (!schema) return errs;
    let instance = res.text;
    if (ctype === 'application/json' || ctype.endsWith('+json')) {
        if (res.json === undefined) {
            errs.push(`body is not JSON: ${JSON.stringify(res.text.slice(0, 120))}`);
            return errs;
        }
        instance = res.json;
    }
    const v = validatorFor(`${key} body ${ctype}`, schema);
    if (!v(instance)) errs.push(`body ${JSON.stringify(instance).slice(0, 200)}: ${schemaErrors(v)}`);
    return errs;
}

// The status must be documented for the operation; then headers and body must match it.
function conform(opId, res) {
    const entry = operations.get(opId);
    if (!entry) return [`operation ${opId} is not in the contract`];
    const responses = entry.op.responses || {};
    const code = String(res.status);
    const wildcard = `${code[0]}XX`;
    const doc = responses[code] ?? responses[wildcard] ?? responses.default;
    if (!doc) return [`status ${code} is not documented for ${opId}`];
    return conformResponse(`${opId} ${code}`, deref(doc), res);
}

// 405 has no operation to hang on: the contract states it in info.description.
function conformMethodNotAllowed(res) {
    const doc = {
        headers: {
            'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' },
            Allow: { required: true, schema: { type: 'string', minLength: 1 } },
        },
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
    return conformResponse('any 405', doc, res);
}

// ---------------------------------------------------------------------------------------
// HTTP: fetch for ordinary requests, a raw socket for the ones fetch cannot send.

class RawHeaders {
    constructor(pairs) {
        this.map = new Map();
        for (const [k, v] of pairs) {
            const key = k.toLowerCase();
            this.map.set(key, this.map.has(key) ? `${this.map.get(key)}, ${v}` : v);
        }
    }
    get(name) {
        return this.map.has(name.toLowerCase()) ? this.map.get(name.toLowerCase()) : null;
    }
}

function parseJson(text) {
    if (text.length === 0) return undefined;
    try {
        return JSON.parse(text);
    } catch {
        return undefined;
    }
}

async function send(base, method, urlPath, { headers = {}, body } = {}) {
    const init = { method, headers: { ...headers }, redirect: 'manual' };
    init.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    if (body !== undefined) {
        if (typeof body === 'string') {
            init.body = body;
        } else {
            init.body = JSON.stringify(body);
            if (!Object.keys(init.headers).some((h) => h.toLowerCase() === 'content-type'))
                init.headers['Content-Type'] = 'application/json';
        }
    }
    const r = await fetch(base + urlPath, init);
    const text = await r.text();
    return { status: r.status, headers: r.headers, text, json: parseJson(text) };
}

function decodeChunked(buf) {
    const parts = [];
    let i = 0;
    for (;;) {
        const eol = buf.indexOf('\r\n', i);
        if (eol < 0) return null;
        const size = parseInt(buf.subarray(i, eol).toString('latin1'), 16);
        if (Number.isNaN(size)) return null;
        if (size === 0) return Buffer.concat(parts);
        if (eol + 2 + size > buf.length) return null;
        parts.push(buf.subarray(eol + 2, eol + 2 + size));
        i = eol + 2 + size + 2;
    }
}

// Sends bytes as they are and reads one response. The server may close (or reset) the
// connection after an error response, so whatever arrived before that is what counts.
function sendRaw(base, request) {
    const url = new URL(base);
    return new Promise((resolve, reject) => {
        const chunks = [];
        let done = false;
        const sock = net.connect({ host: url.hostname, port: Number(url.port) });
        const finish = (err) => {
            if (done) return;
            const buf = Buffer.concat(chunks);
            const headEnd = buf.indexOf('\r\n\r\n');
            if (headEnd < 0) {
                if (!err) return; // wait for more
                done = true;
                sock.destroy();
                return reject(new Error(`${err.message || err} before a response head arrived`));
            }
            const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
            const m = /^HTTP\/1\.[01] ([0-9]{3})/.exec(lines[0]);
            if (!m) {
                done = true;
                sock.destroy();
                return reject(new Error(`bad status line ${JSON.stringify(lines[0])}`));
            }
            const headers = new RawHeaders(
                lines.slice(1).map((l) => {
                    const c = l.indexOf(':');
                    return [l.slice(0, c).trim(), l.slice(c + 1).trim()];
                }),
            );
            const rest = buf.subarray(headEnd + 4);
            let body = null;
            const cl = headers.get('content-length');
            if (/chunked/i.test(headers.get('transfer-encoding') || '')) body = decodeChunked(rest);
            else if (cl != null) body = rest.length >= Number(cl) ? rest.subarray(0, Number(cl)) : null;
            else if (err) body = rest; // read to close
            if (body === null && !err) return;
            done = true;
            sock.destroy();
            const text = (body || rest).toString('utf8');
            resolve({ status: Number(m[1]), headers, text, json: parseJson(text) });
        };
        sock.setTimeout(REQUEST_TIMEOUT_MS, () => finish(new Error('timeout')));
        sock.on('data', (d) => {
            chunks.push(d);
            finish(null);
        });
        sock.on('end', () => finish(new Error('connection closed')));
        sock.on('error', (e) => finish(e));
        sock.on('close', () => finish(new Error('connection closed')));
        sock.write(request);
    });
}

// ---------------------------------------------------------------------------------------
// Checks: one line each, then the total.

let passed = 0;
let failed = 0;
const exercised = new Set();

function report(label, errs) {
    if (errs.length === 0) {
        passed++;
        console.log(`ok   ${label}`);
    } else {
        failed++;
        console.log(`FAIL ${label}: ${errs.join(' | ')}`);
    }
}

// One request, one line: expected status, conformance to the contract, then `more`, which
// gets the response and need(cond, msg) for the behaviour this step is about.
async function step(label, opId, req, expectStatus, more) {
    let res;
    try {
        res = req.raw
            ? await sendRaw(req.base, req.raw)
            : await send(req.base, req.method, req.path, req);
    } catch (e) {
        report(label, [`request failed: ${e.cause?.message || e.message}`]);
        return null;
    }
    const errs = [];
    if (expectStatus !== undefined && res.status !== expectStatus)
        errs.push(`status ${res.status}, expected ${expectStatus} (body ${res.text.slice(0, 160)})`);
    if (opId === '405') errs.push(...conformMethodNotAllowed(res));
    else {
        exercised.add(opId);
        errs.push(...conform(opId, res));
    }
    if (more && errs.length === 0) {
        const need = (cond, msg) => {
            if (!cond) errs.push(msg);
        };
        try {
            await more(res, need);
        } catch (e) {
            errs.push(`check threw: ${e.message}`);
        }
    }
    report(label, errs);
    // Later steps build on this one whenever the status was right, so one bad field does
    // not hide every check after it.
    return expectStatus === undefined || res.status === expectStatus ? res : null;
}

function plain(label, errs) {
    report(label, errs);
}

const tag = `${Date.now().toString(36)}${process.pid}`;
const email = (who) => `${who}.${tag}@example.org`;
const idOf = (res) => res?.json?.id;
const LINK_RE = /^<([^>]+)>; rel="next"$/;

function fieldIs(field) {
    return (r, need) => need(r.json.field === field, `field ${JSON.stringify(r.json.field)}, expected ${JSON.stringify(field)}`);
}

// Follows rel="next" links from the first page; returns every id seen, in order.
async function walkPages(label, opId, base, first, check) {
    const ids = [];
    let next = first;
    for (let page = 1; next && page <= 50; page++) {
        let link = null;
        const r = await step(`${label} page ${page}`, opId, { base, method: 'GET', path: next }, 200, (res, need) => {
            for (const it of res.json) ids.push(it.id);
            const l = res.headers.get('link');
            if (l) {
                const m = LINK_RE.exec(l);
                need(m, `Link ${l} is not </path>; rel="next"`);
                if (m) link = m[1];
            }
            if (check) check(res, need, link);
        });
        if (!r) break;
        next = link;
    }
    return ids;
}

function ascending(ids) {
    return ids.every((id, i) => i === 0 || id > ids[i - 1]);
}

// ---------------------------------------------------------------------------------------

async function probes() {
    for (const [name, base] of [['users', USERS], ['orders', ORDERS]]) {
        await step(`${name}: GET /healthz is ok`, 'getHealth', { base, method: 'GET', path: '/healthz' }, 200);
        await step(`${name}: GET /readyz is ready`, 'getReadiness', { base, method: 'GET', path: '/readyz' }, 200);
        await step(`${name}: GET /metrics is Prometheus text`, 'getMetrics', { base, method: 'GET', path: '/metrics' }, 200, (r, need) =>
            need(/^# (TYPE|HELP) /m.test(r.text), 'no # TYPE or # HELP line'),
        );
    }
    const rid = `contract-${tag}`;
    await step('users: X-Request-Id is echoed', 'getHealth', { base: USERS, method: 'GET', path: '/healthz', headers: { 'X-Request-Id': rid } }, 200, (r, need) =>
        need(r.headers.get('x-request-id') === rid, `X-Request-Id ${r.headers.get('x-request-id')}`),
    );
    await step('orders: X-Request-Id is echoed', 'listOrders', { base: ORDERS, method: 'GET', path: '/orders?limit=1', headers: { 'X-Request-Id': rid } }, 200, (r, need) =>
        need(r.headers.get('x-request-id') === rid, `X-Request-Id ${r.headers.get('x-request-id')}`),
    );
}

async function users() {
    const U = { base: USERS };
    const created = [];
    const create = async (label, body, extra = {}) => {
        const r = await step(label, 'createUser', { ...U, method: 'POST', path: '/users', body, ...extra }, 201, (res, need) => {
            need(res.headers.get('location') === `/users/${res.json.id}`, `Location ${res.headers.get('location')}`);
            for (const k of Object.keys(body)) need(res.json[k] === body[k], `${k} is ${JSON.stringify(res.json[k])}`);
            need(res.json.createdAt === res.json.updatedAt, 'createdAt != updatedAt on create');
        });
        if (r) created.push(r.json);
        return r;
    };

    const a = await create('users: POST creates a user', { name: 'Ada Lovelace', email: email('ada') });
    const b = await create('users: POST with charset=utf-8 is JSON too', { name: 'Grace Hopper', email: email('grace') }, {
        headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    await create('users: name of 200 non-ASCII characters is accepted', { name: 'é'.repeat(200), email: email('long') });
    await create('users: name of 1 character is accepted', { name: 'X', email: email('short') });
    if (!a || !b) return null;
    const aId = a.json.id;

    await step('users: GET /users/{id} returns it', 'getUser', { ...U, method: 'GET', path: `/users/${aId}` }, 200, (r, need) => {
        need(isDeepStrictEqual(r.json, a.json), 'differs from the POST body');
        need(r.headers.get('etag') === a.headers.get('etag'), `ETag ${r.headers.get('etag')} != POST ETag ${a.headers.get('etag')}`);
    });
    await step('users: If-None-Match current ETag is 304', 'getUser', { ...U, method: 'GET', path: `/users/${aId}`, headers: { 'If-None-Match': a.headers.get('etag') } }, 304);
    await step('users: If-None-Match other ETag is 200', 'getUser', { ...U, method: 'GET', path: `/users/${aId}`, headers: { 'If-None-Match': '"0000000000000000"' } }, 200);
    await step('users: GET unknown id is 404', 'getUser', { ...U, method: 'GET', path: '/users/999999999' }, 404);
    await step('users: GET a non-numeric id is 404', 'getUser', { ...U, method: 'GET', path: '/users/abc' }, 404);

    await step('users: GET /users lists them in id order', 'listUsers', { ...U, method: 'GET', path: '/users' }, 200, (r, need) => {
        const ids = r.json.map((u) => u.id);
        need(ascending(ids), `ids not ascending: ${ids}`);
        for (const u of created) need(ids.includes(u.id), `user ${u.id} missing`);
        need(!r.headers.get('link'), 'Link on a complete list');
    });

    // Partial update, ETag moves, If-Match guards.
    const oldTag = a.headers.get('etag');
    const upd = await step('users: PUT changes only the sent field', 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: { name: 'Ada King' } }, 200, (r, need) => {
        need(r.json.name === 'Ada King', `name ${r.json.name}`);
        need(r.json.email === a.json.email, 'email changed');
        need(r.json.createdAt === a.json.createdAt, 'createdAt changed');
        need(r.json.updatedAt >= a.json.updatedAt, 'updatedAt went back');
        need(r.headers.get('etag') !== oldTag, 'ETag did not change');
    });
    await step('users: PUT with stale If-Match is 412', 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: { name: 'Nope' }, headers: { 'If-Match': oldTag } }, 412);
    if (upd) {
        await step('users: PUT with current If-Match is 200', 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: { name: 'Ada Byron' }, headers: { 'If-Match': upd.headers.get('etag') } }, 200);
    }
    await step('users: the 412 changed nothing', 'getUser', { ...U, method: 'GET', path: `/users/${aId}` }, 200, (r, need) =>
        need(r.json.name === (upd ? 'Ada Byron' : 'Ada King'), `name ${r.json.name}`),
    );
    await step('users: PUT unknown id is 404', 'updateUser', { ...U, method: 'PUT', path: '/users/999999999', body: { name: 'Nobody' } }, 404);

    // Bad bodies.
    const post = (body, headers) => ({ ...U, method: 'POST', path: '/users', body, headers });
    await step('users: POST malformed JSON is 400', 'createUser', post('{"name": "x",', { 'Content-Type': 'application/json' }), 400);
    await step('users: POST a JSON array is 400', 'createUser', post('[1,2]', { 'Content-Type': 'application/json' }), 400);
    await step('users: POST a JSON string is 400', 'createUser', post('"hi"', { 'Content-Type': 'application/json' }), 400);
    await step('users: POST text/plain is 415', 'createUser', post(JSON.stringify({ name: 'T', email: email('t') }), { 'Content-Type': 'text/plain' }), 415);
    await step('users: PUT text/plain is 415', 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: '{"name":"T"}', headers: { 'Content-Type': 'text/plain' } }, 415);
    await step('users: PUT malformed JSON is 400', 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: '{', headers: { 'Content-Type': 'application/json' } }, 400);
    const bad = [
        ['missing name', { email: email('m1') }, 'name'],
        ['missing email', { name: 'M' }, 'email'],
        ['empty name', { name: '', email: email('m2') }, 'name'],
        ['name of 201 characters', { name: 'n'.repeat(201), email: email('m3') }, 'name'],
        ['name not a string', { name: 42, email: email('m4') }, 'name'],
        ['email without @', { name: 'M', email: 'nobody.example.org' }, 'email'],
        ['email with two @', { name: 'M', email: 'a@b@example.org' }, 'email'],
        ['email with empty local part', { name: 'M', email: '@example.org' }, 'email'],
        ['email domain without a dot', { name: 'M', email: 'a@localhost' }, 'email'],
        ['email with a space', { name: 'M', email: 'a b@example.org' }, 'email'],
        ['email of 255 characters', { name: 'M', email: 'a'.repeat(243) + '@example.org' }, 'email'],
        ['email not a string', { name: 'M', email: 7 }, 'email'],
        ['unknown field', { name: 'M', email: email('m5'), nickname: 'm' }, 'nickname'],
        ['id in the body', { id: 5, name: 'M', email: email('m6') }, 'id'],
    ];
    for (const [what, body, field] of bad) {
        await step(`users: POST ${what} is 422 field ${field}`, 'createUser', post(body), 422, fieldIs(field));
    }
    for (const [what, body, field] of [
        ['empty name', { name: '' }, 'name'],
        ['bad email', { email: 'nope' }, 'email'],
        ['id in the body', { id: 99 }, 'id'],
        ['unknown field', { age: 3 }, 'age'],
    ]) {
        await step(`users: PUT ${what} is 422 field ${field}`, 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body }, 422, fieldIs(field));
    }
    await step('users: POST duplicate email is 409 field email', 'createUser', post({ name: 'Copy', email: email('grace') }), 409, fieldIs('email'));
    await step("users: PUT another user's email is 409 field email", 'updateUser', { ...U, method: 'PUT', path: `/users/${aId}`, body: { email: email('grace') } }, 409, fieldIs('email'));

    // Pagination: walk limit=2 pages and compare with the full list.
    for (let i = 0; i < 3; i++) await create(`users: POST page filler ${i + 1}`, { name: `Filler ${i}`, email: email(`fill${i}`) });
    const all = await step('users: GET /users?limit=1000 has no Link', 'listUsers', { ...U, method: 'GET', path: '/users?limit=1000' }, 200, (r, need) =>
        need(!r.headers.get('link'), `Link ${r.headers.get('link')}`),
    );
    if (all) {
        const allIds = all.json.map((u) => u.id);
        const walked = await walkPages('users: limit=2', 'listUsers', USERS, '/users?limit=2', (r, need, link) => {
            need(r.json.length <= 2, `${r.json.length} items on a limit=2 page`);
            if (link) {
                const last = r.json[r.json.length - 1]?.id;
                need(/^\/users\?/.test(link), `Link target ${link}`);
                need(new URLSearchParams(link.split('?')[1]).get('after') === String(last), `Link ${link} after != last id ${last}`);
                need(new URLSearchParams(link.split('?')[1]).get('limit') === '2', `Link ${link} lost limit=2`);
            }
        });
        plain('users: pages cover the list exactly once, ascending', isDeepStrictEqual(walked, allIds) ? [] : [`walked ${walked} vs ${allIds}`]);
        const mid = allIds[1];
        await step('users: after=ID returns only greater ids', 'listUsers', { ...U, method: 'GET', path: `/users?after=${mid}` }, 200, (r, need) =>
            need(isDeepStrictEqual(r.json.map((u) => u.id), allIds.filter((id) => id > mid)), `ids ${r.json.map((u) => u.id)}`),
        );
        await step('users: after=last id is an empty page', 'listUsers', { ...U, method: 'GET', path: `/users?after=${allIds[allIds.length - 1]}` }, 200, (r, need) => {
            need(r.json.length === 0, `${r.json.length} items`);
            need(!r.headers.get('link'), 'Link on an empty page');
        });
    }
    for (const [q, field] of [
        ['limit=0', 'limit'],
        ['limit=abc', 'limit'],
        ['limit=-5', 'limit'],
        ['limit=1001', 'limit'],
        ['after=-1', 'after'],
        ['after=x', 'after'],
    ]) {
        await step(`users: GET /users?${q} is 422 field ${field}`, 'listUsers', { ...U, method: 'GET', path: `/users?${q}` }, 422, fieldIs(field));
    }

    // Idempotency keys.
    const key = `idem-${tag}`;
    const body = { name: 'Idem Potent', email: email('idem') };
    const first = await step('users: POST with Idempotency-Key creates', 'createUser', post(body, { 'Idempotency-Key': key }), 201, (r, need) =>
        need(r.headers.get('idempotent-replayed') == null, 'first response marked as replayed'),
    );
    if (first) {
        const before = await send(USERS, 'GET', '/users?limit=1000');
        await step('users: repeat with same key and body is replayed', 'createUser', post(body, { 'Idempotency-Key': key }), 201, (r, need) => {
            need(r.headers.get('idempotent-replayed') === 'true', `Idempotent-Replayed ${r.headers.get('idempotent-replayed')}`);
            need(r.headers.get('location') === first.headers.get('location'), `Location ${r.headers.get('location')}`);
            need(isDeepStrictEqual(r.json, first.json), 'body differs from the first response');
        });
        const after = await send(USERS, 'GET', '/users?limit=1000');
        plain('users: the replay created nothing', before.json?.length === after.json?.length ? [] : [`${before.json?.length} users before, ${after.json?.length} after`]);
        await step('users: same key with another body is 422 field Idempotency-Key', 'createUser', post({ ...body, name: 'Other' }, { 'Idempotency-Key': key }), 422, fieldIs('Idempotency-Key'));
    }

    // Delete: If-Match, 200, gone, id not reused.
    const victim = await create('users: POST a user to delete', { name: 'Short Lived', email: email('gone') });
    if (victim) {
        const vid = victim.json.id;
        await step('users: DELETE with stale If-Match is 412', 'deleteUser', { ...U, method: 'DELETE', path: `/users/${vid}`, headers: { 'If-Match': '"0000000000000000"' } }, 412);
        await step('users: DELETE with current If-Match is 200', 'deleteUser', { ...U, method: 'DELETE', path: `/users/${vid}`, headers: { 'If-Match': victim.headers.get('etag') } }, 200);
        await step('users: GET after DELETE is 404', 'getUser', { ...U, method: 'GET', path: `/users/${vid}` }, 404);
        await step('users: DELETE again is 404', 'deleteUser', { ...U, method: 'DELETE', path: `/users/${vid}` }, 404);
        const maxId = Math.max(...created.map((u) => u.id));
        await create('users: POST after DELETE gets a new id', { name: 'Next', email: email('next') });
        const last = created[created.length - 1];
        plain('users: ids are never reused', last.id > maxId ? [] : [`new id ${last.id} <= ${maxId}`]);
        await step('users: the deleted email is free again', 'createUser', post({ name: 'Again', email: email('gone') }), 201);
    }
    await step('users: PATCH /users/{id} is 405', '405', { ...U, method: 'PATCH', path: `/users/${aId}`, body: { name: 'P' } }, 405);
    await step('users: DELETE /users is 405', '405', { ...U, method: 'DELETE', path: '/users' }, 405);
    return { a: a.json, b: b.json };
}

async function orders(u) {
    const O = { base: ORDERS };
    const post = (body, headers) => ({ ...O, method: 'POST', path: '/orders', body, headers });
    const put = (id, body, headers) => ({ ...O, method: 'PUT', path: `/orders/${id}`, body, headers });
    const create = (label, body, extra = {}) =>
        step(label, 'createOrder', { ...post(body), ...extra }, 201, (r, need) => {
            need(r.headers.get('location') === `/orders/${r.json.id}`, `Location ${r.headers.get('location')}`);
            need(r.json.userId === body.userId, `userId ${r.json.userId}`);
            need(r.json.status === (body.status || 'pending'), `status ${r.json.status}`);
        });

    const o1 = await create('orders: POST creates a pending order', { userId: u.a.id });
    const o2 = await create('orders: POST with a status keeps it', { userId: u.a.id, status: 'completed' });
    await create('orders: POST for a second user', { userId: u.b.id });
    const o4 = await create('orders: POST another for the first user', { userId: u.a.id });
    if (!o1 || !o2 || !o4) return;
    const id1 = o1.json.id;

    await step('orders: GET /orders/{id} returns it', 'getOrder', { ...O, method: 'GET', path: `/orders/${id1}` }, 200, (r, need) => {
        need(isDeepStrictEqual(r.json, o1.json), 'differs from the POST body');
        need(r.headers.get('etag') === o1.headers.get('etag'), 'ETag differs from the POST ETag');
    });
    await step('orders: If-None-Match current ETag is 304', 'getOrder', { ...O, method: 'GET', path: `/orders/${id1}`, headers: { 'If-None-Match': o1.headers.get('etag') } }, 304);
    await step('orders: GET unknown id is 404', 'getOrder', { ...O, method: 'GET', path: '/orders/999999999' }, 404);
    await step('orders: PUT unknown id is 404', 'updateOrder', put(999999999, { status: 'paid' }), 404);
    await step('orders: DELETE unknown id is 404', 'deleteOrder', { ...O, method: 'DELETE', path: '/orders/999999999' }, 404);

    // Validation.
    for (const [what, body, field] of [
        ['missing userId', {}, 'userId'],
        ['userId 0', { userId: 0 }, 'userId'],
        ['userId as a string', { userId: String(u.a.id) }, 'userId'],
        ['userId not an integer', { userId: 1.5 }, 'userId'],
        ['userId of no user', { userId: 999999999 }, 'userId'],
        ['unknown status', { userId: u.a.id, status: 'lost' }, 'status'],
        ['unknown field', { userId: u.a.id, note: 'x' }, 'note'],
        ['id in the body', { userId: u.a.id, id: 77 }, 'id'],
    ]) {
        await step(`orders: POST ${what} is 422 field ${field}`, 'createOrder', post(body), 422, fieldIs(field));
    }
    await step('orders: POST malformed JSON is 400', 'createOrder', post('{"userId":', { 'Content-Type': 'application/json' }), 400);
    await step('orders: POST text/plain is 415', 'createOrder', post(`{"userId":${u.a.id}}`, { 'Content-Type': 'text/plain' }), 415);
    await step('orders: PUT unknown status is 422 field status', 'updateOrder', put(id1, { status: 'lost' }), 422, fieldIs('status'));
    await step('orders: PUT userId of no user is 422 field userId', 'updateOrder', put(id1, { userId: 999999999 }), 422, fieldIs('userId'));
    await step('orders: PUT malformed JSON is 400', 'updateOrder', put(id1, '[', { 'Content-Type': 'application/json' }), 400);
    await step('orders: PUT text/plain is 415', 'updateOrder', put(id1, '{"status":"paid"}', { 'Content-Type': 'text/plain' }), 415);

    // Status life cycle.
    const transition = (id, from, to, code) =>
        step(`orders: ${from} -> ${to} is ${code}`, 'updateOrder', put(id, { status: to }), code, (r, need) => {
            if (code === 200) need(r.json.status === to, `status ${r.json.status}`);
            else {
                need(r.json.from === from && r.json.to === to, `from/to ${r.json.from}/${r.json.to}`);
                need(r.json.error === `cannot change status from ${from} to ${to}`, `error ${r.json.error}`);
            }
        });
    await transition(id1, 'pending', 'paid', 200);
    await transition(id1, 'paid', 'paid', 200);
    await transition(id1, 'paid', 'pending', 409);
    await transition(id1, 'paid', 'shipped', 200);
    await transition(id1, 'shipped', 'cancelled', 409);
    await transition(id1, 'shipped', 'completed', 200);
    await transition(id1, 'completed', 'cancelled', 409);
    await transition(o2.json.id, 'completed', 'pending', 409);
    await transition(o4.json.id, 'pending', 'shipped', 409);
    await transition(o4.json.id, 'pending', 'cancelled', 200);
    await transition(o4.json.id, 'cancelled', 'paid', 409);
    const o5 = await create('orders: POST one to cancel after paying', { userId: u.b.id });
    if (o5) {
        await transition(o5.json.id, 'pending', 'paid', 200);
        await transition(o5.json.id, 'paid', 'cancelled', 200);
    }

    // Partial update of userId, If-Match.
    const cur = await send(ORDERS, 'GET', `/orders/${id1}`);
    await step('orders: PUT with stale If-Match is 412', 'updateOrder', put(id1, { userId: u.b.id }, { 'If-Match': o1.headers.get('etag') }), 412);
    await step('orders: PUT userId with current If-Match moves the order', 'updateOrder', put(id1, { userId: u.b.id }, { 'If-Match': cur.headers.get('etag') }), 200, (r, need) => {
        need(r.json.userId === u.b.id, `userId ${r.json.userId}`);
        need(r.json.status === 'completed', `status ${r.json.status}`);
        need(r.headers.get('etag') !== cur.headers.get('etag'), 'ETag did not change');
    });

    // Filter and pages: user a now has o2, o4 and more; user b has id1, its own, o5.
    for (let i = 0; i < 2; i++) await create(`orders: POST page filler ${i + 1}`, { userId: u.a.id });
    const full = await step('orders: GET /orders?userId= filters', 'listOrders', { ...O, method: 'GET', path: `/orders?userId=${u.a.id}` }, 200, (r, need) => {
        need(r.json.length >= 3, `${r.json.length} orders`);
        need(r.json.every((o) => o.userId === u.a.id), 'an order of another user');
        need(ascending(r.json.map((o) => o.id)), 'ids not ascending');
    });
    if (full) {
        const walked = await walkPages('orders: userId + limit=2', 'listOrders', ORDERS, `/orders?userId=${u.a.id}&limit=2`, (r, need, link) => {
            need(r.json.every((o) => o.userId === u.a.id), 'an order of another user');
            if (link) {
                const q = new URLSearchParams(link.split('?')[1]);
                need(/^\/orders\?/.test(link), `Link target ${link}`);
                need(q.get('userId') === String(u.a.id), `Link ${link} lost userId`);
                need(q.get('after') === String(r.json[r.json.length - 1]?.id), `Link ${link} after != last id`);
            }
        });
        plain('orders: filtered pages cover the filtered list exactly once', isDeepStrictEqual(walked, full.json.map((o) => o.id)) ? [] : [`walked ${walked}`]);
    }
    await step('orders: GET /orders lists every order', 'listOrders', { ...O, method: 'GET', path: '/orders' }, 200, (r, need) => {
        need(ascending(r.json.map((o) => o.id)), 'ids not ascending');
        need(new Set(r.json.map((o) => o.userId)).size >= 2, 'expected orders of two users');
    });
    for (const [q, field] of [
        ['userId=0', 'userId'],
        ['userId=abc', 'userId'],
        ['limit=0', 'limit'],
        ['after=-1', 'after'],
    ]) {
        await step(`orders: GET /orders?${q} is 422 field ${field}`, 'listOrders', { ...O, method: 'GET', path: `/orders?${q}` }, 422, fieldIs(field));
    }

    // Idempotency keys.
    const key = `idem-order-${tag}`;
    const first = await step('orders: POST with Idempotency-Key creates', 'createOrder', post({ userId: u.b.id }, { 'Idempotency-Key': key }), 201);
    if (first) {
        await step('orders: repeat with same key and body is replayed', 'createOrder', post({ userId: u.b.id }, { 'Idempotency-Key': key }), 201, (r, need) => {
            need(r.headers.get('idempotent-replayed') === 'true', 'no Idempotent-Replayed: true');
            need(isDeepStrictEqual(r.json, first.json), 'body differs from the first response');
            need(r.headers.get('location') === first.headers.get('location'), 'Location differs');
        });
        await step('orders: same key with another body is 422 field Idempotency-Key', 'createOrder', post({ userId: u.a.id }, { 'Idempotency-Key': key }), 422, fieldIs('Idempotency-Key'));
    }

    // Delete.
    const g = await send(ORDERS, 'GET', `/orders/${o2.json.id}`);
    await step('orders: DELETE with stale If-Match is 412', 'deleteOrder', { ...O, method: 'DELETE', path: `/orders/${o2.json.id}`, headers: { 'If-Match': '"0000000000000000"' } }, 412);
    await step('orders: DELETE with current If-Match is 200', 'deleteOrder', { ...O, method: 'DELETE', path: `/orders/${o2.json.id}`, headers: { 'If-Match': g.headers.get('etag') } }, 200);
    await step('orders: GET after DELETE is 404', 'getOrder', { ...O, method: 'GET', path: `/orders/${o2.json.id}` }, 404);
    await step('orders: PATCH /orders/{id} is 405', '405', { ...O, method: 'PATCH', path: `/orders/${id1}`, body: { status: 'paid' } }, 405);

    if (ORDERS_NOUSERS) {
        const N = { base: ORDERS_NOUSERS };
        await step('orders: users down, POST is 503 with Retry-After', 'createOrder', { ...N, method: 'POST', path: '/orders', body: { userId: 1 } }, 503, (r, need) =>
            need(r.headers.get('retry-after') === '1', `Retry-After ${r.headers.get('retry-after')}`),
        );
        await step('orders: users down, nothing was stored', 'listOrders', { ...N, method: 'GET', path: '/orders' }, 200, (r, need) =>
            need(r.json.length === 0, `${r.json.length} orders stored`),
        );
    }
}

// Limits and framing, sent byte for byte on their own connections.
async function limits() {
    const host = new URL(USERS).host;
    await step('users: header block over 16 KiB is 431', 'getHealth', {
        base: USERS,
        raw: `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Pad: ${'a'.repeat(17 * 1024)}\r\nConnection: close\r\n\r\n`,
    }, 431);
    await step('users: request line over 8 KiB is 414', 'getHealth', {
        base: USERS,
        raw: `GET /healthz?pad=${'a'.repeat(9 * 1024)} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    }, 414);
    await step('users: Content-Length over 1 MiB is 413', 'createUser', {
        base: USERS,
        raw: `POST /users HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${2 * 1024 * 1024}\r\nConnection: close\r\n\r\n{"name":`,
    }, 413);
    await step('users: Content-Length with Transfer-Encoding is 400', 'createUser', {
        base: USERS,
        raw: `POST /users HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
    }, 400);
}

// The event feeds of both services and the orders side of consistency.
async function events() {
    for (const [name, base, kind] of [['users', USERS, 'user.'], ['orders', ORDERS, 'order.']]) {
        const E = { base, method: 'GET' };
        const all = await step(`${name}: GET /events lists the changes in id order`, 'getEvents', { ...E, path: '/events?after=0&limit=1000' }, 200, (r, need) => {
            need(r.json.events.length > 0, 'no events');
            need(r.json.events.every((e, i) => e.id === i + 1), 'ids not gap-free from 1');
            need(r.json.events.every((e) => e.type.startsWith(kind)), `a type without ${kind}`);
            need(r.json.last === r.json.events[r.json.events.length - 1]?.id, `last ${r.json.last}`);
        });
        if (all) {
            const head = all.json.head;
            await step(`${name}: GET /events?after=head&wait=100ms is empty`, 'getEvents', { ...E, path: `/events?after=${head}&wait=100ms` }, 200, (r, need) => {
                need(r.json.events.length === 0 && r.json.last === head, `${r.text.slice(0, 120)}`);
            });
            await step(`${name}: GET /events past the head answers at once`, 'getEvents', { ...E, path: `/events?after=${head + 1000}&wait=30s` }, 200, (r, need) => {
                need(r.json.events.length === 0 && r.json.last === head + 1000 && r.json.head === head, `${r.text.slice(0, 120)}`);
            });
        }
        for (const [q, field] of [['after=-1', 'after'], ['after=01', 'after'], ['limit=0', 'limit'], ['limit=1001', 'limit'], ['wait=soon', 'wait'], ['wait=-1s', 'wait']]) {
            await step(`${name}: GET /events?${q} is 422 field ${field}`, 'getEvents', { ...E, path: `/events?${q}` }, 422, fieldIs(field));
        }
    }
    await step('orders: GET /orders/consistency', 'getOrdersConsistency', { base: ORDERS, method: 'GET', path: '/orders/consistency' }, 200, (r, need) => {
        need(r.json.lag === r.json.feedLast - r.json.cursor, `lag ${r.json.lag}`);
    });
}

async function main() {
    await probes();
    const u = await users();
    if (u) await orders(u);
    else plain('orders: skipped, the users setup failed', ['no users to order for']);
    await events();
    await limits();
    const missing = [...operations.keys()].filter((op) => !exercised.has(op));
    plain('every operation in the contract was exercised', missing.length ? [`not exercised: ${missing.join(', ')}`] : []);
}

const guard = setTimeout(() => {
    console.log(`FAIL run did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    process.exit(1);
}, TOTAL_TIMEOUT_MS);

main()
    .catch((e) => {
        failed++;
        console.log(`FAIL validate.mjs crashed: ${e.stack || e}`);
    })
    .finally(() => {
        clearTimeout(guard);
        console.log(`${passed} passed, ${failed} failed`);
        process.exit(failed > 0 ? 1 : 0);
    });
