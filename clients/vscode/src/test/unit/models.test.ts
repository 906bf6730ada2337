import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { cleanModels, formatBytes, lifecycleItems, modelPickItems } from '../../models';

const reply = cleanModels({
  models: [
    { name: 'gpt-oss:20b', loaded: true, sizeBytes: 13_780_173_734, quantization: 'MXFP4', capabilities: ['completion', 'tools', 'thinking'], contextLength: 131072 },
    { name: 'qwen2.5-coder:1.5b', loaded: false, sizeBytes: 986_062_089, capabilities: ['completion', 'insert'] },
    { nope: true },
    null,
    { name: '' },
  ],
  current: { model: 'gpt-oss:20b', completionModel: 'qwen2.5-coder:1.5b' },
});

describe('models', () => {
  it('drops malformed entries from the server', () => {
    assert.deepEqual(reply.models.map((m) => m.name), ['gpt-oss:20b', 'qwen2.5-coder:1.5b']);
    assert.deepEqual(cleanModels('garbage'), { models: [], current: {} });
  });

  it('lists chat and completion sections, marks the current ones, puts FIM models first for completion', () => {
    const items = modelPickItems(reply);
    assert.deepEqual(items.map((i) => (i.separator ? `-- ${i.label}` : `${i.modelKind}:${i.model}${i.picked ? '*' : ''}`)), [
      '-- Chat and code actions',
      'chat:gpt-oss:20b*',
      'chat:qwen2.5-coder:1.5b',
      '-- Inline completions',
      'completion:qwen2.5-coder:1.5b*',
      'completion:gpt-oss:20b',
    ]);
    assert.match(items[1].description ?? '', /12\.8 GB · MXFP4 · 128k context/);
    assert.match(items[1].detail ?? '', /loaded/);
    assert.equal(modelPickItems(reply, 'chat').filter((i) => i.modelKind === 'completion').length, 0);
  });

  it('offers loaded models first to unload', () => {
    assert.deepEqual(lifecycleItems({ models: [...reply.models].reverse() }, 'unload').map((i) => i.model), ['gpt-oss:20b', 'qwen2.5-coder:1.5b']);
  });

  it('formats sizes', () => {
    assert.equal(formatBytes(986_062_089), '940 MB');
    assert.equal(formatBytes(1536), '1.5 KB');
    assert.equal(formatBytes(undefined), '');
    assert.equal(formatBytes(-1), '');
  });
});
