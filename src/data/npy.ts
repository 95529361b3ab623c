// NumPy .npy reader/writer: in memory (parseNpy / encodeNpy) and streaming rows from a file
// (openNpy -> readRows with fs.readSync at the right offset, so memory stays flat). Node-side adapter.

import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { LowbitError } from '../errors.js';
import { DTYPES, HOST_LITTLE_ENDIAN, byteswap, checkNdArray, fmtShape, shapeSize, type DType, type NdArray } from './dtype.js';
import { NPY_PREFIX_BYTES, encodeNpyHeader, npyHeaderLength, parseNpyHeader, type NpyHeader } from './npy-header.js';

export type { DType, NdArray, TypedArray } from './dtype.js';

/** Row access to an array stored along axis 0 (a .npy file, an .npz entry, or memory). */
export interface RowReader {
  readonly dtype: DType;
  readonly shape: readonly number[];
  /** shape[0]; 1 for a 0-d array (its single element is the one "row"). */
  readonly count: number;
  /**
   * Rows [start, start + n) as a fresh array of shape [n, ...shape.slice(1)] (for a 0-d array,
   * readRows(0, 1) returns shape []).
   * @throws LowbitError('BAD_OPTION') for a range outside [0, count]; LowbitError('BAD_DATA') if the
   *   file shrank since it was opened.
   */
  readRows(start: number, n: number): NdArray;
  /** The whole array (readRows(0, count)). */
  readAll(): NdArray;
}

/** A .npy file opened for streaming. Holds no file descriptor between calls (nothing to close). */
export interface NpyFile extends RowReader {
  readonly path: string;
  readonly version: readonly [number, number];
}

/**
 * Parses a whole .npy held in memory. The result owns a copy of the data (big-endian files are
 * converted to host order).
 * @param name used in error messages (a file name, or an .npz entry).
 * @throws LowbitError('BAD_DATA') for bad magic, malformed/unsupported header, Fortran order, or a
 *   byte count that does not match the shape (truncated or trailing bytes).
 */
export function parseNpy(bytes: Uint8Array, name = '<memory>'): NdArray {
  const header = parseNpyHeader(bytes, name);
  checkDataSize(header, bytes.length, name);
  return toNdArray(header, header.shape, bytes.slice(header.dataOffset, header.dataOffset + header.dataBytes));
}

/**
 * Serialises an array as .npy (format 1.0, little-endian, C order).
 * @throws LowbitError('BAD_DATA') if the array is malformed (dtype/typed-array/shape mismatch).
 */
