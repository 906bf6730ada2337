/**
 * Where the extension looks for the Koma server, in order, and what it tells the user when it
 * finds none. Pure: the file system, the Python extension and the login shell are passed in, so
 * the unit tests pin the order without touching the machine.
 *
 * The order (docs/vscode.md): `koma.server.command`; a `koma` in the workspace's `.venv`, `venv`
 * or `env`; the `VIRTUAL_ENV` VS Code was started in; the Python extension's selected
 * interpreter; the Koma this extension installed itself; `koma` on the editor's `PATH`, then on
 * the login shell's `PATH`; `~/.local/bin`; pipx's bin directory.
 *
 * A program inside the opened workspace belongs to the repository, so running it runs whatever
 * the repository put there. In Restricted Mode nothing inside a workspace folder is run — not
 * its virtual environments, not a `VIRTUAL_ENV` or interpreter that lives there, not a `PATH`
 * entry pointing there or relative to it — and the "not found" message says which were passed
 * over and why.
 */

/** How the server program was found: shown in the log and the status. */
export type LaunchSource =
  | 'setting'
  | 'workspace venv'
  | 'VIRTUAL_ENV'
  | 'Python extension'
  | 'installed by Koma'
  | 'PATH'
  | 'login shell PATH'
  | '~/.local/bin'
  | 'pipx';

export interface ServerLaunch {
  command: string;
  args: string[];
  source: LaunchSource;
}

export interface DiscoveryInputs {
  /** `koma.server.command` from the user's settings (may hold arguments). */
  configured: string;
  /** `koma.server.args`: appended after `lsp`. */
  extraArgs: string[];
  /** Absolute paths of the workspace folders. */
  workspaceFolders: string[];
  /** `vscode.workspace.isTrusted`. */
  trusted: boolean;
  /** The extension host's environment (`PATH`, `VIRTUAL_ENV`, `HOME`, `PIPX_BIN_DIR`). */
  env: Record<string, string | undefined>;
  /** The Python extension's selected interpreter; undefined when there is no such extension. */
  pythonInterpreter: () => Promise<string | undefined>;
  /** Whether this Python can `import koma.lsp` (only asked for the Python extension's). */
  canImportKoma: (python: string) => Promise<boolean>;
  /** The virtual environment "Install…" creates (in the extension's global storage). */
  installedVenv: string | undefined;
  /** `PATH` as the user's login shell sets it (a VS Code started from the desktop lacks it). */
  loginShellPath: () => Promise<string | undefined>;
  isExecutable: (file: string) => boolean;
  platform: string;
}

export interface Discovery {
  /** The program to start, or undefined when nothing was found. */
  launch: ServerLaunch | undefined;
  /** Every place looked at before the one found (or all of them), for the "not found" message. */
  looked: string[];
  /** Programs found but not run, each with the reason (Restricted Mode). */
  refused: string[];
}

export const WORKSPACE_VENV_NAMES: readonly string[] = ['.venv', 'venv', 'env'];

function join(...parts: string[]): string {
  return parts
    .map((part, i) => (i === 0 ? part.replace(/[/\\]+$/, '') : part.replace(/^[/\\]+|[/\\]+$/g, '')))
    .filter((part, i) => i === 0 || part !== '')
    .join('/');
}

function dirname(file: string): string {
  const cut = Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'));
  return cut > 0 ? file.slice(0, cut) : cut === 0 ? file.slice(0, 1) : '.';
}

/** Whether `file` is `folder` or inside it (both absolute, already normalised by VS Code). */
export function isInside(file: string, folder: string): boolean {
  const base = folder.replace(/[/\\]+$/, '');
  return file === base || file.startsWith(`${base}/`) || file.startsWith(`${base}\\`);
}

function isAbsolute(file: string): boolean {
  return file.startsWith('/') || /^[A-Za-z]:[/\\]/.test(file) || file.startsWith('\\\\');
}

/** The `koma` program inside a virtual environment. */
export function venvKoma(venv: string, platform: string): string {
  return platform === 'win32' ? join(venv, 'Scripts', 'koma.exe') : join(venv, 'bin', 'koma');
}

/**
 * Find the server. Each candidate is checked for an executable file; the Python extension's
 * interpreter is used through a `koma` next to it, else as `python -m koma` when it can import
 * Koma. The login shell is asked only when everything before it failed (it costs a process).
 */
