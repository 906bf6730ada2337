// Builds Koma's wheel (koma_lsp-VERSION-py3-none-any.whl) from this checkout into wheel/, where
// `vsce package` picks it up: the .vsix carries the server that "Koma: Install Server…" installs.
//
// Uses `python -m pip wheel --no-deps` (pip builds it with setuptools in an isolated
// environment) on a fresh copy of the sources, so setuptools' build/ scratch directory can never
// carry a deleted module into the wheel and the checkout stays clean. The Python is $KOMA_PYTHON,
// else python3, else python.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const repo = path.resolve(here, '..', '..');
const out = path.join(here, 'wheel');

function python() {
  for (const candidate of [process.env.KOMA_PYTHON, 'python3', 'python'].filter(Boolean)) {
    try {
      execFileSync(candidate, ['-c', 'import sys; assert sys.version_info >= (3, 11)'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error('build-wheel: no Python 3.11+ found (set KOMA_PYTHON)');
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const src = mkdtempSync(path.join(os.tmpdir(), 'koma-wheel-'));
try {
  for (const file of ['pyproject.toml', 'README.md']) {
    cpSync(path.join(repo, file), path.join(src, file));
  }
  cpSync(path.join(repo, 'server'), path.join(src, 'server'), {
    recursive: true,
    filter: (from) => !/(__pycache__|\.egg-info|\.pyc)$/.test(from),
  });
  execFileSync(python(), ['-m', 'pip', 'wheel', '--quiet', '--no-deps', '--disable-pip-version-check', '--wheel-dir', out, src], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
} finally {
  rmSync(src, { recursive: true, force: true });
}
const wheels = readdirSync(out).filter((f) => /^koma_lsp-.+-py3-none-any\.whl$/.test(f));
if (wheels.length !== 1) {
  throw new Error(`build-wheel: expected one koma_lsp wheel in ${out}, found ${wheels.join(', ') || 'none'}`);
}
console.log(`build-wheel: ${path.join('wheel', wheels[0])}`);
