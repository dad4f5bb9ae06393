// The cmesh dashboard: polls the control plane's own API (the one `cmesh status` reads)
// and draws what it answers. /v1/status every second (services, instances and their
// state), and at once when a blocking query on /v1/services?index=N says the registry
// changed (an instance that died and came back within a second is still seen);
// /v1/history?after=N every 2 s (the charts' points: the control plane keeps the last 15
// minutes, so a page opened late has them); /v1/events?after=N every second.
// Plain JS, no library; the charts are drawn on <canvas> here. Every text from the API
// goes into the page as a text node, never as HTML.
'use strict';
(() => {
  const STATUS_MS = 1000, HISTORY_MS = 2000, EVENTS_MS = 1000, TIMEOUT_MS = 5000;
  const WATCH_WAIT = '30s', WATCH_TIMEOUT_MS = 40000; // a blocking query's wait, and ours
  const KEEP_MS = 16 * 60 * 1000;   // points older than the longest range are dropped
  const EVENTS_SHOWN = 300;
  const st = {
    status: null, skew: 0, range: 300, conn: 'connecting', lastOk: 0,
    hist: new Map(), histLast: 0, interval: 2000, hover: null,
    events: [], evLast: 0, evSeen: false,
    cards: new Map(),
  };

  // ---- small helpers ------------------------------------------------------------------
  const $ = (sel) => document.querySelector(sel);
  // h('td', {class: 'num'}, 'text', child...): an element; strings become text nodes
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of kids.flat(Infinity)) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const now = () => Date.now() + st.skew;   // the control plane's clock
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const pad = (n) => String(n).padStart(2, '0');
  function clock(ms) { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; }
  function hm(ms) { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; }
  function fmtRps(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 10000) return (v / 1000).toFixed(0) + 'k';
    if (v >= 1000) return (v / 1000).toFixed(1) + 'k';
    return v >= 10 ? v.toFixed(0) : v.toFixed(1);
  }
  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 0 : 1) + ' s';
    return (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)) + ' ms';
  }
  function fmtPct(v) {
    if (v === null || v === undefined) return '–';
    const p = v * 100;
    return (p === 0 ? '0' : p < 0.1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)) + '%';
  }
  function fmtDur(s) {
    if (s < 0) s = 0;
    s = Math.floor(s);
    if (s < 60) return s + 's';
    if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor(s / 3600) % 24}h`;
  }
  function fmtBytes(b) {
    if (b === undefined) return '–';
    if (b >= 1 << 30) return (b / (1 << 30)).toFixed(1) + ' GiB';
    if (b >= 1 << 20) return (b / (1 << 20)).toFixed(b >= 100 << 20 ? 0 : 1) + ' MiB';
    return Math.round(b / 1024) + ' KiB';
  }

  async function getJSON(url, ms = TIMEOUT_MS, head = null) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), ms);
    try {
      const r = await fetch(url, { signal: ctl.signal, cache: 'no-store' });
      // the server's clock, for uptimes; only a real difference counts (Date has 1 s steps)
      const d = Date.parse(r.headers.get('Date') || '');
      if (!Number.isNaN(d)) st.skew = Math.abs(d - Date.now()) > 2500 ? d - Date.now() : 0;
      if (!r.ok && r.status !== 503) throw new Error(`${url}: ${r.status}`);
      if (head) head(r.headers);
      return await r.json();
    } finally {
      clearTimeout(t);
    }
  }

  // every poller runs on its own; a failure marks the connection down until one succeeds.
  // Returns a function that cuts the current wait short (poll now).
  function loop(fn, ms) {
    let wake = null;
    (async () => {
      for (;;) {
        try {
          await fn();
          st.lastOk = Date.now();
          setConn(st.status && st.status.stopping ? 'stopping' : 'live');
        } catch (e) {
          setConn('down');
        }
        await new Promise((r) => {
          wake = r;
          setTimeout(r, ms);
        });
      }
    })();
    return () => wake && wake();
  }

  // Consul-style blocking query: answers when the registry's index passes ours (or after
  // WATCH_WAIT); every change polls the status at once.
  async function watch(kick) {
    let index = 0;
    for (;;) {
      let next = index;
      try {
        await getJSON(`/v1/services?index=${index}&wait=${WATCH_WAIT}`, WATCH_TIMEOUT_MS, (hd) => {
          next = Number(hd.get('X-Cmesh-Index')) || 0;
        });
      } catch (e) {
        await sleep(2000); // away: the pollers say so; try again gently
        continue;
      }
      if (next !== index && index !== 0) kick();
      index = next < index ? 0 : next; // smaller: a new registry, start over
    }
  }

  function setConn(state) {
    if (state === 'live' && Date.now() - st.lastOk > 3 * STATUS_MS && st.conn === 'down') return;
    st.conn = state;
    const el = $('#conn');
    el.dataset.state = state === 'stopping' ? 'down' : state;
    $('#conn-text').textContent = state === 'live' ? 'live' : state === 'stopping'
      ? 'going down' : state === 'down' ? 'unreachable – retrying' : 'connecting';
  }

  // ---- charts -----------------------------------------------------------------------
  // A nice axis for values up to v: [top, rows], the top 1, 2, 2.5 or 5 times a power of
  // ten at or above v, split in rows whose lines fall on round numbers.
  // A short chart (compact) gets two or three lines.
  const AXES = [[1, 4], [2, 4], [2.5, 5], [5, 5], [10, 5]];
  const AXES_COMPACT = [[1, 2], [2, 2], [3, 3], [4, 2], [5, 2], [6, 3], [8, 2], [10, 2]];
  function niceAxis(v, compact) {
    const table = compact ? AXES_COMPACT : AXES;
    if (!(v > 0)) return [table[0][0], table[0][1]];
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const [m, rows] of table) if (m * p >= v * 0.9999) return [m * p, rows];
    return [10 * p, 2];
  }
  const TICKS = [10, 15, 30, 60, 120, 300, 600, 1800].map((s) => s * 1000);

  // draw(canvas, t[], lines[{v[], color, fill, step}], {fmt, min}): the last `range`
  // seconds, a gap where a value is null or the points are far apart (the control plane
  // was away). Sets canvas.dataset.points to the visible points of the first line.
  function draw(cv, t, lines, opt) {
    const dpr = window.devicePixelRatio || 1;
    const W = cv.clientWidth, H = cv.clientHeight;
    if (!W || !H) return;
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
      cv.width = Math.round(W * dpr);
      cv.height = Math.round(H * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    // the range asked for, or less while the history is shorter (a system just started):
    // from its first point, a minute at least
    const t1 = now();
    const t0 = Math.max(t1 - st.range * 1000, Math.min(t.length ? t[0] : 0, t1 - 60000));
    let lo = t.length;
    while (lo > 0 && t[lo - 1] >= t0) lo--;
    let max = 0, points = 0;
    for (const ln of lines)
      for (let i = lo; i < t.length; i++) {
        const v = ln.v[i];
        if (v === null || v === undefined) continue;
        if (v > max) max = v;
        if (ln === lines[0]) points++;
      }
    let rows;
    if (opt.integer) {
      max = Math.max(1, Math.ceil(max * 1.15));
      rows = max <= (H < 90 ? 3 : 4) ? max : 2;
    } else {
      [max, rows] = niceAxis(Math.max(max * 1.1, opt.min || 0), H < 90);
    }
    g.font = '10px system-ui, sans-serif';
    let L = 0;                                   // the left margin fits the widest label
    for (let k = 0; k <= rows; k++) L = Math.max(L, g.measureText(opt.axis((max * k) / rows)).width);
    L = Math.ceil(L) + 8;
    const R = 4, T = 6, B = 16;
    const pw = W - L - R, ph = H - T - B;
    const x = (ms) => L + ((ms - t0) / (t1 - t0)) * pw;
    const y = (v) => T + ph - (v / max) * ph;

    // grid and labels
    g.textBaseline = 'middle';
    g.textAlign = 'right';
    for (let k = 0; k <= rows; k++) {
      const v = (max * k) / rows, yy = Math.round(y(v)) + 0.5;
      g.strokeStyle = k ? '#242c38' : '#323c4b';
      g.beginPath(); g.moveTo(L, yy); g.lineTo(W - R, yy); g.stroke();
      g.fillStyle = '#6e7a8c';
      g.fillText(opt.axis(v), L - 4, yy);
    }
    g.textAlign = 'center';
    g.textBaseline = 'alphabetic';
    // time ticks: the finest step whose labels do not touch
    let step = TICKS[TICKS.length - 1];
    for (const s of TICKS) {
      if ((s / (t1 - t0)) * pw >= (s < 60000 ? 62 : 44)) { step = s; break; }
    }
    const label = step < 60000 ? clock : hm;
    for (let tt = Math.ceil(t0 / step) * step; tt <= t1; tt += step) {
      const xx = x(tt);
      if (xx < L + 16 || xx > W - R - 16) continue;
      g.fillText(label(tt), xx, H - 3);
    }
    if (!points) {
      g.fillStyle = '#56606f';
      g.textBaseline = 'middle';
      g.fillText(t.length ? 'no requests' : 'no data yet', L + pw / 2, T + ph / 2);
    }

    // the lines: a path per run of points without a gap
    const gap = Math.max(3 * st.interval, 6000);
    g.save();
    g.beginPath(); g.rect(L, 0, pw + R, T + ph + 1); g.clip();
    for (const ln of lines) {
      const runs = [];
      let run = [];
      for (let i = Math.max(0, lo - 1); i < t.length; i++) {
        const v = ln.v[i];
        if (v === null || v === undefined || (run.length && t[i] - run[run.length - 1][0] > gap)) {
          if (run.length) runs.push(run);
          run = [];
          if (v === null || v === undefined) continue;
        }
        run.push([t[i], v]);
      }
      if (run.length) runs.push(run);
      for (const r of runs) {
        g.beginPath();
        r.forEach(([tt, v], i) => {
          const xx = x(tt), yy = y(v);
          if (i === 0) g.moveTo(xx, yy);
          else if (ln.step) { g.lineTo(xx, y(r[i - 1][1])); g.lineTo(xx, yy); }
          else g.lineTo(xx, yy);
        });
        if (r.length === 1) g.lineTo(x(r[0][0]) + 2, y(r[0][1]));
        g.strokeStyle = ln.color;
        g.lineWidth = ln.width || 1.6;
        g.setLineDash(ln.dash || []);
        g.stroke();
        if (ln.fill) {
          g.lineTo(x(r[r.length - 1][0]), y(0));
          g.lineTo(x(r[0][0]), y(0));
          g.closePath();
          const grad = g.createLinearGradient(0, T, 0, T + ph);
          grad.addColorStop(0, ln.fill);
          grad.addColorStop(1, 'rgba(0,0,0,0)');
          g.fillStyle = grad;
          g.fill();
        }
      }
    }
    g.restore();
    cv.geom = { L, pw, t0, t1 };
    cv.dataset.points = String(points);
    if (st.hover && st.hover.service === cv.dataset.service) crosshair(g, t, lo, lines, opt, x, y, T, ph, W, gap);
  }

  // The values at the time pointed at (st.hover, shared by a service's charts): a line,
  // a dot per series, and a label.
  function crosshair(g, t, lo, lines, opt, x, y, T, ph, W, gap) {
    let best = -1, bd = Infinity;
    for (let i = lo; i < t.length; i++) {
      const d = Math.abs(t[i] - st.hover.t);
      if (d < bd) { bd = d; best = i; }
    }
    if (best < 0 || bd > gap) return;
    const xx = Math.round(x(t[best])) + 0.5;
    g.setLineDash([]);
    g.lineWidth = 1;
    g.strokeStyle = 'rgba(216,222,233,.35)';
    g.beginPath(); g.moveTo(xx, T); g.lineTo(xx, T + ph); g.stroke();
    const parts = [];
    for (const ln of lines) {
      const v = ln.v[best];
      if (v === null || v === undefined) continue;
      g.fillStyle = ln.color;
      g.beginPath(); g.arc(xx, y(v), 2.5, 0, 2 * Math.PI); g.fill();
      parts.push((lines.length > 1 ? ln.label + ' ' : '') + opt.fmt(v));
    }
    const text = `${clock(t[best])}  ${parts.length ? parts.join(' · ') : 'no requests'}`;
    g.font = '11px system-ui, sans-serif';
    const tw = g.measureText(text).width + 10;
    const bx = xx + 8 + tw < W ? xx + 8 : Math.max(0, xx - 8 - tw);
    g.fillStyle = 'rgba(13,17,23,.92)';
    g.fillRect(bx, T, tw, 17);
    g.fillStyle = '#d8dee9';
    g.textAlign = 'left';
    g.textBaseline = 'middle';
    g.fillText(text, bx + 5, T + 9);
  }

  function onPointer(ev) {
    const cv = ev.currentTarget;
    if (!cv.geom) return;
    const { L, pw, t0, t1 } = cv.geom;
    const px = ev.clientX - cv.getBoundingClientRect().left;
    st.hover = px < L ? null : { service: cv.dataset.service, t: t0 + ((px - L) / pw) * (t1 - t0) };
    drawCharts();
  }
  function onLeave() {
    st.hover = null;
    drawCharts();
  }

  // ---- service cards ----------------------------------------------------------------
  // axis labels: round numbers (niceAxis), short
  const num = (v) => String(Number(v.toPrecision(3)));
  const axRps = (v) => (v >= 1000 ? num(v / 1000) + 'k' : num(v));
  const axMs = (v) => (v === 0 ? '0' : v >= 1000 ? num(v / 1000) + 's' : num(v) + 'ms');
  const axPct = (v) => num(v * 100) + '%';
  const CHARTS = [
    { key: 'rps', title: 'requests / s', fmt: fmtRps, axis: axRps, lines: [['rps', '#4cc2ff', 'rgba(76,194,255,.28)']] },
    { key: 'p99', title: 'p99 latency', fmt: fmtMs, axis: axMs, lines: [['p99_ms', '#d2a8ff', 'rgba(210,168,255,.22)']] },
    { key: 'err', title: 'error rate (5xx)', fmt: fmtPct, axis: axPct, min: 0.01, lines: [['error_rate', '#f85149', 'rgba(248,81,73,.25)']] },
    { key: 'inst', title: 'instances', fmt: (v) => String(Math.round(v)), axis: (v) => String(Math.round(v)), integer: true,
      lines: [['desired', '#8b96a8', null, true, [4, 3]], ['running', '#58a6ff', null, true], ['ready', '#3fb950', 'rgba(63,185,80,.16)', true]] },
  ];

  function card(name) {
    let c = st.cards.get(name);
    if (c) return c;
    c = { name, charts: {} };
    c.pips = h('span', { class: 'pips' });
    c.countTxt = h('span', { class: 'txt' });
    const charts = CHARTS.map((d) => {
      const v = h('span', { class: 'v' }, '–');
      const cv = h('canvas', { 'data-chart': d.key, 'data-service': name, role: 'img', 'aria-label': `${name} ${d.title}` });
      // the instances chart's legend: swatches coloured by class (no inline style: CSP)
      const legend = d.key === 'inst'
        ? h('span', { class: 'legend' }, d.lines.map(([col]) => [h('i', { class: `sw-${col}` }), col]))
        : null;
      c.charts[d.key] = { def: d, cv, v };
      cv.addEventListener('pointermove', onPointer);
      cv.addEventListener('pointerdown', onPointer); // a tap on a phone
      cv.addEventListener('pointerleave', onLeave);
      return h('div', { class: 'chart' }, h('div', { class: 'chart-head' }, h('span', {}, d.title, legend), v), cv);
    });
    c.el = h('article', { class: 'svc', 'data-service': name },
      h('div', { class: 'svc-head' }, h('span', { class: 'svc-name' }, name), h('span', { class: 'svc-counts' }, c.pips, c.countTxt)),
      h('div', { class: 'charts' }, charts));
    st.cards.set(name, c);
    return c;
  }

  function renderServices() {
    const s = st.status;
    const box = $('#services');
    if (!s) return;
    const names = s.services.map((x) => x.name);
    const want = names.map(card);
    if (box.children.length !== want.length || want.some((c, i) => box.children[i] !== c.el))
      box.replaceChildren(...want.map((c) => c.el));
    for (const svc of s.services) {
      const c = st.cards.get(svc.name);
      const ready = svc.instances.filter((i) => i.state === 'ready').length;
      c.pips.replaceChildren(...svc.instances.map((i) => h('span', { class: 'pip', 'data-state': i.state, title: `${i.id}: ${i.state}` })));
      c.countTxt.textContent = `${ready}/${svc.desired} ready`;
      c.countTxt.className = 'txt' + (ready < svc.desired ? ' warn' : '');
    }
    drawCharts();
  }

  function drawCharts() {
    for (const [name, c] of st.cards) {
      const hs = st.hist.get(name) || { t: [], rps: [], p99_ms: [], error_rate: [], desired: [], running: [], ready: [] };
      const n = hs.t.length;
      for (const key of Object.keys(c.charts)) {
        const { def, cv, v } = c.charts[key];
        draw(cv, hs.t, def.lines.map(([col, color, fill, step, dash]) => ({ v: hs[col], label: col, color, fill, step, dash })), def);
        const last = (col) => (n ? hs[col][n - 1] : null);
        if (key === 'inst') v.textContent = n ? `${last('ready')} / ${last('desired')}` : '–';
        else v.textContent = def.fmt(last(def.lines[0][0]));
      }
    }
  }

  // ---- instances --------------------------------------------------------------------
  function renderInstances() {
    const s = st.status;
    if (!s) return;
    const rows = [];
    let total = 0, ready = 0, restarts = 0;
    const t = now();
    for (const svc of s.services) {
      rows.push(h('tr', { class: 'svc-sep' }, h('td', { colspan: 11 }, svc.name)));
      for (const i of svc.instances) {
        total++;
        ready += i.state === 'ready';
        restarts += i.restarts;
        const up = i.pid > 0 && i.started_ms ? fmtDur((t - i.started_ms) / 1000) : '–';
        const exit = i.last_exit !== null && i.last_exit !== undefined && i.state !== 'ready' ? `exit ${i.last_exit}` : null;
        rows.push(h('tr', { class: 'inst', 'data-instance': i.id, 'data-state': i.state },
          h('td', { class: 'id', 'data-label': 'instance' }, i.id, i.adopted ? h('span', { class: 'dim' }, ' · adopted') : null,
            i.registered ? h('span', { class: 'dim' }, ' · registered') : null),
          h('td', { class: 'state-cell', 'data-label': 'state' }, h('span', { class: 'badge', 'data-state': i.state }, i.state),
            exit ? h('span', { class: 'dim' }, ' ' + exit) : null),
          h('td', { class: 'num pid', 'data-label': 'pid' }, i.pid > 0 ? String(i.pid) : '–'),
          h('td', { class: 'num' + (i.restarts ? ' warn' : ''), 'data-label': 'restarts' }, String(i.restarts)),
          h('td', { class: 'num', 'data-label': 'uptime' }, up),
          h('td', { class: 'num', 'data-label': 'rps' }, fmtRps(i.rps)),
          h('td', { class: 'num', 'data-label': 'p99' }, fmtMs(i.p99_ms)),
          h('td', { class: 'num' + (i.error_rate > 0 ? ' bad' : ''), 'data-label': 'errors' }, fmtPct(i.error_rate)),
          h('td', { class: 'num', 'data-label': 'cpu' }, i.cpu_seconds !== undefined ? i.cpu_seconds.toFixed(1) + ' s' : '–'),
          h('td', { class: 'num', 'data-label': 'rss' }, fmtBytes(i.rss_bytes)),
          h('td', { class: 'addr', 'data-label': 'address' }, i.url)));
        if (i.log_tail && i.state !== 'starting')
          rows.push(h('tr', { class: 'why-row' }, h('td', { class: 'why', colspan: 11 }, i.log_tail.trimEnd())));
      }
    }
    $('#instances tbody').replaceChildren(...rows);
    $('#inst-count').textContent = `${ready} of ${total} ready`;
    const chip = (label, value, cls) => h('span', { class: 'chip' + (cls ? ' ' + cls : '') }, label, h('b', {}, value));
    $('#summary').replaceChildren(
      chip('services', String(s.services.length)),
      chip('ready', `${ready}/${total}`, ready < total ? 'bad' : 'ok'),
      chip('restarts', String(restarts)),
      chip('control pid', String(s.pid)),
      chip('updated', clock(Date.now())));
  }

  // ---- events -----------------------------------------------------------------------
  function renderEvents(fresh) {
    const list = $('#events');
    if (!st.events.length) {
      list.replaceChildren(h('li', { class: 'empty' }, 'No events yet.'));
      return;
    }
    const items = [];
    for (let k = st.events.length - 1; k >= 0; k--) {
      const e = st.events[k];
      const who = e.service ? (e.instance >= 0 ? `${e.service}/${e.instance}` : e.service) : 'system';
      const detail = e.detail ? h('details', {}, h('summary', {}, 'inputs'), h('pre', {}, JSON.stringify(e.detail, null, 1))) : null;
      items.push(h('li', { class: fresh.has(e.id) ? 'new' : null, 'data-kind': e.kind, 'data-id': String(e.id) },
        h('time', { datetime: e.time, title: e.time }, clock(Date.parse(e.time))),
        h('span', { class: 'kind', 'data-kind': e.kind }, e.kind),
        h('span', { class: 'who' }, who),
        h('span', { class: 'msg' }, e.message, detail)));
    }
    list.replaceChildren(...items);
    $('#ev-count').textContent = `${st.events.length} shown`;
  }

  // ---- pollers ----------------------------------------------------------------------
  async function pollStatus() {
    st.status = await getJSON('/v1/status');
    renderServices();
    renderInstances();
  }

  async function pollHistory() {
    const d = await getJSON(`/v1/history?after=${st.histLast}`);
    if (d.last < st.histLast) { // a new control plane: its ids start again
      st.hist.clear();
      st.histLast = 0;
      return pollHistory();
    }
    st.histLast = d.last;
    const cutoff = now() - KEEP_MS;
    for (const s of d.services) {
      let hs = st.hist.get(s.name);
      if (!hs) st.hist.set(s.name, (hs = { t: [], rps: [], p99_ms: [], error_rate: [], desired: [], running: [], ready: [] }));
      for (const k of Object.keys(hs)) hs[k].push(...s[k]);
      let drop = 0;
      while (drop < hs.t.length && hs.t[drop] < cutoff) drop++;
      if (drop) for (const k of Object.keys(hs)) hs[k].splice(0, drop);
      if (hs.t.length > 1) st.interval = Math.min(10000, Math.max(1000, hs.t[hs.t.length - 1] - hs.t[hs.t.length - 2]));
    }
    drawCharts();
  }

  async function pollEvents() {
    const d = await getJSON(`/v1/events?after=${st.evLast}`);
    if (d.last < st.evLast) { // a new control plane
      st.events = [];
      st.evLast = 0;
      return pollEvents();
    }
    const fresh = new Set(st.evSeen ? d.events.map((e) => e.id) : []);
    st.evSeen = true;
    st.evLast = d.last;
    if (!d.events.length && st.events.length) return;
    st.events.push(...d.events);
    if (st.events.length > EVENTS_SHOWN) st.events.splice(0, st.events.length - EVENTS_SHOWN);
    renderEvents(fresh);
  }

  // ---- start ------------------------------------------------------------------------
  for (const b of document.querySelectorAll('.range button'))
    b.addEventListener('click', () => {
      st.range = Number(b.dataset.range);
      for (const o of document.querySelectorAll('.range button')) o.classList.toggle('on', o === b);
      drawCharts();
    });
  let resizing = 0;
  window.addEventListener('resize', () => {
    cancelAnimationFrame(resizing);
    resizing = requestAnimationFrame(drawCharts);
  });
  const kickStatus = loop(pollStatus, STATUS_MS);
  loop(pollHistory, HISTORY_MS);
  const kickEvents = loop(pollEvents, EVENTS_MS);
  watch(() => {
    kickStatus();
    kickEvents();
  });
})();
