// .npz reader/writer: NumPy-written archives (np.savez stored, np.savez_compressed deflated), our
// writer (plain and zip64), and damaged archives -> LowbitError naming the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LowbitError } from '../../src/errors.js';
import { type NdArray } from '../../src/data/dtype.js';
import { encodeNpy } from '../../src/data/npy.js';
import { encodeNpyHeader } from '../../src/data/npy-header.js';
import { openNpz, writeNpz } from '../../src/data/npz.js';
import { crc32, writeStoredZip } from '../../src/data/zip.js';
import { throwsLowbit } from '../helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/data/', import.meta.url));
const fx = (name: string): string => join(FIX, name);

function withTmp(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'lowbit-npz-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}


// The arrays make.py saved into savez.npz / savez_compressed.npz.
const X = Float32Array.from({ length: 16 }, (_, i) => i / 16);
const MASK = BigInt64Array.from({ length: 12 }, (_, i) => BigInt(i));
const LABELS = Int32Array.from([3, 1, 4, 1]);

for (const [file, compressed] of [['savez.npz', false], ['savez_compressed.npz', true]] as const) {
  test(`reads NumPy's ${file}`, () => {
    const z = openNpz(fx(file));
    assert.deepEqual(z.names, ['x', 'mask', 'labels']);
    assert.ok(z.has('mask') && !z.has('mask.npy'));
    const x = z.array('x');
    assert.equal(x.compressed, compressed);
    assert.deepEqual([x.dtype, x.shape, x.count], ['float32', [4, 1, 2, 2], 4]);
    assert.deepEqual([...x.readRows(1, 2).data], [...X.slice(4, 12)]);
    assert.deepEqual(x.readRows(1, 2).shape, [2, 1, 2, 2]);
    const mask = z.array('mask');
    assert.deepEqual([mask.dtype, mask.shape], ['int64', [4, 3]]);
    assert.deepEqual([...mask.readRows(3, 1).data], [9n, 10n, 11n]);
    assert.deepEqual([...z.array('labels').readAll().data], [...LABELS]);
  });
}

test('reads zip64 archives written by Info-ZIP (zip -fz), stored and deflated', () => {
  for (const [file, compressed] of [['z64_stored.npz', false], ['z64_deflate.npz', true]] as const) {
    const z = openNpz(fx(file));
    assert.deepEqual(z.names, ['x', 'ids']);
    const x = z.array('x');
    assert.equal(x.compressed, compressed);
    assert.deepEqual(x.shape, [5, 2, 3]);
    assert.deepEqual([...x.readRows(4, 1).data], [24, 25, 26, 27, 28, 29].map((i) => Math.fround(i / 10)));
    assert.deepEqual([...z.array('ids').readAll().data], [-3n, -2n, -1n, 0n, 1n, 2n]);
  }
});

test('positional np.savez names are arr_0, arr_1', () => {
  const z = openNpz(fx('positional.npz'));
  assert.deepEqual(z.names, ['arr_0', 'arr_1']);
  assert.deepEqual([...z.array('arr_1').readAll().data], [...LABELS]);
});

test("NumPy's stored entries are byte-identical to encodeNpy (header compatibility)", () => {
  const raw = readFileSync(fx('savez.npz'));
  const entries: [string, NdArray][] = [
    ['x', { dtype: 'float32', shape: [4, 1, 2, 2], data: X }],
    ['labels', { dtype: 'int32', shape: [4], data: LABELS }],
  ];
  for (const [name, arr] of entries) {
    const enc = Buffer.from(encodeNpy(arr));
    assert.ok(raw.indexOf(enc) > 0, `entry ${name} not found verbatim`);
  }
});

test('missing array name -> DATA_MISMATCH listing what the file has', () => {
  const e = throwsLowbit(() => openNpz(fx('savez.npz')).array('input'), 'DATA_MISMATCH', 'savez.npz', "'input'", "'x'", "'mask'", "'labels'");
  assert.match(e.hint ?? '', /np\.savez/);
});

test('writeNpz round-trips, plain and with zip64 records', () => {
  withTmp((dir) => {
    const arrays: Record<string, NdArray> = {
      'image:0': { dtype: 'float32', shape: [4, 1, 2, 2], data: X },
      ids: { dtype: 'int64', shape: [4, 3], data: MASK },
      flags: { dtype: 'bool', shape: [4], data: Uint8Array.from([1, 0, 0, 1]) },
      'ünï': { dtype: 'uint8', shape: [4, 1], data: Uint8Array.from([1, 2, 3, 4]) },
    };
    for (const forceZip64 of [false, true]) {
      const p = join(dir, `w${forceZip64}.npz`);
      writeNpz(p, arrays, { forceZip64 });
      const bytes = readFileSync(p);
      // EOCD total-entries field: 4, or saturated 0xFFFF when the zip64 record carries it.
      assert.equal(bytes.readUInt16LE(bytes.length - 12), forceZip64 ? 0xffff : 4);
      const z = openNpz(p);
      assert.deepEqual(z.names, Object.keys(arrays));
      for (const [name, arr] of Object.entries(arrays)) {
        const a = z.array(name);
        assert.equal(a.compressed, false);
        assert.deepEqual(a.readAll(), { dtype: arr.dtype, shape: arr.shape, data: arr.data }, name);
        assert.deepEqual([...a.readRows(2, 1).data], [...arr.data].slice((arr.data.length / 4) * 2, (arr.data.length / 4) * 3));
      }
    }
    throwsLowbit(() => writeNpz(join(dir, 'bad.npz'), { a: { dtype: 'int8', shape: [3], data: new Int8Array(2) } }), 'BAD_DATA', 'bad.npz', "'a'");
  });
});

test('crc32 matches the standard check value', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

test('damaged archives -> BAD_DATA naming the file', () => {
  withTmp((dir) => {
    const stored = readFileSync(fx('savez.npz'));
    const put = (name: string, bytes: Uint8Array): string => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return p;
    };
    // Cut: the end-of-central-directory record is gone.
    throwsLowbit(() => openNpz(put('cut.npz', stored.subarray(0, stored.length - 30))), 'BAD_DATA', 'cut.npz');
    throwsLowbit(() => openNpz(put('notzip.npz', new TextEncoder().encode('hello world, not a zip archive'))), 'BAD_DATA', 'notzip.npz', 'end-of-central-directory');
    // Front cut off: central directory offsets point past the end.
    throwsLowbit(() => openNpz(put('front.npz', stored.subarray(200))), 'BAD_DATA', 'front.npz');
    // Unsupported compression method (12 = bzip2) in the central directory.
    const bz = Buffer.from(stored);
    const cd = bz.indexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02]));
    bz.writeUInt16LE(12, cd + 10);
    throwsLowbit(() => openNpz(put('bzip.npz', bz)), 'BAD_DATA', 'bzip.npz', 'method 12');
    // Deflate stream corrupted: detected at open (header peek) or on read (inflate / CRC-32).
    const comp = Buffer.from(readFileSync(fx('savez_compressed.npz')));
    const firstData = 30 + comp.readUInt16LE(26) + comp.readUInt16LE(28);
    comp[firstData + 60] = comp[firstData + 60]! ^ 0xff;
    const p = put('corrupt.npz', comp);
    throwsLowbit(() => openNpz(p).array('x').readAll(), 'BAD_DATA', 'corrupt.npz', "'x'");
    // A stored entry whose .npy header promises more data than the entry holds.
    const short = join(dir, 'short.npz');
    writeStoredZip(short, [{ name: 'x.npy', parts: [encodeNpyHeader('float32', [10]), new Uint8Array(16)] }]);
    throwsLowbit(() => openNpz(short), 'BAD_DATA', 'short.npz', "'x'", '40 data bytes');
    // An entry that is not a .npy at all.
    const junk = join(dir, 'junk.npz');
    writeStoredZip(junk, [{ name: 'x.npy', parts: [new TextEncoder().encode('not numpy data at all')] }]);
    throwsLowbit(() => openNpz(junk), 'BAD_DATA', 'junk.npz', 'magic');
  });
  throwsLowbit(() => openNpz(fx('nope.npz')), 'FILE_NOT_FOUND', 'nope.npz');
});
