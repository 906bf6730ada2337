/**
 * Koma in a real VS Code (code-server 1.100 under headless Chromium), against the real
 * `koma lsp` and the loopback Ollama simulator (fixtures/sim-script.json). Each test checks what
 * a user sees on screen — ghost text, the code action menu, the chat webview, the status bar —
 * and what ends up in the document.
 */
import * as assert from 'node:assert/strict';
import { existsSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

import { Bridge, eventually } from './bridge';

interface KomaApi {
  whenReady(): Promise<void>;
  chatState(): { turns: { answerText: string; reasoning: string; state: string }[] };
  statusText(): string;
  serverLaunch(): { command: string; source: string } | undefined;
}

// Phrases only the scripted reasoning contains: seeing one in an answer or a file is a leak.
const CHAT_REASONING = 'Recall the European capitals';
const DOCSTRING_REASONING = 'One line describing the product is enough';

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)),
  ]);
}

suite('Koma in VS Code', () => {
  let bridge: Bridge;
  let api: KomaApi;
  let doc: vscode.TextDocument;

  async function focusEditorAt(line: number, character: number): Promise<vscode.TextEditor> {
    const editor = await vscode.window.showTextDocument(doc, {
      selection: new vscode.Range(line, character, line, character),
      preserveFocus: false,
      preview: false,
    });
    await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
    return editor;
  }

  /** Open the code action menu (Ctrl+.) and pick an entry with the keyboard, as a user does. */
  async function chooseCodeAction(title: string, screenshot?: string): Promise<void> {
    await bridge.press('Control+.');
    await bridge.waitFor('.action-widget', { hasText: title, timeoutMs: 30_000 });
    if (screenshot) {
      await bridge.screenshot(screenshot, '.part.editor', { maxWidth: 640, maxHeight: 230 });
    }
    // The keyboard, not the mouse: while the menu is open a pointer block covers the editor.
    const rows = await bridge.texts('.action-widget .monaco-list-row.action');
    const index = rows.findIndex((r) => r.includes(title));
    assert.ok(index >= 0, `the menu lists ${title} (${rows.join(' | ')})`);
    for (let i = 0; i < index; i++) {
      await bridge.press('ArrowDown');
    }
    await bridge.press('Enter');
  }

  async function ghostText(): Promise<string> {
    return (await bridge.texts('.monaco-editor .ghost-text-decoration')).join('').replace(/\u00a0/g, ' ').trim();
  }

  suiteSetup(async function () {
    this.timeout(180_000);
    bridge = Bridge.fromWorkspace();
    const extension = vscode.extensions.getExtension<KomaApi>('koma.koma');
    assert.ok(extension, 'the Koma extension is installed');
    api = await extension.activate();
    await withTimeout(api.whenReady(), 120_000, 'the Koma language server to start');
    // scripts/e2e.sh pins the server under test: the Koma its Python imports, wherever installed.
    assert.equal(api.serverLaunch()?.source, 'setting');
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder, 'the fixture workspace is open');
    doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(folder.uri, 'calc.py'));
    await vscode.window.showTextDocument(doc, { preview: false });
    await bridge.waitFor('.monaco-editor .view-lines', { hasText: 'def add(a, b):', timeoutMs: 60_000 });
  });

  test('the status bar shows the model', async () => {
    const item = await bridge.waitFor('.part.statusbar .statusbar-item', { hasText: 'gpt-oss:20b', timeoutMs: 60_000 });
    assert.match(item.text, /gpt-oss:20b/);
    assert.match(api.statusText(), /gpt-oss:20b/);
  });

  test('ghost text appears after typing and Tab accepts it into the document', async () => {
    await focusEditorAt(5, 0);
    await bridge.type('    return ');
    await eventually('the typed text in the document', () => doc.lineAt(5).text === '    return ');
    // Ghost text is drawn as (possibly several) decoration spans after the cursor.
    await bridge.waitFor('.monaco-editor .ghost-text-decoration', { timeoutMs: 60_000 });
    await eventually('the ghost text to read "a + b"', async () => (await ghostText()) === 'a + b', 30_000);
    const line = await bridge.waitFor('.monaco-editor .view-line', { hasText: 'return a + b' });
    assert.equal(line.text.replace(/\u00a0/g, ' ').trim(), 'return a + b');
    // Shown, not yet inserted: the document still holds only what was typed.
    assert.equal(doc.lineAt(5).text, '    return ');
    await bridge.screenshot('ghost-text', '.part.editor', { maxWidth: 640, maxHeight: 230 });
    await bridge.screenshot('ghost-text-window');

    await bridge.press('Tab');
    await eventually('Tab to insert the suggestion', () => doc.lineAt(5).text === '    return a + b', 20_000);
    assert.equal(await ghostText(), '', 'no ghost text is left after accepting');
  });

  test('a code action from the lightbulb menu edits the file', async () => {
    await focusEditorAt(0, 5);
    await chooseCodeAction('Koma: Add docstring', 'code-action-menu');
    await eventually('the docstring in calc.py', () => doc.getText().includes('"""Return the product of a and b."""'), 60_000);
    assert.equal(doc.lineAt(0).text, 'def mul(a, b):');
    assert.equal(doc.lineAt(1).text, '    """Return the product of a and b."""');
    assert.equal(doc.lineAt(2).text, '    return a * b');
    assert.ok(!doc.getText().includes(DOCSTRING_REASONING), 'reasoning never reaches the file');
  });

  test('hover over the changed code shows the reasoning behind it', async () => {
    const hovers = await eventually('a hover over the docstring', async () => {
      const result = await vscode.commands.executeCommand<vscode.Hover[]>('vscode.executeHoverProvider', doc.uri, new vscode.Position(1, 10));
      return result && result.length > 0 ? result : undefined;
    });
    const text = hovers
      .flatMap((h) => h.contents)
      .map((c) => (typeof c === 'string' ? c : c.value))
      .join('\n');
    assert.match(text, new RegExp(DOCSTRING_REASONING));
  });

  test('the chat view streams the answer, with the reasoning collapsed above it and never in it', async () => {
    await vscode.commands.executeCommand('koma.openChat');
    await bridge.waitFor('#prompt', { frame: 'chat', timeoutMs: 60_000 });
    // Record the answer's length at every DOM change, to see it grow while streaming.
    await bridge.evaluate(
      `(() => {
        window.__komaLengths = [];
        const transcript = document.getElementById('transcript');
        new MutationObserver(() => {
          const answers = transcript.querySelectorAll('section.turn .answer');
          const last = answers[answers.length - 1];
          if (last) { window.__komaLengths.push((last.textContent || '').length); }
        }).observe(transcript, { subtree: true, childList: true, characterData: true });
        return true;
      })()`,
      'chat',
    );
    await bridge.fill('#prompt', 'What is the capital of France?', 'chat');
    await bridge.press('Enter', '#prompt', 'chat');
    await bridge.waitFor('section.turn[data-state="streaming"]', { frame: 'chat', timeoutMs: 60_000 });
    const done = await bridge.waitFor('section.turn[data-state="done"] .answer', { frame: 'chat', timeoutMs: 60_000 });
    assert.match(done.text, /The capital of France is Paris\./);
    assert.ok(!done.text.includes(CHAT_REASONING), 'the reasoning is not in the answer');

    const lengths = await bridge.evaluate<number[]>('window.__komaLengths', 'chat');
    const growth = [...new Set(lengths.filter((n) => n > 0))];
    assert.ok(growth.length >= 3, `the answer streamed in pieces (lengths seen: ${growth.join(', ')})`);

    const reasoning = await bridge.evaluate<{ open: boolean; body: string; summary: string; before: boolean }>(
      `(() => {
        const turn = document.querySelector('section.turn[data-state="done"]');
        const details = turn.querySelector('details.reasoning');
        const answer = turn.querySelector('.answer');
        return {
          open: details.open,
          body: details.querySelector('.reasoning-body').textContent,
          summary: details.querySelector('summary').textContent,
          before: !!(details.compareDocumentPosition(answer) & Node.DOCUMENT_POSITION_FOLLOWING),
        };
      })()`,
      'chat',
    );
    assert.equal(reasoning.open, false, 'the reasoning block is collapsed');
    assert.match(reasoning.body, new RegExp(CHAT_REASONING));
    assert.match(reasoning.summary, /Thought/);
    assert.equal(reasoning.before, true, 'the reasoning sits above the answer');
    await bridge.waitFor('section.turn .code-block button[data-action="insert"]', { frame: 'chat' });

    const turn = api.chatState().turns.at(-1);
    assert.ok(turn && turn.state === 'done');
    assert.ok(!turn.answerText.includes(CHAT_REASONING));
    await bridge.screenshot('chat-panel');

    // One click opens the reasoning for whoever wants to read it.
    await bridge.click('section.turn details.reasoning summary', { frame: 'chat' });
    const opened = await bridge.waitFor('section.turn details.reasoning .reasoning-body', { frame: 'chat', hasText: CHAT_REASONING });
    assert.match(opened.text, /France's is Paris/);
    assert.equal(await bridge.evaluate<boolean>(`document.querySelector('section.turn details.reasoning').open`, 'chat'), true);
    await bridge.screenshot('chat-reasoning', '.part.sidebar', { maxHeight: 340 });
  });

  test('Explain Selection streams an explanation into the chat view', async () => {
    const editor = await focusEditorAt(0, 0);
    editor.selection = new vscode.Selection(0, 0, 2, 16);
    await vscode.commands.executeCommand('koma.explainSelection');
    const answer = await bridge.waitFor('section.turn[data-state="done"] .answer', { frame: 'chat', hasText: 'returns the product', timeoutMs: 60_000 });
    assert.match(answer.text, /strings and lists repeat/);
    assert.ok(!answer.text.includes('two-line function that multiplies'), 'the reasoning is not in the answer');
    const prompts = await bridge.texts('section.turn .prompt', 'chat');
    assert.match(prompts.at(-1) ?? '', /^Explain calc\.py:1-3/);
  });

  test('Koma: Explain from the lightbulb menu answers in the chat view', async () => {
    await focusEditorAt(0, 5);
    await chooseCodeAction('Koma: Explain');
    await eventually('a second Explain turn', async () => (await bridge.texts('section.turn .prompt', 'chat')).filter((p) => p.startsWith('Explain calc.py:1')).length === 2);
    const turn = await bridge.waitFor('section.turn[data-state="done"]:last-child', { frame: 'chat', timeoutMs: 60_000 });
    assert.match(turn.text, /returns the product of a and b/);
  });

  test('Stop ends a streaming answer and keeps what arrived', async () => {
    await bridge.fill('#prompt', 'Write a long essay about local models', 'chat');
    await bridge.press('Enter', '#prompt', 'chat');
    await bridge.waitFor('section.turn[data-state="streaming"] .answer', { frame: 'chat', hasText: 'Paragraph 1', timeoutMs: 60_000 });
    await bridge.click('#stop', { frame: 'chat' });
    const stopped = await bridge.waitFor('section.turn[data-state="cancelled"]', { frame: 'chat', hasText: 'Stopped.', timeoutMs: 20_000 });
    assert.match(stopped.text, /Paragraph 1/);
    assert.ok(!stopped.text.includes('Paragraph 79'), 'the answer stopped before its end');
    // The panel is ready for the next question.
    await bridge.waitFor('#send:not([disabled])', { frame: 'chat' });
    assert.equal((await bridge.texts('#stop', 'chat')).length, 1);
    assert.equal(await bridge.evaluate<boolean>(`document.getElementById('stop').hidden`, 'chat'), true);
  });

  test('Insert puts a code block from the chat into the editor at the cursor', async () => {
    const end = doc.lineCount - 1;
    await focusEditorAt(end, 0);
    await vscode.commands.executeCommand('koma.chatView.focus');
    await bridge.click('section.turn .code-block button[data-action="insert"]', { frame: 'chat' });
    await eventually('the inserted code', () => doc.getText().includes('print("Paris")'), 20_000);
  });

  test('a changed setting reaches the running server', async () => {
    const config = vscode.workspace.getConfiguration('koma');
    await config.update('model', 'qwen2.5-coder:1.5b', vscode.ConfigurationTarget.Workspace);
    try {
      await eventually('the server to use the new chat model', async () => {
        const reply = await vscode.commands.executeCommand<{ current?: { model?: string } }>('koma.models');
        return reply?.current?.model === 'qwen2.5-coder:1.5b';
      });
    } finally {
      await config.update('model', 'gpt-oss:20b', vscode.ConfigurationTarget.Workspace);
    }
  });

  test('a missing server program is reported with an install hint, and fixing the setting restarts it', async () => {
    const config = vscode.workspace.getConfiguration('koma');
    // scripts/e2e.sh pins the server under test in the user settings: put it back afterwards.
    const pinned = config.inspect<string>('server.command')?.globalValue;
    await config.update('server.command', '/nonexistent/bin/koma', vscode.ConfigurationTarget.Global);
    try {
      const toast = await bridge.waitFor('.notification-toast', { hasText: 'language server was not found', timeoutMs: 60_000 });
      assert.match(toast.text, /nonexistent\/bin\/koma/);
      assert.match(toast.text, /Install/);
      await bridge.waitFor('.part.statusbar .statusbar-item', { hasText: 'Koma', timeoutMs: 10_000 });
      await bridge.screenshot('server-missing');
    } finally {
      await config.update('server.command', pinned, vscode.ConfigurationTarget.Global);
    }
    await withTimeout(
      eventually('the server to run again', () => api.statusText().includes('gpt-oss:20b') || api.statusText().includes('qwen'), 90_000),
      95_000,
      'the restart',
    );
  });

  test('an untrusted .koma.toml is asked about, and Trust makes the server trust that exact file', async () => {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';
    const file = path.join(folder, '.koma.toml');
    const store = path.join(process.env.XDG_CONFIG_HOME ?? '', 'koma', 'trusted.json');
    // A sensitive key at its default value: trusting it changes nothing else in this run.
    writeFileSync(file, '[tools]\nmaxSteps = 8\n');
    try {
      await vscode.commands.executeCommand('notifications.clearAll');
      await vscode.commands.executeCommand('koma.restartServer');
      const toast = await bridge.waitFor('.notification-toast', { hasText: 'sets tools.maxSteps', timeoutMs: 90_000 });
      assert.match(toast.text, /\.koma\.toml sets tools\.maxSteps/);
      assert.match(toast.text, /ignored until you trust this file/);
      await bridge.screenshot('trust-prompt', '.notifications-toasts');
      assert.ok(!existsSync(store) || !readFileSync(store, 'utf8').includes(realpathSync(file)), 'trusted before the user answered');
      await bridge.click('.notification-toast .monaco-button', { hasText: 'Trust' });
      await bridge.waitFor('.notification-toast', { hasText: 'now applying tools.maxSteps', timeoutMs: 30_000 });
      await eventually('trusted.json to hold the file', () => existsSync(store) && readFileSync(store, 'utf8').includes(realpathSync(file)));
    } finally {
      rmSync(file, { force: true });
      await vscode.commands.executeCommand('notifications.clearAll');
    }
  });
});
