// Browser tests of the admin panel, against a running node that serves it.
// Env: TESSERA_PANEL_PORT (the node on 127.0.0.1), TESSERA_PANEL_OWNER_EMAIL,
// TESSERA_PANEL_OWNER_PASSWORD (a platform owner), optional CHROMIUM_PATH and
// TESSERA_SCREENSHOTS (a directory for PNGs of the main pages).
// Run: `node --test web/tests/` from the repository, or `npm test` in web/.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { chromium } from 'playwright-core';

const PORT = process.env.TESSERA_PANEL_PORT;
const OWNER_EMAIL = process.env.TESSERA_PANEL_OWNER_EMAIL;
const OWNER_PASSWORD = process.env.TESSERA_PANEL_OWNER_PASSWORD;
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SHOTS = process.env.TESSERA_SCREENSHOTS;
const TIMEOUT = 30_000;

// ---------------------------------------------------------------------------
// Helpers

function randomLetters(n) {
  const a = 'abcdefghijklmnopqrstuvwxyz';
  let s = '';
  for (let i = 0; i < n; i++) s += a[Math.floor(Math.random() * a.length)];
  return s;
}

/** One API call to the node on 127.0.0.1 with an explicit Host header. */
function request(host, method, urlPath, { token, body, contentType, accept, headers: extra } = {}) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers = { ...extra, host: `${host}:${PORT}`, accept: accept ?? 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = contentType ?? 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    if (token) headers.authorization = `Bearer ${token}`;
    const req = http.request({ host: '127.0.0.1', port: Number(PORT), method, path: urlPath, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = text ? JSON.parse(text) : null;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode, json, text, headers: res.headers });
      });
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

async function ok(promise, what) {
  const res = await promise;
  assert.ok(res.status >= 200 && res.status < 300, `${what}: HTTP ${res.status} ${res.text}`);
  return res.json;
}

async function login(host, email, password) {
  const body = await ok(request(host, 'POST', '/api/auth/login', { body: { email, password } }), `sign in ${email} at ${host}`);
  return body.token;
}

const url = (host, p = '/') => `http://${host}:${PORT}${p}`;

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

const cspViolations = [];
const pageErrors = [];
function watch(page) {
  page.on('pageerror', (e) => {
    console.log(`[page error] ${e.message}`);
    pageErrors.push(e.message);
  });
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) {
      console.log(`[csp] ${m.text()}`);
      cspViolations.push(m.text());
    }
  });
}

/** Opens `p` on `host` in a fresh context and signs in through the sign-in page it lands on. */
async function openSignedIn(host, p, email, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page);
  await page.goto(url(host, p));
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/signin'));
  return { context, page };
}

/** Replaces the CodeMirror document. */
async function setEditorText(page, text) {
  const content = page.locator('.cm-content');
  await content.waitFor();
  await content.click();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(text);
  await page.keyboard.press('Escape');
}

function definition(name, message) {
  return `apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: ${name}
  description: made by the panel tests
spec:
  triggers:
    - manual: {}
  steps:
    - name: greet
      transform:
        expression: '{greeting: ("hi " + (.trigger.body.name // "nobody"))}'
    - name: shout
      log:
        message: '${message} \${{ .steps.greet.greeting }}'
`;
}

/** Gzipped bytes of the JavaScript index.html loads before any lazy chunk. */
async function initialJsGzipBytes() {
  const index = await request('localhost', 'GET', '/', { accept: 'text/html' });
  assert.equal(index.status, 200, 'index.html is served at /');
  const seen = new Set();
  const queue = [];
  for (const m of index.text.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)) queue.push(new URL(m[1], 'http://x/').pathname);
  for (const m of index.text.matchAll(/<link[^>]*rel="modulepreload"[^>]*href="([^"]+)"/g)) queue.push(new URL(m[1], 'http://x/').pathname);
  let total = 0;
  while (queue.length) {
    const p = queue.shift();
    if (seen.has(p)) continue;
    seen.add(p);
    const res = await request('localhost', 'GET', p, { accept: '*/*' });
    assert.equal(res.status, 200, `${p} is served`);
    total += zlib.gzipSync(Buffer.from(res.text, 'utf8'), { level: 9 }).length;
    // Static imports only (import x from "./a.js", import "./b.js", export * from "./c.js"), not import("./d.js").
    for (const m of res.text.matchAll(/(?:^|[;\s})])(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"']+\.js)["']/g)) {
      queue.push(new URL(m[1], `http://x${p}`).pathname);
    }
  }
  return { total, files: [...seen] };
}

/**
 * The rows of the audit table (`{ action, via, text }` each, newest first)
 * once there are `min` or more and every one has the `action` and contains
 * the `text` given: the table of the filters just applied, not the one
 * before.
 */
async function auditRows(page, { min = 1, action, text } = {}) {
  const table = page.getByRole('table', { name: 'Audit records' });
  await table.waitFor();
  await page.waitForFunction(
    ({ min, action, text }) => {
      const rows = [...document.querySelectorAll('[data-testid="audit-row"]')];
      return rows.length >= min && rows.every((r) => (!action || r.dataset.action === action) && (!text || r.textContent.includes(text)));
    },
    { min, action: action ?? null, text: text ?? null },
  );
  return table.getByTestId('audit-row').evaluateAll((rows) => rows.map((r) => ({ action: r.dataset.action, via: r.dataset.via, text: r.textContent })));
}

