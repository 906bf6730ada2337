import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { StatusBar, describeStatus, type StatusItem } from '../../statusBar';

function fakeItem(): StatusItem & { shown: boolean } {
  return {
    text: '',
    tooltip: undefined,
    command: undefined,
    name: undefined,
    backgroundColor: undefined,
    shown: false,
    show() {
      this.shown = true;
    },
  };
}

const deps = { markdown: (t: string) => ({ md: t }), errorBackground: 'ERR', warningBackground: 'WARN', command: 'koma.statusMenu' };

describe('describeStatus', () => {
  it('names the model and the state', () => {
    assert.equal(describeStatus('running', { state: 'idle', model: 'gpt-oss:20b' }).text, '$(sparkle) gpt-oss:20b');
    assert.equal(describeStatus('running', { state: 'loading', model: 'gpt-oss:20b' }).text, '$(loading~spin) gpt-oss:20b loading');
    assert.equal(describeStatus('running', { state: 'generating', model: 'm', tokensPerSecond: 31.5 }).text, '$(sync~spin) m 32 tok/s');
    assert.equal(describeStatus('running', { state: 'generating', model: 'm', tokensPerSecond: 4.25 }).text, '$(sync~spin) m 4.3 tok/s');
  });

  it('explains errors in the tooltip and colours them', () => {
    const look = describeStatus('running', { state: 'error', model: 'm', message: 'Ollama is not reachable' });
    assert.equal(look.error, true);
    assert.match(look.tooltip, /Ollama is not reachable/);
  });

  it('says when the server is missing or stopped', () => {
    assert.equal(describeStatus('missing', undefined).warning, true);
    assert.match(describeStatus('missing', undefined).tooltip, /not found/);
    assert.match(describeStatus('stopped', { state: 'idle', model: 'm' }).tooltip, /not running/);
    assert.match(describeStatus('starting', undefined).text, /loading~spin/);
  });
});

describe('StatusBar', () => {
  it('shows itself, runs the menu on click, and keeps the last speed when idle', () => {
    const item = fakeItem();
    const bar = new StatusBar(item, deps);
    assert.equal(item.shown, true);
    assert.equal(item.command, 'koma.statusMenu');
    bar.update({ state: 'generating', model: 'gpt-oss:20b', tokensPerSecond: 20 });
    assert.equal(item.text, '$(sync~spin) gpt-oss:20b 20 tok/s');
    bar.update({ state: 'idle' });
    assert.equal(item.text, '$(sparkle) gpt-oss:20b · 20 tok/s');
    assert.equal(bar.model, 'gpt-oss:20b');
    assert.equal(item.accessibilityInformation?.label, 'Koma status: gpt-oss:20b · 20 tok/s');
  });

  it('colours errors and clears the colour when the error passes', () => {
    const item = fakeItem();
    const bar = new StatusBar(item, deps);
    bar.update({ state: 'error', model: 'm', message: 'boom' });
    assert.equal(item.backgroundColor, 'ERR');
    bar.update({ state: 'idle' });
    assert.equal(item.backgroundColor, undefined);
    bar.setPhase('missing');
    assert.equal(item.backgroundColor, 'WARN');
  });

  it('ignores junk notifications and follows a model picked in the editor', () => {
    const item = fakeItem();
    const bar = new StatusBar(item, deps);
    bar.update(null);
    bar.update('x' as never);
    assert.match(item.text, /loading~spin/);
    bar.setPhase('running');
    bar.setModel('qwen');
    assert.equal(item.text, '$(sparkle) qwen');
  });
});
