/**
 * The chat panel's conversation: turns built from the server's `koma/chat/event` stream.
 *
 * The one rule that matters: text on a reasoning channel (`thinking`, `analysis`) goes to the
 * turn's reasoning and never to its answer; only `final` text is the answer. Pure (no vscode
 * import), so the routing of events to turns is unit-tested.
 *
 * Routing: the client names each conversation itself (docs/protocol.md: an unknown `chatId`
 * starts a conversation under that id), so every event can be matched to the turn streaming
 * under its id without guessing. An event for an id nobody asked for (an Explain started through
 * some other path) gets a turn of its own rather than being dropped; a late event for a finished
 * turn is ignored.
 */
import { randomUUID } from 'node:crypto';

import { renderMarkdown } from './markdown';
import {
  REASONING_CHANNELS,
  type Channel,
  type ChatEvent,
  type ChatMetrics,
  type ChatReply,
  type ToolView,
  type TurnView,
} from './protocol';

export interface Turn {
  id: number;
  prompt: string;
  chatId?: string;
  reasoning: string;
  commentary: string;
  answer: string;
  tools: ToolView[];
  state: TurnView['state'];
  error?: string;
  /** A note from the server, e.g. "the model returned no answer". */
  warning?: string;
  metrics?: ChatMetrics;
  /** Channel of the last delta, to separate reasoning segments interrupted by tool calls. */
  lastChannel?: Channel;
}

const MAX_TOOL_TEXT = 4000;

function clip(text: string): string {
  return text.length > MAX_TOOL_TEXT ? `${text.slice(0, MAX_TOOL_TEXT)}\n… (${text.length - MAX_TOOL_TEXT} more characters)` : text;
}

function describeArguments(args: unknown): string {
  if (args === undefined || args === null) {
    return '';
  }
  if (typeof args === 'string') {
    return clip(args);
  }
  try {
    return clip(JSON.stringify(args));
  } catch {
    return String(args);
  }
}

function isReasoning(channel: Channel | undefined): boolean {
  return channel !== undefined && REASONING_CHANNELS.includes(channel);
}

export class ChatSession {
  readonly turns: Turn[] = [];
  /** The server's id of the conversation the next message continues. */
  conversationId: string | undefined;
  private nextId = 1;
  private readonly streaming = new Map<string, Turn>();

  constructor(private readonly newChatId: () => string = () => `vscode-${randomUUID()}`) {}

  /** Begin a turn for a message about to be sent; returns it with the chatId to send. */
  start(prompt: string): Turn {
    this.conversationId ??= this.newChatId();
    const turn: Turn = {
      id: this.nextId++,
      prompt,
      chatId: this.conversationId,
      reasoning: '',
      commentary: '',
      answer: '',
      tools: [],
      state: 'waiting',
    };
    this.turns.push(turn);
    this.streaming.set(this.conversationId, turn);
    return turn;
  }

  /** True while any turn is still waiting for or receiving its answer. */
  get busy(): boolean {
    return this.turns.some((t) => t.state === 'waiting' || t.state === 'streaming');
  }

  /** Apply one server event; returns the turn it changed, or undefined when it was stale. */
  apply(event: ChatEvent): Turn | undefined {
    if (!event || typeof event.chatId !== 'string') {
      return undefined;
    }
    const turn = this.turnFor(event.chatId);
    if (!turn || turn.state === 'cancelled' || turn.state === 'done' || turn.state === 'error') {
      return undefined;
    }
    if (turn.state === 'waiting') {
      turn.state = 'streaming';
    }
    switch (event.type) {
      case 'channelStart':
        if (isReasoning(event.channel) && turn.reasoning && !isReasoning(turn.lastChannel)) {
          turn.reasoning += '\n\n';
        }
        turn.lastChannel = event.channel;
        break;
      case 'delta':
        this.appendText(turn, event.channel ?? 'final', event.text ?? '');
        break;
      case 'channelEnd':
        break;
      case 'toolCall':
        if (event.tool) {
          turn.tools.push({
            id: String(event.tool.id ?? ''),
            name: String(event.tool.name ?? 'tool'),
            arguments: describeArguments(event.tool.arguments),
            state: 'running',
          });
          turn.lastChannel = undefined;
        }
        break;
      case 'toolResult':
        if (event.tool) {
          const result = event.tool;
          const tool =
            turn.tools.find((t) => t.id === String(result.id) && t.state === 'running') ??
            [...turn.tools].reverse().find((t) => t.name === result.name && t.state === 'running');
          const text = clip(typeof result.content === 'string' ? result.content : describeArguments(result.content));
          if (tool) {
            tool.state = result.ok === false ? 'failed' : 'ok';
            tool.result = text;
          } else {
            turn.tools.push({
              id: String(result.id ?? ''),
              name: String(result.name ?? 'tool'),
              arguments: '',
              state: result.ok === false ? 'failed' : 'ok',
              result: text,
            });
          }
        }
        break;
      case 'done':
        this.reconcile(turn, event.result?.text, event.result?.channels);
        turn.metrics = event.metrics ?? turn.metrics;
        turn.state = event.cancelled ? 'cancelled' : 'done';
        this.release(turn);
        break;
      case 'error':
        turn.state = 'error';
        turn.error = event.message || 'The server reported an error.';
        this.release(turn);
        break;
      default:
        return undefined;
    }
    return turn;
  }

