import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { IGNORED_KEY, KEEP_IGNORING, SHOW_FILE, TRUST, TrustPrompt, parseUntrustedConfig, type Memento } from '../../trust';

const SHA = 'a'.repeat(64);
const OTHER_SHA = 'b'.repeat(64);

function notice(sha256 = SHA, keys: unknown[] = ['baseUrl', 'tools.runTestsCommand']): Record<string, unknown> {
  return {
    path: '/home/me/project/.koma.toml',
    uri: 'file:///home/me/project/.koma.toml',
    sha256,
    keys,
    message: '.koma.toml sets baseUrl, tools.runTestsCommand; ignored until you run koma trust',
  };
}

class Memory implements Memento {
  values = new Map<string, unknown>();
  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }
  async update(key: string, value: unknown): Promise<void> {
    this.values.set(key, value);
  }
}

/** A TrustPrompt whose notifications are answered from `answers`, recording everything. */
function harness(answers: (string | undefined)[], options: { trusted?: boolean; reply?: unknown; fail?: boolean } = {}) {
  const warnings: { message: string; buttons: string[] }[] = [];
  const infos: string[] = [];
  const opened: string[] = [];
  const commands: { command: string; args: unknown[] }[] = [];
  const store = new Memory();
  const prompt = new TrustPrompt(
    {
      warn: async (message, ...buttons) => {
        warnings.push({ message, buttons });
        return buttons.length ? answers.shift() : undefined;
      },
      info: (message) => infos.push(message),
      openFile: async (uri) => opened.push(uri),
      log: () => undefined,
    },
    store,
    async (command, args) => {
      commands.push({ command, args });
      if (options.fail) {
        throw new Error('server gone');
      }
      return options.reply ?? { trusted: true, keys: ['baseUrl', 'tools.runTestsCommand'] };
    },
    () => options.trusted ?? true,
  );
  return { prompt, warnings, infos, opened, commands, store };
}

describe('koma/untrustedConfig prompt', () => {
  it('names the file and the ignored keys and offers Trust / Keep ignoring / Show file', async () => {
    const h = harness([undefined]);
    await h.prompt.handle(notice());
    assert.equal(h.warnings.length, 1);
    assert.match(h.warnings[0].message, /project\/\.koma\.toml sets baseUrl, tools\.runTestsCommand/);
    assert.match(h.warnings[0].message, /ignored until you trust this file/);
    assert.deepEqual(h.warnings[0].buttons, [TRUST, KEEP_IGNORING, SHOW_FILE]);
    assert.deepEqual(h.commands, [], 'dismissing the notification trusts nothing');
  });

  it('Trust sends koma.trustConfig with the path and the sha256 that was shown', async () => {
    const h = harness([TRUST]);
    await h.prompt.handle(notice());
    assert.deepEqual(h.commands, [{ command: 'koma.trustConfig', args: [{ path: '/home/me/project/.koma.toml', sha256: SHA }] }]);
    assert.deepEqual(h.infos, ['Koma: trusted project/.koma.toml; now applying baseUrl, tools.runTestsCommand.']);
  });

  it('shows why when the server refuses (the file changed since the question)', async () => {
    const h = harness([TRUST], { reply: { trusted: false, message: '.koma.toml changed since it was shown; nothing trusted' } });
    await h.prompt.handle(notice());
    assert.equal(h.infos.length, 0);
    assert.equal(h.warnings.at(-1)?.message, 'Koma: project/.koma.toml was not trusted: .koma.toml changed since it was shown; nothing trusted');
    const failing = harness([TRUST], { fail: true });
    await failing.prompt.handle(notice());
    assert.match(failing.warnings.at(-1)?.message ?? '', /could not trust project\/\.koma\.toml: server gone/);
  });

  it('Keep ignoring is remembered for this content only: a changed file asks again', async () => {
    const h = harness([KEEP_IGNORING, undefined]);
    await h.prompt.handle(notice());
    assert.deepEqual(h.store.get(IGNORED_KEY), [`/home/me/project/.koma.toml\n${SHA}`]);
    await h.prompt.handle(notice());
    assert.equal(h.warnings.length, 1, 'the same file content is not asked about again');
    await h.prompt.handle(notice(OTHER_SHA));
    assert.equal(h.warnings.length, 2, 'new content is a new question');
    assert.deepEqual(h.commands, []);
  });

  it('Show file opens the file, then asks again', async () => {
    const h = harness([SHOW_FILE, TRUST]);
    await h.prompt.handle(notice());
    assert.deepEqual(h.opened, ['file:///home/me/project/.koma.toml']);
    assert.equal(h.warnings.length, 2);
    assert.equal(h.commands.length, 1);
  });

  it('in Restricted Mode offers no Trust and sends nothing', async () => {
    const h = harness([TRUST], { trusted: false });
    await h.prompt.handle(notice());
    assert.deepEqual(h.warnings[0].buttons, [KEEP_IGNORING, SHOW_FILE]);
    assert.match(h.warnings[0].message, /Restricted Mode/);
    assert.deepEqual(h.commands, []);
  });

  it('asks once while a question about the same content is on screen', async () => {
    let answer: (value: string | undefined) => void = () => undefined;
    const warnings: string[] = [];
    const prompt = new TrustPrompt(
      {
        warn: (message) => {
          warnings.push(message);
          return new Promise((resolve) => (answer = resolve));
        },
        info: () => undefined,
        openFile: async () => undefined,
        log: () => undefined,
      },
      new Memory(),
      async () => ({ trusted: true }),
      () => true,
    );
    const first = prompt.handle(notice());
    await prompt.handle(notice());
    assert.equal(warnings.length, 1);
    answer(undefined);
    await first;
  });
});

describe('parseUntrustedConfig', () => {
  it('accepts the protocol shape and rejects malformed params', () => {
    assert.deepEqual(parseUntrustedConfig(notice())?.keys, ['baseUrl', 'tools.runTestsCommand']);
    assert.equal(parseUntrustedConfig(undefined), undefined);
    assert.equal(parseUntrustedConfig({ ...notice(), sha256: 'xyz' }), undefined);
    assert.equal(parseUntrustedConfig({ ...notice(), uri: 'https://evil.example/x' }), undefined);
    assert.equal(parseUntrustedConfig({ ...notice(), keys: [] }), undefined);
  });

  it('shows only plain key names (they come from the repository file)', () => {
    const parsed = parseUntrustedConfig(notice(SHA, ['baseUrl', '<img src=x>', 42, 'a'.repeat(200)]));
    assert.deepEqual(parsed?.keys, ['baseUrl']);
  });
});
