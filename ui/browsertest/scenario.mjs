// The console's scenario in a real browser, run by browser_test.go (go test
// ./ui/browsertest/), which starts the whole stack first and tells this
// script where it is in $BT_SCENARIO (JSON). Debian's chromium is driven by
// playwright-core ($BT_NODE_MODULES); nothing is downloaded.
//
// Each step prints one line; the last line is PASS, or the script exits 1
// after saving a screenshot and the page's HTML as failure.png/.html.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const sc = JSON.parse(process.env.BT_SCENARIO);
const require = createRequire(join(process.env.BT_NODE_MODULES, 'noop.js'));
const { chromium } = require('playwright-core');

// Waits are on conditions, bounded generously: CI is a 2-core machine
// running other tests beside this one. TIMEOUT bounds each action and page
// load; SLOW what omertad does in containerd (a deploy, a stop with its
// grace, a task).
const TIMEOUT = sc.timeout_ms || 60000;
const SLOW = 120000;
let shotNo = 0;
let current = null; // the page a failure is shown from
const problems = []; // console errors and page errors (CSP violations among them)

function log(msg) { process.stdout.write(msg + '\n'); }
function check(cond, msg) { if (!cond) throw new Error(msg); }

async function shot(page, name) {
  shotNo++;
  const file = `${String(shotNo).padStart(2, '0')}-${name}.png`;
  await page.screenshot({ path: join(sc.shots, file), fullPage: true });
}

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  log(`ok   ${name} (${Date.now() - t0} ms)`);
}

function path(page) { return new URL(page.url()).pathname; }

// submit clicks what sends a form (or follows a link) and waits for the
// page that answers to load. A click waits for the navigation to start,
// not to commit, so waitForLoadState alone may see the page being left
// (argon2id makes setup's and sign-in's answers slow under load).
async function submit(page, target) {
  const committed = page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() });
  await target.click();
  await committed;
  await page.waitForLoadState();
}

// go navigates and checks the answer's status.
async function go(page, url, status = 200) {
  const r = await page.goto(url);
  check(r.status() === status, `GET ${url}: HTTP ${r.status()}, want ${status}`);
  return r;
}

async function text(page, sel) { return (await page.locator(sel).first().textContent()).trim(); }

// refusalsExpected is set while the auditor's calls are meant to be
// refused; streamRefusalExpected while the test itself refuses a stream.
let refusalsExpected = false;
let streamRefusalExpected = false;

