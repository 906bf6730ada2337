/**
 * Edits the model proposes from chat (`workspace/applyEdit` from the `propose_edit` tool) are
 * never applied blind: each changed file opens as a diff (current ↔ proposed) and the user
 * accepts or rejects the whole proposal. Code actions the user picked from the lightbulb do not
 * come through here; VS Code applies those directly, as for any language server.
 */
import * as vscode from 'vscode';
import type { ApplyWorkspaceEditParams, ApplyWorkspaceEditResult, TextEdit } from 'vscode-languageclient/node';

import { applyTextEdits, lineDelta } from './edits';

const SCHEME = 'koma-proposed';

/** Serves the proposed file contents the diff editor shows on its right side. */
class ProposedContent implements vscode.TextDocumentContentProvider {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  set(uri: vscode.Uri, text: string): void {
    this.texts.set(uri.toString(), text);
    this.changed.fire(uri);
  }

  delete(uri: vscode.Uri): void {
    this.texts.delete(uri.toString());
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.toString()) ?? '';
  }
}

export class EditReviewer implements vscode.Disposable {
  private readonly content = new ProposedContent();
  private readonly registration: vscode.Disposable;
  private counter = 0;

  constructor(private readonly convert: (edit: ApplyWorkspaceEditParams['edit']) => Promise<vscode.WorkspaceEdit>) {
    this.registration = vscode.workspace.registerTextDocumentContentProvider(SCHEME, this.content);
  }

  dispose(): void {
    this.registration.dispose();
  }

  /** The `handleApplyEdit` middleware: show, ask, then apply or refuse. */
  async review(params: ApplyWorkspaceEditParams): Promise<ApplyWorkspaceEditResult> {
    const perFile = this.textEditsByFile(params.edit);
    if (perFile === undefined) {
      return this.confirmOpaque(params);
    }
    const shown: vscode.Uri[] = [];
    let added = 0;
    let removed = 0;
    try {
      for (const [uriText, edits] of perFile) {
        const uri = vscode.Uri.parse(uriText);
        const document = await vscode.workspace.openTextDocument(uri);
        const before = document.getText();
        const after = applyTextEdits(before, edits);
        const delta = lineDelta(before, after);
        added += delta.added;
        removed += delta.removed;
        const proposed = uri.with({ scheme: SCHEME, query: `proposal=${++this.counter}` });
        this.content.set(proposed, after);
        shown.push(proposed);
        const name = vscode.workspace.asRelativePath(uri);
        await vscode.commands.executeCommand('vscode.diff', uri, proposed, `${name}: current ↔ proposed by Koma`, {
          preview: false,
        });
      }
      const label = params.label ? `${params.label}: ` : '';
      const files = perFile.size === 1 ? vscode.workspace.asRelativePath(vscode.Uri.parse([...perFile.keys()][0])) : `${perFile.size} files`;
      const choice = await vscode.window.showInformationMessage(
        `${label}Koma proposes an edit to ${files} (+${added} −${removed} lines). Apply it?`,
        'Accept',
        'Reject',
      );
      if (choice !== 'Accept') {
        return { applied: false, failureReason: 'The user rejected the proposed edit.' };
      }
      const edit = await this.convert(params.edit);
      const applied = await vscode.workspace.applyEdit(edit);
      return applied ? { applied: true } : { applied: false, failureReason: 'VS Code could not apply the edit (the file changed?).' };
    } finally {
      await this.closeDiffs(shown);
      for (const uri of shown) {
        this.content.delete(uri);
      }
    }
  }

  /** Text edits grouped by file, or undefined when the edit creates, renames or deletes files. */
  private textEditsByFile(edit: ApplyWorkspaceEditParams['edit']): Map<string, TextEdit[]> | undefined {
    const out = new Map<string, TextEdit[]>();
    for (const [uri, edits] of Object.entries(edit.changes ?? {})) {
      out.set(uri, [...(out.get(uri) ?? []), ...edits]);
    }
    for (const change of edit.documentChanges ?? []) {
      if (!('textDocument' in change)) {
        return undefined;
      }
      const uri = change.textDocument.uri;
      // A snippet edit inserts its snippet's text with the placeholders as written.
      const edits = change.edits.map((e) => ({ range: e.range, newText: 'newText' in e ? e.newText : e.snippet.value }));
      out.set(uri, [...(out.get(uri) ?? []), ...edits]);
    }
    return out;
  }

  /** File operations cannot be diffed: describe them and ask in a modal dialog. */
  private async confirmOpaque(params: ApplyWorkspaceEditParams): Promise<ApplyWorkspaceEditResult> {
    const choice = await vscode.window.showWarningMessage(
      `Koma proposes to create, rename or delete files${params.label ? ` (${params.label})` : ''}.`,
      { modal: true, detail: 'Accept to apply the change; the Refactor Preview shows it first.' },
      'Accept',
    );
    if (choice !== 'Accept') {
      return { applied: false, failureReason: 'The user rejected the proposed edit.' };
    }
    const edit = await this.convert(params.edit);
    const applied = await vscode.workspace.applyEdit(edit, { isRefactoring: true });
    return { applied };
  }

  private async closeDiffs(proposed: vscode.Uri[]): Promise<void> {
    const wanted = new Set(proposed.map((u) => u.toString()));
    const tabs = vscode.window.tabGroups.all
      .flatMap((group) => group.tabs)
      .filter((tab) => tab.input instanceof vscode.TabInputTextDiff && wanted.has(tab.input.modified.toString()));
    if (tabs.length > 0) {
      await vscode.window.tabGroups.close(tabs, true);
    }
  }
}
