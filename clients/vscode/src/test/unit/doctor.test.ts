import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { doctorMarkdown } from '../../doctor';

describe('doctorMarkdown', () => {
  it('turns the checks into a table with what to do', () => {
    const md = doctorMarkdown({
      provider: 'ollama',
      base_url: 'http://localhost:11434',
      model: 'gpt-oss:20b',
      ok: false,
      exit_code: 3,
      checks: [
        { name: 'reachable', status: 'error', detail: 'connection refused', fix: 'run `ollama serve`' },
        { name: 'memory', status: 'warn', detail: '16 GB < 24 GB | tight', fix: null },
        { name: 'model', status: 'ok', detail: 'installed' },
      ],
    });
    assert.match(md, /❌ Something needs attention/);
    assert.match(md, /\*\*URL:\*\* http:\/\/localhost:11434/);
    assert.match(md, /\| ❌ \| reachable \| connection refused \| run `ollama serve` \|/);
    assert.match(md, /\| ⚠️ \| memory \| 16 GB &lt; 24 GB \\\| tight \| {2}\|/);
    assert.match(md, /```json\n\{\n {2}"provider": "ollama"/);
  });

  it('shows a broken report instead of failing', () => {
    assert.match(doctorMarkdown(null), /sent no report/);
    assert.match(doctorMarkdown({ checks: 'nope', error: 'boom' }), /\*\*Error:\*\* boom/);
  });
});