// ---------------------------------------------------------------------------
// Fixtures

let browser;
const A = { slug: `pa${randomLetters(8)}`, email: '', password: `pw-${randomLetters(12)}` };
const B = { slug: `pb${randomLetters(8)}`, email: '', password: `pw-${randomLetters(12)}` };
const VIEWER = { email: '', password: `pw-${randomLetters(12)}` };
const INTEGRATION = `flow-${randomLetters(6)}`;
let platformToken;
let tokenA;
let lastExecution;
let consoleTenant;
const extraTenants = [];

before(async () => {
  assert.ok(PORT, 'TESSERA_PANEL_PORT is set');
  assert.ok(OWNER_EMAIL && OWNER_PASSWORD, 'TESSERA_PANEL_OWNER_EMAIL and TESSERA_PANEL_OWNER_PASSWORD are set');
  assert.ok(fs.existsSync(CHROMIUM), `Chromium is installed at ${CHROMIUM}`);
  A.email = `owner@${A.slug}.test`;
  B.email = `owner@${B.slug}.test`;
  VIEWER.email = `viewer@${A.slug}.test`;
  platformToken = await login('localhost', OWNER_EMAIL, OWNER_PASSWORD);
  for (const t of [A, B]) {
    await ok(
      request('localhost', 'POST', '/api/platform/tenants', { token: platformToken, body: { slug: t.slug, owner_email: t.email, owner_password: t.password } }),
      `create tenant ${t.slug}`,
    );
  }
  tokenA = await login(`${A.slug}.localhost`, A.email, A.password);
  await ok(
    request(`${A.slug}.localhost`, 'POST', '/api/users', { token: tokenA, body: { email: VIEWER.email, password: VIEWER.password, role: 'viewer' } }),
    'create the viewer',
  );
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless=new', '--no-sandbox'] });
});

after(async () => {
  await browser?.close();
  if (platformToken) {
    // Best effort: the random slugs never collide, so leftovers are harmless.
    for (const slug of [A.slug, B.slug, ...extraTenants]) {
      await request('localhost', 'DELETE', `/api/platform/tenants/${slug}?confirm=${slug}`, { token: platformToken }).catch(() => {});
    }
  }
});

// ---------------------------------------------------------------------------
// Tests

test('the initial JavaScript is within budget', async () => {
  const { total, files } = await initialJsGzipBytes();
  console.log(`PANEL_METRIC initial_js_gzip_bytes=${total}`);
  console.log(`# initial scripts: ${files.join(', ')}`);
  assert.ok(total < 300 * 1024, `initial JS is ${total} bytes gzipped`);
});

test('1. sign in to the tenant panel', async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page);
  try {
    await page.goto(url(`${A.slug}.localhost`, '/'));
    const interactive = await page.waitForFunction(() => {
      const el = document.getElementById('email');
      return el && !el.disabled ? performance.now() : false;
    });
    console.log(`PANEL_METRIC signin_time_to_interactive_ms=${Math.round(await interactive.jsonValue())}`);
    await shot(page, 'signin');
    // A wrong password is refused with the API's message, and no session starts.
    await page.getByLabel('Email').fill(A.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    await page.getByLabel('Password').fill(A.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByText(A.email).waitFor();
    // The token lives in memory only.
    const stored = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
    assert.deepEqual(stored, [0, 0, '']);
    // A reload means signing in again.
    await page.reload();
    await page.getByLabel('Email').waitFor();
    assert.match(new URL(page.url()).pathname, /^\/signin/);
    await page.getByLabel('Email').fill(A.email);
    await page.getByLabel('Password').fill(A.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    // Any 401 ends the session: back to sign-in, saying so, and back to the page after.
    await page.route('**/api/integrations', (route) =>
      route.fulfill({ status: 401, contentType: 'application/json', body: JSON.stringify({ error: { code: 'invalid_token', message: 'the token is invalid, expired, or not valid for this host' } }) }),
    );
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Integrations' }).click();
    await page.getByText('Your session has expired').waitFor();
    assert.equal(new URL(page.url()).searchParams.get('next'), '/integrations');
    await page.unroute('**/api/integrations');
    await page.getByLabel('Email').fill(A.email);
    await page.getByLabel('Password').fill(A.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Integrations' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/integrations');
    // Sign out returns to the sign-in page.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Email').waitFor();
  } finally {
    await context.close();
  }
});

test('2. the editor shows a definition error at its line, then saves the fix', async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, '/integrations/new', A.email, A.password);
  try {
    const broken = definition(INTEGRATION, 'said').replace('      log:\n', '      lgo:\n');
    const badLine = broken.split('\n').findIndex((l) => l.includes('lgo:')) + 1;
    await setEditorText(page, broken);
    await page.getByRole('button', { name: 'Validate' }).click();
    const problem = page.getByRole('list', { name: 'Problems' }).getByRole('listitem').filter({ hasText: `Line ${badLine}` });
    await problem.first().waitFor();
    // A diagnostic in the editor, on that line.
    await page.locator('.cm-lintRange-error').first().waitFor();
    const markedLine = await page.evaluate(() => {
      const range = document.querySelector('.cm-lintRange-error');
      const line = range?.closest('.cm-line');
      return line ? [...document.querySelectorAll('.cm-content .cm-line')].indexOf(line) + 1 : 0;
    });
    assert.ok(markedLine > 0, 'an error range is marked in the editor');
    assert.ok(await page.locator('.cm-gutter-lint .cm-lint-marker-error').count(), 'the lint gutter has an error marker');
    await shot(page, 'editor');
    await setEditorText(page, definition(INTEGRATION, 'said'));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').filter({ hasText: 'Saved' }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Integrations' }).click();
    await page.getByRole('link', { name: INTEGRATION }).waitFor();
    await shot(page, 'integrations');
  } finally {
    await context.close();
  }
});

