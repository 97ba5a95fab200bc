// The upload page as a person uses it: a real botilyx-media server on loopback (a fresh data
// folder, a token, a small size limit), Debian's Chromium driven headless by playwright-core.
//
// Environment:
//   BOTILYX_BIN     the server binary (default: <repo>/target/release/botilyx-media)
//   CHROMIUM        the browser (default: /usr/bin/chromium)
//   SCREENSHOT_DIR  where screenshots and the server log go (default: <repo>/target/browser)
//
// Prints one line per check and ends with `N passed, M failed`; exits non-zero on any failure.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fixtures = path.resolve(repo, '../shared/fixtures');
const BIN = process.env.BOTILYX_BIN || path.join(repo, 'target/release/botilyx-media');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT_DIR = process.env.SCREENSHOT_DIR || path.join(repo, 'target/browser');

// Small enough that a real phone photo from the fixtures is refused as too large.
const MAX_UPLOAD_BYTES = 200000;
const TIMEOUT_MS = 15000;
const WHOLE_RUN_MS = 180000;

const FIXTURE = {
  astronaut: path.join(fixtures, 'images/astronaut-small.jpg'),
  rocket: path.join(fixtures, 'images/rocket.jpg'),
  phone: path.join(fixtures, 'images/phone-photo-gps.jpg'),
  heic: path.join(fixtures, 'images/coffee.heic'),
  html: path.join(fixtures, 'hostile/html-disguised.jpg'),
};

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// ---- A tiny runner: checks run in order, each passes or fails on its own ------------------

const results = [];
// The server, so that even a run cut short never leaves it behind.
let serverProcess = null;

async function check(name, body) {
  try {
    await body();
    results.push(true);
    console.log(`ok   - ${name}`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL - ${name}\n       ${String(error && error.message ? error.message : error).split('\n').join('\n       ')}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function finish(code) {
  const passed = results.filter(Boolean).length;
  const failed = results.length - passed;
  if (serverProcess && serverProcess.exitCode === null) serverProcess.kill('SIGKILL');
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(code !== 0 || failed > 0 || passed === 0 ? 1 : 0);
}

// ---- The server -----------------------------------------------------------------------

async function startServer() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'botilyx-browser-data-'));
  const token = crypto.randomBytes(24).toString('base64url');
  const logPath = path.join(OUT_DIR, 'server.log');
  const log = fs.createWriteStream(logPath);

  const child = spawn(
    BIN,
    [
      'serve',
      '--bind', '127.0.0.1:0',
      '--data-dir', dataDir,
      '--upload-token', token,
      '--max-upload-bytes', String(MAX_UPLOAD_BYTES),
      '--workers', '2',
    ],
    { env: { ...process.env, RUST_LOG: 'info' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  serverProcess = child;

  // The server prints the address it bound (port 0 picks a free one).
  let stderr = '';
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server printed no address in 30 s:\n${stderr}`)), 30000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${BIN}: ${error.message}`));
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before listening:\n${stderr}`));
    });
    child.stderr.on('data', (chunk) => {
      log.write(chunk);
      stderr += chunk;
      const found = /listening on http:\/\/(127\.0\.0\.1:\d+)/.exec(stderr);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
  });
  const base = `http://${address}`;

  // Ready when /healthz answers; retry promptly until a deadline.
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    try {
      const answer = await fetch(`${base}/healthz`);
      if (answer.ok) break;
    } catch {
      // not accepting yet
    }
    if (Date.now() > deadline) throw new Error(`${base}/healthz did not answer 200 in time`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }

  async function stop() {
    if (child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(timer);
    log.end();
  }

  return { base, token, dataDir, logPath, stop, log: () => stderr };
}

function storedFiles(dataDir, collection) {
  const dir = path.join(dataDir, collection);
  return fs.readdirSync(dir).filter((name) => !name.startsWith('.'));
}

// ---- Page helpers ---------------------------------------------------------------------

function item(page, fileName) {
  return page.locator('#uploads > li.upload').filter({
    has: page.locator('.upload-name', { hasText: fileName }),
  }).first();
}

async function waitForState(page, fileName, state) {
  const li = item(page, fileName);
  await li.and(page.locator(`[data-state="${state}"]`)).waitFor({ timeout: TIMEOUT_MS });
  return li;
}

async function setToken(page, value) {
  await page.getByRole('button', { name: 'Forget' }).click();
  await page.getByLabel('Upload token').fill(value);
}

async function chooseCollection(page, label) {
  await page.getByRole('radio', { name: label }).check();
}

async function upload(page, file) {
  const before = await page.locator('#uploads > li').count();
  await page.locator('#files').setInputFiles(file);
  await page.locator('#uploads > li').nth(before).waitFor({ timeout: TIMEOUT_MS });
}

/** The accessible name a control would get from its label, aria-* or text. */
function unlabelledControls() {
  const named = (el) => {
    if (el.getAttribute('aria-label')) return true;
    const by = el.getAttribute('aria-labelledby');
    if (by && by.split(/\s+/).some((id) => (document.getElementById(id)?.textContent || '').trim())) return true;
    if (el.labels && Array.from(el.labels).some((l) => l.textContent.trim())) return true;
    if (el.tagName === 'BUTTON' && el.textContent.trim()) return true;
    return false;
  };
  return Array.from(document.querySelectorAll('input, button, select, textarea, progress'))
    .filter((el) => !named(el))
    .map((el) => el.outerHTML.slice(0, 120));
}

// ---- The checks -----------------------------------------------------------------------

async function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const file of Object.values(FIXTURE)) {
    assert(fs.existsSync(file), `missing fixture ${file}`);
  }

  const server = await startServer();
  console.log(`# server ${server.base}, data ${server.dataDir}, log ${server.logPath}`);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'botilyx-browser-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  });
  const cleanup = async () => {
    await context.close().catch(() => {});
    await server.stop();
    fs.rmSync(profile, { recursive: true, force: true });
  };

  try {
    await run(context, server);
  } finally {
    await cleanup();
  }
  if (results.every(Boolean)) {
    fs.rmSync(server.dataDir, { recursive: true, force: true });
  } else {
    console.log(`# kept for inspection: data ${server.dataDir}, server log ${server.logPath}`);
  }
}

