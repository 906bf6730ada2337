/**
 * Applying LSP text edits to a string, to show the user what a proposed edit would make of a file
 * before anything changes on disk. Positions are LSP's: zero-based lines and UTF-16 columns (the
 * same units JavaScript strings index in). Pure, unit-tested.
 */

export interface Position {
  line: number;
  character: number;
}

export interface TextEditLike {
  range: { start: Position; end: Position };
  newText: string;
}

/** Offset of a position in `text`; positions past a line's or the text's end are clamped. */
export function offsetAt(text: string, position: Position): number {
  let offset = 0;
  for (let line = 0; line < position.line; line++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) {
      return text.length;
    }
    offset = next + 1;
  }
  let lineEnd = text.indexOf('\n', offset);
  if (lineEnd < 0) {
    lineEnd = text.length;
  } else if (lineEnd > offset && text[lineEnd - 1] === '\r') {
    lineEnd -= 1;
  }
  return Math.min(offset + Math.max(0, position.character), lineEnd);
}

/**
 * Apply non-overlapping edits (LSP's rule) as if at once: later edits first, so earlier offsets
 * stay valid. Edits at the same position keep their given order.
 */
export function applyTextEdits(text: string, edits: readonly TextEditLike[]): string {
  const resolved = edits.map((edit, index) => ({
    start: offsetAt(text, edit.range.start),
    end: offsetAt(text, edit.range.end),
    newText: edit.newText,
    index,
  }));
  resolved.sort((a, b) => b.start - a.start || b.index - a.index);
  let out = text;
  let limit = Number.POSITIVE_INFINITY;
  for (const edit of resolved) {
    const end = Math.max(edit.start, Math.min(edit.end, limit));
    out = out.slice(0, edit.start) + edit.newText + out.slice(end);
    limit = edit.start;
  }
  return out;
}

/** Lines added and removed between two texts, for the "+3 −1" summary next to a proposal. */
export function lineDelta(before: string, after: string): { added: number; removed: number } {
  const a = before.split('\n');
  const b = after.split('\n');
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) {
    start++;
  }
  let endA = a.length - 1;
  let endB = b.length - 1;
  while (endA >= start && endB >= start && a[endA] === b[endB]) {
    endA--;
    endB--;
  }
  return { added: Math.max(0, endB - start + 1), removed: Math.max(0, endA - start + 1) };
}
