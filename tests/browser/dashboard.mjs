// tests/browser/dashboard.mjs: the control plane's dashboard in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded). Run by
// tests/scripts/dashboard.sh against a running `cmesh up`:
//   CONTROL_URL  the control API (http://127.0.0.1:P)
//   LOAD_URLS    comma-separated URLs fetched in a loop, so the charts have traffic
//   KILL         the instance to kill -9 (users/1)
//   ARTIFACTS    where the screenshots go
// Asserts: every instance of /v1/status is on the page, ready; the charts have points;
// after SIGKILL of KILL's pid the page shows it not ready, then ready again with a new
// pid and one more restart, and the restart event; a page opened late (the phone) draws
// the history it never saw live; no console error or CSP violation; the phone layout has
// no horizontal scrolling. Every wait is bounded; the browser is closed on every path.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const CONTROL = process.env.CONTROL_URL;
const LOAD = (process.env.LOAD_URLS || '').split(',').filter(Boolean);
const KILL = process.env.KILL || 'users/1';
const ART = process.env.ARTIFACTS;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
if (!CONTROL || !ART) {
  console.error('dashboard.mjs: set CONTROL_URL and ARTIFACTS');
  process.exit(2);
}
mkdirSync(ART, { recursive: true });

let failed = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'FAIL'}: ${what}`);
  if (!ok) failed++;
  return ok;
}

async function status() {
  const r = await fetch(`${CONTROL}/v1/status`);
  return r.json();
}

// polls fn until it returns a truthy value, at most ms; returns that value or null
async function until(what, ms, fn) {
  const end = Date.now() + ms;
  for (;;) {
    let v = null;
    try {
      v = await fn();
    } catch (e) {
      v = null;
    }
    if (v) return v;
    if (Date.now() > end) {
      console.log(`FAIL: ${what}: not within ${ms / 1000} s`);
      failed++;
      return null;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// the page's view of every instance row: id -> {state, pid, restarts}
function rows(page) {
  return page.$$eval('tr.inst', (trs) => Object.fromEntries(trs.map((tr) => [tr.dataset.instance, {
    state: tr.dataset.state,
    pid: Number(tr.querySelector('td.pid').textContent) || 0,
    restarts: Number(tr.querySelector('td[data-label="restarts"]').textContent),
  }])));
}

const chartPoints = (page, service, chart) =>
  page.$eval(`canvas[data-service="${service}"][data-chart="${chart}"]`, (c) => Number(c.dataset.points || 0));

// traffic, so rps / p99 / error-rate have something to draw
let loading = true;
const loader = (async () => {
  while (loading) {
    await Promise.all(LOAD.map((u) => fetch(u).then((r) => r.arrayBuffer()).catch(() => null)));
    await new Promise((r) => setTimeout(r, 40));
  }
})();

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // root (CI, containers) cannot use Chromium's sandbox
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
  timeout: 60000,
});
const problems = [];
function watch(page, name) {
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`${name} console: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`${name} page error: ${e.message}`));
}

