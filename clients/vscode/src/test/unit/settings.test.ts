import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it, mock } from 'node:test';

import {
  CLIENT_SETTING_KEYS,
  LAUNCH_SETTING_KEYS,
  SENSITIVE_SETTING_KEYS,
  SERVER_SETTING_KEYS,
  configurationFor,
  debounce,
  needsRestart,
  trustedInspection,
  userSettings,
  userValue,
  whichIn,
  type Inspection,
} from '../../settings';

const root = path.resolve(__dirname, '../../..');
const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  contributes: { configuration: { properties: Record<string, Record<string, unknown>> } };
  capabilities: { untrustedWorkspaces: { supported: unknown; description: unknown; restrictedConfigurations: string[] } };
};
const properties = manifest.contributes.configuration.properties;

function inspectFrom(values: Record<string, Inspection>): (key: string) => Inspection | undefined {
  return (key) => values[key];
}

describe('userSettings', () => {
  it('sends only what the user set, nested the way the server reads it', () => {
    const settings = userSettings(
      inspectFrom({
        provider: { globalValue: 'ollama' },
        'reasoningEffort.chat': { workspaceValue: 'low' },
        'completion.debounceMs': { globalValue: 150 },
        'tools.policies': { globalValue: { run_tests: 'deny' } },
        model: {},
      }),
    );
    assert.deepEqual(settings, {
      provider: 'ollama',
      reasoningEffort: { chat: 'low' },
      completion: { debounceMs: 150 },
      tools: { policies: { run_tests: 'deny' } },
    });
  });

  it('prefers the folder value over the workspace value over the user value', () => {
    assert.equal(userValue({ globalValue: 'a', workspaceValue: 'b', workspaceFolderValue: 'c' }), 'c');
    assert.equal(userValue({ globalValue: 'a', workspaceValue: 'b' }), 'b');
    assert.equal(userValue({ globalValue: 'a' }), 'a');
  });

  it('treats empty strings and nulls as not set, but keeps false and 0', () => {
    assert.equal(userValue({ globalValue: '  ' }), undefined);
    assert.equal(userValue({ workspaceValue: null, globalValue: 'x' }), 'x');
    assert.equal(userValue({ globalValue: false }), false);
    assert.equal(userValue({ globalValue: 0 }), 0);
    assert.equal(userValue(undefined), undefined);
  });

  it('sends nothing when nothing is set (the server then uses env, config files, defaults)', () => {
    assert.deepEqual(userSettings(() => undefined), {});
  });
});

describe('configurationFor', () => {
  const settings = { model: 'gpt-oss:20b', reasoningEffort: { chat: 'low' } };
  it('answers the koma section, a sub-section, and nothing else', () => {
    assert.deepEqual(configurationFor('koma', settings), settings);
    assert.deepEqual(configurationFor('koma.reasoningEffort', settings), { chat: 'low' });
    assert.equal(configurationFor('koma.reasoningEffort.chat', settings), 'low');
    assert.equal(configurationFor('koma.missing.deep', settings), null);
    assert.equal(configurationFor('python', settings), null);
    assert.deepEqual(configurationFor(undefined, settings), { koma: settings });
  });
});

describe('package.json settings', () => {
  it('contributes exactly the server keys plus the client-only keys', () => {
    const contributed = Object.keys(properties).map((k) => k.replace(/^koma\./, '')).sort();
    assert.deepEqual(contributed, [...SERVER_SETTING_KEYS, ...CLIENT_SETTING_KEYS].sort());
  });

  it('documents every setting, gives enums their descriptions, and sets a scope', () => {
    for (const [key, schema] of Object.entries(properties)) {
      assert.ok(schema.description || schema.markdownDescription, `${key} has no description`);
      assert.ok(typeof schema.scope === 'string', `${key} has no scope`);
      if (Array.isArray(schema.enum)) {
        assert.equal((schema.enumDescriptions as unknown[] | undefined)?.length, schema.enum.length, `${key} enumDescriptions`);
      }
    }
  });

  it('lets only the machine decide which program runs as the server', () => {
    assert.equal(properties['koma.server.command'].scope, 'machine');
    assert.equal(properties['koma.server.args'].scope, 'machine');
  });

  it('covers every key of the settings table in docs/protocol.md', () => {
    const protocol = readFileSync(path.resolve(root, '../../docs/protocol.md'), 'utf8');
    const table = protocol.slice(protocol.indexOf('| key |'), protocol.indexOf('Example:'));
    const documented = new Set<string>();
    for (const line of table.split('\n').slice(2)) {
      const firstCell = line.split('|')[1] ?? '';
      for (const match of firstCell.matchAll(/`([\w.]+)`/g)) {
        documented.add(match[1]);
      }
    }
    assert.ok(documented.size > 30, `parsed only ${documented.size} keys from docs/protocol.md`);
    // apiKey has no VS Code setting on purpose: settings.json is synced and shared, so the key goes
    // in the environment (koma.server.env: KOMA_API_KEY) or Koma's own config file
    // (tests/test_vscode_manifest.py keeps the same list).
    const notInVsCode = ['apiKey'];
    for (const key of documented) {
      assert.ok(SERVER_SETTING_KEYS.includes(key) || notInVsCode.includes(key), `docs/protocol.md key ${key} has no VS Code setting`);
    }
    for (const key of SERVER_SETTING_KEYS) {
      assert.ok(documented.has(key), `setting koma.${key} is not in docs/protocol.md`);
    }
  });
});

