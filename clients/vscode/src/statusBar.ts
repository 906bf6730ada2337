/**
 * The status bar item: which model answers, whether it is loading or generating, how fast it
 * was. It is the user's first clue when something is slow or broken, so every state says what
 * is going on in its tooltip. The vscode objects are injected: this module is unit-tested.
 */
import type { CompletionRoute, ServerState, StatusPayload } from './protocol';

/** Where the server process is; `koma/status` only describes a running server. */
export type ServerPhase = 'starting' | 'running' | 'stopped' | 'missing';

export interface StatusLook {
  text: string;
  tooltip: string;
  /** Draw the item with the error background. */
  error: boolean;
  /** Draw the item with the warning background. */
  warning: boolean;
}

/** The subset of `vscode.StatusBarItem` the controller writes. */
export interface StatusItem {
  text: string;
  tooltip: unknown;
  command: unknown;
  name: string | undefined;
  backgroundColor: unknown;
  accessibilityInformation?: { label: string; role?: string };
  show(): void;
}

export interface StatusBarDeps {
  /** Turns Markdown into the tooltip object (a `vscode.MarkdownString`). */
  markdown(text: string): unknown;
  errorBackground: unknown;
  warningBackground: unknown;
  command: string;
}

function formatRate(tokensPerSecond: number | undefined): string {
  if (typeof tokensPerSecond !== 'number' || !Number.isFinite(tokensPerSecond) || tokensPerSecond <= 0) {
    return '';
  }
  return tokensPerSecond >= 10 ? `${Math.round(tokensPerSecond)} tok/s` : `${tokensPerSecond.toFixed(1)} tok/s`;
}

function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}

const ROUTE_NAMES: Record<string, string> = {
  fim: 'fill-in-the-middle',
  raw: 'raw continuation',
  chat: 'chat hole-filler',
};

/** The tooltip's ghost-text line: the route the latest completion took and why (pure). */
export function describeRoute(route: CompletionRoute | null | undefined): string {
  if (!route || typeof route.route !== 'string' || !route.route) {
    return '';
  }
  const name = ROUTE_NAMES[route.route] ?? escapeMarkdown(route.route);
  const endpoint = route.endpoint && route.endpoint !== route.route ? ` via \`${route.endpoint.replace(/`/g, '')}\`` : '';
  const model = route.model ? ` (\`${route.model.replace(/`/g, '')}\`)` : '';
  const why = route.why ? ` — ${escapeMarkdown(route.why)}` : '';
  return `\n\nGhost text: **${name}**${endpoint}${model}${why}`;
}

/** Text and tooltip for a server phase and its last status (pure). */
export function describeStatus(phase: ServerPhase, status: StatusPayload | undefined, lastRate?: number): StatusLook {
  const model = status?.model?.trim() || '';
  const name = model || 'Koma';
  const click = '\n\nClick for model actions.';
  if (phase === 'missing') {
    return {
      text: '$(warning) Koma',
      tooltip: 'Koma: the language server was not found. Run **Koma: Restart Server** after installing it, or set `koma.server.command`.',
      error: false,
      warning: true,
    };
  }
  if (phase === 'stopped') {
    return { text: '$(circle-slash) Koma', tooltip: `Koma: the language server is not running.${click}`, error: false, warning: true };
  }
  if (phase === 'starting' || !status) {
    return { text: '$(loading~spin) Koma', tooltip: 'Koma: starting the language server…', error: false, warning: false };
  }
  const where = `${status.provider ? `\n\n${escapeMarkdown(status.provider)}${status.baseUrl ? ` at ${escapeMarkdown(status.baseUrl)}` : ''}` : ''}${describeRoute(status.completionRoute)}`;
  const header = model ? `**Koma** · model \`${model.replace(/`/g, '')}\`` : '**Koma** · no model selected';
  switch (status.state) {
    case 'loading':
      return {
        text: `$(loading~spin) ${name} loading`,
        tooltip: `${header}\n\nLoading the model…${status.message ? ` ${escapeMarkdown(status.message)}` : ''}${where}${click}`,
        error: false,
        warning: false,
      };
    case 'generating': {
      const rate = formatRate(status.tokensPerSecond);
      const ttft = typeof status.ttftMs === 'number' ? `, first token after ${Math.round(status.ttftMs)} ms` : '';
      return {
        text: `$(sync~spin) ${name}${rate ? ` ${rate}` : ''}`,
        tooltip: `${header}\n\nGenerating${rate ? ` at ${rate}` : ''}${ttft}.${where}${click}`,
        error: false,
        warning: false,
      };
    }
    case 'error':
      return {
        text: `$(error) ${name}`,
        tooltip: `${header}\n\n${escapeMarkdown(status.message || 'The model backend reported an error.')}${where}${click}`,
        error: true,
        warning: false,
      };
    default: {
      const rate = formatRate(status.tokensPerSecond ?? lastRate);
      return {
        text: `$(sparkle) ${name}${rate ? ` · ${rate}` : ''}`,
        tooltip: `${header}\n\nIdle${rate ? ` (last answer ${rate})` : ''}.${where}${click}`,
        error: false,
        warning: false,
      };
    }
  }
}

