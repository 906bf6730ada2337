/**
 * The **Koma** chat panel: a webview view whose script (media/chat.js) only draws what this
 * provider sends and reports clicks. The conversation lives here, in the extension host
 * (`ChatSession`), so hiding and showing the view — which destroys the webview — loses nothing:
 * the full state is sent again when the webview says it is ready.
 *
 * Security: a strict Content-Security-Policy (no inline script, one nonce, no remote loads), and
 * Markdown rendered by markdown.ts with raw HTML escaped. vscode runtime objects are injected, so
 * this module only imports vscode types.
 */
import type * as vscode from 'vscode';

import { ChatSession, turnView, type Turn } from './chatModel';
import type { ChatEvent, ChatReply, ChatViewState, FromWebview, ModelsReply, ToWebview } from './protocol';

export interface Range {
  start: { line: number; character: number };
  end: { line: number; character: number };
}

export interface ChatRequest {
  chatId?: string;
  message: string;
  uri?: string;
  range?: Range;
}

export interface ExplainRequest {
  uri: string;
  range: Range;
  chatId?: string;
}

export interface Cancellation {
  token: vscode.CancellationToken;
  cancel(): void;
  dispose(): void;
}

/** What the panel needs from the language client. */
export interface ChatBackend {
  chat(request: ChatRequest, token: vscode.CancellationToken): Promise<ChatReply>;
  explain(request: ExplainRequest, token: vscode.CancellationToken): Promise<ChatReply>;
  cancel(chatId: string): Promise<void>;
  models(): Promise<ModelsReply>;
  selectModel(model: string): Promise<void>;
  isReady(): boolean;
}

/** What the panel needs from the editor and the vscode API. */
export interface ChatHost {
  /** The active editor's document and selection (empty range: just the file), if any. */
  editorContext(): { uri: string; range?: Range } | undefined;
  insertAtCursor(code: string): Promise<boolean>;
  copy(code: string): Promise<void>;
  showError(message: string): void;
  newCancellation(): Cancellation;
  scriptUri(webview: vscode.Webview): vscode.Uri;
  styleUri(webview: vscode.Webview): vscode.Uri;
  localRoots(): vscode.Uri[];
  nonce(): string;
}