  /**
   * The `koma.chat` request answered: fill anything the events missed and close the turn. The
   * reply reports failures as fields (`error`, `cancelled`, `warning`), never as exceptions.
   */
  complete(turn: Turn, reply: ChatReply | null | undefined): void {
    if (reply && typeof reply.chatId === 'string' && reply.chatId && reply.chatId !== turn.chatId) {
      this.release(turn);
      turn.chatId = reply.chatId;
      this.conversationId = reply.chatId;
    }
    if (reply && typeof reply.warning === 'string' && reply.warning) {
      turn.warning = reply.warning;
    }
    if (turn.state === 'waiting' || turn.state === 'streaming') {
      this.reconcile(turn, reply?.text, reply?.channels);
      turn.metrics = reply?.metrics ?? turn.metrics;
      if (reply && typeof reply.error === 'string' && reply.error) {
        turn.state = 'error';
        turn.error = reply.error;
      } else {
        turn.state = reply?.cancelled ? 'cancelled' : 'done';
      }
    }
    this.release(turn);
  }

  /** The request failed (server error, server gone): show why on the turn. */
  fail(turn: Turn, message: string): void {
    if (turn.state === 'waiting' || turn.state === 'streaming') {
      turn.state = 'error';
      turn.error = message;
    }
    this.release(turn);
  }

  /** The user pressed Stop: keep what arrived, ignore what follows. */
  cancel(turn: Turn): void {
    if (turn.state === 'waiting' || turn.state === 'streaming') {
      turn.state = 'cancelled';
    }
    this.release(turn);
  }

  /** The turn still in flight, if any (what Stop stops). */
  activeTurn(): Turn | undefined {
    return [...this.turns].reverse().find((t) => t.state === 'waiting' || t.state === 'streaming');
  }

  /** Forget everything: the next message starts a new conversation on the server. */
  reset(): void {
    for (const turn of this.turns) {
      this.cancel(turn);
    }
    this.turns.length = 0;
    this.conversationId = undefined;
    this.streaming.clear();
  }

  private turnFor(chatId: string): Turn | undefined {
    const known = this.streaming.get(chatId);
    if (known) {
      return known;
    }
    if (this.turns.some((t) => t.chatId === chatId)) {
      return undefined; // a late event for a finished turn
    }
    const external = this.start('Explain (code action)');
    this.streaming.delete(external.chatId as string);
    external.chatId = chatId;
    this.conversationId = chatId;
    this.streaming.set(chatId, external);
    return external;
  }

  private release(turn: Turn): void {
    if (turn.chatId && this.streaming.get(turn.chatId) === turn) {
      this.streaming.delete(turn.chatId);
    }
  }

  private appendText(turn: Turn, channel: Channel, text: string): void {
    if (!text) {
      return;
    }
    if (isReasoning(channel)) {
      if (turn.reasoning && !isReasoning(turn.lastChannel)) {
        turn.reasoning += '\n\n';
      }
      turn.reasoning += text;
    } else if (channel === 'commentary') {
      turn.commentary += text;
    } else {
      turn.answer += text;
    }
    turn.lastChannel = channel;
  }

  /** After the stream: a final text or channel the deltas did not carry fills the gap. */
  private reconcile(turn: Turn, text: string | undefined, channels: Partial<Record<Channel, string>> | undefined): void {
    const final = typeof text === 'string' && text ? text : channels?.final;
    if (!turn.answer && final) {
      turn.answer = final;
    }
    if (!turn.reasoning && channels) {
      turn.reasoning = REASONING_CHANNELS.map((c) => channels[c] ?? '')
        .filter((s) => s)
        .join('\n\n');
    }
  }
}

/** What the webview draws for a turn (Markdown rendered here, in the extension host). */
export function turnView(turn: Turn): TurnView {
  return {
    id: turn.id,
    prompt: turn.prompt,
    reasoning: turn.reasoning,
    reasoningHtml: renderMarkdown(turn.reasoning),
    commentary: turn.commentary,
    answerHtml: renderMarkdown(turn.answer),
    answerText: turn.answer,
    tools: turn.tools.map((t) => ({ ...t })),
    state: turn.state,
    error: turn.error,
    warning: turn.warning,
    metrics: turn.metrics,
  };
}
