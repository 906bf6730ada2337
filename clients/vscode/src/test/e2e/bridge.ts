/**
 * The tests run inside code-server's extension host, but what a user sees lives in the browser
 * page. The driver (scripts/run-e2e.mjs) serves a small loopback HTTP "bridge" that performs
 * real keyboard input, DOM queries and screenshots with Playwright; its URL is in
 * `bridge.json` next to the test workspace.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

export type Frame = 'page' | 'chat';

export interface Found {
  text: string;
  count: number;
  attributes?: Record<string, string | null>;
}

export class Bridge {
  private constructor(private readonly url: string) {}

  static fromWorkspace(): Bridge {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    if (!folder) {
      throw new Error('the e2e tests need the fixture workspace open');
    }
    const info = JSON.parse(readFileSync(path.join(path.dirname(folder), 'bridge.json'), 'utf8')) as { url: string };
    return new Bridge(info.url);
  }

  private async call<T>(op: string, args: Record<string, unknown>): Promise<T> {
    const response = await fetch(this.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ op, ...args }),
    });
    const body = (await response.json()) as { ok: boolean; result?: T; error?: string };
    if (!body.ok) {
      throw new Error(`bridge ${op} failed: ${body.error}`);
    }
    return body.result as T;
  }

  /** Real key presses, e.g. `Tab`, `Control+.`; focus decides where they go. */
  press(key: string, selector?: string, frame: Frame = 'page'): Promise<void> {
    return this.call('press', { key, selector, frame });
  }

  /** Type text key by key into the focused element (the editor), as a user would. */
  type(text: string, delayMs = 40): Promise<void> {
    return this.call('type', { text, delayMs });
  }

  fill(selector: string, text: string, frame: Frame = 'page'): Promise<void> {
    return this.call('fill', { selector, text, frame });
  }

  click(selector: string, options: { frame?: Frame; hasText?: string } = {}): Promise<void> {
    return this.call('click', { selector, frame: options.frame ?? 'page', hasText: options.hasText });
  }

  /** Wait until an element matching the selector (and text) is visible; returns its text. */
  waitFor(
    selector: string,
    options: { frame?: Frame; hasText?: string; timeoutMs?: number; attributes?: string[] } = {},
  ): Promise<Found> {
    return this.call('waitFor', {
      selector,
      frame: options.frame ?? 'page',
      hasText: options.hasText,
      timeoutMs: options.timeoutMs ?? 30_000,
      attributes: options.attributes ?? [],
    });
  }

  /** Texts of every element matching the selector right now (no waiting). */
  texts(selector: string, frame: Frame = 'page'): Promise<string[]> {
    return this.call('texts', { selector, frame });
  }

  /** Evaluate a JavaScript expression in the page or the chat webview; returns its JSON value. */
  evaluate<T>(expression: string, frame: Frame = 'page'): Promise<T> {
    return this.call('evaluate', { expression, frame });
  }

  /** Save a screenshot (of an element, when given) under the run's artifacts directory. */
  screenshot(name: string, selector?: string, options: { frame?: Frame; maxWidth?: number; maxHeight?: number } = {}): Promise<string> {
    return this.call('screenshot', { name, selector, frame: options.frame ?? 'page', maxWidth: options.maxWidth, maxHeight: options.maxHeight });
  }
}

/** Poll until `check` returns a value (not undefined/false) or the time runs out. */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) {
        return value;
      }
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
