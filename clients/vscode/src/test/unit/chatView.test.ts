import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type * as vscode from 'vscode';

import { ChatViewProvider, chatHtml, type ChatBackend, type ChatHost, type ChatRequest } from '../../chatView';
import type { ChatReply, FromWebview, ToWebview } from '../../protocol';

/** A cancellation token good enough for the provider (it only passes it on). */
function cancellation() {
  const token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };
  return {
    token: token as unknown as vscode.CancellationToken,
    cancel: () => (token.isCancellationRequested = true),
    dispose() {},
  };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

function setup(options: { ready?: boolean } = {}) {
  const posted: ToWebview[] = [];
  const calls: { chat: { request: ChatRequest; token: vscode.CancellationToken }[]; cancel: string[]; select: string[] } = {
    chat: [],
    cancel: [],
    select: [],
  };
  const reply = deferred<ChatReply>();
  const backend: ChatBackend = {
    chat: (request, token) => {
      calls.chat.push({ request, token });
      return reply.promise;
    },
    explain: () => reply.promise,
    cancel: async (chatId) => {
      calls.cancel.push(chatId);
    },
    models: async () => ({ models: [{ name: 'gpt-oss:20b' }, { name: 'qwen' }], current: { model: 'gpt-oss:20b' } }),
    selectModel: async (model) => {
      calls.select.push(model);
    },
    isReady: () => options.ready ?? true,
  };
  const errors: string[] = [];
  const host: ChatHost = {
    editorContext: () => ({ uri: 'file:///w/a.py', range: { start: { line: 1, character: 0 }, end: { line: 2, character: 0 } } }),
    insertAtCursor: async () => true,
    copy: async () => undefined,
    showError: (message) => errors.push(message),
    newCancellation: cancellation,
    scriptUri: () => ({ toString: () => 'vscode-resource:/media/chat.js' }) as vscode.Uri,
    styleUri: () => ({ toString: () => 'vscode-resource:/media/chat.css' }) as vscode.Uri,
    localRoots: () => [],
    nonce: () => 'NONCE123',
  };
  let receive: (message: FromWebview) => void = () => undefined;
  const webview = {
    options: {},
    html: '',
    cspSource: 'vscode-resource:',
    postMessage: async (message: ToWebview) => {
      posted.push(message);
      return true;
    },
    onDidReceiveMessage: (listener: (message: FromWebview) => void) => {
      receive = listener;
      return { dispose() {} };
    },
  };
  const view = { webview, visible: true, onDidDispose: () => ({ dispose() {} }), onDidChangeVisibility: () => ({ dispose() {} }) };
  const provider = new ChatViewProvider(backend, host);
  provider.resolveWebviewView(view as unknown as vscode.WebviewView);
  return { provider, posted, calls, reply, errors, webview, send: (m: FromWebview) => receive(m) };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('chatHtml', () => {
  it('allows only the nonce script and local resources', () => {
    const html = chatHtml({ cspSource: 'vscode-resource:', nonce: 'N1', scriptUri: 's.js', styleUri: 's.css' });
    const csp = /content="([^"]+)"/.exec(html)?.[1] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'nonce-N1'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https:/);
    assert.match(html, /<script nonce="N1" src="s.js">/);
    assert.equal(html.match(/<script/g)?.length, 1);
  });
});

describe('ChatViewProvider', () => {
  it('sends the message with the editor context and streams the answer to the webview', async () => {
    const t = setup();
    assert.match(t.webview.html, /nonce-NONCE123/);
    t.send({ type: 'ready' });
    await tick();
    assert.ok(t.posted.some((m) => m.type === 'models' && m.models.join() === 'gpt-oss:20b,qwen'));
    t.send({ type: 'send', text: '  why?  ' });
    await tick();
    const chatId = t.calls.chat[0].request.chatId;
    assert.match(chatId ?? '', /^vscode-[0-9a-f-]{36}$/);
    assert.deepEqual(t.calls.chat[0].request, {
      chatId,
      message: 'why?',
      uri: 'file:///w/a.py',
      range: { start: { line: 1, character: 0 }, end: { line: 2, character: 0 } },
    });
    t.provider.onChatEvent({ chatId: chatId as string, type: 'delta', channel: 'analysis', text: 'SECRET-THOUGHT' });
    t.provider.onChatEvent({ chatId: chatId as string, type: 'done', result: { text: 'Because.' } });
    t.reply.resolve({ chatId: chatId as string, text: 'Because.' });
    await tick();
    const last = t.posted.filter((m) => m.type === 'turn').pop();
    assert.ok(last && last.type === 'turn');
    assert.equal(last.turn.state, 'done');
    assert.equal(last.turn.answerText, 'Because.');
    assert.equal(last.turn.reasoning, 'SECRET-THOUGHT');
    assert.doesNotMatch(last.turn.answerHtml, /SECRET/);
    assert.equal(last.busy, false);
  });

  it('stops: cancels the request and tells the server the chat id', async () => {
    const t = setup();
    t.send({ type: 'ready' });
    t.send({ type: 'send', text: 'long answer please' });
    await tick();
    const chatId = t.calls.chat[0].request.chatId as string;
    t.provider.onChatEvent({ chatId, type: 'delta', channel: 'final', text: 'partial' });
    t.send({ type: 'stop' });
    await tick();
    assert.equal(t.calls.chat[0].token.isCancellationRequested, true);
    assert.deepEqual(t.calls.cancel, [chatId]);
    t.reply.reject(new Error('Request cancelled'));
    await tick();
    const state = t.provider.state();
    assert.equal(state.turns[0].state, 'cancelled');
    assert.equal(state.turns[0].answerText, 'partial');
    assert.equal(state.busy, false);
  });

  it('says the server is not running instead of hanging', async () => {
    const t = setup({ ready: false });
    t.send({ type: 'ready' });
    await t.provider.send('hello');
    const turn = t.provider.state().turns[0];
    assert.equal(turn.state, 'error');
    assert.match(turn.error ?? '', /not running/);
    assert.equal(t.calls.chat.length, 0);
  });

  it('shows a failed request on its turn', async () => {
    const t = setup();
    t.send({ type: 'ready' });
    const sending = t.provider.send('q');
    t.reply.reject(new Error('Ollama is not reachable at http://localhost:11434'));
    await sending;
    assert.match(t.provider.state().turns[0].error ?? '', /not reachable/);
  });

  it('resends the whole conversation when the webview comes back', async () => {
    const t = setup();
    t.send({ type: 'ready' });
    const sending = t.provider.send('q');
    t.reply.resolve({ chatId: 'c1', text: 'a' });
    await sending;
    t.posted.length = 0;
    t.send({ type: 'ready' });
    const state = t.posted.find((m) => m.type === 'state');
    assert.ok(state && state.type === 'state');
    assert.equal(state.state.turns.length, 1);
    assert.equal(state.state.turns[0].answerText, 'a');
  });

  it('ignores malformed webview messages and selects models', async () => {
    const t = setup();
    t.send({ type: 'ready' });
    t.send(null as unknown as FromWebview);
    t.send({ type: 'send' } as unknown as FromWebview);
    t.send({ type: 'selectModel', model: 'qwen' });
    await tick();
    assert.deepEqual(t.calls.select, ['qwen']);
    assert.equal(t.calls.chat.length, 0);
  });
});
