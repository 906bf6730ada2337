import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { discoverServer, notFoundMessage, pathFromEnvOutput, splitCommandLine, type DiscoveryInputs } from '../../discovery';

const WS = '/home/me/project';
const HOME = '/home/me';

/** Every place a `koma` can be, in the documented order, with the source it must report. */
const ORDER: { file: string; source: string; command?: string; args?: string[] }[] = [
  { file: `${WS}/.venv/bin/koma`, source: 'workspace venv' },
  { file: `${WS}/venv/bin/koma`, source: 'workspace venv' },
  { file: `${WS}/env/bin/koma`, source: 'workspace venv' },
  { file: '/opt/active/bin/koma', source: 'VIRTUAL_ENV' },
  { file: '/opt/selected/bin/koma', source: 'Python extension' },
  { file: '/storage/venv/bin/koma', source: 'installed by Koma' },
  { file: '/editor/bin/koma', source: 'PATH' },
  { file: '/login/bin/koma', source: 'login shell PATH' },
  { file: `${HOME}/.local/bin/koma`, source: '~/.local/bin' },
  { file: '/pipx/bin/koma', source: 'pipx' },
];

function inputs(existing: Iterable<string>, overrides: Partial<DiscoveryInputs> = {}): DiscoveryInputs & { asked: string[] } {
  const files = new Set(existing);
  const asked: string[] = [];
  return {
    configured: '',
    extraArgs: [],
    workspaceFolders: [WS],
    trusted: true,
    env: { PATH: '/editor/bin:/usr/bin', VIRTUAL_ENV: '/opt/active', HOME, PIPX_BIN_DIR: '/pipx/bin' },
    pythonInterpreter: async () => {
      asked.push('python extension');
      return '/opt/selected/bin/python';
    },
    canImportKoma: async (python) => {
      asked.push(`import in ${python}`);
      return false;
    },
    installedVenv: '/storage/venv',
    loginShellPath: async () => {
      asked.push('login shell');
      return '/login/bin:/usr/bin';
    },
    isExecutable: (file) => files.has(file),
    platform: 'linux',
    asked,
    ...overrides,
  };
}

