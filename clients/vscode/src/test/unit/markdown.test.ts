import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { renderMarkdown } from '../../markdown';

describe('renderMarkdown', () => {
  it('renders ordinary Markdown', () => {
    const html = renderMarkdown('Use **map**, then `filter`.\n\n- one\n- two');
    assert.match(html, /<strong>map<\/strong>/);
    assert.match(html, /<code>filter<\/code>/);
    assert.match(html, /<li>two<\/li>/);
  });

  it('escapes raw HTML from the model instead of letting it run', () => {
    const html = renderMarkdown('Hi <script>alert(1)</script> <img src=x onerror="alert(2)">');
    assert.doesNotMatch(html, /<script/);
    assert.doesNotMatch(html, /<img/);
    assert.match(html, /&lt;script&gt;/);
  });

  it('drops javascript: and data: links but keeps http links', () => {
    const html = renderMarkdown('[a](javascript:alert(1)) [b](data:text/html,x) [c](https://example.com)');
    assert.doesNotMatch(html, /href="javascript/);
    assert.doesNotMatch(html, /href="data/);
    assert.match(html, /<a href="https:\/\/example.com" rel="noopener noreferrer">c<\/a>/);
  });

  it('gives code blocks Copy and Insert buttons and escapes their content', () => {
    const html = renderMarkdown('```python\nif a < b:\n    print("<b>")\n```');
    assert.match(html, /data-action="copy"/);
    assert.match(html, /data-action="insert"/);
    assert.match(html, /class="language-python"/);
    assert.match(html, /if a &lt; b:/);
    assert.match(html, /print\(&quot;&lt;b&gt;&quot;\)/);
  });

  it('cannot be tricked through the fence language', () => {
    const html = renderMarkdown('```"><script>x</script>\ncode\n```');
    assert.doesNotMatch(html, /<script/);
  });

  it('renders an unfinished fence while streaming', () => {
    assert.match(renderMarkdown('Here:\n```js\nconst a = 1'), /const a = 1/);
    assert.equal(renderMarkdown(''), '');
  });
});
