/**
 * Shapes of the messages Koma's language server sends and answers (docs/protocol.md), and of the
 * messages between the chat webview and the extension. Types only: both the extension bundle and
 * the webview script (through JSDoc) use them, so they must not import anything at run time.
 */

export type Channel = 'thinking' | 'analysis' | 'commentary' | 'final';

/** Reasoning channels are shown apart from (and collapsed above) the answer. */
export const REASONING_CHANNELS: readonly Channel[] = ['thinking', 'analysis'];

export interface ToolCallInfo {
  id: string;
  name: string;
  arguments?: unknown;
}

export interface ToolResultInfo {
  id: string;
  name: string;
  ok: boolean;
  content?: string;
}

export interface ChatMetrics {
  ttftMs?: number;
  tokensPerSecond?: number;
  totalMs?: number;
}

export interface ChatResultPayload {
  text?: string;
  channels?: Partial<Record<Channel, string>>;
}

/** `koma/chat/event` notification params. */
export interface ChatEvent {
  chatId: string;
  type: 'channelStart' | 'delta' | 'channelEnd' | 'toolCall' | 'toolResult' | 'done' | 'error';
  channel?: Channel;
  text?: string;
  tool?: ToolCallInfo & Partial<ToolResultInfo>;
  result?: ChatResultPayload;
  metrics?: ChatMetrics;
  message?: string;
  /** On `done`: the turn was stopped by `koma.chat.cancel`; `result` holds the partial answer. */
  cancelled?: boolean;
}

/** `koma.chat` / `koma.explain` return value. */
export interface ChatReply {
  chatId: string;
  text: string;
  channels?: Partial<Record<Channel, string>>;
  metrics?: ChatMetrics;
  /** Why the turn failed; an `error` event with the same message was sent. */
  error?: string;
  /** Stopped by `koma.chat.cancel`; `text` holds the partial answer. */
  cancelled?: boolean;
  /** E.g. "the model returned no answer". */
  warning?: string;
}

export type ServerState = 'idle' | 'loading' | 'generating' | 'error';

/** `koma/status` notification params (also the base of `koma.status`'s answer). */
export interface StatusPayload {
  state: ServerState;
  model?: string | null;
  tokensPerSecond?: number;
  ttftMs?: number;
  message?: string;
  provider?: string;
  baseUrl?: string;
  /** `koma.status` only: how the latest ghost text asked its model; null before the first. */
  completionRoute?: CompletionRoute | null;
}

/** The inline-completion route (protocol.md, `koma.status`): fim, raw or chat, and why. */
export interface CompletionRoute {
  route: string;
  why?: string;
  endpoint?: string;
  model?: string;
}

export interface ModelEntry {
  name: string;
  loaded?: boolean;
  sizeBytes?: number;
  quantization?: string;
  capabilities?: string[];
  contextLength?: number;
}

/** `koma.models` answer. */
export interface ModelsReply {
  models: ModelEntry[];
  current?: { model?: string | null; completionModel?: string | null };
  /** Set when the provider could not be asked (models is then empty). */
  error?: string;
}

export type ModelKind = 'chat' | 'completion';

// ---- chat webview <-> extension ---------------------------------------------------------------

export interface ToolView {
  id: string;
  name: string;
  arguments: string;
  state: 'running' | 'ok' | 'failed';
  result?: string;
}

/** One question and its answer, as the webview draws it (Markdown already rendered safely). */
export interface TurnView {
  id: number;
  prompt: string;
  reasoning: string;
  reasoningHtml: string;
  commentary: string;
  answerHtml: string;
  answerText: string;
  tools: ToolView[];
  state: 'waiting' | 'streaming' | 'done' | 'error' | 'cancelled';
  error?: string;
  warning?: string;
  metrics?: ChatMetrics;
}

export interface ChatViewState {
  turns: TurnView[];
  busy: boolean;
  models: string[];
  model?: string;
  serverReady: boolean;
}

export type ToWebview =
  | { type: 'state'; state: ChatViewState }
  | { type: 'turn'; turn: TurnView; busy: boolean }
  | { type: 'models'; models: string[]; model?: string }
  | { type: 'focusInput' };

export type FromWebview =
  | { type: 'ready' }
  | { type: 'send'; text: string }
  | { type: 'stop' }
  | { type: 'newChat' }
  | { type: 'selectModel'; model: string }
  | { type: 'copy'; code: string }
  | { type: 'insert'; code: string };
