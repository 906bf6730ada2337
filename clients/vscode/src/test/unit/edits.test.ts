import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { applyTextEdits, lineDelta, offsetAt } from '../../edits';

const at = (sl: number, sc: number, el: number, ec: number, newText: string) => ({
  range: { start: { line: sl, character: sc }, end: { line: el, character: ec } },
  newText,
});

describe('applyTextEdits', () => {
  it('applies several edits as if at once', () => {
    const text = 'def add(a, b):\n    return a+b\n';
    const out = applyTextEdits(text, [at(1, 11, 1, 14, 'a + b'), at(1, 0, 1, 0, '    """Add."""\n')]);
    assert.equal(out, 'def add(a, b):\n    """Add."""\n    return a + b\n');
  });

  it('keeps the order of insertions at the same place', () => {
    assert.equal(applyTextEdits('x', [at(0, 1, 0, 1, 'a'), at(0, 1, 0, 1, 'b')]), 'xab');
  });

  it('clamps positions past the end and respects CRLF line ends', () => {
    assert.equal(offsetAt('ab\r\ncd', { line: 0, character: 99 }), 2);
    assert.equal(offsetAt('ab\ncd', { line: 9, character: 0 }), 5);
    assert.equal(applyTextEdits('ab\r\ncd', [at(0, 2, 0, 2, '!')]), 'ab!\r\ncd');
  });

  it('counts added and removed lines', () => {
    assert.deepEqual(lineDelta('a\nb\nc', 'a\nB\nx\nc'), { added: 2, removed: 1 });
    assert.deepEqual(lineDelta('same', 'same'), { added: 0, removed: 0 });
  });
});