describe('sensitive settings', () => {
  it('are declared restricted in untrusted workspaces, with the launch settings', () => {
    const untrusted = manifest.capabilities.untrustedWorkspaces;
    assert.equal(untrusted.supported, 'limited');
    assert.ok(typeof untrusted.description === 'string' && untrusted.description.includes('Restricted Mode'));
    assert.deepEqual(
      [...untrusted.restrictedConfigurations].sort(),
      [...LAUNCH_SETTING_KEYS, ...SENSITIVE_SETTING_KEYS].map((k) => `koma.${k}`).sort(),
    );
  });

  it('can be set in user settings only (machine scope), never by a repository', () => {
    for (const key of [...SENSITIVE_SETTING_KEYS, ...LAUNCH_SETTING_KEYS]) {
      assert.ok(properties[`koma.${key}`], `koma.${key} is not contributed`);
      assert.equal(properties[`koma.${key}`].scope, 'machine', `koma.${key} scope`);
    }
    for (const key of SERVER_SETTING_KEYS.filter((k) => !SENSITIVE_SETTING_KEYS.includes(k))) {
      assert.notEqual(properties[`koma.${key}`].scope, 'machine', `koma.${key} is safe: a workspace may set it`);
    }
  });

  it('drop workspace and folder values, and say which key was dropped', () => {
    const dropped: string[] = [];
    const inspection = { globalValue: 'http://localhost:11434', workspaceValue: 'https://evil.example', workspaceFolderValue: 'https://evil2.example' };
    assert.deepEqual(trustedInspection('baseUrl', inspection, (k) => dropped.push(k)), { globalValue: 'http://localhost:11434' });
    assert.deepEqual(trustedInspection('tools.runTestsCommand', { workspaceValue: ['sh', '-c', 'x'] }, (k) => dropped.push(k)), { globalValue: undefined });
    assert.deepEqual(trustedInspection('server.command', { globalValue: 'koma' }, (k) => dropped.push(k)), { globalValue: 'koma' });
    assert.deepEqual(dropped, ['baseUrl', 'tools.runTestsCommand']);
    // A safe key keeps the workspace value.
    assert.deepEqual(trustedInspection('model', { globalValue: 'a', workspaceValue: 'b' }), { globalValue: 'a', workspaceValue: 'b' });
    const repoValue = (key: string): Inspection | undefined =>
      key === 'model' ? { workspaceValue: 'gpt-oss:20b' } : SENSITIVE_SETTING_KEYS.includes(key) ? { workspaceValue: 'https://evil.example' } : undefined;
    const sent = userSettings((key) => trustedInspection(key, repoValue(key)));
    assert.deepEqual(sent, { model: 'gpt-oss:20b' }, 'a repository\'s settings.json sends no sensitive value');
  });
});

describe('a model file named by a workspace', () => {
  it('is dropped: only the user\'s own settings may make the embedded runtime load a .gguf', () => {
    const dropped: string[] = [];
    const repo: Record<string, Inspection> = {
      model: { globalValue: 'gpt-oss:20b', workspaceValue: './models/evil.gguf' },
      completionModel: { workspaceFolderValue: '/tmp/x.GGUF ' },
    };
    const sent = userSettings((key) => trustedInspection(key, repo[key], (k) => dropped.push(k)));
    assert.deepEqual(sent, { model: 'gpt-oss:20b' });
    assert.deepEqual(dropped, ['model', 'completionModel']);
    // A model name from the workspace, and a .gguf in the user's own settings, still count.
    assert.deepEqual(trustedInspection('model', { workspaceValue: 'qwen2.5-coder:1.5b' }), { workspaceValue: 'qwen2.5-coder:1.5b' });
    assert.deepEqual(trustedInspection('model', { globalValue: '/home/me/m.gguf' }), { globalValue: '/home/me/m.gguf' });
  });
});

describe('whichIn', () => {
  it('finds the first executable on PATH and checks paths directly', () => {
    const exists = new Set(['/b/koma', '/c/koma']);
    assert.equal(whichIn('koma', '/a:/b/:/c', (f) => exists.has(f)), '/b/koma');
    assert.equal(whichIn('koma', '/a', (f) => exists.has(f)), undefined);
    assert.equal(whichIn('/c/koma', '', (f) => exists.has(f)), '/c/koma');
    assert.equal(whichIn('koma', undefined, () => true), undefined);
  });
});

describe('needsRestart', () => {
  it('restarts only for the server process settings', () => {
    assert.equal(needsRestart((s) => s === 'koma.server'), true);
    assert.equal(needsRestart((s) => s === 'koma.model'), false);
  });
});

describe('debounce', () => {
  it('runs once, after the last call of a burst', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let calls = 0;
      const run = debounce(() => calls++, 100);
      run();
      mock.timers.tick(60);
      run();
      mock.timers.tick(60);
      assert.equal(calls, 0);
      mock.timers.tick(50);
      assert.equal(calls, 1);
      run();
      run.cancel();
      mock.timers.tick(500);
      assert.equal(calls, 1);
    } finally {
      mock.timers.reset();
    }
  });
});