describe('discoverServer', () => {
  it('takes each place in the documented order: each one wins over every later one', async () => {
    for (let i = 0; i < ORDER.length; i++) {
      const present = ORDER.slice(i).map((c) => c.file);
      const found = await discoverServer(inputs(present));
      assert.equal(found.launch?.command, ORDER[i].file, `with ${ORDER[i].file} and everything after it present`);
      assert.equal(found.launch?.source, ORDER[i].source);
      assert.deepEqual(found.launch?.args, ['lsp']);
      // Everything before it was looked at and is named in the log.
      for (const earlier of ORDER.slice(0, i).filter((c) => c.file.startsWith(WS))) {
        assert.ok(found.looked.includes(earlier.file), `${earlier.file} is listed as looked at`);
      }
    }
  });

  it('uses koma.server.command before anything else, with its own arguments', async () => {
    const found = await discoverServer(
      inputs(ORDER.map((c) => c.file), { configured: '"/opt/my tools/py" -m koma', extraArgs: ['--log-level', 'debug'] }),
    );
    assert.deepEqual(found.launch, { command: '/opt/my tools/py', args: ['-m', 'koma', 'lsp', '--log-level', 'debug'], source: 'setting' });
  });

  it("runs the Python extension's interpreter with -m koma when it imports Koma but has no koma script", async () => {
    const found = await discoverServer(inputs(['/editor/bin/koma'], { canImportKoma: async () => true }));
    assert.deepEqual(found.launch, { command: '/opt/selected/bin/python', args: ['-m', 'koma', 'lsp'], source: 'Python extension' });
  });

  it('skips the Python extension cleanly when there is none, and asks the login shell only when needed', async () => {
    const none = inputs(['/editor/bin/koma'], { pythonInterpreter: async () => undefined });
    const found = await discoverServer(none);
    assert.equal(found.launch?.command, '/editor/bin/koma');
    assert.ok(!none.asked.includes('login shell'), 'the login shell is not started when PATH has koma');
    assert.ok(found.looked.some((l) => l.includes('Python extension')));
  });

  it('finds nothing and lists every place it looked', async () => {
    const found = await discoverServer(inputs([]));
    assert.equal(found.launch, undefined);
    const message = notFoundMessage(found);
    for (const place of [
      `${WS}/.venv/bin/koma`,
      `${WS}/venv/bin/koma`,
      `${WS}/env/bin/koma`,
      '/opt/active/bin/koma',
      '/opt/selected/bin/python',
      '/storage/venv/bin/koma',
      "koma on VS Code's PATH",
      "koma on the login shell's PATH",
      `${HOME}/.local/bin/koma`,
      '/pipx/bin/koma',
    ]) {
      assert.ok(message.includes(place), `the message names ${place}: ${message}`);
    }
    assert.match(message, /koma\.server\.command/);
  });

  it('in Restricted Mode runs nothing from inside the workspace, and says so', async () => {
    const inside = [`${WS}/.venv/bin/koma`, `${WS}/tools/bin/koma`, `${WS}/py/bin/python`, `${WS}/py/bin/koma`];
    const found = await discoverServer(
      inputs([...inside, '/login/bin/koma'], {
        trusted: false,
        // A VIRTUAL_ENV, a selected interpreter and a PATH entry that all point into the workspace.
        env: { PATH: `${WS}/tools/bin:relative/bin:/usr/bin`, VIRTUAL_ENV: `${WS}/py`, HOME },
        pythonInterpreter: async () => `${WS}/py/bin/python`,
      }),
    );
    assert.equal(found.launch?.command, '/login/bin/koma', 'the first program outside the workspace');
    const message = notFoundMessage({ ...found, launch: undefined });
    assert.match(message, /\.venv\/bin\/koma \(the workspace's \.venv; inside the workspace, so not run in Restricted Mode/);
    assert.ok(found.refused.some((r) => r.startsWith(`${WS}/tools/bin/koma`)), 'the PATH entry in the workspace is refused');
    assert.ok(found.refused.some((r) => r.startsWith(`${WS}/py/bin/koma`)), 'the VIRTUAL_ENV in the workspace is refused');
    assert.ok(found.refused.some((r) => r.startsWith(`${WS}/py/bin/python`)), 'the interpreter in the workspace is refused');
  });

  it('in Restricted Mode with only a workspace .venv, finds nothing and explains why', async () => {
    const found = await discoverServer(inputs([`${WS}/.venv/bin/koma`], { trusted: false }));
    assert.equal(found.launch, undefined);
    assert.match(notFoundMessage(found), /Not run: \/home\/me\/project\/\.venv\/bin\/koma .*Restricted Mode: trust the workspace/);
  });

  it('never runs a koma from a relative PATH entry (it would resolve inside the workspace)', async () => {
    const found = await discoverServer(inputs(['bin/koma', '/login/bin/koma'], { env: { PATH: 'bin:/usr/bin', HOME } }));
    assert.equal(found.launch?.command, '/login/bin/koma');
  });

  it('uses Scripts\\koma.exe and ; on Windows, with no login shell', async () => {
    const win = inputs(['C:/work/.venv/Scripts/koma.exe'], { platform: 'win32', workspaceFolders: ['C:/work'] });
    assert.equal((await discoverServer(win)).launch?.command, 'C:/work/.venv/Scripts/koma.exe');
    const path = inputs(['C:/Tools/koma.exe'], { platform: 'win32', workspaceFolders: ['C:/work'], env: { PATH: 'C:/Tools;C:/Windows' } });
    assert.equal((await discoverServer(path)).launch?.command, 'C:/Tools/koma.exe');
    assert.ok(!path.asked.includes('login shell'));
  });
});

describe('pathFromEnvOutput', () => {
  it("reads PATH from a login shell's env output, whatever the profile printed first", () => {
    assert.equal(pathFromEnvOutput('Welcome!\nHOME=/home/me\nPATH=/a/bin:/b/bin\nX=1\n'), '/a/bin:/b/bin');
    assert.equal(pathFromEnvOutput('HOME=/x\n'), undefined);
  });
});

describe('splitCommandLine', () => {
  it('splits on spaces and honours quotes and escapes', () => {
    assert.deepEqual(splitCommandLine('koma'), ['koma']);
    assert.deepEqual(splitCommandLine('  "/opt/my tools/koma"  --x '), ['/opt/my tools/koma', '--x']);
    assert.deepEqual(splitCommandLine("python3 -c 'print(1)'"), ['python3', '-c', 'print(1)']);
    assert.deepEqual(splitCommandLine('a\\ b ""'), ['a b', '']);
    assert.deepEqual(splitCommandLine(''), []);
  });
});
