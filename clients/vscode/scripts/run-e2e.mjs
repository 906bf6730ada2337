// Runs the extension's end-to-end suite inside a running code-server through headless Chromium,
// and serves the tests a loopback "bridge" to act on and inspect the page as a user would
// (keyboard, DOM, screenshots), since the tests themselves run in the extension host.
//
// usage: node run-e2e.mjs --port P --extension DIR --tests FILE --workspace DIR --artifacts DIR
//        (absolute paths; playwright-core is loaded from $KOMA_E2E_DIR)
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { format, parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    extension: { type: 'string' },
    tests: { type: 'string' },
    workspace: { type: 'string' },
    artifacts: { type: 'string' },
    timeout: { type: 'string', default: '600' },
  },
});
for (const key of ['port', 'extension', 'tests', 'workspace', 'artifacts']) {
  if (!opts[key]) {
    console.error(`run-e2e.mjs: --${key} is required`);
    process.exit(2);
  }
}
const e2eDir = process.env.KOMA_E2E_DIR || '/root/.cache/koma-vscode-e2e';
const { chromium } = createRequire(path.join(e2eDir, 'package.json'))('playwright-core');
mkdirSync(opts.artifacts, { recursive: true });

const host = `127.0.0.1:${opts.port}`;
const payload = JSON.stringify([
  ['extensionDevelopmentPath', `vscode-remote://${host}${opts.extension}`],
  ['extensionTestsPath', `vscode-remote://${host}${opts.tests}`],
]);
const url = `http://${host}/?folder=${encodeURIComponent(opts.workspace)}&payload=${encodeURIComponent(payload)}`;

const browser = await chromium.launch({
  executablePath: process.env.KOMA_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1360, height: 820 }, deviceScaleFactor: 1 });
const page = await context.newPage();

// ---- the bridge ---------------------------------------------------------------------------
let chatFrame;
async function frameFor(name) {
  if (name !== 'chat') {
    return page;
  }
  if (chatFrame && !chatFrame.isDetached()) {
    return chatFrame;
  }
  for (const frame of page.frames()) {
    try {
      if (await frame.$('#koma-chat')) {
        chatFrame = frame;
        return frame;
      }
    } catch {
      // A frame navigating away; try the next one.
    }
  }
  throw new Error('the Koma chat webview is not open');
}

async function locate(args) {
  const deadline = Date.now() + (args.timeoutMs ?? 30000);
  for (;;) {
    try {
      const scope = await frameFor(args.frame);
      let locator = scope.locator(args.selector);
      if (args.hasText) {
        locator = locator.filter({ hasText: args.hasText });
      }
      return locator.first();
    } catch (error) {
      if (Date.now() > deadline) {
        throw error;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const ops = {
  async press({ key, selector, frame }) {
    if (selector) {
      await (await locate({ selector, frame })).press(key);
    } else {
      await page.keyboard.press(key);
    }
  },
  async type({ text, delayMs }) {
    await page.keyboard.type(text, { delay: delayMs ?? 40 });
  },
  async fill({ selector, text, frame }) {
    await (await locate({ selector, frame })).fill(text);
  },
  async click({ selector, frame, hasText }) {
    await (await locate({ selector, frame, hasText })).click({ timeout: 30000 });
  },
  async waitFor({ selector, frame, hasText, timeoutMs, attributes }) {
    const locator = await locate({ selector, frame, hasText, timeoutMs });
    await locator.waitFor({ state: 'visible', timeout: timeoutMs ?? 30000 });
    const attrs = {};
    for (const name of attributes ?? []) {
      attrs[name] = await locator.getAttribute(name);
    }
    const scope = await frameFor(frame);
    const count = await scope.locator(selector).count();
    return { text: await locator.innerText(), count, attributes: attrs };
  },
  async texts({ selector, frame }) {
    const scope = await frameFor(frame);
    return scope.locator(selector).allInnerTexts();
  },
  async evaluate({ expression, frame }) {
    return (await frameFor(frame)).evaluate(expression);
  },
  async screenshot({ name, selector, frame, maxWidth, maxHeight }) {
    const file = path.join(opts.artifacts, `${name.replace(/[^\w.-]/g, '_')}.png`);
    if (selector && (maxWidth || maxHeight)) {
      // The top-left part of an element (e.g. the first lines of the editor).
      const box = await (await locate({ selector, frame })).boundingBox();
      if (!box) {
        throw new Error(`${selector} is not visible`);
      }
      const clip = { x: box.x, y: box.y, width: Math.min(box.width, maxWidth ?? box.width), height: Math.min(box.height, maxHeight ?? box.height) };
      await page.screenshot({ path: file, clip });
    } else if (selector) {
      await (await locate({ selector, frame })).screenshot({ path: file });
    } else {
      await page.screenshot({ path: file });
    }
    console.log(`[e2e] screenshot ${file}`);
    return file;
  },
};

let failures = 0;
const bridge = createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => (body += chunk));
  request.on('end', async () => {
    let reply;
    try {
      const args = JSON.parse(body);
      const op = ops[args.op];
      if (!op) {
        throw new Error(`unknown op ${args.op}`);
      }
      reply = { ok: true, result: (await op(args)) ?? null };
    } catch (error) {
      reply = { ok: false, error: String(error?.message ?? error) };
      const shot = path.join(opts.artifacts, `bridge-failure-${++failures}.png`);
      await page.screenshot({ path: shot }).catch(() => undefined);
      console.log(`[e2e] bridge op failed, screenshot ${shot}`);
    }
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(JSON.stringify(reply));
  });
});
await new Promise((resolve) => bridge.listen(0, '127.0.0.1', resolve));
const bridgeUrl = `http://127.0.0.1:${bridge.address().port}/`;
writeFileSync(path.join(path.dirname(opts.workspace), 'bridge.json'), JSON.stringify({ url: bridgeUrl }));

// ---- run ----------------------------------------------------------------------------------
let finish;
const exited = new Promise((resolve) => (finish = resolve));
let summary;
await page.exposeFunction('codeAutomationLog', (type, args) => {
  // The extension host forwards console calls as (format, ...args), like console.log takes them.
  const text = format(...(args || []));
  const match = /KOMA-E2E-RESULT (\{.*\})/.exec(text);
  if (match) {
    summary = JSON.parse(match[1]);
  }
  console.log(`[extension ${type}] ${text}`);
});
await page.exposeFunction('codeAutomationExit', (code) => finish(code));
page.on('pageerror', (error) => console.log(`[page error] ${error.message}`));

const started = Date.now();
await page.goto(url);
const timeoutMs = Number(opts.timeout) * 1000;
const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), timeoutMs))]);
console.log(`[e2e] extension tests finished in ${((Date.now() - started) / 1000).toFixed(1)} s, exit code ${code}`);
if (code !== 0) {
  await page.screenshot({ path: path.join(opts.artifacts, 'failure.png') }).catch(() => undefined);
}
if (summary) {
  console.log(`vscode: ${summary.passed} passed, ${summary.failed} failed`);
}
bridge.close();
await browser.close();
process.exit(code === 0 ? 0 : 1);