async function run(context, server) {
  const { base, token, dataDir } = server;
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });

  // Everything the page might complain about.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || '(inline)'}`);
    });
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleLines = [];
  const pageErrors = [];
  const foreignRequests = [];
  page.on('console', (message) => consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('request', (request) => {
    if (!request.url().startsWith(`${base}/`)) foreignRequests.push(request.url());
  });

  await check('the page loads with its own script and styles', async () => {
    const answer = await page.goto(`${base}/`);
    assert(answer && answer.status() === 200, `GET / answered ${answer && answer.status()}`);
    const csp = answer.headers()['content-security-policy'] || '';
    assert(csp.includes("script-src 'self'"), `the page came without its CSP: ${csp}`);
    assert((await page.locator('h1').textContent()) === 'Upload photos', 'no "Upload photos" heading');
    const styled = await page.evaluate(() => getComputedStyle(document.querySelector('main')).maxWidth);
    assert(styled !== 'none', 'style.css was not applied');
    await page.getByRole('button', { name: 'Show' }).click();
    assert((await page.getByLabel('Upload token').getAttribute('type')) === 'text', 'app.js did not run: Show does nothing');
    await page.getByRole('button', { name: 'Hide' }).click();
    assert((await page.getByLabel('Upload token').getAttribute('type')) === 'password', 'Hide did not hide the token');
  });

  await check('every control has a label', async () => {
    const missing = await page.evaluate(unlabelledControls);
    assert(missing.length === 0, `controls without a name: ${missing.join(' | ')}`);
  });

  await check('the keyboard alone reaches every control, with a visible focus ring', async () => {
    await page.reload();
    const seen = [];
    for (let i = 0; i < 6; i += 1) {
      await page.keyboard.press('Tab');
      seen.push(await page.evaluate(() => {
        const el = document.activeElement;
        // The file input is out of sight: its label carries the ring.
        const shown = el.id === 'files' ? document.querySelector('label[for="files"]') : el;
        const style = getComputedStyle(shown);
        return {
          id: el.id,
          ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
        };
      }));
    }
    const order = seen.map((s) => s.id);
    for (const id of ['collection-medications', 'token', 'token-show', 'token-forget', 'files']) {
      assert(order.includes(id), `Tab never reached #${id}; order: ${order.join(', ')}`);
    }
    const noRing = seen.filter((s) => s.id && !s.ring).map((s) => s.id);
    assert(noRing.length === 0, `no visible focus on: ${noRing.join(', ')}`);
  });

  await check('the token typed in stays in this tab only: not in the URL, not in a cookie', async () => {
    await page.getByLabel('Upload token').focus();
    await page.keyboard.type(token);
    const kept = await page.evaluate(() => ({
      stored: sessionStorage.getItem('botilyx-media.upload-token'),
      local: localStorage.length,
      cookie: document.cookie,
      url: location.href,
    }));
    assert(kept.stored === token, 'the token is not in sessionStorage');
    assert(kept.local === 0, 'something was written to localStorage');
    assert(kept.cookie === '', `a cookie was set: ${kept.cookie}`);
    assert(!kept.url.includes(token), 'the token is in the URL');
    await page.keyboard.press('Enter'); // must not submit the form anywhere
    assert(!page.url().includes(token) && page.url() === `${base}/`, `Enter changed the URL: ${page.url()}`);
    await page.reload();
    assert((await page.getByLabel('Upload token').inputValue()) === token, 'the token is forgotten on reload');
  });

  let astronautLink = '';
  await check('a photo chosen with the keyboard uploads, shows progress and a preview, and is stored byte for byte', async () => {
    // Watch the progress bar's value as it changes.
    await page.evaluate(() => {
      window.__progress = [];
      new MutationObserver((changes) => {
        for (const change of changes) {
          const value = change.target.getAttribute('value');
          if (value !== null) window.__progress.push(Number(value));
        }
      }).observe(document.getElementById('uploads'), { subtree: true, attributes: true, attributeFilter: ['value'] });
    });
    await page.getByLabel('Upload token').focus();
    await page.keyboard.press('Tab'); // Show
    await page.keyboard.press('Tab'); // Forget
    await page.keyboard.press('Tab'); // Choose photos
    const chooser = page.waitForEvent('filechooser', { timeout: TIMEOUT_MS });
    await page.keyboard.press('Space');
    await (await chooser).setFiles(FIXTURE.astronaut);

    const li = await waitForState(page, 'astronaut-small.jpg', 'done');
    const progress = await page.evaluate(() => window.__progress);
    assert(progress.includes(100), `the progress bar never reached 100: ${JSON.stringify(progress)}`);

    const preview = li.locator('img.upload-preview');
    await preview.waitFor({ timeout: TIMEOUT_MS });
    await page.waitForFunction((img) => img.complete, await preview.elementHandle(), { timeout: TIMEOUT_MS });
    const width = await preview.evaluate((img) => img.naturalWidth);
    assert(width > 0, 'the preview did not load (naturalWidth is 0)');
    assert((await preview.getAttribute('alt')) === 'Preview of astronaut-small.jpg', 'the preview has no useful alt text');

    astronautLink = await li.getByLabel('Link to astronaut-small.jpg').inputValue();
    const match = new RegExp(`^${base}/medications/(astronaut-small-[0-9a-z]{26}\\.jpg)$`).exec(astronautLink);
    assert(match, `unexpected link ${astronautLink}`);
    const stored = fs.readFileSync(path.join(dataDir, 'medications', match[1]));
    assert(stored.equals(fs.readFileSync(FIXTURE.astronaut)), 'the stored file differs from the fixture');
    const status = await page.locator('#status').textContent();
    assert(/uploaded/i.test(status), `the status region did not announce it: "${status}"`);
  });

  await check('"Copy link" puts the link on the clipboard', async () => {
    const li = item(page, 'astronaut-small.jpg');
    await li.getByRole('button', { name: 'Copy link' }).click();
    await li.getByRole('button', { name: 'Copied' }).waitFor({ timeout: TIMEOUT_MS });
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert(copied === astronautLink, `clipboard holds "${copied}", not "${astronautLink}"`);
  });

  await check('a photo dropped on the page goes to the chosen collection', async () => {
    await chooseCollection(page, /Treatment images/);
    const bytes = fs.readFileSync(FIXTURE.rocket).toString('base64');
    await page.evaluate(({ b64, name }) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], name, { type: 'image/jpeg' }));
      const zone = document.getElementById('drop-zone');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: transfer }));
      }
    }, { b64: bytes, name: 'rocket.jpg' });
    const li = await waitForState(page, 'rocket.jpg', 'done');
    const link = await li.getByLabel('Link to rocket.jpg').inputValue();
    const name = /\/treatment-images\/(rocket-[0-9a-z]{26}\.jpg)$/.exec(link);
    assert(name, `unexpected link ${link}`);
    const stored = fs.readFileSync(path.join(dataDir, 'treatment-images', name[1]));
    assert(stored.equals(fs.readFileSync(FIXTURE.rocket)), 'the stored file differs from the fixture');
    await chooseCollection(page, /Medications/);
  });

  await check('a photo this browser cannot draw (HEIC) is stored, and the page says why there is no preview', async () => {
    await upload(page, FIXTURE.heic);
    const li = await waitForState(page, 'coffee.heic', 'done');
    const preview = li.locator('img.upload-preview');
    await page.waitForFunction((img) => img.complete, await preview.elementHandle(), { timeout: TIMEOUT_MS });
    if ((await preview.evaluate((img) => img.naturalWidth)) === 0) {
      await li.locator('.upload-message', { hasText: 'cannot show a preview' }).waitFor({ timeout: TIMEOUT_MS });
      assert(!(await preview.isVisible()), 'a broken preview is shown');
    }
    const link = await li.getByLabel('Link to coffee.heic').inputValue();
    const name = /\/medications\/(coffee-[0-9a-z]{26}\.heic)$/.exec(link);
    assert(name, `unexpected link ${link}`);
    const stored = fs.readFileSync(path.join(dataDir, 'medications', name[1]));
    assert(stored.equals(fs.readFileSync(FIXTURE.heic)), 'the stored file differs from the fixture');
  });

  await check('a web page disguised as a .jpg is refused as "not an image", with no preview', async () => {
    const before = storedFiles(dataDir, 'medications').length;
    await upload(page, FIXTURE.html);
    const li = await waitForState(page, 'html-disguised.jpg', 'failed');
    const message = await li.locator('.upload-message').textContent();
    assert(/not an image/i.test(message), `the refusal says "${message}"`);
    assert(!(await li.locator('img.upload-preview').isVisible()), 'a preview is shown for a refused file');
    assert(storedFiles(dataDir, 'medications').length === before, 'the refused file was stored');
  });

  await check('a photo over the limit is refused as too large, naming the limit', async () => {
    await upload(page, FIXTURE.phone);
    const li = await waitForState(page, 'phone-photo-gps.jpg', 'failed');
    const message = await li.locator('.upload-message').textContent();
    // 200000 bytes is shown as 195 KB.
    assert(/too large/i.test(message) && message.includes('195 KB'), `the refusal says "${message}"`);
  });

  await check('a wrong or missing token is "not authorised", and "Try again" works once it is fixed', async () => {
    await setToken(page, 'not-the-token');
    await upload(page, FIXTURE.astronaut);
    let li = page.locator('#uploads > li').first();
    await li.and(page.locator('[data-state="failed"]')).waitFor({ timeout: TIMEOUT_MS });
    let message = await li.locator('.upload-message').textContent();
    assert(/not authori[sz]ed/i.test(message) && /wrong/i.test(message), `a wrong token gives "${message}"`);

    await page.getByRole('button', { name: 'Forget' }).click();
    await upload(page, FIXTURE.astronaut);
    li = page.locator('#uploads > li').first();
    await li.and(page.locator('[data-state="failed"]')).waitFor({ timeout: TIMEOUT_MS });
    message = await li.locator('.upload-message').textContent();
    assert(/not authori[sz]ed/i.test(message) && /enter the upload token/i.test(message), `no token gives "${message}"`);

    await page.getByLabel('Upload token').fill(token);
    await li.getByRole('button', { name: 'Try again' }).click();
    await li.and(page.locator('[data-state="done"]')).waitFor({ timeout: TIMEOUT_MS });
  });

  await check('every control added by uploads has a label too', async () => {
    const missing = await page.evaluate(unlabelledControls);
    assert(missing.length === 0, `controls without a name: ${missing.join(' | ')}`);
  });

  const shots = [];
  await check('on a slow connection the progress bar moves, and a phone shows it', async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    await page.evaluate(() => window.scrollTo(0, 0));
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    // About 2 s for rocket.jpg (110 KB).
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 50000,
    });
    try {
      await upload(page, FIXTURE.rocket);
      const li = page.locator('#uploads > li').first();
      await page.waitForFunction(() => {
        const bar = document.querySelector('#uploads > li:first-child progress');
        return bar && bar.value >= 10 && bar.value <= 80;
      }, null, { timeout: TIMEOUT_MS });
      const inView = await li.locator('progress').evaluate((bar) => {
        const box = bar.getBoundingClientRect();
        return box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight;
      });
      const uploading = path.join(OUT_DIR, 'phone-uploading.png');
      await page.screenshot({ path: uploading });
      shots.push(uploading);
      assert(inView, 'the progress bar is out of sight on a phone screen');
      await li.and(page.locator('[data-state="done"]')).waitFor({ timeout: TIMEOUT_MS });
    } finally {
      await cdp.send('Network.emulateNetworkConditions', {
        offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
      });
      await cdp.detach();
    }
  });

  await check('desktop, phone and dark screenshots, and no sideways scrolling on a phone', async () => {
    const desktop = path.join(OUT_DIR, 'desktop.png');
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: desktop, fullPage: true });
    shots.push(desktop);

    await page.setViewportSize({ width: 360, height: 780 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.evaluate(() => document.getElementById('uploads-heading').scrollIntoView());
    const list = path.join(OUT_DIR, 'phone-uploads.png');
    await page.screenshot({ path: list });
    shots.push(list);
    await page.evaluate(() => window.scrollTo(0, 0));
    const phone = path.join(OUT_DIR, 'phone.png');
    await page.screenshot({ path: phone });
    shots.push(phone);
    const phoneFull = path.join(OUT_DIR, 'phone-full.png');
    await page.screenshot({ path: phoneFull, fullPage: true });
    shots.push(phoneFull);

    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = path.join(OUT_DIR, 'phone-dark.png');
    await page.screenshot({ path: dark });
    shots.push(dark);
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 900 });
    assert(overflow <= 0, `the page is ${overflow}px wider than a 360px phone screen`);
  });

  await check('no CSP violation, no script error, no request to another host', async () => {
    const violations = await page.evaluate(() => window.__cspViolations);
    const cspConsole = consoleLines.filter((line) => /Content Security Policy|Refused to/i.test(line));
    assert(violations.length === 0 && cspConsole.length === 0,
      `CSP violations: ${[...violations, ...cspConsole].join(' | ')}`);
    assert(pageErrors.length === 0, `script errors: ${pageErrors.join(' | ')}`);
    assert(foreignRequests.length === 0, `requests elsewhere: ${foreignRequests.join(' | ')}`);
  });

  await check('the token never reaches the server log', async () => {
    assert(!server.log().includes(token), 'the server log contains the token');
  });

  for (const shot of shots) console.log(`# screenshot: ${shot}`);
}

const guard = setTimeout(() => {
  console.log(`FAIL - the whole run took over ${WHOLE_RUN_MS / 1000} s`);
  results.push(false);
  finish(1);
}, WHOLE_RUN_MS);
guard.unref();

main().then(
  () => finish(0),
  (error) => {
    console.log(`FAIL - could not run the checks: ${error && error.stack ? error.stack : error}`);
    results.push(false);
    finish(1);
  },
);
