/**
 * The question the server asks through `koma/untrustedConfig` (docs/protocol.md): a project's
 * `.koma.toml` sets keys that choose where code goes or what runs, and the server ignores them
 * until the user trusts that exact file. The user answers Trust (the server re-hashes the file
 * and trusts it only if it is still the content shown), Keep ignoring (remembered for this
 * workspace and this content, so a changed file asks again) or Show file (opens it, then asks
 * again). In Restricted Mode nothing in the project is trusted, so Trust is not offered.
 * The vscode objects are injected: this module is unit-tested.
 */

/** `koma/untrustedConfig` params. */
export interface UntrustedConfig {
  path: string;
  uri: string;
  sha256: string;
  keys: string[];
  message: string;
}

/** `koma.trustConfig` answer. */
export interface TrustReply {
  trusted?: boolean;
  keys?: unknown;
  message?: unknown;
}

export interface TrustUi {
  /** A warning notification with buttons; resolves to the clicked button's title. */
  warn(message: string, ...buttons: string[]): PromiseLike<string | undefined>;
  info(message: string): void;
  /** Open a file:// URI in an editor. */
  openFile(uri: string): PromiseLike<unknown>;
  log(message: string): void;
}

/** Where "Keep ignoring" answers are kept (the extension passes `workspaceState`). */
export interface Memento {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): PromiseLike<void>;
}

export const TRUST = 'Trust';
export const KEEP_IGNORING = 'Keep ignoring';
export const SHOW_FILE = 'Show file';
export const IGNORED_KEY = 'koma.ignoredProjectConfigs';
const MAX_REMEMBERED = 64;

/** Validated params, or undefined for anything malformed (a buggy server never crashes us). */
export function parseUntrustedConfig(params: unknown): UntrustedConfig | undefined {
  if (!params || typeof params !== 'object') {
    return undefined;
  }
  const p = params as Record<string, unknown>;
  const { path, uri, sha256, keys, message } = p;
  if (typeof path !== 'string' || !path || typeof uri !== 'string' || !uri.startsWith('file:')) {
    return undefined;
  }
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/i.test(sha256) || !Array.isArray(keys)) {
    return undefined;
  }
  // Key names come from the repository's file (through the server): show only plain names.
  const names = keys.filter((k): k is string => typeof k === 'string' && /^[\w.]{1,80}$/.test(k));
  if (names.length === 0) {
    return undefined;
  }
  return { path, uri, sha256, keys: names, message: typeof message === 'string' ? message : '' };
}

function fileName(path: string): string {
  return path.split(/[\\/]/).slice(-2).join('/');
}

export class TrustPrompt {
  /** (path, sha256) pairs with a notification on screen: one question per file content. */
  private readonly open = new Set<string>();

  constructor(
    private readonly ui: TrustUi,
    private readonly store: Memento,
    private readonly execute: (command: string, args: unknown[]) => Promise<unknown>,
    private readonly workspaceTrusted: () => boolean,
  ) {}

  /** Handle one `koma/untrustedConfig` notification; resolves when the user has answered. */
  async handle(params: unknown): Promise<void> {
    const config = parseUntrustedConfig(params);
    if (!config) {
      this.ui.log(`koma/untrustedConfig with unexpected params ignored: ${JSON.stringify(params)}`);
      return;
    }
    const id = `${config.path}\n${config.sha256}`;
    this.ui.log(`${config.path} (sha256 ${config.sha256}): ignored keys ${config.keys.join(', ')}`);
    if (this.remembered().includes(id) || this.open.has(id)) {
      return;
    }
    this.open.add(id);
    try {
      await this.ask(config, id);
    } finally {
      this.open.delete(id);
    }
  }

  private remembered(): string[] {
    const value = this.store.get<unknown>(IGNORED_KEY);
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  }

  private async ask(config: UntrustedConfig, id: string): Promise<void> {
    const keys = config.keys.join(', ');
    const file = fileName(config.path);
    for (;;) {
      const restricted = !this.workspaceTrusted();
      const message = restricted
        ? `Koma: ${file} sets ${keys}, which choose where your code is sent or what runs. ` +
          'This workspace is in Restricted Mode, so they stay ignored.'
        : `Koma: ${file} sets ${keys}, which choose where your code is sent or what runs. ` +
          'They are ignored until you trust this file.';
      const buttons = restricted ? [KEEP_IGNORING, SHOW_FILE] : [TRUST, KEEP_IGNORING, SHOW_FILE];
      const choice = await this.ui.warn(message, ...buttons);
      if (choice === SHOW_FILE) {
        await this.ui.openFile(config.uri);
        continue;
      }
      if (choice === KEEP_IGNORING) {
        const kept = [...this.remembered().filter((v) => v !== id), id].slice(-MAX_REMEMBERED);
        await this.store.update(IGNORED_KEY, kept);
        this.ui.log(`keeping ${keys} of ${config.path} ignored`);
      } else if (choice === TRUST && !restricted) {
        await this.trust(config, file);
      }
      return;
    }
  }

  private async trust(config: UntrustedConfig, file: string): Promise<void> {
    let reply: TrustReply | undefined;
    try {
      reply = (await this.execute('koma.trustConfig', [{ path: config.path, sha256: config.sha256 }])) as TrustReply;
    } catch (error) {
      void this.ui.warn(`Koma: could not trust ${file}: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    if (reply && reply.trusted === true) {
      const applied = Array.isArray(reply.keys) ? reply.keys.map(String).join(', ') : config.keys.join(', ');
      this.ui.info(`Koma: trusted ${file}; now applying ${applied}.`);
      return;
    }
    const why = reply && typeof reply.message === 'string' && reply.message ? reply.message : 'the server did not trust it';
    void this.ui.warn(`Koma: ${file} was not trusted: ${why}`);
  }
}