test('3. run from the panel and watch the execution succeed live', async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, `/integrations/${INTEGRATION}`, A.email, A.password);
  try {
    await page.locator(`[data-testid="step-greet"]`).waitFor();
    await shot(page, 'integration');
    await page.getByRole('button', { name: 'Run now' }).click();
    const payload = page.getByLabel('Payload (JSON)');
    await payload.fill('{"name": ');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.getByText('The payload is not valid JSON').waitFor();
    await payload.fill('{"name": "panel"}');
    await page.getByRole('button', { name: 'Run', exact: true }).click();
    await page.waitForURL(/\/executions\/[0-9a-f-]+$/);
    lastExecution = new URL(page.url()).pathname.split('/').pop();
    await page.locator('[data-testid="execution-state"][data-state="succeeded"]').waitFor();
    await page.locator('[data-testid="step-greet"][data-state="succeeded"]').waitFor();
  } finally {
    await context.close();
  }
});

test('4. a step output opens from the graph on the execution page', async () => {
  assert.ok(lastExecution, 'test 3 made an execution');
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, `/executions/${lastExecution}`, A.email, A.password);
  try {
    const node = page.locator('[data-testid="step-greet"]');
    await node.waitFor();
    assert.equal(await node.getAttribute('data-state'), 'succeeded');
    await node.getByRole('button').click();
    const panel = page.getByTestId('step-panel');
    await panel.waitFor();
    await panel.getByText('"greeting": "hi panel"').waitFor();
    await shot(page, 'execution');
  } finally {
    await context.close();
  }
});

test('5. roll back to version 1 after saving version 2', async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, `/integrations/${INTEGRATION}/edit`, A.email, A.password);
  try {
    await page.locator('.cm-content').getByText('said').first().waitFor();
    await setEditorText(page, definition(INTEGRATION, 'shouted'));
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').filter({ hasText: 'version 2' }).waitFor();
    await page.getByRole('link', { name: INTEGRATION }).first().click();
    await page.getByTestId('version-2').waitFor();
    await page.getByRole('button', { name: 'Rollback to version 1' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Rollback' }).click();
    await page.getByTestId('version-3').waitFor();
    await page.getByText('version 3 created').waitFor();
    const current = await ok(request(`${A.slug}.localhost`, 'GET', `/api/integrations/${INTEGRATION}`, { token: tokenA }), 'read the integration');
    assert.equal(current.version, 3);
    assert.match(JSON.stringify(current.definition), /said/);
    // Disabling (and enabling again) is a new version with spec.enabled changed.
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByRole('button', { name: 'Enable' }).waitFor();
    await page.getByText('v4 · disabled').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Run now' }).isDisabled(), true);
    const disabled = await ok(request(`${A.slug}.localhost`, 'GET', `/api/integrations/${INTEGRATION}`, { token: tokenA }), 'read the integration');
    assert.equal(disabled.enabled, false);
    await page.getByRole('button', { name: 'Enable' }).click();
    await page.getByText('v5 · enabled').waitFor();
    const enabled = await ok(request(`${A.slug}.localhost`, 'GET', `/api/integrations/${INTEGRATION}`, { token: tokenA }), 'read the integration');
    assert.equal(enabled.enabled, true);
  } finally {
    await context.close();
  }
});

test('6. a viewer sees no edit buttons, and the API refuses its apply', async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, `/integrations/${INTEGRATION}`, VIEWER.email, VIEWER.password);
  try {
    await page.getByRole('heading', { name: INTEGRATION }).waitFor();
    await page.getByTestId('version-1').waitFor();
    for (const name of ['Run now', 'Edit', 'Delete', 'Rollback', 'Save', 'Validate']) {
      assert.equal(await page.getByRole('button', { name }).count(), 0, `no ${name} button`);
      assert.equal(await page.getByRole('link', { name, exact: true }).count(), 0, `no ${name} link`);
    }
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Integrations' }).click();
    await page.getByRole('link', { name: INTEGRATION }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'New integration' }).count(), 0);
    if (lastExecution) {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Executions' }).click();
      await page.getByRole('link', { name: lastExecution }).click();
      await page.locator('[data-testid="execution-state"]').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Retry' }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Cancel execution' }).count(), 0);
    }
    const viewerToken = await login(`${A.slug}.localhost`, VIEWER.email, VIEWER.password);
    const res = await request(`${A.slug}.localhost`, 'POST', '/api/apply', { token: viewerToken, body: definition(`${INTEGRATION}-x`, 'no'), contentType: 'application/yaml' });
    assert.equal(res.status, 403, res.text);
  } finally {
    await context.close();
  }
});

