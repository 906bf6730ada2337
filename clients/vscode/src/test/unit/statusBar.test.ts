import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RouteRefresh, StatusBar, describeStatus, type StatusItem } from '../../statusBar';

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

describe('completion route in the status', () => {
  const raw = {
    route: 'raw',
    endpoint: '/v1/completions',
    why: 'the model has no FIM tokens',
    model: 'gemma-3-270m',
  };

  it('shows the route, its endpoint, model and why in the tooltip', () => {
    const look = describeStatus('running', { state: 'idle', model: 'm', completionRoute: raw });
    assert.match(look.tooltip, /Ghost text: \*\*raw continuation\*\* via `\/v1\/completions` \(`gemma-3-270m`\) — the model has no FIM tokens/);
    const fim = describeStatus('running', { state: 'generating', model: 'm', completionRoute: { route: 'fim', endpoint: '/infill', why: 'the model has FIM tokens' } });
    assert.match(fim.tooltip, /Ghost text: \*\*fill-in-the-middle\*\* via `\/infill`/);
    assert.doesNotMatch(describeStatus('running', { state: 'idle', model: 'm', completionRoute: null }).tooltip, /Ghost text/);
  });

  it('keeps the route from koma.status when later notifications omit it', () => {
    const item = fakeItem();
    const bar = new StatusBar(item, deps);
    bar.update({ state: 'idle', model: 'm', completionRoute: raw });
    bar.update({ state: 'generating', model: 'm', tokensPerSecond: 12 });
    bar.update({ state: 'idle' });
    assert.match((item.tooltip as { md: string }).md, /Ghost text: \*\*raw continuation\*\*/);
  });

  it('asks koma.status again after a generation ends, at most once per gap', async () => {
    let now = 0;
    let fetches = 0;
    const timers: { run: () => void; at: number }[] = [];
    const refresh = new RouteRefresh(
      async () => {
        fetches += 1;
      },
      () => now,
      (run, ms) => timers.push({ run, at: now + ms }),
      5000,
    );
    refresh.onState('idle');
    assert.equal(fetches, 0, 'nothing ran yet: no route to learn');
    refresh.onState('generating');
    refresh.onState('idle');
    assert.equal(fetches, 1);
    await new Promise((resolve) => setImmediate(resolve));
    now = 1000;
    refresh.onState('generating');
    refresh.onState('idle');
    refresh.onState('generating');
    refresh.onState('idle');
    assert.equal(fetches, 1, 'within the gap: not asked again yet');
    assert.equal(timers.length, 1, 'but caught up once, when the gap is over');
    now = timers[0].at;
    timers[0].run();
    assert.equal(fetches, 2);
  });
});