export function encodeNpy(arr: NdArray): Uint8Array {
  checkNdArray(arr, 'encodeNpy');
  const header = encodeNpyHeader(arr.dtype, arr.shape);
  const body = littleEndianBytes(arr);
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

/**
 * Writes an array to a .npy file without building the whole file in memory first.
 * @throws LowbitError('BAD_DATA') for a malformed array; LowbitError('BAD_OPTION') if the file
 *   cannot be written.
 */
export function writeNpy(path: string, arr: NdArray): void {
  checkNdArray(arr, path);
  const fd = openFile(path, 'w');
  try {
    writeAll(fd, encodeNpyHeader(arr.dtype, arr.shape), path);
    writeAll(fd, littleEndianBytes(arr), path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens a .npy file for streaming: reads and checks only the header and the file size.
 * @throws LowbitError('FILE_NOT_FOUND') if missing; LowbitError('BAD_DATA') (naming the file) for
 *   bad magic, malformed header, Fortran order, unsupported dtype, or a size that does not match
 *   the shape.
 */
export function openNpy(path: string): NpyFile {
  const fd = openFile(path, 'r');
  let header: NpyHeader;
  let size: number;
  try {
    size = fstatSync(fd).size;
    const prefix = readAt(fd, 0, Math.min(NPY_PREFIX_BYTES, size), path);
    const { dataOffset } = npyHeaderLength(prefix, path);
    if (dataOffset > size) throw new LowbitError('BAD_DATA', `${path}: file is truncated inside the .npy header`);
    header = parseNpyHeader(readAt(fd, 0, dataOffset, path), path);
  } finally {
    closeSync(fd);
  }
  checkDataSize(header, size, path);
  const reader = fileRowReader(path, 0, header);
  return Object.assign(reader, { path, version: header.version });
}

/**
 * Row reader over a .npy stored at byte `base` of `path` (a plain file: base 0; a stored .npz
 * entry: its data offset). Each call opens, reads with fs.readSync at the row offset, and closes.
 */
export function fileRowReader(path: string, base: number, header: NpyHeader, label = path): RowReader {
  const rowShape = header.shape.slice(1);
  const rowBytes = shapeSize(rowShape) * DTYPES[header.dtype].itemSize;
  const count = header.shape.length === 0 ? 1 : header.shape[0]!;
  const dataStart = base + header.dataOffset;
  const readRows = (start: number, n: number): NdArray => {
    checkRange(start, n, count, label);
    const fd = openFile(path, 'r');
    let bytes: Uint8Array;
    try {
      bytes = readAt(fd, dataStart + start * rowBytes, n * rowBytes, label);
    } finally {
      closeSync(fd);
    }
    return toNdArray(header, header.shape.length === 0 ? [] : [n, ...rowShape], bytes);
  };
  return { dtype: header.dtype, shape: header.shape, count, readRows, readAll: () => readRows(0, count) };
}

/** Row reader over an array already in memory (deflated .npz entries, tests, MNIST). Rows are copies. */
export function memoryRowReader(arr: NdArray, label = '<memory>'): RowReader {
  checkNdArray(arr, label);
  const rowShape = arr.shape.slice(1);
  const rowElems = shapeSize(rowShape);
  const count = arr.shape.length === 0 ? 1 : arr.shape[0]!;
  const readRows = (start: number, n: number): NdArray => {
    checkRange(start, n, count, label);
    const data = arr.data.slice(start * rowElems, (start + n) * rowElems);
    return { dtype: arr.dtype, shape: arr.shape.length === 0 ? [] : [n, ...rowShape], data };
  };
  return { dtype: arr.dtype, shape: arr.shape, count, readRows, readAll: () => readRows(0, count) };
}

function checkRange(start: number, n: number, count: number, label: string): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(n) || start < 0 || n < 0 || start + n > count) {
    throw new LowbitError('BAD_OPTION', `${label}: rows [${start}, ${start + n}) are outside the array's ${count} rows`);
  }
}

function checkDataSize(header: NpyHeader, total: number, file: string): void {
  const have = total - header.dataOffset;
  if (have === header.dataBytes) return;
  const what = `shape ${fmtShape(header.shape)} of ${header.dtype} needs ${header.dataBytes} data bytes but the file has ${have}`;
  throw new LowbitError(
    'BAD_DATA',
    `${file}: ${have < header.dataBytes ? 'file is truncated' : 'file is longer than its header says'} (${what})`,
    'the file was cut short or altered; re-save it with numpy.save',
  );
}

function toNdArray(header: NpyHeader, shape: number[], bytes: Uint8Array): NdArray {
  const { itemSize, ctor } = DTYPES[header.dtype];
  if (header.littleEndian !== HOST_LITTLE_ENDIAN) byteswap(bytes, itemSize);
  // `bytes` is a fresh, exactly sized buffer (slice / readAt), so the typed view is aligned.
  return { dtype: header.dtype, shape, data: new ctor(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length / itemSize) };
}

/** The array's bytes in little-endian order (a view when the host is little-endian). */
export function littleEndianBytes(arr: NdArray): Uint8Array {
  const view = new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
  if (HOST_LITTLE_ENDIAN) return view;
  const copy = view.slice();
  byteswap(copy, DTYPES[arr.dtype].itemSize);
  return copy;
}

// --- small fs helpers shared with npz.ts -------------------------------------------------------

/**
 * Opens a file, mapping errno to LowbitErrors.
 * @throws LowbitError('FILE_NOT_FOUND') for ENOENT; LowbitError('BAD_DATA') or ('BAD_OPTION') otherwise.
 */
export function openFile(path: string, mode: 'r' | 'w'): number {
  try {
    return openSync(path, mode);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && mode === 'r') {
      throw new LowbitError('FILE_NOT_FOUND', `${path}: no such file`, 'check the path', { cause: e });
    }
    throw new LowbitError(mode === 'r' ? 'BAD_DATA' : 'BAD_OPTION', `${path}: cannot ${mode === 'r' ? 'read' : 'write'} (${code ?? (e as Error).message})`, undefined, { cause: e });
  }
}

/** Largest single readSync (it takes an int32 length on some platforms). */
const READ_CHUNK = 1 << 30;

/**
 * Reads exactly `length` bytes at `position` into a fresh buffer.
 * @throws LowbitError('BAD_DATA') if the file ends first or cannot be read (e.g. a directory).
 */
export function readAt(fd: number, position: number, length: number, label = 'file'): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    let got: number;
    try {
      got = readSync(fd, out, done, Math.min(READ_CHUNK, length - done), position + done);
    } catch (e) {
      throw new LowbitError('BAD_DATA', `${label}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, undefined, { cause: e });
    }
    if (got === 0) throw new LowbitError('BAD_DATA', `${label}: file is truncated (wanted ${length} bytes at offset ${position}, got ${done})`);
    done += got;
  }
  return out;
}

/** Writes all of `bytes` (writeSync may write less than asked). */
export function writeAll(fd: number, bytes: Uint8Array, label: string): void {
  let done = 0;
  try {
    while (done < bytes.length) done += writeSync(fd, bytes, done, Math.min(READ_CHUNK, bytes.length - done));
  } catch (e) {
    throw new LowbitError('BAD_OPTION', `${label}: write failed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, undefined, { cause: e });
  }
}