export async function discoverServer(inputs: DiscoveryInputs): Promise<Discovery> {
  const tail = ['lsp', ...inputs.extraArgs];
  const looked: string[] = [];
  const refused: string[] = [];
  const configured = splitCommandLine(inputs.configured);
  if (configured.length > 0) {
    return { launch: { command: configured[0], args: [...configured.slice(1), ...tail], source: 'setting' }, looked, refused };
  }
  const exe = inputs.platform === 'win32' ? 'koma.exe' : 'koma';
  const inWorkspace = (file: string): boolean => inputs.workspaceFolders.some((folder) => isInside(file, folder));
  /** True when `file` may be run; records why not otherwise. */
  const allowed = (file: string, what: string): boolean => {
    if (!inputs.trusted && (!isAbsolute(file) || inWorkspace(file))) {
      if (inputs.isExecutable(file)) {
        refused.push(`${file} (${what}; inside the workspace, so not run in Restricted Mode: trust the workspace to use it)`);
      } else {
        looked.push(file);
      }
      return false;
    }
    return true;
  };
  const found = (file: string, source: LaunchSource): Discovery | undefined => {
    if (inputs.isExecutable(file)) {
      return { launch: { command: file, args: tail, source }, looked, refused };
    }
    looked.push(file);
    return undefined;
  };
  const onPath = (pathVariable: string | undefined, source: LaunchSource, label: string): Discovery | undefined => {
    const dirs = (pathVariable ?? '').split(inputs.platform === 'win32' ? ';' : ':').filter((d) => d !== '');
    for (const dir of dirs) {
      const file = join(dir, exe);
      if (!isAbsolute(dir)) {
        // A relative PATH entry resolves against the workspace the server starts in.
        continue;
      }
      if (inputs.isExecutable(file) && allowed(file, `${label} entry`)) {
        return { launch: { command: file, args: tail, source }, looked, refused };
      }
    }
    looked.push(`${exe} on ${label}`);
    return undefined;
  };

  // 1. The workspace's own virtual environments.
  for (const folder of inputs.workspaceFolders) {
    for (const name of WORKSPACE_VENV_NAMES) {
      const file = venvKoma(join(folder, name), inputs.platform);
      if (allowed(file, `the workspace's ${name}`)) {
        const hit = found(file, 'workspace venv');
        if (hit) {
          return hit;
        }
      }
    }
  }
  // 2. The virtual environment VS Code was started in.
  const virtualEnv = inputs.env.VIRTUAL_ENV;
  if (virtualEnv) {
    const file = venvKoma(virtualEnv, inputs.platform);
    if (allowed(file, 'VIRTUAL_ENV')) {
      const hit = found(file, 'VIRTUAL_ENV');
      if (hit) {
        return hit;
      }
    }
  }
  // 3. The Python extension's interpreter.
  const python = await inputs.pythonInterpreter();
  if (python) {
    if (allowed(python, "the Python extension's interpreter")) {
      const beside = join(dirname(python), exe);
      if (inputs.isExecutable(beside)) {
        return { launch: { command: beside, args: tail, source: 'Python extension' }, looked, refused };
      }
      if (await inputs.canImportKoma(python)) {
        return { launch: { command: python, args: ['-m', 'koma', ...tail], source: 'Python extension' }, looked, refused };
      }
      looked.push(`${python} (the Python extension's interpreter; it cannot import koma)`);
    }
  } else {
    looked.push("the Python extension's interpreter (none selected, or no Python extension)");
  }
  // 4. The Koma "Install…" put in the extension's storage.
  if (inputs.installedVenv) {
    const hit = found(venvKoma(inputs.installedVenv, inputs.platform), 'installed by Koma');
    if (hit) {
      return hit;
    }
  }
  // 5. PATH: the editor's, then the login shell's; the usual user install directories.
  const home = inputs.env.HOME ?? inputs.env.USERPROFILE;
  const hit =
    onPath(inputs.env.PATH, 'PATH', "VS Code's PATH") ??
    (inputs.platform === 'win32' ? undefined : onPath(await inputs.loginShellPath(), 'login shell PATH', "the login shell's PATH"));
  if (hit) {
    return hit;
  }
  const userBin = home ? join(home, '.local', 'bin', exe) : undefined;
  if (userBin && allowed(userBin, '~/.local/bin')) {
    const local = found(userBin, '~/.local/bin');
    if (local) {
      return local;
    }
  }
  const pipxBin = inputs.env.PIPX_BIN_DIR ? join(inputs.env.PIPX_BIN_DIR, exe) : undefined;
  if (pipxBin && pipxBin !== userBin && allowed(pipxBin, "pipx's bin directory")) {
    const pipx = found(pipxBin, 'pipx');
    if (pipx) {
      return pipx;
    }
  }
  return { launch: undefined, looked, refused };
}

/** The "not found" message: where the extension looked, and what it would not run. */
export function notFoundMessage(discovery: Discovery): string {
  const parts = ['Koma: the language server was not found.'];
  if (discovery.looked.length > 0) {
    parts.push(`Looked at: ${discovery.looked.join('; ')}.`);
  }
  if (discovery.refused.length > 0) {
    parts.push(`Not run: ${discovery.refused.join('; ')}.`);
  }
  parts.push('Install it here (Install…), or set "koma.server.command".');
  return parts.join(' ');
}

/**
 * Pick `PATH` out of `env`'s output from a login shell (`$SHELL -l -c env`); profile scripts may
 * print other lines first.
 */
export function pathFromEnvOutput(output: string): string | undefined {
  for (const line of output.split('\n')) {
    if (line.startsWith('PATH=')) {
      return line.slice('PATH='.length).trim();
    }
  }
  return undefined;
}

/**
 * Split a command line on whitespace, honouring single and double quotes and backslash escapes,
 * so a path with spaces can be written `"/opt/my tools/koma"`. No shell is ever involved.
 */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let current = '';
  let quote: '"' | "'" | undefined;
  let started = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote) {
      if (ch === quote) {
        quote = undefined;
      } else if (ch === '\\' && quote === '"' && i + 1 < line.length) {
        current += line[++i];
      } else {
        current += ch;
      }
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      started = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      current += line[++i];
      started = true;
    } else if (/\s/.test(ch)) {
      if (started) {
        out.push(current);
        current = '';
        started = false;
      }
    } else {
      current += ch;
      started = true;
    }
  }
  if (started) {
    out.push(current);
  }
  return out;
}
