// Number formatting for reports: bytes (SI), durations, ratios, percentages, decibels, counts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatCount, formatDb, formatMs, formatPct, formatRatio } from '../../src/report/format.js';

const cases = <T>(fn: (x: T) => string, table: [T, string][]): void => {
  for (const [input, want] of table) assert.equal(fn(input), want, `${String(input)}`);
};

test('formatBytes: SI units, MB = 10^6 bytes', () => {
  cases(formatBytes, [
    [0, '0 B'], [999, '999 B'], [999.6, '1.0 kB'], [1000, '1.0 kB'], [1536, '1.5 kB'],
    [4_200_000, '4.2 MB'], [42_049_999, '42.0 MB'], [99_949_999, '99.9 MB'], [99_950_000, '100 MB'],
    [420_000_000, '420 MB'], [999_499_999, '999 MB'], [999_500_000, '1.0 GB'], [1.2e12, '1.2 TB'],
    [-2_500_000, '-2.5 MB'], [NaN, 'NaN'], [Infinity, 'Infinity'],
  ]);
});

test('formatMs: µs, ms, s, minutes, hours', () => {
  cases(formatMs, [
    [0, '0 ms'], [0.00042, '0.42 µs'], [0.42, '420 µs'], [0.9996, '1.00 ms'], [4.213, '4.21 ms'], [42.13, '42.1 ms'],
    [421.3, '421 ms'], [999.4, '999 ms'], [999.6, '1.00 s'], [4213, '4.21 s'], [59_940, '59.9 s'], [59_960, '1m 00s'],
    [125_000, '2m 05s'], [3_599_400, '59m 59s'], [3_720_000, '1h 02m'], [-4.213, '-4.21 ms'], [NaN, 'NaN'],
  ]);
});

test('formatRatio, formatPct, formatDb, formatCount', () => {
  cases(formatRatio, [[3.9213, '3.92x'], [1, '1.00x'], [0.5, '0.50x'], [Infinity, 'Infinity']]);
  assert.equal(formatRatio(3.9213, 1), '3.9x');
  cases(formatPct, [[0.1234, '12.3%'], [1, '100.0%'], [0, '0.0%'], [-0.012, '-1.2%'], [-0.0001, '0.0%']]);
  assert.equal(formatPct(0.004, { signed: true }), '+0.4%');
  assert.equal(formatPct(-0.004, { signed: true }), '-0.4%');
  assert.equal(formatPct(0.0001, { signed: true }), '0.0%');
  assert.equal(formatPct(0.98765, { digits: 2 }), '98.77%');
  cases(formatDb, [[42.137, '42.1 dB'], [-3.04, '-3.0 dB'], [Infinity, 'inf dB'], [-Infinity, '-inf dB'], [NaN, 'NaN']]);
  assert.equal(formatDb(42.137, 2), '42.14 dB');
  cases(formatCount, [[0, '0'], [999, '999'], [1000, '1,000'], [1234567, '1,234,567'], [-25_000, '-25,000'], [12.6, '13']]);
});
