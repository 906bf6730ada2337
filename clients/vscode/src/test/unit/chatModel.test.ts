import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ChatSession, turnView } from '../../chatModel';
import type { ChatEvent } from '../../protocol';

function stream(session: ChatSession, chatId: string, events: Omit<ChatEvent, 'chatId'>[]): void {
  for (const event of events) {
    session.apply({ chatId, ...event } as ChatEvent);
  }
}

const reasoningThenAnswer: Omit<ChatEvent, 'chatId'>[] = [
  { type: 'channelStart', channel: 'analysis' },
  { type: 'delta', channel: 'analysis', text: 'User asks about ' },
  { type: 'delta', channel: 'analysis', text: 'capitals.' },
  { type: 'channelEnd', channel: 'analysis' },
  { type: 'channelStart', channel: 'final' },
  { type: 'delta', channel: 'final', text: 'It is ' },
  { type: 'delta', channel: 'final', text: '**Paris**.' },
  { type: 'channelEnd', channel: 'final' },
];

describe('ChatSession', () => {
  it('keeps reasoning out of the answer', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('capital of France?');
    stream(session, 'c1', reasoningThenAnswer);
    assert.equal(turn.reasoning, 'User asks about capitals.');
    assert.equal(turn.answer, 'It is **Paris**.');
    assert.equal(turn.state, 'streaming');
    const view = turnView(turn);
    assert.match(view.answerHtml, /<strong>Paris<\/strong>/);
    assert.doesNotMatch(view.answerHtml, /capitals/);
    assert.match(view.reasoningHtml, /capitals/);
  });

  it('treats thinking like analysis and commentary apart from both', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [
      { type: 'delta', channel: 'thinking', text: 'hmm' },
      { type: 'delta', channel: 'commentary', text: 'checking files' },
      { type: 'delta', channel: 'final', text: 'answer' },
    ]);
    assert.equal(turn.reasoning, 'hmm');
    assert.equal(turn.commentary, 'checking files');
    assert.equal(turn.answer, 'answer');
  });

  it('names the conversation itself and continues it under the same id', () => {
    let n = 0;
    const session = new ChatSession(() => `id-${++n}`);
    const first = session.start('one');
    assert.equal(first.chatId, 'id-1');
    stream(session, 'id-1', [{ type: 'delta', channel: 'final', text: 'a' }, { type: 'done', result: { text: 'a' } }]);
    const second = session.start('two');
    assert.equal(second.chatId, 'id-1');
    stream(session, 'id-1', [{ type: 'delta', channel: 'final', text: 'b' }]);
    assert.equal(second.answer, 'b');
    assert.equal(first.answer, 'a');
    session.reset();
    assert.equal(session.start('three').chatId, 'id-2');
  });

  it('follows the id the reply names, if the server chose another', () => {
    const session = new ChatSession(() => 'mine');
    const turn = session.start('q');
    session.complete(turn, { chatId: 'theirs', text: 'x' });
    assert.equal(session.conversationId, 'theirs');
    assert.equal(session.start('next').chatId, 'theirs');
  });

  it('shows failures, cancellations and warnings that the reply reports as fields', () => {
    const session = new ChatSession();
    const failed = session.start('q1');
    session.complete(failed, { chatId: failed.chatId as string, text: '', error: 'Ollama is not reachable' });
    assert.equal(failed.state, 'error');
    assert.equal(failed.error, 'Ollama is not reachable');
    const stopped = session.start('q2');
    session.complete(stopped, { chatId: stopped.chatId as string, text: 'partial', cancelled: true });
    assert.equal(stopped.state, 'cancelled');
    assert.equal(stopped.answer, 'partial');
    const empty = session.start('q3');
    session.complete(empty, { chatId: empty.chatId as string, text: '', warning: 'the model returned no answer' });
    assert.equal(empty.state, 'done');
    assert.equal(turnView(empty).warning, 'the model returned no answer');
  });

  it('treats a cancelled done event as stopped', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [{ type: 'done', cancelled: true, result: { text: 'part', channels: { analysis: 'why', final: 'part' } } }]);
    assert.equal(turn.state, 'cancelled');
    assert.equal(turn.answer, 'part');
    assert.equal(turn.reasoning, 'why');
  });

  it('separates reasoning segments interrupted by tool calls and pairs results with calls', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('read a.py');
    stream(session, 'c1', [
      { type: 'channelStart', channel: 'analysis' },
      { type: 'delta', channel: 'analysis', text: 'Need the file.' },
      { type: 'channelEnd', channel: 'analysis' },
      { type: 'toolCall', tool: { id: 'call_1', name: 'read_file', arguments: { path: 'a.py' } } },
      { type: 'toolResult', tool: { id: 'call_1', name: 'read_file', ok: true, content: 'print(1)' } },
      { type: 'channelStart', channel: 'analysis' },
      { type: 'delta', channel: 'analysis', text: 'It prints 1.' },
      { type: 'channelEnd', channel: 'analysis' },
      { type: 'delta', channel: 'final', text: 'It prints 1.' },
    ]);
    assert.equal(turn.reasoning, 'Need the file.\n\nIt prints 1.');
    assert.deepEqual(turn.tools, [{ id: 'call_1', name: 'read_file', arguments: '{"path":"a.py"}', state: 'ok', result: 'print(1)' }]);
    assert.equal(turn.answer, 'It prints 1.');
  });

  it('marks a failed tool and keeps a result whose call it never saw', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [
      { type: 'toolCall', tool: { id: 'x', name: 'run_tests', arguments: {} } },
      { type: 'toolResult', tool: { id: 'x', name: 'run_tests', ok: false, content: 'denied' } },
      { type: 'toolResult', tool: { id: 'y', name: 'search', ok: true, content: 'hits' } },
    ]);
    assert.equal(turn.tools[0].state, 'failed');
    assert.equal(turn.tools[1].name, 'search');
    assert.equal(turn.tools[1].result, 'hits');
  });

  it('fills the answer from done when no final deltas arrived', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [{ type: 'done', result: { text: 'whole answer', channels: { analysis: 'why' } }, metrics: { tokensPerSecond: 12 } }]);
    assert.equal(turn.answer, 'whole answer');
    assert.equal(turn.reasoning, 'why');
    assert.equal(turn.state, 'done');
    assert.equal(turn.metrics?.tokensPerSecond, 12);
    assert.equal(session.busy, false);
  });

  it('completes from the command reply and ignores events after it', () => {
    const session = new ChatSession(() => 'c9');
    const turn = session.start('q');
    session.complete(turn, { chatId: 'c9', text: 'from reply' });
    assert.equal(turn.answer, 'from reply');
    assert.equal(turn.state, 'done');
    assert.equal(session.apply({ chatId: 'c9', type: 'delta', channel: 'final', text: 'late' }), undefined);
    assert.equal(turn.answer, 'from reply');
    assert.equal(session.turns.length, 1);
  });

  it('keeps partial text when stopped and ignores what follows', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [{ type: 'delta', channel: 'final', text: 'part' }]);
    assert.equal(session.activeTurn(), turn);
    session.cancel(turn);
    stream(session, 'c1', [{ type: 'delta', channel: 'final', text: ' more' }, { type: 'done', result: { text: 'part more' } }]);
    assert.equal(turn.answer, 'part');
    assert.equal(turn.state, 'cancelled');
    assert.equal(session.activeTurn(), undefined);
  });

  it('shows a server error on the turn', () => {
    const session = new ChatSession(() => 'c1');
    const turn = session.start('q');
    stream(session, 'c1', [{ type: 'error', message: 'Ollama is not reachable' }]);
    assert.equal(turn.state, 'error');
    assert.equal(turn.error, 'Ollama is not reachable');
    const failed = session.start('again');
    session.fail(failed, 'server gone');
    assert.equal(failed.error, 'server gone');
  });

  it('gives a stream nobody asked for (a code action Explain) a turn of its own', () => {
    const session = new ChatSession();
    const turn = session.apply({ chatId: 'ext-1', type: 'delta', channel: 'final', text: 'This function…' });
    assert.ok(turn);
    assert.equal(turn.prompt, 'Explain (code action)');
    assert.equal(turn.answer, 'This function…');
  });

  it('ignores malformed events and starts afresh after reset', () => {
    const session = new ChatSession(() => 'c1');
    assert.equal(session.apply(null as unknown as ChatEvent), undefined);
    assert.equal(session.apply({ type: 'delta' } as unknown as ChatEvent), undefined);
    session.start('q');
    stream(session, 'c1', [{ type: 'delta', channel: 'final', text: 'x' }]);
    session.reset();
    assert.equal(session.turns.length, 0);
    assert.equal(session.conversationId, undefined);
  });
});
