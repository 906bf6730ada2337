/**
 * What the extension sends the server as settings, and how it finds the server program.
 *
 * The server treats every key an editor sends as a command-line flag that beats the user's
 * environment and config files (docs/protocol.md), so the extension must send only what the user
 * actually set — never VS Code's defaults. Pure functions: the vscode API is passed in.
 */

import {
  CLIENT_SETTING_KEYS,
  LAUNCH_SETTING_KEYS,
  MODEL_FILE_SETTING_KEYS,
  SENSITIVE_SETTING_KEYS,
  SERVER_SETTING_KEYS,
} from './settingKeys.generated';

/**
 * The key lists come from the server's settings schema (`scripts/gen_settings.py` writes them
 * with `package.json`'s settings; tests/test_settings_generated.py fails when they drift):
 *
 * - `SERVER_SETTING_KEYS`: keys under `koma.` the server understands, as dotted paths;
 * - `SENSITIVE_SETTING_KEYS`: those marked sensitive in the schema, choosing where code and
 *   prompts go or what runs. VS Code takes them from the user's own settings only: `package.json`
 *   gives them `machine` scope and lists them as restricted, and `trustedInspection` drops
 *   workspace and folder values, because a repository's `.vscode/settings.json` is as untrusted as
 *   its `.koma.toml` and Workspace Trust, once granted, is never asked again when a `git pull`
 *   changes that file. A project that needs one of them sets it in `.koma.toml`, which applies
 *   only once the user trusts that exact file;
 * - `MODEL_FILE_SETTING_KEYS`: safe keys (`model`, `completionModel`) whose value may instead be
 *   the path of a `.gguf` file the embedded runtime would load and parse: such a value counts as
 *   sensitive, so it too comes from the user's own settings only;
 * - `CLIENT_SETTING_KEYS`: settings only the extension reads, never sent to the server;
 *   `LAUNCH_SETTING_KEYS`: those that choose the server program and its environment.
 */
export { CLIENT_SETTING_KEYS, LAUNCH_SETTING_KEYS, MODEL_FILE_SETTING_KEYS, SENSITIVE_SETTING_KEYS, SERVER_SETTING_KEYS };

/** The part of `WorkspaceConfiguration.inspect()` that says where a value was set. */
export interface Inspection {
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

export type Inspect = (key: string) => Inspection | undefined;

/**
 * The part of an inspection that may be used: for a sensitive or launch key only the user's own
 * (global) value, whatever the workspace trust; for a model key everything but a workspace or
 * folder value naming a `.gguf` file; for any other key everything. A workspace value dropped is
 * reported through `ignored` so the user learns why it has no effect.
 */
export function trustedInspection(
  key: string,
  inspection: Inspection | undefined,
  ignored?: (key: string) => void,
): Inspection | undefined {
  if (inspection && MODEL_FILE_SETTING_KEYS.includes(key)) {
    return withoutModelFiles(key, inspection, ignored);
  }
  if (!inspection || !(SENSITIVE_SETTING_KEYS.includes(key) || LAUNCH_SETTING_KEYS.includes(key))) {
    return inspection;
  }
  if (inspection.workspaceValue !== undefined || inspection.workspaceFolderValue !== undefined) {
    ignored?.(key);
  }
  return { globalValue: inspection.globalValue };
}

/** True for a value naming a `.gguf` file (the server's `names_model_file`). */
export function namesModelFile(value: unknown): boolean {
  return typeof value === 'string' && value.trim().toLowerCase().endsWith('.gguf');
}

/** A model key's inspection without a workspace or folder value that names a model file. */
function withoutModelFiles(key: string, inspection: Inspection, ignored?: (key: string) => void): Inspection {
  const kept: Inspection = { ...inspection };
  if (namesModelFile(kept.workspaceValue)) {
    delete kept.workspaceValue;
  }
  if (namesModelFile(kept.workspaceFolderValue)) {
    delete kept.workspaceFolderValue;
  }
  if (kept.workspaceValue !== inspection.workspaceValue || kept.workspaceFolderValue !== inspection.workspaceFolderValue) {
    ignored?.(key);
  }
  return kept;
}

/** The most specific value the user set, or undefined when they set none (or an empty string). */
export function userValue(inspection: Inspection | undefined): unknown {
  if (!inspection) {
    return undefined;
  }
  for (const value of [
    inspection.workspaceFolderValue,
    inspection.workspaceValue,
    inspection.globalValue,
  ]) {
    if (value === undefined || value === null) {
      continue;
    }
    // An empty string in a text setting is how the Settings UI says "not set".
    if (typeof value === 'string' && value.trim() === '') {
      continue;
    }
    return value;
  }
  return undefined;
}

/**
 * The `koma` section as the server wants it: nested camelCase objects holding only user-set
 * values. `{"reasoningEffort.chat": "low"}` in settings.json becomes `{reasoningEffort: {chat:
 * "low"}}`.
 */
export function userSettings(inspect: Inspect): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of SERVER_SETTING_KEYS) {
    const value = userValue(inspect(key));
    if (value === undefined) {
      continue;
    }
    const parts = key.split('.');
    let node = out;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (typeof next !== 'object' || next === null) {
        node[part] = {};
      }
      node = node[part] as Record<string, unknown>;
    }
    node[parts[parts.length - 1]] = value;
  }
  return out;
}

/** Answer one `workspace/configuration` item: the `koma` section, a sub-section, or null. */
export function configurationFor(section: string | undefined, settings: Record<string, unknown>): unknown {
  if (section === undefined || section === '') {
    return { koma: settings };
  }
  if (section === 'koma') {
    return settings;
  }
  if (!section.startsWith('koma.')) {
    return null;
  }
  let node: unknown = settings;
  for (const part of section.slice('koma.'.length).split('.')) {
    if (typeof node !== 'object' || node === null) {
      return null;
    }
    node = (node as Record<string, unknown>)[part];
  }
  return node ?? null;
}

/** True when a configuration change needs a new server process (not just new settings). */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return affects('koma.server');
}

// ---- finding the server program (the order is in discovery.ts) -------------------------------

/** Find an executable on a PATH string; `isExecutable` is injected so tests need no files. */
export function whichIn(
  name: string,
  pathVariable: string | undefined,
  isExecutable: (file: string) => boolean,
  separator = ':',
): string | undefined {
  if (name.includes('/')) {
    return isExecutable(name) ? name : undefined;
  }
  for (const dir of (pathVariable ?? '').split(separator)) {
    if (!dir) {
      continue;
    }
    const candidate = `${dir.replace(/\/+$/, '')}/${name}`;
    if (isExecutable(candidate)) {
      return candidate;
    }
  }
  return undefined;
}

/**
 * Collapse bursts of calls into one, `delayMs` after the last: editing settings.json fires a
 * change per keystroke-save, and each restart costs the loaded conversation state.
 */
export function debounce(fn: () => void, delayMs: number): { (): void; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const call = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = undefined;
      fn();
    }, delayMs);
  };
  call.cancel = (): void => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
  };
  return call;
}
