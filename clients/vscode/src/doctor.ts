/**
 * "Koma: Show Diagnostics" as a readable Markdown report, from the `koma.doctor` answer
 * (`{provider, base_url, model, ok, exit_code, checks: [{name, status, detail, fix, data}]}`).
 * Unknown or malformed parts are shown as they are rather than dropped: this page is what a user
 * reads when something is wrong. Pure, unit-tested.
 */

interface Check {
  name?: unknown;
  status?: unknown;
  detail?: unknown;
  fix?: unknown;
}

const MARK: Record<string, string> = { ok: '✅', warn: '⚠️', error: '❌' };

function text(value: unknown): string {
  if (value === undefined || value === null) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Escape what would break a Markdown table cell or start HTML. */
function cell(value: unknown): string {
  return text(value).replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/\r?\n/g, '<br>');
}

export function doctorMarkdown(report: unknown): string {
  if (!report || typeof report !== 'object') {
    return `# Koma diagnostics\n\nThe server sent no report (${cell(report)}).\n`;
  }
  const r = report as Record<string, unknown>;
  const lines = ['# Koma diagnostics', ''];
  const verdict = r.ok === true ? '✅ Everything needed works.' : r.ok === false ? '❌ Something needs attention (see the checks below).' : '';
  if (verdict) {
    lines.push(verdict, '');
  }
  lines.push(`- **Provider:** ${cell(r.provider) || 'unknown'}`);
  lines.push(`- **URL:** ${cell(r.base_url ?? r.baseUrl) || 'default'}`);
  lines.push(`- **Model:** ${cell(r.model) || 'default'}`, '');
  const checks = Array.isArray(r.checks) ? (r.checks as Check[]) : [];
  if (checks.length > 0) {
    lines.push('| | Check | Result | What to do |', '|---|---|---|---|');
    for (const check of checks) {
      const status = typeof check?.status === 'string' ? check.status : '';
      lines.push(`| ${MARK[status] ?? cell(status)} | ${cell(check?.name)} | ${cell(check?.detail)} | ${cell(check?.fix)} |`);
    }
    lines.push('');
  }
  if (r.error !== undefined) {
    lines.push(`**Error:** ${cell(r.error)}`, '');
  }
  lines.push('<details><summary>Raw report</summary>', '', '```json', JSON.stringify(report, null, 2), '```', '', '</details>', '');
  return lines.join('\n');
}