/** The panel HTML: strict CSP, one nonce for the one script, no inline handlers. */
export function chatHtml(options: { cspSource: string; nonce: string; scriptUri: string; styleUri: string }): string {
  const { cspSource, nonce, scriptUri, styleUri } = options;
  const csp = [
    "default-src 'none'",
    `style-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
    `img-src ${cspSource} data:`,
    `font-src ${cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${styleUri}" rel="stylesheet">
<title>Koma Chat</title>
</head>
<body>
<div id="koma-chat">
  <header class="toolbar">
    <label class="model-label" for="model-select">Model</label>
    <select id="model-select" title="Model for chat and code actions"></select>
    <button id="new-chat" type="button" class="secondary" title="Start a new conversation">New chat</button>
  </header>
  <main id="transcript" aria-live="polite"></main>
  <div id="empty" class="empty">Ask Koma about your code. The open file and selection go along as context.</div>
  <form id="composer">
    <textarea id="prompt" rows="3" placeholder="Ask Koma… (Enter to send, Shift+Enter for a new line)" aria-label="Message"></textarea>
    <div class="composer-actions">
      <span id="hint" class="hint"></span>
      <button id="stop" type="button" class="secondary" hidden>Stop</button>
      <button id="send" type="submit">Send</button>
    </div>
  </form>
</div>
<script nonce="${nonce}" src="${scriptUri}"></script>
</body>
</html>`;
}

/** Throttle for streaming updates: at most one redraw of a turn per this many milliseconds. */
const REDRAW_MS = 40;

export class ChatViewProvider implements vscode.WebviewViewProvider {
  static readonly viewType = 'koma.chatView';

  private readonly session = new ChatSession();
  private view: vscode.WebviewView | undefined;
  private ready = false;
  private models: string[] = [];
  private model: string | undefined;
  private readonly inflight = new Map<number, Cancellation>();
  private readonly pending = new Set<Turn>();
  private redrawTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly backend: ChatBackend,
    private readonly host: ChatHost,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    this.ready = false;
    view.webview.options = { enableScripts: true, localResourceRoots: this.host.localRoots() };
    view.webview.html = chatHtml({
      cspSource: view.webview.cspSource,
      nonce: this.host.nonce(),
      scriptUri: this.host.scriptUri(view.webview).toString(),
      styleUri: this.host.styleUri(view.webview).toString(),
    });
    view.webview.onDidReceiveMessage((message: FromWebview) => this.onMessage(message));
    view.onDidDispose(() => {
      if (this.view === view) {
        this.view = undefined;
        this.ready = false;
      }
    });
    view.onDidChangeVisibility(() => {
      if (view.visible) {
        void this.refreshModels();
      }
    });
  }

  /** Conversation state as the webview sees it (also used by the end-to-end tests). */
  state(): ChatViewState {
    return {
      turns: this.session.turns.map(turnView),
      busy: this.session.busy,
      models: this.models,
      model: this.model,
      serverReady: this.backend.isReady(),
    };
  }

  /** Send a message as if typed in the panel. */
  async send(text: string): Promise<void> {
    const message = text.trim();
    if (!message) {
      return;
    }
    const context = this.host.editorContext();
    const turn = this.session.start(message);
    const request: ChatRequest = { message };
    if (turn.chatId) {
      request.chatId = turn.chatId;
    }
    if (context) {
      request.uri = context.uri;
      if (context.range) {
        request.range = context.range;
      }
    }
    await this.run(turn, (token) => this.backend.chat(request, token));
  }

  /** Explain a selection (command or code action); the answer streams into the panel. */
  async explain(request: ExplainRequest, label = 'Explain the selection'): Promise<ChatReply | undefined> {
    const turn = this.session.start(label);
    const args: ExplainRequest = { ...request };
    if (turn.chatId) {
      args.chatId = turn.chatId;
    }
    return this.run(turn, (token) => this.backend.explain(args, token));
  }

  /** A `koma/chat/event` notification. */
  onChatEvent(event: ChatEvent): void {
    const turn = this.session.apply(event);
    if (turn) {
      this.schedule(turn);
    }
  }

  /** Stop the answer being generated: cancel the request and tell the server by chatId. */
  async stop(): Promise<void> {
    const turn = this.session.activeTurn();
    if (!turn) {
      return;
    }
    this.inflight.get(turn.id)?.cancel();
    const chatId = turn.chatId;
    this.session.cancel(turn);
    this.redraw(turn);
    if (chatId) {
      try {
        await this.backend.cancel(chatId);
      } catch {
        // The request's own cancellation already stopped it; nothing more to tell the user.
      }
    }
  }

  newChat(): void {
    void this.stop();
    this.session.reset();
    this.postState();
  }

  /** Models for the picker, refreshed when the view shows or the server (re)starts. */
  async refreshModels(): Promise<void> {
    if (!this.backend.isReady()) {
      return;
    }
    try {
      const reply = await this.backend.models();
      this.models = reply.models.map((m) => m.name);
      this.model = reply.current?.model ?? this.model;
      this.post({ type: 'models', models: this.models, model: this.model });
    } catch {
      // The status bar reports a broken backend; the picker just stays as it was.
    }
  }

  /** Another picker changed the model: keep the panel's picker in step. */
  setModel(model: string | undefined): void {
    this.model = model;
    this.post({ type: 'models', models: this.models, model });
  }

  focusInput(): void {
    this.post({ type: 'focusInput' });
  }

  private async run(turn: Turn, call: (token: vscode.CancellationToken) => Promise<ChatReply>): Promise<ChatReply | undefined> {
    this.redraw(turn);
    if (!this.backend.isReady()) {
      this.session.fail(turn, 'The Koma language server is not running. See the Koma output channel, or run "Koma: Restart Server".');
      this.redraw(turn);
      return undefined;
    }
    const cancellation = this.host.newCancellation();
    this.inflight.set(turn.id, cancellation);
    try {
      const reply = await call(cancellation.token);
      this.session.complete(turn, reply);
      return reply;
    } catch (error) {
      if (turn.state !== 'cancelled') {
        this.session.fail(turn, error instanceof Error ? error.message : String(error));
      }
      return undefined;
    } finally {
      this.inflight.delete(turn.id);
      cancellation.dispose();
      this.redraw(turn);
    }
  }

  private onMessage(message: FromWebview): void {
    if (!message || typeof message !== 'object') {
      return;
    }
    switch (message.type) {
      case 'ready':
        this.ready = true;
        this.postState();
        void this.refreshModels();
        break;
      case 'send':
        if (typeof message.text === 'string') {
          void this.send(message.text);
        }
        break;
      case 'stop':
        void this.stop();
        break;
      case 'newChat':
        this.newChat();
        break;
      case 'selectModel':
        if (typeof message.model === 'string' && message.model) {
          this.model = message.model;
          this.backend.selectModel(message.model).catch((error: unknown) => {
            this.host.showError(`Koma could not select ${message.model}: ${error instanceof Error ? error.message : String(error)}`);
          });
        }
        break;
      case 'copy':
        if (typeof message.code === 'string') {
          void this.host.copy(message.code);
        }
        break;
      case 'insert':
        if (typeof message.code === 'string') {
          void this.host.insertAtCursor(message.code).then((ok) => {
            if (!ok) {
              this.host.showError('Open a file in the editor to insert the code at its cursor.');
            }
          });
        }
        break;
      default:
        break;
    }
  }

  private schedule(turn: Turn): void {
    this.pending.add(turn);
    if (turn.state !== 'streaming' && turn.state !== 'waiting') {
      this.flush();
      return;
    }
    if (this.redrawTimer === undefined) {
      this.redrawTimer = setTimeout(() => this.flush(), REDRAW_MS);
    }
  }

  private flush(): void {
    if (this.redrawTimer !== undefined) {
      clearTimeout(this.redrawTimer);
      this.redrawTimer = undefined;
    }
    const turns = [...this.pending];
    this.pending.clear();
    for (const turn of turns) {
      this.redraw(turn);
    }
  }

  private redraw(turn: Turn): void {
    this.post({ type: 'turn', turn: turnView(turn), busy: this.session.busy });
  }

  private postState(): void {
    this.post({ type: 'state', state: this.state() });
  }

  private post(message: ToWebview): void {
    if (this.view && this.ready) {
      void this.view.webview.postMessage(message);
    }
  }
}
