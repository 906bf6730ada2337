/**
 * Koma for VS Code: wires the language client, the chat panel, the status bar and the commands.
 * All model logic is in the server (`koma lsp`); this file only connects parts, and every
 * registration goes to `context.subscriptions` so deactivation cleans up.
 */
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

import { ChatViewProvider, type ChatBackend, type ChatHost, type ExplainRequest } from './chatView';
import { KomaClient } from './client';
import { registerCommands, reportMissingServer } from './commands';
import { installedVenv } from './installServer';
import { cleanModels } from './models';
import type { ChatReply, ChatViewState, ModelsReply } from './protocol';
import { debounce, needsRestart } from './settings';
import { StatusBar, type StatusItem } from './statusBar';

/** What `activate` returns: lets the end-to-end tests wait for the server and read the panel. */
export interface KomaApi {
  whenReady(): Promise<void>;
  chatState(): ChatViewState;
  statusText(): string;
  /** The server program running (or last tried) and how it was found. */
  serverLaunch(): { command: string; source: string } | undefined;
  /** The status bar item's tooltip, as Markdown source. */
  statusTooltip(): string;
  /** The insert texts of the server's latest non-empty inline-completion answer. */
  lastSuggestions(): string[];
}

function chatHost(context: vscode.ExtensionContext): ChatHost {
  const media = vscode.Uri.joinPath(context.extensionUri, 'media');
  return {
    editorContext() {
      const editor = vscode.window.activeTextEditor;
      if (!editor || !['file', 'untitled'].includes(editor.document.uri.scheme)) {
        return undefined;
      }
      const s = editor.selection;
      const uri = editor.document.uri.toString();
      if (s.isEmpty) {
        return { uri };
      }
      return {
        uri,
        range: { start: { line: s.start.line, character: s.start.character }, end: { line: s.end.line, character: s.end.character } },
      };
    },
    async insertAtCursor(code) {
      const editor = vscode.window.visibleTextEditors.find((e) => e === vscode.window.activeTextEditor) ?? vscode.window.visibleTextEditors[0];
      if (!editor) {
        return false;
      }
      return editor.edit((builder) => {
        for (const selection of editor.selections) {
          builder.replace(selection, code);
        }
      });
    },
    async copy(code) {
      await vscode.env.clipboard.writeText(code);
    },
    showError(message) {
      void vscode.window.showErrorMessage(message);
    },
    newCancellation() {
      const source = new vscode.CancellationTokenSource();
      return { token: source.token, cancel: () => source.cancel(), dispose: () => source.dispose() };
    },
    scriptUri: (webview) => webview.asWebviewUri(vscode.Uri.joinPath(media, 'chat.js')),
    styleUri: (webview) => webview.asWebviewUri(vscode.Uri.joinPath(media, 'chat.css')),
    localRoots: () => [media],
    nonce: () => randomBytes(16).toString('base64'),
  };
}

let running: KomaClient | undefined;

/** "Explain calc.py:1-3" for the chat transcript, from the action's arguments. */
function explainLabel(request: ExplainRequest | undefined): string {
  try {
    const file = vscode.workspace.asRelativePath(vscode.Uri.parse(request?.uri ?? ''));
    const start = (request?.range?.start.line ?? 0) + 1;
    const end = (request?.range?.end.line ?? start - 1) + 1;
    return `Explain ${file}:${start}${end > start ? `-${end}` : ''}`;
  } catch {
    return 'Explain (code action)';
  }
}

export function activate(context: vscode.ExtensionContext): KomaApi {
  const output = vscode.window.createOutputChannel('Koma', { log: true });
  context.subscriptions.push(output);

  const item = vscode.window.createStatusBarItem('koma.status', vscode.StatusBarAlignment.Right, 100);
  context.subscriptions.push(item);
  const statusBar = new StatusBar(item as StatusItem, {
    markdown: (text) => new vscode.MarkdownString(text),
    errorBackground: new vscode.ThemeColor('statusBarItem.errorBackground'),
    warningBackground: new vscode.ThemeColor('statusBarItem.warningBackground'),
    command: 'koma.statusMenu',
  });

  let markReady: () => void = () => undefined;
  let readyPromise = new Promise<void>((resolve) => (markReady = resolve));
  // The panel needs the client and the client's hooks need the panel: a late-bound reference.
  const panel: { chat?: ChatViewProvider } = {};

  const client = new KomaClient(
    output,
    {
      onChatEvent: (event) => panel.chat?.onChatEvent(event),
      onStatus: (status) => statusBar.update(status),
      onPhase: (phase) => {
        statusBar.setPhase(phase);
        if (phase === 'starting') {
          readyPromise = new Promise<void>((resolve) => (markReady = resolve));
        }
      },
      // The lightbulb's "Koma: Explain": show the panel, then stream the explanation into it.
      explain: async (args) => {
        await vscode.commands.executeCommand('koma.chatView.focus');
        const request = args as ExplainRequest;
        return panel.chat?.explain(request, explainLabel(request));
      },
      onReady: () => {
        markReady();
        void panel.chat?.refreshModels();
      },
    },
    (detail, discovery) => void reportMissingServer(detail, discovery, output),
    context.workspaceState,
    installedVenv(context),
  );
  context.subscriptions.push(client);
  running = client;

  const backend: ChatBackend = {
    chat: (request, token) => client.execute<ChatReply>('koma.chat', [request], token),
    explain: (request, token) => client.execute<ChatReply>('koma.explain', [request], token),
    cancel: async (chatId) => {
      await client.execute('koma.chat.cancel', [{ chatId }]);
    },
    models: async (): Promise<ModelsReply> => cleanModels(await client.execute('koma.models')),
    selectModel: async (model) => {
      const result = await client.execute<{ error?: string }>('koma.selectModel', [{ model, kind: 'chat' }]);
      if (result && typeof result.error === 'string' && result.error) {
        throw new Error(result.error);
      }
      statusBar.setModel(model);
    },
    isReady: () => client.ready,
  };
  const chat = new ChatViewProvider(backend, chatHost(context));
  panel.chat = chat;
  context.subscriptions.push(vscode.window.registerWebviewViewProvider(ChatViewProvider.viewType, chat));

  registerCommands(context, { client, chat, statusBar, output });

  // Server settings need a new process; the others go to the running server, which re-reads them.
  const restartSoon = debounce(() => void client.restart(), 800);
  context.subscriptions.push({ dispose: () => restartSoon.cancel() });
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (!event.affectsConfiguration('koma')) {
        return;
      }
      if (needsRestart((section) => event.affectsConfiguration(section))) {
        restartSoon();
        return;
      }
      if (event.affectsConfiguration('koma.trace.server')) {
        void client.setTrace(vscode.workspace.getConfiguration('koma').get<string>('trace.server') ?? 'off');
      }
      void client.settingsChanged();
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(() => void client.workspaceTrustGranted()),
  );

  void client.start();

  return {
    whenReady: () => readyPromise,
    chatState: () => chat.state(),
    statusText: () => item.text,
    serverLaunch: () => (client.launch ? { command: client.launch.command, source: client.launch.source } : undefined),
    statusTooltip: () => statusBar.tooltip,
    lastSuggestions: () => client.lastSuggestions,
  };
}

/** Stop the server cleanly (shutdown/exit) before the extension host goes away. */
export function deactivate(): Promise<void> | undefined {
  return running?.stop();
}
