/**
 * The "Koma: Install Server…" command (also the "Install…" button of the not-found message):
 * asks whether to add the embedded model, then runs install.ts's plan with a progress
 * notification that follows pip's output, and restarts the server, which the discovery now finds
 * in the extension's global storage.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';

import { isExecutable, loginShellPath, selectedPython } from './client';
import { isInside } from './discovery';
import { chooseBasePython, installPlan, runInstall, type Runner } from './install';
import { whichIn } from './settings';

/** Where "Install…" puts Koma: a virtual environment in the extension's global storage. */
export function installedVenv(context: vscode.ExtensionContext): string {
  return path.join(context.globalStorageUri.fsPath, 'venv');
}

/** The wheel `npm run package` put into the extension, or undefined in a build without one. */
export function bundledWheel(extensionPath: string): string | undefined {
  const dir = path.join(extensionPath, 'wheel');
  try {
    const wheels = readdirSync(dir).filter((f) => /^koma_lsp-.+\.whl$/.test(f)).sort();
    return wheels.length ? path.join(dir, wheels[wheels.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Spawn without a shell; `onLine` gets each line of stdout and stderr; cancel ends the process. */
function runner(token: vscode.CancellationToken): Runner {
  return (command, args, env, onLine) =>
    new Promise((resolve) => {
      let output = '';
      let pending = '';
      const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const take = (chunk: Buffer): void => {
        const text = chunk.toString('utf8');
        output = (output + text).slice(-20_000);
        pending += text;
        const lines = pending.split(/\r?\n|\r/);
        pending = lines.pop() ?? '';
        lines.filter((l) => l.trim()).forEach(onLine);
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      const cancel = token.onCancellationRequested(() => child.kill('SIGTERM'));
      child.on('error', (error) => {
        cancel.dispose();
        resolve({ code: -1, output: `${output}\n${error.message}` });
      });
      child.on('close', (code) => {
        cancel.dispose();
        if (pending.trim()) {
          onLine(pending);
        }
        resolve({ code: token.isCancellationRequested ? null : code, output });
      });
    });
}

/** Pythons to build the environment from, best first; none from inside an untrusted workspace. */
async function basePythonCandidates(): Promise<string[]> {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  const allowed = (file: string): boolean => vscode.workspace.isTrusted || !folders.some((folder) => isInside(file, folder));
  const candidates: string[] = [];
  const selected = await selectedPython();
  if (selected) {
    candidates.push(selected);
  }
  const login = await loginShellPath();
  for (const pathVariable of [process.env.PATH, login]) {
    for (const name of ['python3', 'python']) {
      const found = whichIn(name, (pathVariable ?? '').split(path.delimiter).filter((d) => path.isAbsolute(d)).join(path.delimiter), isExecutable, path.delimiter);
      if (found) {
        candidates.push(found);
      }
    }
  }
  return candidates.filter(allowed);
}

export async function installServer(
  context: vscode.ExtensionContext,
  output: vscode.LogOutputChannel,
  restart: () => Promise<void>,
): Promise<boolean> {
  const wheel = bundledWheel(context.extensionPath);
  if (!wheel) {
    throw new Error('this build of the extension carries no Koma wheel (build it with `npm run package`)');
  }
  const choice = await vscode.window.showQuickPick(
    [
      { label: 'Koma', description: 'uses Ollama, LM Studio, llama.cpp or vLLM', embedded: false },
      {
        label: 'Koma with the embedded model',
        description: 'also runs a small model in-process; compiles llama.cpp (several minutes)',
        embedded: true,
      },
    ],
    { title: 'Koma: Install Server', placeHolder: `Install ${path.basename(wheel)} into a private virtual environment` },
  );
  if (!choice) {
    return false;
  }
  const venv = installedVenv(context);
  const systemSitePackages = vscode.workspace.getConfiguration('koma').inspect<boolean>('install.systemSitePackages')?.globalValue === true;
  output.info(`installing ${path.basename(wheel)} into ${venv}${choice.embedded ? ' with the embedded model' : ''}`);
  const done = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: 'Koma: installing the server', cancellable: true },
    async (progress, token) => {
      const run = runner(token);
      const base = await chooseBasePython(await basePythonCandidates(), run);
      if (!base.python) {
        throw new Error(
          `no Python 3.11 or newer with the venv module was found${base.tried.length ? ` (tried ${base.tried.join(', ')})` : ''}; install one, or select it in the Python extension`,
        );
      }
      output.info(`base Python: ${base.python}`);
      const steps = installPlan({
        basePython: base.python,
        venv,
        wheel,
        embedded: choice.embedded,
        systemSitePackages,
        platform: process.platform,
        arch: process.arch,
      });
      await runInstall(steps, run, (message) => progress.report({ message }), (line) => output.info(line));
      return !token.isCancellationRequested;
    },
  );
  if (!done) {
    return false;
  }
  void vscode.window.showInformationMessage(`Koma: installed in ${venv}; starting the server.`);
  await restart();
  return true;
}