// watch records what the browser complains of: console errors (a CSP
// violation is one), script errors, and failed subresources. A page's own
// error status is checked by go(); the browser's "Failed to load
// resource" line for it is not a problem of its own.
function watch(page) {
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => {
    if (m.type() !== 'error' || m.text().startsWith('Failed to load resource')) return;
    if (streamRefusalExpected && m.text().includes('EventSource')) return;
    problems.push(`console error on ${page.url()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on('response', (r) => {
    const req = r.request();
    const expected = (refusalsExpected && r.status() === 403) || (streamRefusalExpected && r.status() === 503 && req.resourceType() === 'eventsource');
    if (r.status() >= 400 && req.resourceType() !== 'document' && !expected) {
      problems.push(`${req.method()} ${req.url()} (${req.resourceType()}) on ${page.url()}: HTTP ${r.status()}`);
    }
  });
  page.on('requestfailed', (req) => {
    // Streams are cut when a page is left; that is not a failure.
    if (req.resourceType() !== 'eventsource' && req.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`${req.method()} ${req.url()} failed: ${req.failure()?.errorText}`);
  });
  return page;
}

// The first answer: served with the pinned certificate (the test checked
// its fingerprint before this script was allowed to accept it), over TLS
// 1.2 or 1.3, with the security headers.
async function checkTLS(page) {
  const r = await page.goto(sc.url + '/');
  const sd = await r.securityDetails();
  check(sd, 'no TLS details for the console');
  check(sd.subjectName === sc.subject, `certificate subject ${sd.subjectName}, want the pinned ${sc.subject}`);
  check(sd.validTo === sc.valid_to, `certificate valid to ${sd.validTo}, want the pinned ${sc.valid_to}`);
  check(['TLS 1.2', 'TLS 1.3'].includes(sd.protocol), `protocol ${sd.protocol}`);
  const h = await r.allHeaders();
  check((h['content-security-policy'] || '').includes("frame-ancestors 'none'"), `CSP: ${h['content-security-policy']}`);
  check((h['strict-transport-security'] || '').includes('max-age='), 'no HSTS');
  check(h['x-content-type-options'] === 'nosniff', 'no nosniff');
}

async function setup(page) {
  check(path(page) === '/setup', `before setup / leads to ${page.url()}, want /setup`);
  await shot(page, 'setup');
  const fill = async (token) => {
    await page.getByTestId('setup-token').fill(token);
    await page.getByTestId('setup-username').fill(sc.admin);
    await page.getByTestId('setup-password').fill(sc.admin_password);
    await page.getByTestId('setup-password2').fill(sc.admin_password);
    await submit(page, page.getByTestId('setup-submit'));
  };
  // A wrong token is refused and the page says so; the right one works.
  await fill('a'.repeat(32));
  check(path(page) === '/setup', `a wrong token led to ${page.url()}`);
  check((await text(page, '[data-testid=error]')).includes('not accepted'), 'no refusal shown for a wrong token');
  await shot(page, 'setup-refused');
  await fill(sc.token);
  check(path(page) === '/', `after setup: ${page.url()}`);
  check(await text(page, '[data-testid=current-user]') === sc.admin, 'not signed in as the admin after setup');
  check(await text(page, '[data-testid=current-role]') === 'admin', 'the first user is not admin');
  // The setup page is gone for good.
  await go(page, sc.url + '/setup', 404);
  await go(page, sc.url + '/');
}

async function logout(page) {
  await page.getByTestId('logout-button').click();
  await page.waitForURL('**/login?done=logout');
  check((await text(page, '[data-testid=notice]')).includes('signed out'), 'no signed-out notice');
}

async function login(page, user, pw) {
  await go(page, sc.url + '/login');
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(pw);
  await page.getByTestId('login-submit').click();
  await page.waitForURL((u) => u.pathname === '/');
  check(await text(page, '[data-testid=current-user]') === user, `not signed in as ${user}`);
}

async function dashboard(page) {
  check((await text(page, '[data-testid=firstboot-status]')).startsWith('Finished'), 'first boot not shown as finished');
  const verdict = await text(page, '[data-testid=report-verdict]');
  check(verdict && verdict !== 'unknown', `first-boot verdict ${verdict}`);
  const sig = await text(page, '[data-testid=report-verification]');
  check(sig === 'verified', `report signature shown as ${sig}, want verified`);
  check(await text(page, '[data-testid=compat-verdict]'), 'no compatibility verdict');
  check(await text(page, '[data-testid=gpu-summary]'), 'no GPU summary');
  await page.locator('#live-status', { hasText: 'Live.' }).waitFor();
  await shot(page, 'dashboard');
}

// streamRetried: a live stream that is refused (here by the test, with
// the console's answer past its bound of streams) is subscribed again, and
// the page comes back live by itself. An EventSource whose answer is an
// error status never retries on its own.
async function streamRetried(page) {
  let asked = 0;
  const events = (u) => u.pathname === '/api/v1/events';
  await page.route(events, (route) => {
    if (asked++ > 0) return route.continue();
    return route.fulfill({ status: 503, contentType: 'application/json', headers: { 'Retry-After': '5' },
      body: '{"error":"too many live streams open on the console; close a tab and try again"}' });
  });
  streamRefusalExpected = true;
  try {
    await go(page, sc.url + '/');
    await page.locator('#live-status', { hasText: 'trying again' }).waitFor();
    await shot(page, 'dashboard-stream-refused');
    await page.locator('#live-status', { hasText: 'Live.' }).waitFor();
  } finally {
    await page.unroute(events);
    streamRefusalExpected = false;
  }
  check(asked >= 2, `the refused stream was asked for ${asked} times, want it asked again`);
}

async function catalog(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Catalog' }).click();
  await page.waitForURL('**/catalog');
  check(await page.getByTestId('catalog-entry').count() >= 2, 'the shipped catalog has fewer than two entries');
  await shot(page, 'catalog');
  // Search: "json" is a tag of sample-tool only.
  await page.getByTestId('catalog-query').fill('json');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL('**/catalog?q=json**');
  const ids = await page.getByTestId('catalog-entry').evaluateAll((els) => els.map((e) => e.dataset.entryId));
  check(ids.length === 1 && ids[0] === 'sample-tool', `search for json found ${ids}`);
  await shot(page, 'catalog-search');
  // The form generated from sample-http's configSchema: its one field,
  // with the schema's bound and default.
  await go(page, sc.url + '/catalog/sample-http');
  const title = page.getByTestId('field-title');
  check(await title.getAttribute('maxlength') === '80', 'the title field lacks the schema maxLength 80');
  check(await title.inputValue() === 'OMERTAOS sample agent', 'the title field lacks the schema default');
  await shot(page, 'catalog-sample-http');
}

async function deploy(page) {
  await go(page, sc.url + '/catalog?q=json');
  await page.locator('[data-entry-id=sample-tool]').getByTestId('deploy-link').click();
  await page.waitForURL('**/catalog/sample-tool#deploy');
  await page.getByTestId('deploy-form').waitFor();
  await shot(page, 'deploy-form');
  // Validated in the browser: a bad id does not leave the page.
  const id = page.getByTestId('deploy-agent-id');
  await id.fill('Not An Id!');
  await page.getByTestId('deploy-submit').click();
  check(path(page) === '/catalog/sample-tool', 'an invalid agent id was sent');
  check(await id.evaluate((el) => el.validity.patternMismatch), 'the agent id field does not flag a bad id');
  await id.fill('');
  await page.getByTestId('deploy-submit').click();
  await page.waitForURL('**/agents/sample-tool?done=deployed', { timeout: SLOW });
  check((await text(page, '[data-testid=notice]')).includes('deployed'), 'no deployed notice');
  // The state badge follows the agent live, from pending to running.
  await page.locator('#agent-state[data-state=running]').waitFor({ timeout: SLOW });
  await shot(page, 'agent-deployed');
}

async function agentsList(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Agents' }).click();
  await page.waitForURL('**/agents');
  const row = page.locator('[data-testid=agent-row][data-agent-id=sample-tool]');
  check(await row.locator('[data-testid=agent-state]').getAttribute('data-state') === 'running', 'sample-tool not running in the list');
  await shot(page, 'agents');
}

// followLogs opens the agent's page and waits until its log streams.
async function followLogs(page) {
  await go(page, sc.url + '/agents/sample-tool');
  await page.locator('#logs-status', { hasText: 'Following the log live.' }).waitFor();
  await page.locator('#logs', { hasText: 'ready' }).waitFor();
  await shot(page, 'agent-logs');
}

const taskInput = '{"op":"extract","text":"Mail ops@example.com about the 2026-12-01 release, see https://example.com/notes"}';

async function task(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Tasks' }).click();
  await page.waitForURL('**/tasks');
  await page.getByTestId('task-agent').selectOption('sample-tool');
  await page.getByTestId('task-input').fill(taskInput);
  await shot(page, 'tasks');
  await page.getByTestId('task-submit').click();
  await page.waitForURL('**/tasks?agent=sample-tool&task=*', { timeout: SLOW });
  // The result comes live: the page follows the task until it ends.
  await page.locator('#task-result[data-state=SUCCEEDED]').waitFor({ timeout: SLOW });
  const out = JSON.parse(await text(page, '#task-output'));
  check(JSON.stringify(out).includes('ops@example.com'), `task output lacks the address: ${JSON.stringify(out)}`);
  // The list of recent tasks says what the result says, not RUNNING.
  const id = new URL(page.url()).searchParams.get('task');
  const badge = page.locator(`[data-testid=task-row][data-task-id="${id}"] .badge`);
  await badge.filter({ hasText: 'SUCCEEDED' }).waitFor().catch(async () => {
    throw new Error(`the recent tasks list shows ${id} as ${await badge.textContent().catch(() => 'missing')} beside its SUCCEEDED result`);
  });
  await shot(page, 'task-result');
}

// disable uses the confirmation dialog: cancel first (nothing happens),
// then confirm. Meanwhile the page that follows the log sees the agent
// stop live: its stop line, its state and its actions, without a reload.
// So does a page whose event stream opens only after the stop (a page
// rendered just before, or one whose stream was reconnecting): it asks for
// the state when its stream opens.
async function disable(page, logsPage, latePage) {
  const release = await holdStream(latePage);
  await go(page, sc.url + '/agents/sample-tool');
  await page.getByTestId('action-disable').click();
  const dialog = page.getByTestId('confirm-dialog');
  await dialog.waitFor({ state: 'visible' });
  check((await text(page, '#confirm-message')).includes('Disable agent sample-tool'), 'the dialog does not name the action');
  await shot(page, 'confirm-disable');
  await page.getByTestId('confirm-no').click();
  await dialog.waitFor({ state: 'hidden' });
  check(path(page) === '/agents/sample-tool' && await text(page, '#agent-desired') === 'enabled', 'cancel did not cancel');
  await page.getByTestId('action-disable').click();
  await page.getByTestId('confirm-yes').click();
  await page.waitForURL('**/agents/sample-tool?done=disabled', { timeout: SLOW });
  check(await text(page, '#agent-desired') === 'disabled', 'not shown as disabled');
  await page.locator('#agent-state[data-state=stopped]').waitFor({ timeout: SLOW });
  await shot(page, 'agent-disabled');
  await logsPage.locator('#logs', { hasText: 'stopping' }).waitFor({ timeout: SLOW });
  await seesStopped(logsPage, 'the live agent page');
  await shot(logsPage, 'agent-logs-live-stop');
  // Chromium opens at most 6 connections to a host over HTTP/1.1, and
  // each agent page holds two streams: with three open, the late page's
  // request for the state would wait for a connection for ever.
  await logsPage.close();
  release();
  await seesStopped(latePage, 'an agent page whose stream opened after the stop');
}

// seesStopped waits for the agent page to show the agent stopped and
// disabled: Enable offered, Disable and Restart gone.
async function seesStopped(page, what) {
  await page.locator('#agent-state[data-state=stopped]').waitFor().catch(async () => {
    throw new Error(`${what} shows the agent ${await page.locator('#agent-state').getAttribute('data-state')}, not stopped (${await text(page, '#live-status')})`);
  });
  await page.getByTestId('action-enable').waitFor({ state: 'visible' });
  check(await text(page, '#agent-desired') === 'disabled', `${what} does not show the agent disabled`);
  for (const a of ['action-disable', 'action-restart']) {
    check(!(await page.getByTestId(a).isVisible()), `${what} still offers ${a} for a disabled agent`);
  }
}

// setHidden makes the page hidden or shown, as a tab behind another (or
// a minimised window) is: headless Chromium shows every page, so the page
// is told, the way the browser tells it.
async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

// hiddenPages: agent pages left open behind others give their streams
// back. Three agent pages hold two streams each, the six connections
// Chromium opens to a host over HTTP/1.1: the page opened in front of
// them loads and goes live only because the hidden ones closed theirs,
// and a hidden page shown again is live again.
async function hiddenPages(ctx, page) {
  await go(page, sc.url + '/audit'); // a page without a stream
  const behind = [];
  for (let i = 0; i < 3; i++) {
    const p = watch(await ctx.newPage());
    await go(p, sc.url + '/agents/sample-tool');
    await p.locator('#logs-status', { hasText: 'Following the log live.' }).waitFor();
    behind.push(p);
  }
  for (const p of behind) await setHidden(p, true);
  for (const p of behind) await p.locator('#live-status', { hasText: 'paused while this page is hidden' }).waitFor({ timeout: SLOW });
  const front = watch(await ctx.newPage());
  current = front;
  await go(front, sc.url + '/agents/sample-tool');
  await front.locator('#logs-status', { hasText: 'Following the log live.' }).waitFor();
  await front.locator('#live-status', { hasText: 'Live.' }).waitFor();
  current = behind[0];
  await setHidden(behind[0], false);
  await behind[0].locator('#logs-status', { hasText: 'Following the log live.' }).waitFor();
  await behind[0].locator('#live-status', { hasText: 'Live.' }).waitFor();
  await shot(behind[0], 'agent-shown-again');
  current = page;
  for (const p of [front, ...behind]) await p.close();
}

// holdStream opens the agent's page with its streams (events and log)
// held back until the returned function is called; held, they take none
// of the host's connections. (Unrouting would answer a held request
// twice.)
async function holdStream(page) {
  let open;
  const opened = new Promise((resolve) => { open = resolve; });
  const streams = (u) => u.pathname === '/api/v1/events' || u.pathname === '/api/v1/agents/sample-tool/logs';
  await page.route(streams, async (route) => { await opened; await route.continue(); });
  await go(page, sc.url + '/agents/sample-tool');
  check(await page.locator('#agent-state').getAttribute('data-state') === 'running', 'the agent page before the stop does not show it running');
  return open; // the route stays: released, it lets every stream through
}

// auditRows reads the audit log's pages, newest first, until every
// wanted action of user is seen or the pages end.
async function auditRows(page, user, wanted) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit log' }).click();
  await page.waitForURL('**/audit');
  check(await page.getByTestId('audit-chain').locator('.badge').textContent() === 'intact', 'the audit chain is not shown intact');
  const seen = new Set();
  for (let pages = 0; pages < 20; pages++) {
    const rows = await page.getByTestId('audit-row').evaluateAll((trs) =>
      trs.map((tr) => ({ action: tr.dataset.action, who: tr.children[2].textContent })));
    for (const r of rows) if (r.who.includes(user)) seen.add(r.action);
    if (wanted.every((a) => seen.has(a))) return seen;
    const older = page.getByRole('link', { name: 'Older records' });
    if (await older.count() === 0) break;
    await submit(page, older);
  }
  return seen;
}

async function audit(page) {
  const wanted = ['auth.setup', 'auth.login', 'agents.deploy', 'agents.task.run', 'agents.disable'];
  const seen = await auditRows(page, sc.admin, wanted);
  await go(page, sc.url + '/audit');
  await shot(page, 'audit');
  const missing = wanted.filter((a) => !seen.has(a));
  check(missing.length === 0, `the audit page lacks ${missing} by ${sc.admin}`);
}

// users creates the auditor without a password: the page shows a
// one-time link, which the auditor opens later.
async function users(page) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Users' }).click();
  await page.waitForURL('**/users');
  await page.getByTestId('user-username').fill(sc.auditor);
  await page.getByTestId('user-role-new').selectOption('auditor');
  await submit(page, page.getByTestId('user-submit'));
  const row = page.locator(`[data-testid=user-row][data-user="${sc.auditor}"]`);
  check((await row.textContent()).includes('auditor'), 'the new user is not an auditor');
  const link = await page.getByTestId('reset-link').inputValue();
  check(link.startsWith(sc.url + '/reset?token='), `reset link ${link}`);
  await shot(page, 'users');
  return link;
}

async function otherPages(page) {
  await go(page, sc.url + '/tokens');
  await page.getByTestId('token-form').waitFor();
  await shot(page, 'tokens');
  await go(page, sc.url + '/report');
  await shot(page, 'report');
  for (const dl of ['/report.json', '/report.html']) {
    const r = await page.request.get(sc.url + dl);
    check(r.status() === 200, `GET ${dl}: HTTP ${r.status()}`);
  }
}

async function resetPassword(page, link) {
  await go(page, link);
  await page.getByTestId('reset-password').fill(sc.auditor_password);
  await page.getByTestId('reset-password2').fill(sc.auditor_password);
  await shot(page, 'reset');
  await page.getByTestId('reset-submit').click();
  await page.waitForURL('**/login?done=reset');
  // The link works once.
  await go(page, link);
  await page.getByTestId('reset-password').fill(sc.auditor_password + 'x');
  await page.getByTestId('reset-password2').fill(sc.auditor_password + 'x');
  await submit(page, page.getByTestId('reset-submit'));
  check(path(page) === '/reset', 'a used reset link worked twice');
  check((await text(page, '[data-testid=error]')).includes('does not work any more'), 'no refusal shown for a used reset link');
}

// mutatingForms lists the page's forms that would change something: the
// sign-out form is the only POST form an auditor may be given.
async function mutatingForms(page) {
  return page.locator('form').evaluateAll((fs) => fs
    .filter((f) => f.method.toLowerCase() === 'post' && new URL(f.action).pathname !== '/logout')
    .map((f) => new URL(f.action).pathname));
}

// An auditor reads agents' state, reports, probe, drift and the audit
// log; the catalog, tasks (their results carry data), logs, users and
// tokens are not theirs. Every other page the navigation offers them is
// walked as read-only too.
const readOnlyPages = ['/', '/agents', '/agents/sample-tool', '/report', '/audit'];
const deniedPages = ['/catalog', '/catalog/sample-tool', '/tasks', '/tasks?agent=sample-tool', '/users', '/tokens'];

async function auditorPages(page) {
  check(await text(page, '[data-testid=current-role]') === 'auditor', 'not signed in as auditor');
  const nav = await page.getByRole('navigation', { name: 'Main' }).getByRole('link')
    .evaluateAll((as) => as.map((a) => new URL(a.href).pathname));
  for (const p of ['/', '/agents', '/report', '/audit']) check(nav.includes(p), `the auditor's navigation (${nav}) lacks ${p}`);
  const offered = nav.filter((p) => deniedPages.includes(p));
  check(offered.length === 0, `the auditor's navigation offers ${offered}`);
  for (const p of [...new Set([...readOnlyPages, ...nav])]) {
    await go(page, sc.url + p);
    const forms = await mutatingForms(page);
    check(forms.length === 0, `${p} gives the auditor forms to ${forms}`);
    const controls = await page.locator('[data-testid^=action-], [data-testid=deploy-link], [data-testid=deploy-form], [data-testid=task-form], [data-testid=agent-task-form], [data-testid=patch-form]').count();
    check(controls === 0, `${p} renders ${controls} mutating controls for the auditor`);
    await shot(page, 'auditor' + p.replace(/[/?=&]+/g, '-').replace(/-$/, ''));
  }
  await go(page, sc.url + '/agents/sample-tool');
  check(await page.locator('#logs, [data-testid=agent-tasks]').count() === 0, "the auditor is shown the agent's log or tasks");
  for (const p of deniedPages) {
    await go(page, sc.url + p, 403);
    check(await mutatingForms(page).then((f) => f.length) === 0, `the refusal page ${p} has forms`);
  }
  await shot(page, 'auditor-denied');
}

// auditorAPI calls the API from the page as the auditor's session would,
// with the page's CSRF token, so that the refusal is omertad's role check
// and not the console's CSRF check.
async function auditorAPI(page) {
  await go(page, sc.url + '/agents/sample-tool');
  refusalsExpected = true;
  const answers = await page.evaluate(async () => {
    const csrf = document.querySelector('meta[name=csrf-token]').content;
    const call = async (method, url, body) => {
      const init = { method, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' } };
      if (body !== undefined) { init.body = JSON.stringify(body); init.headers['Content-Type'] = 'application/json'; }
      const r = await fetch(url, init);
      return { method, url, status: r.status, body: await r.text() };
    };
    return [
      await call('GET', '/api/v1/agents/sample-tool'),
      await call('POST', '/api/v1/agents/sample-tool/enable'),
      await call('POST', '/api/v1/agents', { entry: 'sample-tool', id: 'intruder' }),
      await call('DELETE', '/api/v1/agents/sample-tool'),
      await call('POST', '/api/v1/users', { username: 'mallory', role: 'admin', password: 'mallory-password-1234' }),
      await call('GET', '/api/v1/users'),
    ];
  });
  refusalsExpected = false;
  check(answers[0].status === 200, `the auditor cannot read the agent: ${JSON.stringify(answers[0])}`);
  for (const a of answers.slice(1)) {
    check(a.status === 403, `${a.method} ${a.url} as auditor: HTTP ${a.status} ${a.body}, want 403`);
  }
  // The agent is as the admin left it, and omertad recorded the refusals.
  await go(page, sc.url + '/agents/sample-tool');
  check(await text(page, '#agent-desired') === 'disabled', 'the auditor changed the agent');
  const seen = await auditRows(page, sc.auditor, ['api.refused']);
  check(seen.has('api.refused'), 'the refused calls are not in the audit log');
  await shot(page, 'auditor-audit-refused');
}

// applianceDashboard: on a booted image the dashboard also says that the
// Lynis audit runs after first boot (or what it sealed).
async function applianceDashboard(page) {
  await dashboard(page);
  const audit = page.getByTestId('lynis-audit');
  check(await audit.count() === 1, 'the dashboard does not show the Lynis audit');
  const state = await audit.getAttribute('data-state');
  check(state && state !== 'failed', `Lynis audit shown as ${state}`);
  log(`     Lynis audit: ${state}; hardware: ${await text(page, '[data-testid=compat-verdict]')}; GPUs: ${await text(page, '[data-testid=gpu-summary]')}`);
}

// The first minutes of a booted appliance (ModeAppliance): the rest of the
// console runs against the stack in this package's own test.
async function appliance(page) {
  await step('TLS: the pinned certificate, TLS 1.2+, security headers', () => checkTLS(page));
  await step('setup with the printed token; the setup page is gone', () => setup(page));
  await step('sign out, sign in', async () => { await logout(page); await shot(page, 'login'); await login(page, sc.admin, sc.admin_password); });
  await step('dashboard: first boot, report, hardware, the audit, live', () => applianceDashboard(page));
}

async function main() {
  const ctx = await chromium.launchPersistentContext(sc.user_data, {
    executablePath: sc.chromium, headless: true, args: sc.args,
    ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 },
  });
  try {
    const page = current = watch(await ctx.newPage());
    if (sc.mode === 'appliance') {
      await appliance(page);
      check(problems.length === 0, `the browser reported:\n${problems.join('\n')}`);
      log(`PASS ${shotNo} screenshots`);
      return;
    }
    await step('TLS: the pinned certificate, TLS 1.2+, security headers', () => checkTLS(page));
    await step('setup with the one-time token; the setup page is gone', () => setup(page));
    await step('sign out, sign in', async () => { await logout(page); await shot(page, 'login'); await login(page, sc.admin, sc.admin_password); });
    await step('dashboard: first boot, report, hardware, live', () => dashboard(page));
    await step('a refused live stream is asked for again; the page is live again', () => streamRetried(page));
    await step('catalog: list, search, generated form', () => catalog(page));
    await step('deploy sample-tool through the form; running live', () => deploy(page));
    await step('agents list', () => agentsList(page));
    await step('hidden pages give their streams back; the page in front is live', () => hiddenPages(ctx, page));
    const logsPage = watch(await ctx.newPage());
    await step('agent page: its log streams', async () => { current = logsPage; await followLogs(logsPage); current = page; });
    await step('run a task, see its result', () => task(page));
    const latePage = watch(await ctx.newPage());
    await step('disable with confirmation; the agent pages see it stop live', () => disable(page, logsPage, latePage));
    await latePage.close();
    await step('audit log has each action', () => audit(page));
    let link;
    await step('users: create an auditor with a reset link', async () => { link = await users(page); });
    await step('tokens and report pages', () => otherPages(page));
    await step('admin signs out', () => logout(page));
    await step('auditor sets a password with the one-time link', () => resetPassword(page, link));
    await step('auditor signs in', () => login(page, sc.auditor, sc.auditor_password));
    await step('auditor: read-only pages, no mutating controls', () => auditorPages(page));
    await step('auditor: the API refuses changes (403), recorded', () => auditorAPI(page));
    await step('auditor signs out', () => logout(page));
    check(problems.length === 0, `the browser reported:\n${problems.join('\n')}`);
    log(`PASS ${shotNo} screenshots`);
  } catch (e) {
    log(`FAIL ${e.stack || e}`);
    if (current) {
      log(`  at ${current.url()}`);
      await current.screenshot({ path: join(sc.shots, 'failure.png'), fullPage: true }).catch(() => {});
      writeFileSync(join(sc.shots, 'failure.html'), await current.content().catch(() => ''));
    }
    if (problems.length) log(`browser problems:\n${problems.join('\n')}`);
    process.exitCode = 1;
  } finally {
    await ctx.close();
  }
}

await main();
