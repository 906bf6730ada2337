/**
 * A new user's first start: a fresh code-server profile where no Koma can be found (no
 * `koma.server.command`, nothing on PATH or the login shell's PATH, no ~/.local/bin, no Python
 * extension). The extension says where it looked; "Install…" installs the wheel the .vsix
 * carries into a virtual environment in the extension's storage; ghost text then comes from
 * that server. (scripts/e2e.sh runs this suite alone with KOMA_E2E_SUITE=install; pip gets the
 * dependencies from a local wheelhouse, through pip's own PIP_NO_INDEX/PIP_FIND_LINKS.)
 */
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';

import { Bridge, eventually } from './bridge';

interface KomaApi {
  whenReady(): Promise<void>;
  statusText(): string;
  serverLaunch(): { command: string; source: string } | undefined;
}

suite('Koma installs its server from the editor', () => {
  let bridge: Bridge;
  let api: KomaApi;

  suiteSetup(async () => {
    bridge = Bridge.fromWorkspace();
    const extension = vscode.extensions.getExtension<KomaApi>('koma.koma');
    assert.ok(extension, 'the Koma extension is installed');
    api = await extension.activate();
  });

  test('with no Koma anywhere, the message lists where it looked and offers Install…', async () => {
    const toast = await bridge.waitFor('.notification-toast', { hasText: 'language server was not found', timeoutMs: 60_000 });
    assert.match(toast.text, /Looked at:/);
    assert.match(toast.text, /\.local\/bin\/koma/);
    assert.match(toast.text, /login shell's PATH/);
    assert.match(toast.text, /Python extension/);
    assert.equal(api.serverLaunch(), undefined, 'nothing was started');
    await bridge.screenshot('install-not-found', '.notifications-toasts');
  });

  test('Install… puts the bundled wheel in a private venv, and ghost text comes from that server', async function () {
    this.timeout(400_000);
    await bridge.click('.notification-toast .monaco-button', { hasText: 'Install…' });
    await bridge.waitFor('.quick-input-widget', { hasText: 'Koma with the embedded model', timeoutMs: 30_000 });
    await bridge.screenshot('install-choice', '.quick-input-widget');
    // The first entry: Koma without the embedded model (nothing to compile).
    await bridge.press('Enter');
    await bridge.waitFor('.notification-toast', { hasText: 'installing the server', timeoutMs: 30_000 });
    await bridge.screenshot('install-progress', '.notifications-toasts');

    await eventually('the installed server to run', () => api.serverLaunch()?.source === 'installed by Koma' && api.statusText().includes('gpt-oss'), 300_000);
    const launch = api.serverLaunch();
    assert.match(launch?.command ?? '', /\/venv\/bin\/koma$/);
    assert.ok(!launch?.command.includes('/workspace/'), 'the server is not from the workspace');

    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder);
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.joinPath(folder.uri, 'calc.py'));
    await vscode.window.showTextDocument(doc, { selection: new vscode.Range(5, 0, 5, 0), preview: false });
    await vscode.commands.executeCommand('notifications.clearAll');
    await vscode.commands.executeCommand('workbench.action.focusActiveEditorGroup');
    await bridge.waitFor('.monaco-editor .view-lines', { hasText: 'def add(a, b):', timeoutMs: 60_000 });
    await bridge.type('    return ');
    await eventually('the typed text', () => doc.lineAt(5).text === '    return ');
    await eventually(
      'ghost text from the installed server',
      async () => (await bridge.texts('.monaco-editor .ghost-text-decoration')).join('').replace(/\u00a0/g, ' ').trim() === 'a + b',
      60_000,
    );
    await bridge.screenshot('install-ghost-text');
  });
});
