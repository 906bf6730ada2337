/**
 * The connection to `koma lsp`: finds the server program, starts it through
 * vscode-languageclient (which then provides inline completions, code actions, hover and progress
 * with no model logic here), answers `workspace/configuration` with only what the user set, and
 * forwards Koma's own notifications (`koma/chat/event`, `koma/status`) to the UI.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';

import { discoverServer, pathFromEnvOutput, type Discovery, type ServerLaunch } from './discovery';
import { EditReviewer } from './editReview';
import type { ChatEvent, StatusPayload } from './protocol';
import { configurationFor, trustedInspection, userSettings, userValue, whichIn, type Inspection } from './settings';
import { RouteRefresh, type ServerPhase } from './statusBar';
import { TrustPrompt } from './trust';

export interface ClientHooks {
  onChatEvent(event: ChatEvent): void;
  onStatus(status: StatusPayload): void;
  onPhase(phase: ServerPhase): void;
  /** A code action resolved to `koma.explain`: the chat panel runs it so the answer shows. */
  explain(args: unknown): Promise<unknown>;
  onReady(): void;
}

function isStringMap(value: unknown): value is Record<string, string> {
  return !!value && typeof value === 'object' && !Array.isArray(value) && Object.values(value).every((v) => typeof v === 'string');
}

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The user's values of `koma.*` for a resource. Sensitive and launch keys come from the user's
 * own settings only (`trustedInspection`); `ignored` hears of a workspace value dropped.
 */
export function inspector(scope?: vscode.Uri, ignored?: (key: string) => void): (key: string) => Inspection | undefined {
  const config = vscode.workspace.getConfiguration('koma', scope);
  return (key) => trustedInspection(key, config.inspect(key), ignored);
}

/**
 * The interpreter the Python extension has selected, or undefined when the extension (or its
 * environments API) is not there. Never `python.defaultInterpreterPath` read directly: a
 * workspace's settings could point it at any program.
 */
export async function selectedPython(): Promise<string | undefined> {
  const extension = vscode.extensions.getExtension('ms-python.python');
  if (!extension) {
    return undefined;
  }
  try {
    const api = (extension.isActive ? extension.exports : await extension.activate()) as {
      environments?: {
        getActiveEnvironmentPath(): { path: string };
        resolveEnvironment(p: { path: string }): Promise<{ executable?: { uri?: vscode.Uri } } | undefined>;
      };
    };
    const active = api.environments?.getActiveEnvironmentPath();
    if (active) {
      const resolved = await api.environments?.resolveEnvironment(active);
      return resolved?.executable?.uri?.fsPath ?? active.path;
    }
  } catch {
    // The Python extension is optional: skip it.
  }
  return undefined;
}

let loginPath: Promise<string | undefined> | undefined;

/**
 * `PATH` as the user's login shell sets it (asked once per session): VS Code started from the
 * desktop has the session's environment, without what ~/.profile or ~/.zprofile add. Runs in
 * the home directory, never the workspace.
 */