try {
  // ---- a laptop ---------------------------------------------------------------------
  const laptop = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await laptop.newPage();
  watch(page, 'laptop');
  const res = await page.goto(`${CONTROL}/`, { waitUntil: 'load', timeout: 30000 });
  check(res.status() === 200, `GET / answers 200 (${res.status()})`);
  check((res.headers()['content-type'] || '').startsWith('text/html'), 'GET / is text/html');
  check(/default-src 'none'/.test(res.headers()['content-security-policy'] || ''), 'GET / has its CSP');

  const st = await status();
  const ids = st.services.flatMap((s) => s.instances.map((i) => i.id)).sort();
  check(ids.includes(KILL), `${KILL} is an instance (${ids.join(' ')})`);
  const shown = await until('the page shows every instance, ready', 30000, async () => {
    const r = await rows(page);
    const got = Object.keys(r).sort();
    return got.join() === ids.join() && got.every((id) => r[id].state === 'ready') ? r : null;
  });
  check(!!shown, `every instance shown: ${ids.join(', ')}`);
  const pidOnPage = shown ? shown[KILL].pid : 0;
  const pidInApi = st.services.flatMap((s) => s.instances).find((i) => i.id === KILL).pid;
  check(pidOnPage > 0 && pidOnPage === pidInApi, `${KILL}'s pid on the page is the API's (${pidOnPage})`);
  const restartsBefore = shown ? shown[KILL].restarts : 0;

  // charts: points in every chart of users, and traffic seen
  const charted = await until('the charts of users have data', 40000, async () => {
    for (const c of ['rps', 'p99', 'err', 'inst']) if ((await chartPoints(page, 'users', c)) < 2) return null;
    const rps = await page.$eval('[data-service="users"] canvas[data-chart="rps"]', (c) =>
      Number(c.parentElement.querySelector('.v').textContent));
    return rps > 0 ? rps : null;
  });
  check(!!charted, `users' charts have points, rps ${charted}`);

  // every state the killed row takes, recorded in the page as it renders (the table is
  // rebuilt on every status poll), so a short state is not missed between our looks
  await page.evaluate((id) => {
    window.__seen = [];
    const tbody = document.querySelector('#instances tbody');
    new MutationObserver(() => {
      const tr = tbody.querySelector(`tr[data-instance="${id}"]`);
      const s = tr ? tr.dataset.state : 'gone';
      if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s);
    }).observe(tbody, { childList: true });
  }, KILL);

  // ---- kill -9 one instance ---------------------------------------------------------
  process.kill(pidOnPage, 'SIGKILL');
  console.log(`killed ${KILL} (pid ${pidOnPage}) with SIGKILL`);
  const away = await until(`the page shows ${KILL} going away`, 20000, async () => {
    const seen = await page.evaluate(() => window.__seen);
    return seen.some((s) => s !== 'ready') ? seen : null;
  });
  check(!!away, `${KILL} went away: ${away ? away.join(' → ') : 'never'}`);
  const back = await until(`the page shows ${KILL} ready again`, 40000, async () => {
    const r = (await rows(page))[KILL];
    return r && r.state === 'ready' && r.pid > 0 && r.pid !== pidOnPage ? r : null;
  });
  check(!!back, `${KILL} came back ready with a new pid (${back && back.pid})`);
  check(!!back && back.restarts === restartsBefore + 1, `${KILL}'s restarts went ${restartsBefore} → ${back && back.restarts}`);
  const seen = await page.evaluate(() => window.__seen);
  console.log(`states of ${KILL} on the page: ${seen.join(' → ')}`);
  const event = await until('the restart event is listed', 20000, () =>
    page.$$eval('#events li[data-kind="restart"]', (lis, id) =>
      lis.map((li) => li.textContent).find((t) => t.includes(id)) || null, KILL));
  check(!!event, `restart event shown: ${event}`);

  // let the charts draw the dip and the return (two more rounds of history), then point
  // at the users' instance chart: the crosshair reads the values at that time
  await page.waitForTimeout(4500);
  const inst = page.locator('canvas[data-service="users"][data-chart="inst"]');
  const box = await inst.boundingBox();
  await page.mouse.move(box.x + box.width * 0.9, box.y + box.height / 2);
  await page.waitForTimeout(300);
  const laptopShot = join(ART, 'dashboard-laptop.png');
  await page.screenshot({ path: laptopShot, fullPage: true });
  console.log(`screenshot (laptop, 1440x900): ${laptopShot}`);

  // ---- a phone, opened late: the history draws what it never saw ---------------------
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  });
  const ph = await phone.newPage();
  watch(ph, 'phone');
  await ph.goto(`${CONTROL}/`, { waitUntil: 'load', timeout: 30000 });
  const late = await until('the late page draws the earlier history', 15000, async () => {
    const n = await chartPoints(ph, 'users', 'inst');
    return n >= 8 ? n : null; // live for a few seconds only: most points came from the ring
  });
  check(!!late, `a page opened late has ${late} points of history at once`);
  await until('the phone shows every instance', 15000, async () => Object.keys(await rows(ph)).length === ids.length);
  const overflow = await ph.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal scrolling on a phone (${overflow} px too wide)`);
  const phoneShot = join(ART, 'dashboard-phone.png');
  await ph.screenshot({ path: phoneShot, fullPage: true });
  console.log(`screenshot (phone, 390x844): ${phoneShot}`);

  check(problems.length === 0, `no console error or CSP violation${problems.length ? ': ' + problems.join('; ') : ''}`);
} catch (e) {
  console.log(`FAIL: ${e.stack || e}`);
  failed++;
} finally {
  loading = false;
  await loader;
  await browser.close();
}
console.log(failed ? `dashboard: ${failed} check(s) failed` : 'dashboard: all checks passed');
process.exit(failed ? 1 : 0);
