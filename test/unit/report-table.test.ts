// Text tables: unicode box, ASCII and Markdown styles; numeric columns right-aligned.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LowbitError } from '../../src/errors.js';
import { renderTable } from '../../src/report/table.js';

const rows = [
  ['fp32', '4.2 MB', 98.91, '1.00x'],
  ['int8 (per-channel)', '1.1 MB', 98.8, '3.92x'],
  ['int4', '', null, '7.10x'],
];
const cols = ['model', 'size', 'acc %', 'ratio'];

test('unicode box (default) with title; numeric columns right-aligned', () => {
  assert.equal(
    renderTable(cols, rows, { title: 'Results' }),
    [
      'Results',
      '┌────────────────────┬────────┬───────┬───────┐',
      '│ model              │   size │ acc % │ ratio │',
      '├────────────────────┼────────┼───────┼───────┤',
      '│ fp32               │ 4.2 MB │ 98.91 │ 1.00x │',
      '│ int8 (per-channel) │ 1.1 MB │  98.8 │ 3.92x │',
      '│ int4               │        │       │ 7.10x │',
      '└────────────────────┴────────┴───────┴───────┘',
    ].join('\n'),
  );
});

test('ascii style and explicit alignment', () => {
  assert.equal(
    renderTable([{ header: 'op' }, { header: 'count', align: 'left' }], [['Conv', 12], ['MatMul', 3]], { style: 'ascii' }),
    ['+--------+-------+', '| op     | count |', '+--------+-------+', '| Conv   | 12    |', '| MatMul | 3     |', '+--------+-------+'].join('\n'),
  );
});

test('markdown style: alignment row, escaped pipes, short rows padded', () => {
  assert.equal(
    renderTable(['name', 'ms'], [['a|b', '4.21 ms'], ['c']], { style: 'markdown' }),
    ['| name |      ms |', '|------|--------:|', '| a\\|b | 4.21 ms |', '| c    |         |'].join('\n'),
  );
});

test('mixed text makes a column left-aligned; blanks do not count', () => {
  const t = renderTable(['k', 'v'], [['a', '1'], ['b', 'n/a'], ['c', 'x1']], { style: 'ascii' }).split('\n');
  assert.equal(t[3], '| a | 1   |');
  const u = renderTable(['k', 'v'], [['a', '1'], ['b', '-'], ['c', '22']], { style: 'ascii' }).split('\n');
  assert.equal(u[3], '| a |  1 |');
  assert.equal(u[4], '| b |  - |');
  const w = renderTable(['speed'], [['1.7 GB/s'], ['12.5 MB/s']], { style: 'ascii' }).split('\n');
  assert.equal(w[3], '|  1.7 GB/s |');
});

test('newlines in cells are flattened; too many cells is a caller bug', () => {
  assert.equal(renderTable(['a'], [['x\ny']], { style: 'ascii' }).split('\n')[3], '| x y |');
  assert.throws(() => renderTable(['a'], [['1', '2']]), (e: unknown) => e instanceof LowbitError && e.code === 'INTERNAL');
});
