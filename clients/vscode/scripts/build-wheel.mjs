// Builds Koma's wheel (koma_lsp-VERSION-py3-none-any.whl) from this checkout into wheel/, where
// `vsce package` picks it up: the .vsix carries the server that "Koma: Install Server…" installs.
//
// Uses `python -m pip wheel --no-deps` (pip builds it with setuptools in an isolated
// environment). The Python is $KOMA_PYTHON, else python3, else python.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
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
execFileSync(python(), ['-m', 'pip', 'wheel', '--quiet', '--no-deps', '--disable-pip-version-check', '--wheel-dir', out, repo], {
  stdio: ['ignore', 'inherit', 'inherit'],
});
// setuptools leaves its build tree in the checkout (the egg-info is git-ignored).
rmSync(path.join(repo, 'build'), { recursive: true, force: true });
const wheels = readdirSync(out).filter((f) => /^koma_lsp-.+-py3-none-any\.whl$/.test(f));
if (wheels.length !== 1) {
  throw new Error(`build-wheel: expected one koma_lsp wheel in ${out}, found ${wheels.join(', ') || 'none'}`);
}
console.log(`build-wheel: ${path.join('wheel', wheels[0])}`);