test('7. the platform owner creates a tenant and suspends it', async () => {
  const slug = `pc${randomLetters(8)}`;
  const { context, page } = await openSignedIn('localhost', '/', OWNER_EMAIL, OWNER_PASSWORD);
  try {
    await page.getByRole('heading', { name: 'Tenants' }).waitFor();
    await shot(page, 'platform-tenants');
    await page.getByRole('button', { name: 'New tenant' }).click();
    await page.getByLabel('Slug').fill(slug);
    await page.getByLabel('Owner email').fill(`owner@${slug}.test`);
    await page.getByLabel('Owner password').fill(`pw-${randomLetters(12)}`);
    await page.getByRole('button', { name: 'Create tenant' }).click();
    const row = page.getByTestId(`tenant-${slug}`);
    await row.waitFor();
    consoleTenant = slug;
    await row.getByRole('button', { name: 'Suspend' }).click();
    await row.getByTestId('tenant-status').filter({ hasText: 'suspended' }).waitFor();
    await row.getByTestId('tenant-cluster').filter({ hasText: 'local' }).waitFor();
    const t = await ok(request('localhost', 'GET', `/api/platform/tenants/${slug}`, { token: platformToken }), 'read the tenant');
    assert.equal(t.status, 'suspended');
    await row.getByRole('button', { name: 'Resume' }).waitFor();
    // A tenant's executions per day, on its page (tenant A ran some by now).
    await page.getByRole('link', { name: A.slug, exact: true }).click();
    await page.getByRole('heading', { name: /Executions per day/ }).waitFor();
    const today = new Date().toISOString().slice(0, 10);
    await page.getByTestId('executions-per-day').getByRole('rowheader', { name: today }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Cluster' }).click();
    await page.getByRole('heading', { name: 'Nodes' }).waitFor();
    // The directory's clusters: this one, with the tenants placed on it; a
    // drain from the page stops placements until it is activated again.
    const clusters = page.getByTestId('clusters');
    await clusters.getByRole('rowheader', { name: 'local' }).waitFor();
    await page.getByRole('button', { name: 'Stop placing tenants on local' }).click();
    await page.getByRole('button', { name: 'Place tenants on local again' }).waitFor();
    const drained = await ok(request('localhost', 'GET', '/api/platform/clusters/local', { token: platformToken }), 'read the cluster');
    assert.equal(drained.state, 'draining');
    await page.getByRole('button', { name: 'Place tenants on local again' }).click();
    await page.getByRole('button', { name: 'Stop placing tenants on local' }).waitFor();
    await shot(page, 'cluster');
    extraTenants.push(slug);
  } finally {
    await context.close();
  }
});

test("8. a tenant's session cannot read another tenant's data", async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, '/integrations', A.email, A.password);
  try {
    await page.getByRole('link', { name: INTEGRATION }).waitFor();
    // A's token, sent by a page of A to its own origin, works...
    const own = await page.evaluate(async (token) => (await fetch('/api/integrations', { headers: { authorization: `Bearer ${token}` } })).status, tokenA);
    assert.equal(own, 200);
    // ...B's host in the same browser shows the sign-in page, not B's data.
    await page.goto(url(`${B.slug}.localhost`, '/integrations'));
    await page.getByLabel('Email').waitFor();
    assert.match(new URL(page.url()).pathname, /^\/signin/);
    assert.equal(await page.getByRole('link', { name: INTEGRATION }).count(), 0);
    // A's token against B's host is refused, from B's origin and from outside.
    const fromPage = await page.evaluate(async (token) => (await fetch('/api/integrations', { headers: { authorization: `Bearer ${token}` } })).status, tokenA);
    assert.ok(fromPage === 401 || fromPage === 403, `B answered ${fromPage}`);
    const direct = await request(`${B.slug}.localhost`, 'GET', '/api/integrations', { token: tokenA });
    assert.ok(direct.status === 401 || direct.status === 403, `B answered ${direct.status}`);
  } finally {
    await context.close();
  }
});

// A tenant with 100,000 stored executions, seeded by the Rust test that
// runs these (tests/integration/panel.rs): TESSERA_PANEL_BULK_SLUG, _EMAIL,
// _PASSWORD. Without them (a run by hand) this test says so and fails.
test('the executions page shows its first 100 rows with 100,000 stored', async () => {
  const slug = process.env.TESSERA_PANEL_BULK_SLUG;
  assert.ok(slug, 'TESSERA_PANEL_BULK_SLUG names the tenant with 100,000 executions (set by tests/integration/panel.rs)');
  const host = `${slug}.localhost`;
  const { context, page } = await openSignedIn(host, '/', process.env.TESSERA_PANEL_BULK_EMAIL, process.env.TESSERA_PANEL_BULK_PASSWORD);
  try {
    await page.evaluate(() => {
      window.__navStart = performance.now();
    });
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Executions' }).click();
    const elapsed = await page.waitForFunction(
      () => (document.querySelectorAll('[data-testid="execution-row"]').length >= 100 ? performance.now() - window.__navStart : false),
      undefined,
      { timeout: 30_000 },
    );
    console.log(`PANEL_METRIC executions_first_100_rows_of_100000_ms=${Math.round(await elapsed.jsonValue())}`);
  } finally {
    await context.close();
  }
});

