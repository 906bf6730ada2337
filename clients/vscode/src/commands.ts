/**
 * The "Koma: …" commands and the status bar menu. Each is a thin shell over one server command
 * (docs/protocol.md) plus the VS Code UI to pick its argument and show its result.
 */
import * as vscode from 'vscode';

import type { ChatViewProvider } from './chatView';
import type { KomaClient } from './client';
import { doctorMarkdown } from './doctor';
import { cleanModels, lifecycleItems, modelPickItems, type ModelPickItem } from './models';
import type { ModelKind } from './protocol';
import { notFoundMessage, type Discovery } from './discovery';
import { installServer } from './installServer';
import type { StatusBar } from './statusBar';

export interface CommandDeps {
  client: KomaClient;
  chat: ChatViewProvider;
  statusBar: StatusBar;
  output: vscode.LogOutputChannel;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Run a command body, turning any failure into one readable notification. */
function guarded(name: string, body: (...args: unknown[]) => Promise<unknown>): (...args: unknown[]) => Promise<unknown> {
  return async (...args) => {
    try {
      return await body(...args);
    } catch (error) {
      void vscode.window.showErrorMessage(`Koma: ${name} failed: ${errorText(error)}`);
      return undefined;
    }
  };
}

type PickItem = vscode.QuickPickItem & Omit<ModelPickItem, 'separator'>;

function toQuickPick(item: ModelPickItem): PickItem {
  const { separator, ...rest } = item;
  return separator ? { ...rest, kind: vscode.QuickPickItemKind.Separator } : rest;
}

async function showChat(chat: ChatViewProvider): Promise<void> {
  await vscode.commands.executeCommand('koma.chatView.focus');
  chat.focusInput();
}

async function explainSelection(deps: CommandDeps): Promise<unknown> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('Koma: open a file and select the code to explain.');
    return undefined;
  }
  const selection = editor.selection;
  // With nothing selected, explain the line the cursor is on.
  const range = selection.isEmpty ? editor.document.lineAt(selection.active.line).range : selection;
  await vscode.commands.executeCommand('koma.chatView.focus');
  return deps.chat.explain(
    {
      uri: editor.document.uri.toString(),
      range: {
        start: { line: range.start.line, character: range.start.character },
        end: { line: range.end.line, character: range.end.character },
      },
    },
    `Explain ${vscode.workspace.asRelativePath(editor.document.uri)}:${range.start.line + 1}-${range.end.line + 1}`,
  );
}

