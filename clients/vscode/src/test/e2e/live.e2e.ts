/**
 * Ghost text from a real model: code-server with the real `koma lsp` in front of llama-cpp-python's
 * server running the packaged Gemma 3 270M (a base model without fill-in-the-middle tokens, so
 * inline completion takes the raw route: the prefix as a raw prompt to `/v1/completions`).
 * scripts/e2e.sh runs this suite alone (KOMA_E2E_SUITE=live) when KOMA_LIVE_BASE_URL names that
 * server; scripts/test.sh starts it.
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';

import { Bridge, eventually } from './bridge';

interface KomaApi {
  whenReady(): Promise<void>;
  statusTooltip(): string;
  lastSuggestions(): string[];
}

suite('Koma in VS Code on a real model', () => {
  let bridge: Bridge;
  let api: KomaApi;
  let doc: vscode.TextDocument;

  async function ghostText(): Promise<string> {
    return (await bridge.texts('.monaco-editor .ghost-text-decoration')).join('').replace(/\u00a0/g, ' ').trim();
  }

  suiteSetup(async function () {
    this.timeout(180_000);
    bridge = Bridge.fromWorkspace();
    const extension = vscode.extensions.getExtension<KomaApi>('koma.koma');
    assert.ok(extension, 'the Koma extension is installed');
    api = await extension.activate();
    await api.whenReady();
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder, 'the fixture workspace is open');
    doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(folder.uri, 'calc.py'));
    await vscode.window.showTextDocument(doc, { preview: false });
    await bridge.waitFor('.monaco-editor .view-lines', { hasText: 'def add(a, b):', timeoutMs: 60_000 });
  });

  test('typing in a Python file shows the raw route ghost text the server returned', async function () {
    // A cold 270M model on a shared two-core machine: the first prompt may take a while.
    this.timeout(300_000);
    await vscode.window.showTextDocument(doc, { selection: new vscode.Range(5, 0, 5, 0), preview: false });
    await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
    await bridge.type('    return ');
    await eventually('the typed text in the document', () => doc.lineAt(5).text === '    return ');
    await bridge.waitFor('.monaco-editor .ghost-text-decoration', { timeoutMs: 240_000 });
    const shown = await eventually('non-empty ghost text', async () => (await ghostText()) || false, 60_000);
    const returned = api.lastSuggestions();
    assert.ok(returned.length > 0, 'the server answered the inline completion with a suggestion');
    // The ghost text on screen is the first line of what the server returned, unchanged.
    assert.equal(shown, returned[0].split('\n')[0].trim());
    // Shown, not inserted: the document holds only what was typed.
    assert.equal(doc.lineAt(5).text, '    return ');
    await bridge.screenshot('live-ghost-text', '.part.editor', { maxWidth: 640, maxHeight: 230 });
    // The status bar's tooltip names the route this suggestion took.
    await eventually('the status tooltip to name the raw route', () => /Ghost text: \*\*raw continuation\*\* via `\/v1\/completions`/.test(api.statusTooltip()), 30_000);
  });
});