test('the executions page renders its first 100 rows', async () => {
  const host = `${A.slug}.localhost`;
  // 100+ executions, started without waiting, a few at a time.
  const ids = [];
  for (let i = 0; i < 105; i += 15) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(15, 105 - i) }, (_, j) => request(host, 'POST', `/api/integrations/${INTEGRATION}/run?wait=false`, { token: tokenA, body: { name: `n${i + j}` } })),
    );
    for (const r of batch) {
      assert.ok(r.status === 202 || r.status === 200, `run: ${r.status} ${r.text}`);
      ids.push(r.json.id);
    }
  }
  const { context, page } = await openSignedIn(host, `/integrations/${INTEGRATION}`, A.email, A.password);
  try {
    await page.getByRole('heading', { name: INTEGRATION }).waitFor();
    await page.evaluate(() => {
      window.__navStart = performance.now();
    });
    await page.getByRole('link', { name: 'Executions', exact: true }).first().click();
    const elapsed = await page.waitForFunction(
      () => (document.querySelectorAll('[data-testid="execution-row"]').length >= 100 ? performance.now() - window.__navStart : false),
      undefined,
      { timeout: 30_000 },
    );
    console.log(`PANEL_METRIC executions_first_100_rows_ms=${Math.round(await elapsed.jsonValue())}`);
    await page.getByText('Updates every 2 s').waitFor();
    await page.getByRole('button', { name: 'Load more' }).click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="execution-row"]').length > 100);
    await shot(page, 'executions');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Connections' }).click();
    await page.getByRole('heading', { name: 'Connections' }).waitFor();
    await shot(page, 'connections');
    // The overview once the tenant has run something.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Overview' }).click();
    await page.getByRole('img', { name: 'Executions per state over time' }).waitFor();
    await shot(page, 'overview');
  } finally {
    await context.close();
  }
});

test('at 390 px wide, by keyboard alone: sign in, open the menu, reach the executions', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  watch(page);
  const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  try {
    await page.goto(url(`${A.slug}.localhost`, '/'));
    // The Email field has the focus; every control is reached with Tab.
    await page.getByLabel('Email').waitFor();
    await page.keyboard.type(A.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(A.password);
    await page.keyboard.press('Enter');
    const menu = page.getByRole('button', { name: 'Menu' });
    await menu.waitFor();
    assert.equal(await fits(), true, 'the overview fits 390 px without scrolling sideways');
    await menu.focus();
    await page.keyboard.press('Enter');
    assert.equal(await menu.getAttribute('aria-expanded'), 'true');
    const executions = page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Executions' });
    await executions.focus();
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Executions' }).waitFor();
    await page.getByTestId('execution-row').first().waitFor();
    assert.equal(await fits(), true, 'the executions page fits 390 px without scrolling sideways');
  } finally {
    await context.close();
  }
});