async function pickModel(deps: CommandDeps, kind?: ModelKind): Promise<string | undefined> {
  const models = cleanModels(await deps.client.execute('koma.models'));
  if (models.error) {
    void vscode.window.showErrorMessage(`Koma: could not list models: ${models.error}`, 'Show Diagnostics').then((c) => {
      if (c) {
        void vscode.commands.executeCommand('koma.showDiagnostics');
      }
    });
    return undefined;
  }
  if (models.models.length === 0) {
    void vscode.window.showWarningMessage('Koma: the backend lists no models. Pull one first (e.g. `ollama pull gpt-oss:20b`).');
    return undefined;
  }
  const items = modelPickItems(models, kind).map(toQuickPick);
  const picked = await vscode.window.showQuickPick(items, {
    title: 'Koma: Select Model',
    placeHolder: 'Model for chat and code actions, or for inline completions',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  if (!picked?.model) {
    return undefined;
  }
  const chosenKind = picked.modelKind ?? 'chat';
  const result = await deps.client.execute<{ error?: string }>('koma.selectModel', [{ model: picked.model, kind: chosenKind }]);
  if (result && typeof result.error === 'string' && result.error) {
    void vscode.window.showErrorMessage(`Koma: could not select ${picked.model}: ${result.error}`);
    return undefined;
  }
  if (chosenKind === 'chat') {
    deps.statusBar.setModel(picked.model);
    deps.chat.setModel(picked.model);
  }
  void vscode.window.showInformationMessage(
    `Koma: ${picked.model} now serves ${chosenKind === 'chat' ? 'chat and code actions' : 'inline completions'}.`,
  );
  return picked.model;
}

async function lifecycle(deps: CommandDeps, action: 'preload' | 'unload', model?: unknown): Promise<unknown> {
  let name = typeof model === 'string' ? model : undefined;
  if (!name) {
    const models = cleanModels(await deps.client.execute('koma.models'));
    if (models.error) {
      throw new Error(models.error);
    }
    const items = lifecycleItems(models, action).map(toQuickPick);
    const picked = await vscode.window.showQuickPick(items, {
      title: action === 'preload' ? 'Koma: Preload Model' : 'Koma: Unload Model',
      placeHolder: action === 'preload' ? 'Load a model into memory now' : 'Free the memory a model holds',
    });
    if (!picked?.model) {
      return undefined;
    }
    name = picked.model;
  }
  const result = await deps.client.execute<{ ok?: boolean; message?: string }>(`koma.${action}`, [{ model: name }]);
  const text = result?.message || `${action === 'preload' ? 'Loaded' : 'Unloaded'} ${name}.`;
  if (result?.ok === false) {
    void vscode.window.showErrorMessage(`Koma: ${text}`);
  } else {
    void vscode.window.showInformationMessage(`Koma: ${text}`);
  }
  return result;
}

/** Read-only documents for the diagnostics report (virtual, so closing them asks nothing). */
class ReportContent implements vscode.TextDocumentContentProvider {
  static readonly scheme = 'koma-report';
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private text = '';

  set(uri: vscode.Uri, text: string): void {
    this.text = text;
    this.changed.fire(uri);
  }

  provideTextDocumentContent(): string {
    return this.text;
  }
}

const reports = new ReportContent();

async function showDiagnostics(deps: CommandDeps): Promise<void> {
  const report = await deps.client.execute<unknown>('koma.doctor');
  const uri = vscode.Uri.from({ scheme: ReportContent.scheme, path: '/Koma diagnostics.md' });
  reports.set(uri, doctorMarkdown(report));
  await vscode.commands.executeCommand('markdown.showPreview', uri);
}

async function statusMenu(deps: CommandDeps): Promise<void> {
  const actions: (vscode.QuickPickItem & { command: string; args?: unknown[] })[] = [
    { label: '$(comment-discussion) Open Chat', command: 'koma.openChat' },
    { label: '$(symbol-misc) Select Chat Model', command: 'koma.pickModel', args: ['chat'] },
    { label: '$(symbol-snippet) Select Completion Model', command: 'koma.pickModel', args: ['completion'] },
    { label: '$(cloud-download) Preload Model', command: 'koma.preloadModel' },
    { label: '$(close) Unload Model', command: 'koma.unloadModel' },
    { label: '$(pulse) Show Diagnostics', command: 'koma.showDiagnostics' },
    { label: '$(clear-all) Clear Cache', command: 'koma.clearResponseCache' },
    { label: '$(output) Show Server Log', command: 'koma.showLog' },
    { label: '$(debug-restart) Restart Server', command: 'koma.restartServer' },
  ];
  const picked = await vscode.window.showQuickPick(actions, {
    title: `Koma${deps.statusBar.model ? ` · ${deps.statusBar.model}` : ''}`,
    placeHolder: 'Model actions',
  });
  if (picked) {
    await vscode.commands.executeCommand(picked.command, ...(picked.args ?? []));
  }
}

export function registerCommands(context: vscode.ExtensionContext, deps: CommandDeps): void {
  context.subscriptions.push(vscode.workspace.registerTextDocumentContentProvider(ReportContent.scheme, reports));
  const register = (id: string, name: string, body: (...args: unknown[]) => Promise<unknown>): void => {
    context.subscriptions.push(vscode.commands.registerCommand(id, guarded(name, body)));
  };
  register('koma.openChat', 'Chat', () => showChat(deps.chat));
  register('koma.newChat', 'New Chat', async () => {
    deps.chat.newChat();
    await showChat(deps.chat);
  });
  register('koma.explainSelection', 'Explain Selection', () => explainSelection(deps));
  register('koma.pickModel', 'Select Model', (kind) => pickModel(deps, kind === 'chat' || kind === 'completion' ? kind : undefined));
  register('koma.preloadModel', 'Preload Model', (model) => lifecycle(deps, 'preload', model));
  register('koma.unloadModel', 'Unload Model', (model) => lifecycle(deps, 'unload', model));
  register('koma.showDiagnostics', 'Show Diagnostics', () => showDiagnostics(deps));
  register('koma.restartServer', 'Restart Server', () => deps.client.restart());
  register('koma.installServer', 'Install Server', () => installServer(context, deps.output, () => deps.client.restart()));
  register('koma.clearResponseCache', 'Clear Cache', async () => {
    const result = await deps.client.execute<{ cleared?: number }>('koma.clearCache');
    const count = typeof result?.cleared === 'number' ? result.cleared : 0;
    void vscode.window.showInformationMessage(`Koma: cleared ${count} cached response${count === 1 ? '' : 's'}.`);
  });
  register('koma.showLog', 'Show Server Log', async () => deps.output.show());
  register('koma.statusMenu', 'Model Actions', () => statusMenu(deps));
}

/**
 * The server program is missing: say where the extension looked (and what it would not run in
 * Restricted Mode), with a way to install it or point to it.
 */
export async function reportMissingServer(detail: string, discovery: Discovery | undefined, output: vscode.LogOutputChannel): Promise<void> {
  const message = discovery ? notFoundMessage(discovery) : `Koma: the language server was not found — ${detail} Install it here (Install…), or fix "koma.server.command".`;
  const choice = await vscode.window.showErrorMessage(message, 'Install…', 'Set Command', 'Show Log');
  if (choice === 'Install…') {
    await vscode.commands.executeCommand('koma.installServer');
  } else if (choice === 'Set Command') {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'koma.server.command');
  } else if (choice === 'Show Log') {
    output.show();
  }
}