/** Keeps the item in step with the server: phase changes and `koma/status` notifications. */
export class StatusBar {
  private phase: ServerPhase = 'starting';
  private status: StatusPayload | undefined;
  private lastRate: number | undefined;
  private shownTooltip = '';

  constructor(
    private readonly item: StatusItem,
    private readonly deps: StatusBarDeps,
  ) {
    item.name = 'Koma';
    item.command = deps.command;
    this.render();
    item.show();
  }

  /** The tooltip as Markdown source (what the item shows on hover). */
  get tooltip(): string {
    return this.shownTooltip;
  }

  /** The model the status currently names (for pickers that mark the current one). */
  get model(): string | undefined {
    return this.status?.model ?? undefined;
  }

  setPhase(phase: ServerPhase): void {
    this.phase = phase;
    if (phase !== 'running') {
      this.status = phase === 'starting' ? undefined : this.status;
    }
    this.render();
  }

  /** A `koma/status` notification or a `koma.status` answer; fields it omits keep their value. */
  update(payload: Partial<StatusPayload> | null | undefined): void {
    if (!payload || typeof payload !== 'object') {
      return;
    }
    this.phase = 'running';
    const state = payload.state ?? this.status?.state ?? 'idle';
    this.status = { ...this.status, ...payload, state };
    if (typeof payload.tokensPerSecond === 'number' && payload.tokensPerSecond > 0) {
      this.lastRate = payload.tokensPerSecond;
    }
    if (state !== 'generating' && payload.tokensPerSecond === undefined) {
      this.status.tokensPerSecond = undefined;
    }
    this.render();
  }

  /** The model changed by a picker before the server says so. */
  setModel(model: string): void {
    this.status = { ...(this.status ?? { state: 'idle' }), model };
    this.render();
  }

  private render(): void {
    const look = describeStatus(this.phase, this.status, this.lastRate);
    this.item.text = look.text;
    this.shownTooltip = look.tooltip;
    this.item.tooltip = this.deps.markdown(look.tooltip);
    this.item.backgroundColor = look.error ? this.deps.errorBackground : look.warning ? this.deps.warningBackground : undefined;
    this.item.accessibilityInformation = { label: look.text.replace(/\$\([^)]*\)\s*/g, 'Koma status: ') };
  }
}

/**
 * When to ask `koma.status` again: the completion route is known only after a completion ran,
 * and `koma/status` notifications do not carry it. So once a generation ends the answer is
 * fetched — at most once per `minGapMs` (ghost text ends a generation every few keystrokes),
 * one at a time, and a generation that ended inside the gap is caught up once the gap is over.
 */
export class RouteRefresh {
  private last = Number.NEGATIVE_INFINITY;
  private busy = false;
  private queued = false;
  private again = false;
  private wasGenerating = false;

  constructor(
    private readonly fetch: () => Promise<void>,
    private readonly now: () => number = Date.now,
    private readonly later: (run: () => void, ms: number) => void = (run, ms) => void setTimeout(run, ms),
    private readonly minGapMs = 5000,
  ) {}

  /** A `koma/status` notification's state. */
  onState(state: ServerState | undefined): void {
    if (state === undefined) {
      return;
    }
    const ended = this.wasGenerating && state !== 'generating';
    this.wasGenerating = state === 'generating';
    if (ended) {
      this.request();
    }
  }

  private request(): void {
    if (this.busy) {
      this.again = true; // asked while a fetch runs: once more after it
      return;
    }
    if (this.queued) {
      return;
    }
    const wait = this.last + this.minGapMs - this.now();
    if (wait > 0) {
      this.queued = true;
      this.later(() => {
        this.queued = false;
        this.request();
      }, wait);
      return;
    }
    this.last = this.now();
    this.busy = true;
    void this.fetch()
      .catch(() => undefined)
      .finally(() => {
        this.busy = false;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }
}