export function loginShellPath(): Promise<string | undefined> {
  loginPath ??= new Promise((resolve) => {
    const shell = process.env.SHELL || '/bin/sh';
    execFile(shell, ['-l', '-c', 'env'], { cwd: os.homedir(), timeout: 5000, env: process.env }, (error, stdout) => {
      resolve(error ? undefined : pathFromEnvOutput(stdout));
    });
  });
  return loginPath;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stdout}${stderr}`.trim() || (error ? error.message : '') });
    });
  });
}

export class KomaClient implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private starting: Promise<void> | undefined;
  private readonly reviewer: EditReviewer;
  private lastLaunch: ServerLaunch | undefined;
  private phase: ServerPhase = 'starting';
  private readonly warnedKeys = new Set<string>();
  private readonly trustPrompt: TrustPrompt;
  private suggestions: string[] = [];
  /** Fetches `koma.status` after generations, for the completion route it reports. */
  private readonly routeRefresh = new RouteRefresh(() => this.refreshStatus());

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly hooks: ClientHooks,
    private readonly onMissing: (detail: string, discovery: Discovery | undefined) => void,
    workspaceState: vscode.Memento,
    /** The virtual environment "Install…" creates. */
    private readonly installedVenv: string,
  ) {
    this.trustPrompt = new TrustPrompt(
      {
        warn: (message, ...buttons) => vscode.window.showWarningMessage(message, ...buttons),
        info: (message) => void vscode.window.showInformationMessage(message),
        openFile: async (uri) => vscode.window.showTextDocument(vscode.Uri.parse(uri, true), { preview: false }),
        log: (message) => this.output.info(message),
      },
      workspaceState,
      (command, args) => this.execute(command, args),
      () => vscode.workspace.isTrusted,
    );
    this.reviewer = new EditReviewer(async (edit) => {
      if (!this.client) {
        throw new Error('The Koma server is not running.');
      }
      return this.client.protocol2CodeConverter.asWorkspaceEdit(edit);
    });
  }

  get ready(): boolean {
    return this.client?.state === State.Running;
  }

  get launch(): ServerLaunch | undefined {
    return this.lastLaunch;
  }

  /** The insert texts of the server's latest non-empty inline-completion answer. */
  get lastSuggestions(): string[] {
    return this.suggestions;
  }

  /** Start the server (again, if running): one start at a time. */
  async start(): Promise<void> {
    if (this.starting) {
      return this.starting;
    }
    this.starting = this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      try {
        await client.stop(5000);
      } catch (error) {
        this.output.warn(`stopping the server: ${String(error)}`);
      }
      await client.dispose().catch(() => undefined);
    }
    this.setPhase('stopped');
  }

  /** `workspace/executeCommand` straight to the server (no VS Code command round trip). */
  async execute<T>(command: string, args: unknown[] = [], token?: vscode.CancellationToken): Promise<T> {
    if (!this.client || !this.ready) {
      throw new Error('The Koma language server is not running (see the Koma output channel).');
    }
    return (await this.client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }, token)) as T;
  }

  /** Settings other than the server's own changed: tell the running server (it pulls them). */
  async settingsChanged(): Promise<void> {
    if (!this.client || !this.ready) {
      return;
    }
    await this.client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { koma: userSettings(inspector(undefined, this.ignoredKey)) },
    });
  }

  /** Workspace Trust was granted: the server leaves Restricted Mode (tools that run or write). */
  async workspaceTrustGranted(): Promise<void> {
    if (this.phase === 'missing') {
      // A server in the workspace's own virtual environment may be run now.
      await this.start();
      return;
    }
    if (!this.client || !this.ready) {
      return; // the next start sends workspaceTrusted in initializationOptions
    }
    try {
      await this.execute('koma.setWorkspaceTrust', [{ trusted: true }]);
    } catch (error) {
      this.output.warn(`koma.setWorkspaceTrust: ${String(error)}`);
    }
  }

  /** A workspace value of a sensitive setting was dropped: say so once per key. */
  private readonly ignoredKey = (key: string): void => {
    if (this.warnedKeys.has(key)) {
      return;
    }
    this.warnedKeys.add(key);
    this.output.warn(
      `koma.${key} in the workspace settings is ignored: it chooses where code goes or what runs, ` +
        'so Koma reads it from your user settings only (a project can set it in .koma.toml, once you trust that file).',
    );
  };

  async setTrace(value: string): Promise<void> {
    if (this.client) {
      await this.client.setTrace(value === 'verbose' ? 2 : value === 'messages' ? 1 : 0);
    }
  }

  dispose(): void {
    void this.stop();
    this.reviewer.dispose();
  }

  private setPhase(phase: ServerPhase): void {
    this.phase = phase;
    this.hooks.onPhase(phase);
  }

  private async doStart(): Promise<void> {
    if (this.client) {
      await this.stop();
    }
    this.setPhase('starting');
    const config = vscode.workspace.getConfiguration('koma');
    const inspect = inspector(undefined, this.ignoredKey);
    const configured = userValue(inspect('server.command'));
    const extraArgs = userValue(inspect('server.args'));
    const extraEnv = userValue(inspect('server.env'));
    const env: NodeJS.ProcessEnv = { ...process.env, ...(isStringMap(extraEnv) ? extraEnv : {}) };
    const trusted = vscode.workspace.isTrusted;
    const discovery = await discoverServer({
      configured: typeof configured === 'string' ? configured : '',
      extraArgs: Array.isArray(extraArgs) ? extraArgs.map(String) : [],
      workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath),
      trusted,
      env,
      pythonInterpreter: selectedPython,
      canImportKoma: async (python) => (await run(python, ['-c', 'import koma.lsp'], env)).ok,
      installedVenv: this.installedVenv,
      loginShellPath,
      isExecutable,
      platform: process.platform,
    });
    const launch = discovery.launch;
    if (!launch) {
      this.output.error(`no server found; looked at: ${discovery.looked.join('; ')}`);
      for (const line of discovery.refused) {
        this.output.warn(`not run: ${line}`);
      }
      this.lastLaunch = undefined;
      this.setPhase('missing');
      this.onMissing('', discovery);
      return;
    }
    this.lastLaunch = launch;
    this.output.info(`starting: ${launch.command} ${launch.args.join(' ')} (found via ${launch.source})`);

    const problem = await this.checkLaunch(launch, env);
    if (problem) {
      this.output.error(problem);
      this.setPhase('missing');
      this.onMissing(problem, undefined);
      return;
    }

    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const serverOptions: ServerOptions = { command: launch.command, args: launch.args, options: { env, cwd: folder } };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      initializationOptions: {
        koma: userSettings(inspect),
        // The server asks about an untrusted .koma.toml with koma/untrustedConfig (answered
        // below) and, in Restricted Mode, applies no project setting and runs or writes nothing.
        client: { trustPrompt: true, workspaceTrusted: vscode.workspace.isTrusted },
      },
      initializationFailedHandler: (error) => {
        this.output.error(`initialize failed: ${String(error)}`);
        return false;
      },
      middleware: {
        workspace: {
          configuration: (params) =>
            params.items.map((item) =>
              configurationFor(
                item.section,
                userSettings(inspector(item.scopeUri ? vscode.Uri.parse(item.scopeUri) : undefined, this.ignoredKey)),
              ),
            ),
          handleApplyEdit: (params) => this.reviewer.review(params),
        },
        executeCommand: (command, args, next) => (command === 'koma.explain' ? this.hooks.explain(args[0]) : next(command, args)),
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const answer = await next(document, position, context, token);
          const items = Array.isArray(answer) ? answer : (answer?.items ?? []);
          const texts = items.map((item) => (typeof item.insertText === 'string' ? item.insertText : item.insertText.value));
          if (texts.length > 0) {
            this.suggestions = texts;
          }
          return answer;
        },
      },
    };
    const client = new LanguageClient('koma', 'Koma', serverOptions, clientOptions);
    client.onNotification('koma/chat/event', (event: ChatEvent) => this.hooks.onChatEvent(event));
    client.onNotification('koma/status', (status: StatusPayload) => {
      this.hooks.onStatus(status);
      this.routeRefresh.onState(status?.state);
    });
    client.onNotification('koma/untrustedConfig', (params: unknown) => void this.trustPrompt.handle(params));
    client.onDidChangeState((change) => {
      if (this.client !== client) {
        return;
      }
      if (change.newState === State.Running) {
        this.setPhase('running');
      } else if (change.newState === State.Stopped && this.phase !== 'missing') {
        this.setPhase('stopped');
      }
    });
    this.client = client;
    try {
      await client.start();
      await client.setTrace(
        ((t) => (t === 'verbose' ? 2 : t === 'messages' ? 1 : 0))(config.get<string>('trace.server') ?? 'off'),
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.output.error(`the server did not start: ${message}`);
      this.setPhase('stopped');
      void vscode.window
        .showErrorMessage(`Koma: the language server did not start (${message}).`, 'Show Log', 'Restart')
        .then((choice) => {
          if (choice === 'Show Log') {
            this.output.show();
          } else if (choice === 'Restart') {
            void this.restart();
          }
        });
      return;
    }
    this.setPhase('running');
    await this.refreshStatus();
    this.hooks.onReady();
  }

  /** Ask the server for its whole status (`koma.status`: also the completion route). */
  private async refreshStatus(): Promise<void> {
    try {
      const status = await this.execute<StatusPayload>('koma.status');
      if (status && typeof status === 'object') {
        this.hooks.onStatus(status);
      }
    } catch (error) {
      this.output.warn(`koma.status: ${String(error)}`);
    }
  }

  /** Why a configured launch cannot work (program missing), or undefined. */
  private async checkLaunch(launch: ServerLaunch, env: NodeJS.ProcessEnv): Promise<string | undefined> {
    const program = whichIn(launch.command, env.PATH, isExecutable, path.delimiter);
    if (!program) {
      return `"${launch.command}" (koma.server.command) was not found${launch.command.includes('/') ? '' : ' on PATH'}.`;
    }
    return undefined;
  }
}
