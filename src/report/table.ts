// Aligned text tables for reports and the CLI: unicode box, ASCII (+-|) or Markdown; numeric
// columns right-aligned. Pure (no node: imports); anyone above pipeline/ may import it.

import { LowbitError } from '../errors.js';

/** A cell; numbers print with String(n) (format them first for units), null/undefined print empty. */
export type Cell = string | number | null | undefined;

export interface Column {
  header: string;
  /** Default: 'right' when every non-empty cell looks numeric ('42', '-1.5', '4.2 MB', '1.7 GB/s', '3.92x', '12%'), else 'left'. */
  align?: 'left' | 'right';
}

export interface TableOptions {
  /** A line printed above the table. */
  title?: string;
  /** 'unicode' (default): ┌─┬─┐ box; 'ascii': +---+ and |; 'markdown': GitHub table (alignment row). */
  style?: 'unicode' | 'ascii' | 'markdown';
}

/** Number, optionally with a short unit: '42', '-1.5e3', '1,234', '4.2 MB', '3.92x', '12.3%', 'inf dB'. */
const NUMERIC = /^[-+]?(?:\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?|\.\d+|inf|nan|infinity)\s?(?:%|x|[a-zµ]{1,3}(?:\/[a-z]{1,3})?)?$/i;
/** Placeholders that say nothing about a column's type. */
const BLANK = new Set(['', '-', '—', 'n/a']);

interface Frame {
  top?: [string, string, string, string];
  sep: [string, string, string, string];
  bottom?: [string, string, string, string];
  v: string;
}

/** Per style: [left, fill, junction, right] of each horizontal rule and the vertical bar. */
const FRAMES: Readonly<Record<NonNullable<TableOptions['style']>, Frame>> = {
  unicode: { top: ['┌', '─', '┬', '┐'], sep: ['├', '─', '┼', '┤'], bottom: ['└', '─', '┴', '┘'], v: '│' },
  ascii: { top: ['+', '-', '+', '+'], sep: ['+', '-', '+', '+'], bottom: ['+', '-', '+', '+'], v: '|' },
  markdown: { sep: ['|', '-', '|', '|'], v: '|' },
};

/** Display width in code points (East Asian wide characters are not measured as 2). */
const width = (s: string): number => [...s].length;

function text(c: Cell): string {
  if (c === null || c === undefined) return '';
  return String(c).replace(/\r?\n/g, ' ');
}

/**
 * Renders rows under a header row. Rows shorter than the header are padded with empty cells.
 * @returns the table, lines joined with '\n', no trailing newline.
 * @throws LowbitError('INTERNAL') if a row has more cells than there are columns (a caller bug).
 */
export function renderTable(columns: readonly (string | Column)[], rows: readonly (readonly Cell[])[], opts: TableOptions = {}): string {
  const cols: Column[] = columns.map((c) => (typeof c === 'string' ? { header: c } : c));
  rows.forEach((r, i) => {
    if (r.length > cols.length) throw new LowbitError('INTERNAL', `table row ${i} has ${r.length} cells for ${cols.length} columns`);
  });
  const style = opts.style ?? 'unicode';
  // A '|' inside a Markdown cell would split it.
  const cell = (c: Cell): string => (style === 'markdown' ? text(c).replace(/\|/g, '\\|') : text(c));
  const body = rows.map((r) => cols.map((_, k) => cell(r[k])));
  const header = cols.map((c) => cell(c.header));
  const align = cols.map((c, k) => {
    if (c.align) return c.align;
    const cells = rows.map((r) => r[k]).filter((v) => !BLANK.has(text(v).trim()));
    return cells.length > 0 && cells.every((v) => typeof v === 'number' || NUMERIC.test(text(v).trim())) ? 'right' : 'left';
  });
  const frame = FRAMES[style];
  // Markdown needs 3 dashes in its alignment row.
  const widths = cols.map((_, k) => Math.max(style === 'markdown' ? 3 : 1, width(header[k]!), ...body.map((r) => width(r[k]!))));
  const pad = (s: string, k: number): string => {
    const fill = ' '.repeat(widths[k]! - width(s));
    return align[k] === 'right' ? fill + s : s + fill;
  };
  const line = (cells: string[]): string => `${frame.v} ${cells.map(pad).join(` ${frame.v} `)} ${frame.v}`;
  const rule = ([l, f, j, r]: [string, string, string, string]): string => l + widths.map((w) => f.repeat(w + 2)).join(j) + r;
  const out: string[] = [];
  if (opts.title !== undefined) out.push(opts.title);
  if (frame.top) out.push(rule(frame.top));
  out.push(line(header));
  if (style === 'markdown') {
    out.push(`|${widths.map((w, k) => (align[k] === 'right' ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|')}|`);
  } else {
    out.push(rule(frame.sep));
  }
  for (const r of body) out.push(line(r));
  if (frame.bottom) out.push(rule(frame.bottom));
  return out.join('\n');
}
