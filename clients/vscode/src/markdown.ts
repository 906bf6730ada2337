/**
 * Markdown → HTML for the chat panel, safe by construction: raw HTML in model output is escaped
 * (never parsed), links may only point to http(s) and mailto, and code blocks get Copy / Insert
 * buttons that the webview wires with event delegation (the CSP forbids inline handlers anyway).
 *
 * Rendering happens in the extension host so the webview needs no Markdown library, and so this
 * module can be unit-tested in plain Node.
 */
import MarkdownIt from 'markdown-it';

const SAFE_LINK = /^(https?:|mailto:)/i;

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function createRenderer(): MarkdownIt {
  const md = new MarkdownIt({ html: false, linkify: false, typographer: false, breaks: false });
  md.validateLink = (url: string): boolean => SAFE_LINK.test(url.trim());
  md.renderer.rules.fence = (tokens, idx): string => {
    const token = tokens[idx];
    const lang = (token.info || '').trim().split(/\s+/)[0].replace(/[^\w#+.-]/g, '');
    const cls = lang ? ` class="language-${escapeHtml(lang)}"` : '';
    const label = lang ? `<span class="code-lang">${escapeHtml(lang)}</span>` : '<span class="code-lang"></span>';
    return (
      `<div class="code-block">` +
      `<div class="code-toolbar">${label}` +
      `<button type="button" class="code-button" data-action="copy" title="Copy to clipboard">Copy</button>` +
      `<button type="button" class="code-button" data-action="insert" title="Insert at the cursor in the editor">Insert</button>` +
      `</div><pre><code${cls}>${escapeHtml(token.content)}</code></pre></div>\n`
    );
  };
  // Links open outside the webview; never let them address the panel itself.
  const defaultLinkOpen =
    md.renderer.rules.link_open ??
    ((tokens, idx, options, _env, self): string => self.renderToken(tokens, idx, options));
  md.renderer.rules.link_open = (tokens, idx, options, env, self): string => {
    tokens[idx].attrSet('rel', 'noopener noreferrer');
    return defaultLinkOpen(tokens, idx, options, env, self);
  };
  return md;
}

const renderer = createRenderer();

/** Render model Markdown to HTML that is safe to assign to `innerHTML` in the chat webview. */
export function renderMarkdown(text: string): string {
  if (!text) {
    return '';
  }
  return renderer.render(text);
}