test('a connection is created from its form, and edited with its secrets never shown', async () => {
  const { context, page } = await openSignedIn(`${A.slug}.localhost`, '/connections', A.email, A.password);
  try {
    await page.getByRole('heading', { name: 'Connections' }).waitFor();
    await page.getByRole('button', { name: 'New connection' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('billing-api');
    await dialog.getByLabel('Kind').selectOption('basic');
    await dialog.getByLabel('Username').fill('bob');
    await dialog.getByLabel('Password (secret, write-only)').fill('pw-never-shown');
    await dialog.getByRole('button', { name: 'Save connection' }).click();
    await page.getByRole('button', { name: 'Edit billing-api' }).click();
    // The plain fields come back filled in; the secret does not.
    const edit = page.getByRole('dialog');
    await edit.getByLabel('Username').and(page.locator('[value="bob"]')).waitFor();
    assert.equal(await edit.getByLabel('Password (secret, write-only)').inputValue(), '');
    const html = await page.content();
    assert.ok(!html.includes('pw-never-shown'), 'the secret is nowhere in the page');
    const one = await ok(request(`${A.slug}.localhost`, 'GET', '/api/connections/billing-api', { token: tokenA }), 'read the connection');
    assert.deepEqual(one.settings, { username: 'bob', hosts: [] });
    assert.ok(!JSON.stringify(one).includes('pw-never-shown'));
  } finally {
    await context.close();
  }
});

test('the audit trail shows a change made in the panel, pages back, exports and verifies', async () => {
  const host = `${A.slug}.localhost`;
  const { context, page } = await openSignedIn(host, '/variables', A.email, A.password);
  try {
    // A change through the panel (recorded `via: panel`), and one through the API.
    await page.getByRole('button', { name: 'New variable' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('audit_probe');
    await dialog.getByLabel('Value (JSON)').fill('{"n": 1}');
    await dialog.getByRole('button', { name: 'Save variable' }).click();
    await page.getByRole('button', { name: 'Edit audit_probe' }).waitFor();
    await ok(request(host, 'PUT', '/api/variables/audit_api', { token: tokenA, body: { value: 2, description: '' } }), 'put a variable through the API');
    // By now A has more than a page of records (the 105 runs of the executions test among them).
    const first = await ok(request(host, 'GET', '/api/audit', { token: tokenA }), 'list the audit trail');
    assert.equal(first.items.length, 100, 'a first page of 100');
    assert.ok(first.next_before, 'A has older records than the first page');

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
    const newest = await auditRows(page, { min: 100 });
    assert.equal(newest.length, 100, 'the first page is 100 rows');
    assert.equal(newest[0].action, 'variable.put', 'newest first');
    assert.match(newest[0].text, /audit_api/);
    await shot(page, 'audit');
    await page.getByRole('button', { name: 'Older records' }).click();
    await auditRows(page, { min: 101 });

    // Filtered to one action: the panel's change says so, the API's says api.
    await page.getByLabel('Action', { exact: true }).fill('variable.put');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    const puts = await auditRows(page, { min: 2, action: 'variable.put' });
    const byPanel = puts.find((r) => r.text.includes('audit_probe'));
    const byApi = puts.find((r) => r.text.includes('audit_api'));
    assert.ok(byPanel && byApi, JSON.stringify(puts));
    assert.equal(byPanel.via, 'panel');
    assert.ok(byPanel.text.includes(A.email), `the actor is named: ${byPanel.text}`);
    assert.equal(byApi.via, 'api');
    assert.equal(new URL(page.url()).searchParams.get('action'), 'variable.put');

    await page.getByRole('button', { name: 'Verify chain' }).click();
    await page.getByRole('status').filter({ hasText: 'Chain intact' }).waitFor();

    // The export: a file of the filtered records, oldest first, one JSON per line.
    const [file] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export' }).click()]);
    assert.equal(file.suggestedFilename(), `${A.slug}-audit.ndjson`);
    const lines = fs.readFileSync(await file.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.length >= 2 && lines.every((r) => r.action === 'variable.put'), JSON.stringify(lines));
    assert.ok(lines.every((r, i) => i === 0 || r.seq > lines[i - 1].seq), 'oldest first');
    assert.equal(lines.find((r) => r.resource_name === 'audit_probe')?.via, 'panel');

    // Since a local time: sent as RFC 3339 in UTC, with the panel's header on the request.
    const asked = page.waitForRequest((r) => new URL(r.url()).pathname === '/api/audit' && new URL(r.url()).searchParams.has('since'));
    await page.getByLabel('Since', { exact: true }).fill('2099-01-01T00:00');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    const sent = await asked;
    assert.equal(new URL(sent.url()).searchParams.get('since'), await page.evaluate(() => new Date('2099-01-01T00:00').toISOString()));
    assert.equal(new URL(sent.url()).searchParams.get('action'), 'variable.put');
    assert.equal(sent.headers()['x-tessera-client'], 'panel');
    await page.getByText('No audit records match.').waitFor();

    // The trail is for admins: the API refuses a viewer.
    const viewerToken = await login(host, VIEWER.email, VIEWER.password);
    const refused = await request(host, 'GET', '/api/audit', { token: viewerToken });
    assert.equal(refused.status, 403, refused.text);
  } finally {
    await context.close();
  }
});

test("the console's audit trail lists the tenant created from it", async () => {
  assert.ok(consoleTenant, 'test 7 created a tenant from the console');
  const { context, page } = await openSignedIn('localhost', '/', OWNER_EMAIL, OWNER_PASSWORD);
  try {
    await page.getByRole('heading', { name: 'Tenants' }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('heading', { name: 'Audit trail' }).waitFor();
    await page.getByLabel('Resource name', { exact: true }).fill(consoleTenant);
    await page.getByRole('button', { name: 'Apply filters' }).click();
    const rows = await auditRows(page, { min: 2, text: consoleTenant });
    const created = rows.find((r) => r.action === 'tenant.create');
    assert.ok(created, JSON.stringify(rows));
    assert.equal(created.via, 'panel');
    assert.ok(created.text.includes(OWNER_EMAIL), `the owner is named: ${created.text}`);
    assert.ok(rows.some((r) => r.action === 'tenant.suspend'), JSON.stringify(rows));
    await shot(page, 'platform-audit');
    // Tenant A was created through the API, without the panel's header.
    const a = await ok(request('localhost', 'GET', `/api/platform/audit?action=tenant.create&resource=${A.slug}`, { token: platformToken }), "read A's creation");
    assert.equal(a.items.length, 1, JSON.stringify(a));
    assert.equal(a.items[0].via, 'api');
    await page.getByRole('button', { name: 'Verify chain' }).click();
    await page.getByRole('status').filter({ hasText: 'Chain intact' }).waitFor();
  } finally {
    await context.close();
  }
});

test("a custom domain is added on a tenant's page, fails verification without its TXT record, and is removed", async () => {
  const domain = `integrations.${randomLetters(8)}.test`;
  const record = `_tessera-challenge.${domain}`;
  const list = async () => (await ok(request('localhost', 'GET', `/api/platform/tenants/${B.slug}/domains`, { token: platformToken }), "list B's domains")).items;
  const { context, page } = await openSignedIn('localhost', `/tenants/${B.slug}`, OWNER_EMAIL, OWNER_PASSWORD);
  try {
    await page.getByRole('heading', { name: 'Custom domains' }).waitFor();
    const section = page.getByRole('region', { name: 'Custom domains' });
    const input = section.getByLabel('Domain', { exact: true });
    // Not a domain: the server's error, and nothing is stored.
    await input.fill('not a domain');
    await section.getByRole('button', { name: 'Add domain', exact: true }).click();
    const refused = section.getByRole('alert').filter({ hasText: 'invalid_domain' });
    await refused.waitFor();
    assert.match(await refused.textContent(), /is not a domain a tenant can bring/);
    assert.deepEqual(await list(), []);

    // Added: pending, with the TXT record to publish shown as the server gave it.
    await input.fill(domain);
    await section.getByRole('button', { name: 'Add domain', exact: true }).click();
    const table = section.getByRole('table', { name: 'Custom domains' });
    const row = table.getByTestId(`domain-${domain}`);
    await row.getByText('Pending verification').waitFor();
    const stored = (await list()).find((d) => d.domain === domain);
    assert.ok(stored && !stored.verified && stored.verified_at === null, JSON.stringify(stored));
    assert.equal(stored.verification.name, record);
    await row.getByText(stored.verification.name, { exact: true }).waitFor();
    await row.getByText(stored.verification.value, { exact: true }).waitFor();
    await section.getByRole('status').filter({ hasText: `Publish TXT record ${record} = ${stored.verification.value}` }).waitFor();
    assert.equal(await section.getByRole('alert').count(), 0, 'the earlier error is gone');
    await shot(page, 'platform-domains');

    // Nobody published the record (with provisioning.dns_servers unset the
    // node asks the system's resolver: no such name, or no answer at all),
    // so verifying fails, says why next to the domain, and it stays pending.
    await row.getByRole('button', { name: `Verify ${domain}`, exact: true }).click();
    const failure = row.getByRole('alert');
    await failure.waitFor({ timeout: 60_000 });
    const why = await failure.textContent();
    console.log(`# verifying ${domain} without its TXT record: ${why}`);
    assert.match(why, /no TXT record .* was found|DNS lookup failed/);
    await row.getByText('Pending verification').waitFor();
    assert.equal(await row.getByText('Verified', { exact: true }).count(), 0);
    assert.equal((await list()).find((d) => d.domain === domain)?.verified, false);

    // Removed, after a confirmation.
    await row.getByRole('button', { name: `Remove ${domain}`, exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Remove domain' }).click();
    await row.waitFor({ state: 'detached' });
    await section.getByText('No custom domains.').waitFor();
    assert.equal(await section.getByRole('status').filter({ hasText: record }).count(), 0, 'the TXT record to publish is no longer shown');
    assert.deepEqual(await list(), []);
  } finally {
    await context.close();
  }
});

// An integration published as a managed API (docs/api-management.md): one
// route, reshaped both ways, called with a consumer's key.
const QUOTE_API = `apiVersion: tessera.dev/v1
kind: Integration
metadata:
  name: quote
spec:
  steps:
    - name: price
      transform:
        expression: '{sku: .trigger.body.sku, total: (.trigger.body.qty * 2), consumer: .trigger.consumer}'
---
apiVersion: tessera.dev/v1
kind: Api
metadata:
  name: quotes-v1
spec:
  basePath: quotes
  version: v1
  routes:
    - method: POST
      path: /quotes/{sku}
      integration: quote
      request: '{sku: .params.sku, qty: .body.qty}'
      response: '{quote: .}'
`;

test('a consumer and its key made in the panel call an API, whose page counts the call, until the key is revoked', async () => {
  const host = `${A.slug}.localhost`;
  const API = 'quotes-v1';
  const ROUTE = '/quotes/{sku}';
  // A partner's call, from outside the browser, with the consumer's key.
  const callApi = (key) => request(host, 'POST', '/apis/quotes/v1/quotes/A-7', { body: { qty: 4 }, headers: { 'x-api-key': key } });
  let secret;
  let prefix;
  const { context, page } = await openSignedIn(host, '/consumers', A.email, A.password);
  try {
    await page.getByRole('heading', { name: 'Plans', exact: true }).waitFor();
    // A plan, from its form.
    await page.getByRole('button', { name: 'Create plan' }).click();
    let dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('partners');
    await dialog.getByLabel('Rate (calls per second)').fill('50');
    await dialog.getByLabel('Burst').fill('100');
    await dialog.getByLabel('Quota', { exact: true }).fill('1000');
    await dialog.getByLabel('Quota period').selectOption('day');
    await dialog.getByLabel('Description').fill('made by the panel tests');
    await dialog.getByRole('button', { name: 'Save plan' }).click();
    const plans = page.getByRole('table', { name: 'Plans' });
    await plans.getByRole('rowheader', { name: 'partners', exact: true }).waitFor();
    await plans.getByText('1000 per day').waitFor();
    const plan = await ok(request(host, 'GET', '/api/plans/partners', { token: tokenA }), 'read the plan');
    assert.deepEqual([plan.rate_per_second, plan.burst, plan.quota, plan.quota_period], [50, 100, 1000, 'day']);

    // A consumer on it.
    await page.getByRole('button', { name: 'Add consumer' }).click();
    dialog = page.getByRole('dialog');
    await dialog.getByLabel('Name').fill('partner');
    await dialog.getByLabel('Plan').selectOption('partners');
    await dialog.getByRole('button', { name: 'Create consumer' }).click();
    const partner = page.getByTestId('consumer-partner');
    await partner.getByText('no keys').waitFor();

    // A key: its secret shown once, with the warning, then only its prefix.
    await partner.getByRole('button', { name: 'New key for partner' }).click();
    dialog = page.getByRole('dialog', { name: 'Your new key for partner' });
    await dialog.getByText('it is shown only once').waitFor();
    secret = await dialog.getByLabel('New consumer key').inputValue();
    assert.match(secret, /^tck_\S{43}$/);
    await dialog.getByRole('button', { name: 'Copy' }).waitFor();
    await shot(page, 'consumer-key');
    await dialog.getByRole('button', { name: 'I have stored it' }).click();
    await dialog.waitFor({ state: 'detached' });
    const listed = (await ok(request(host, 'GET', '/api/consumers', { token: tokenA }), 'list the consumers')).items.find((c) => c.name === 'partner');
    assert.equal(listed?.keys.length, 1, JSON.stringify(listed));
    prefix = listed.keys[0].prefix;
    assert.ok(secret.startsWith(prefix), `${prefix} begins ${secret.slice(0, 12)}`);
    await partner.getByText(`${prefix}…`).waitFor();
    assert.ok(!(await page.content()).includes(secret), 'the secret is gone once its dialog is closed');
    // After a reload (and signing in again): the prefix, never the secret.
    await page.reload();
    await page.getByLabel('Email').fill(A.email);
    await page.getByLabel('Password').fill(A.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('consumer-partner').getByText(`${prefix}…`).waitFor();
    assert.equal(new URL(page.url()).pathname, '/consumers');
    assert.equal(await page.getByLabel('New consumer key').count(), 0);
    assert.ok(!(await page.content()).includes(secret), 'the secret is not shown after a reload');
    await shot(page, 'consumers');

    // A plan a consumer is on is not deleted: the API's 409 is shown.
    await page.getByRole('button', { name: 'Delete plan partners' }).click();
    dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await dialog.getByRole('alert').filter({ hasText: 'in_use' }).waitFor();
    await dialog.getByRole('button', { name: 'Keep it' }).click();
    await plans.getByRole('rowheader', { name: 'partners', exact: true }).waitFor();

    // The API, applied as any definition is, on its pages.
    await ok(request(host, 'POST', '/api/apply', { token: tokenA, body: QUOTE_API, contentType: 'application/yaml' }), 'apply the API');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'APIs', exact: true }).click();
    await page.getByRole('heading', { name: 'APIs', exact: true }).waitFor();
    const listedApi = page.getByRole('table', { name: 'APIs' }).getByRole('row').filter({ hasText: API });
    await listedApi.getByText('/apis/quotes/v1').waitFor();
    await shot(page, 'apis');
    await listedApi.getByRole('link', { name: API, exact: true }).click();
    await page.getByRole('heading', { name: API, exact: true }).waitFor();
    await page.getByTestId('api-url').filter({ hasText: `${url(host, '/apis/quotes/v1')}` }).waitFor();
    // Its OpenAPI document, linked from the page and public on the tenant's host.
    const openapiHref = await page.getByRole('link', { name: 'OpenAPI document', exact: true }).getAttribute('href');
    assert.ok(openapiHref?.endsWith('/openapi.json'), `the OpenAPI link: ${openapiHref}`);
    const openapi = await ok(request(host, 'GET', new URL(openapiHref, url(host)).pathname), 'read the OpenAPI document');
    assert.equal(openapi?.openapi, '3.1.0', JSON.stringify(openapi));
    const route = page.getByRole('table', { name: 'Routes' }).getByTestId('api-route').filter({ hasText: ROUTE });
    await route.getByText('POST', { exact: true }).waitFor();
    await route.getByRole('link', { name: 'quote', exact: true }).waitFor();
    await route.getByRole('button', { name: `Show details of POST ${ROUTE}` }).click();
    await page.getByLabel(`Request transform of POST ${ROUTE}`).filter({ hasText: '.params.sku' }).waitFor();
    await page.getByLabel(`Response transform of POST ${ROUTE}`).filter({ hasText: '{quote: .}' }).waitFor();

    // One call with the key, then the API's analytics count it (flushed
    // every second or so: refreshed until they do).
    const served = await callApi(secret);
    assert.equal(served.status, 200, served.text);
    assert.deepEqual(served.json, { quote: { sku: 'A-7', total: 8, consumer: 'partner' } });
    await page.getByRole('heading', { name: 'Analytics' }).waitFor();
    const byRoute = page.getByRole('table', { name: 'Calls by route' }).getByRole('row').filter({ hasText: ROUTE });
    const deadline = Date.now() + 20_000;
    let calls = 0;
    for (;;) {
      if (await byRoute.count()) calls = Number(await byRoute.getByRole('cell').first().textContent());
      if (calls >= 1 || Date.now() > deadline) break;
      await page.waitForTimeout(1000);
      await page.getByRole('button', { name: 'Refresh' }).click();
    }
    assert.ok(calls >= 1, `"Calls by route" counts the call within 20 s (${calls})`);
    await page.getByRole('table', { name: 'Calls by consumer' }).getByRole('rowheader', { name: 'partner', exact: true }).waitFor();
    await page.getByRole('img', { name: 'Calls and errors over time' }).waitFor();
    await shot(page, 'api');

    // Revoked in the panel: the API refuses the key from its next call.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Consumers' }).click();
    await page.getByTestId('consumer-partner').getByRole('button', { name: `Revoke key ${prefix}` }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke', exact: true }).click();
    await page.getByTestId('consumer-partner').getByText(/^revoked /).waitFor();
    const refused = await callApi(secret);
    assert.equal(refused.status, 401, refused.text);
    assert.equal(refused.json?.error?.code, 'invalid_api_key');
  } finally {
    await context.close();
  }

  // A viewer reads the API but may not delete it, and has no Consumers page.
  const viewer = await openSignedIn(host, `/managed-apis/${API}`, VIEWER.email, VIEWER.password);
  try {
    await viewer.page.getByRole('heading', { name: API, exact: true }).waitFor();
    await viewer.page.getByRole('table', { name: 'Routes' }).getByTestId('api-route').filter({ hasText: ROUTE }).waitFor();
    assert.equal(await viewer.page.getByRole('button', { name: 'Delete API' }).count(), 0);
    assert.equal(await viewer.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Consumers' }).count(), 0);
  } finally {
    await viewer.context.close();
  }
});

test('no page broke the Content-Security-Policy or threw', () => {
  assert.deepEqual(cspViolations, []);
  assert.deepEqual(pageErrors, []);
});
