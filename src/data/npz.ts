// NumPy .npz reader/writer (a ZIP of '<name>.npy' entries). Stored entries (np.savez) stream rows
// from the file like openNpy; deflated entries (np.savez_compressed) are inflated whole, in memory,
// on first read. Node-side adapter.

import { closeSync } from 'node:fs';
import { constants, inflateRawSync } from 'node:zlib';
import { LowbitError } from '../errors.js';
import { checkNdArray, type DType, type NdArray } from './dtype.js';
import { NPY_PREFIX_BYTES, encodeNpyHeader, npyHeaderLength, parseNpyHeader, type NpyHeader } from './npy-header.js';
import { fileRowReader, littleEndianBytes, memoryRowReader, parseNpy, type RowReader } from './npy.js';
import { crc32, entryDataOffset, openForRead, readZipDirectory, writeStoredZip, type ZipEntry } from './zip.js';

/** One array of an .npz: the RowReader interface plus where it came from. */
export interface NpzArray extends RowReader {
  readonly name: string;
  /**
   * True for deflate-compressed entries (np.savez_compressed): the first readRows/readAll inflates
   * and keeps the whole array in memory. Stored entries stream from disk.
   */
  readonly compressed: boolean;
}

/** An opened .npz archive. Only the directory and the .npy headers are read at open time. */
export interface NpzFile {
  readonly path: string;
  /** Array names in archive order (entry names without '.npy'; entries not ending in .npy are ignored). */
  readonly names: readonly string[];
  has(name: string): boolean;
  /**
   * The array stored as '<name>.npy'.
   * @throws LowbitError('DATA_MISMATCH') naming the file and listing the names it has.
   */
  array(name: string): NpzArray;
}

const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
/** Compressed bytes inflated to peek at a deflated entry's .npy header (headers are < 1 KB in practice). */
const HEADER_PEEK = 64 * 1024;

/**
 * Opens an .npz: reads the ZIP directory (zip64 included) and every entry's .npy header.
 * @throws LowbitError('FILE_NOT_FOUND') if missing; LowbitError('BAD_DATA') naming the file for a
 *   damaged archive, duplicate or encrypted entries, unsupported compression, or a bad .npy entry
 *   (bad magic, Fortran order, unsupported dtype, size mismatch).
 */
export function openNpz(path: string): NpzFile {
  const { fd, size, read } = openForRead(path);
  const arrays = new Map<string, NpzArray>();
  try {
    for (const e of readZipDirectory(read, size, path)) {
      if (!e.name.endsWith('.npy')) continue;
      const name = e.name.slice(0, -4);
      if (arrays.has(name)) throw new LowbitError('BAD_DATA', `${path}: array '${name}' appears twice in the archive`, 're-save it with numpy.savez');
      const label = `${path} (array '${name}')`;
      if (e.flags & 1) throw new LowbitError('BAD_DATA', `${label}: encrypted ZIP entries are not supported`);
      const dataAt = entryDataOffset(read, size, e, path);
      if (e.method === METHOD_STORED) arrays.set(name, storedArray(path, name, label, e, dataAt, read));
      else if (e.method === METHOD_DEFLATE) arrays.set(name, deflatedArray(path, name, label, e, dataAt));
      else {
        throw new LowbitError('BAD_DATA', `${label}: ZIP compression method ${e.method} is not supported (only stored and deflate)`, 'save with np.savez or np.savez_compressed');
      }
    }
  } finally {
    closeSync(fd);
  }
  const names = [...arrays.keys()];
  return {
    path,
    names,
    has: (name) => arrays.has(name),
    array(name) {
      const a = arrays.get(name);
      if (!a) {
        throw new LowbitError('DATA_MISMATCH', `${path} has no array '${name}' (it has: ${names.map((n) => `'${n}'`).join(', ') || 'none'})`, `save each model input under its name: np.savez(path, **{'${name}': array, ...})`);
      }
      return a;
    },
  };
}

function storedArray(path: string, name: string, label: string, e: ZipEntry, dataAt: number, read: (p: number, n: number) => Uint8Array): NpzArray {
  if (e.compressedSize !== e.uncompressedSize) {
    throw new LowbitError('BAD_DATA', `${label}: stored entry has compressed size ${e.compressedSize} != size ${e.uncompressedSize}`);
  }
  const header = readStoredHeader(read, dataAt, e.uncompressedSize, label);
  checkEntrySize(header, e.uncompressedSize, label);
  return { ...fileRowReader(path, dataAt, header, label), name, compressed: false };
}

function readStoredHeader(read: (p: number, n: number) => Uint8Array, at: number, size: number, label: string): NpyHeader {
  const { dataOffset } = npyHeaderLength(read(at, Math.min(size, NPY_PREFIX_BYTES)), label);
  if (dataOffset > size) throw new LowbitError('BAD_DATA', `${label}: entry is truncated inside the .npy header`);
  return parseNpyHeader(read(at, dataOffset), label);
}

function checkEntrySize(header: NpyHeader, entrySize: number, label: string): void {
  const have = entrySize - header.dataOffset;
  if (have !== header.dataBytes) {
    throw new LowbitError('BAD_DATA', `${label}: shape [${header.shape.join(', ')}] of ${header.dtype} needs ${header.dataBytes} data bytes but the entry has ${have}`, 're-save the archive with numpy.savez');
  }
}

function deflatedArray(path: string, name: string, label: string, e: ZipEntry, dataAt: number): NpzArray {
  const readCompressed = (n: number): Uint8Array => {
    const { fd, read } = openForRead(path);
    try {
      return read(dataAt, n);
    } finally {
      closeSync(fd);
    }
  };
  // Peek: inflate a prefix with Z_SYNC_FLUSH (no error on incomplete input) to get the header.
  let header: NpyHeader;
  try {
    const head = inflateRawSync(readCompressed(Math.min(e.compressedSize, HEADER_PEEK)), { finishFlush: constants.Z_SYNC_FLUSH });
    header = parseNpyHeader(head, label);
  } catch (err) {
    if (err instanceof LowbitError) throw err;
    throw new LowbitError('BAD_DATA', `${label}: deflate data is corrupt (${(err as Error).message})`, 're-save the archive with numpy.savez_compressed', { cause: err });
  }
  checkEntrySize(header, e.uncompressedSize, label);
  let loaded: RowReader | undefined;
  const load = (): RowReader => {
    if (loaded) return loaded;
    let bytes: Uint8Array;
    try {
      bytes = inflateRawSync(readCompressed(e.compressedSize));
    } catch (err) {
      throw new LowbitError('BAD_DATA', `${label}: deflate data is corrupt (${(err as Error).message})`, 're-save the archive with numpy.savez_compressed', { cause: err });
    }
    if (bytes.length !== e.uncompressedSize) throw new LowbitError('BAD_DATA', `${label}: inflated to ${bytes.length} bytes, directory says ${e.uncompressedSize}`);
    if (crc32(bytes) !== e.crc32) throw new LowbitError('BAD_DATA', `${label}: CRC-32 mismatch (archive is corrupt)`, 're-save the archive');
    loaded = memoryRowReader(parseNpy(bytes, label), label);
    return loaded;
  };
  const count = header.shape.length === 0 ? 1 : header.shape[0]!;
  return {
    name,
    compressed: true,
    dtype: header.dtype,
    shape: header.shape,
    count,
    readRows: (start, n) => load().readRows(start, n),
    readAll: () => load().readAll(),
  };
}

/**
 * Writes arrays to an .npz (stored, i.e. like np.savez; np.load reads it). Entry names are
 * '<name>.npy'. Zip64 records are added when needed (or always with `forceZip64`).
 * @throws LowbitError('BAD_DATA') for a malformed array or empty name; LowbitError('BAD_OPTION')
 *   if the file cannot be written.
 */
export function writeNpz(path: string, arrays: Record<string, NdArray>, opts: { forceZip64?: boolean } = {}): void {
  const inputs = Object.entries(arrays).map(([name, arr]) => {
    if (name === '') throw new LowbitError('BAD_DATA', `${path}: array names must not be empty`);
    checkNdArray(arr, `${path} (array '${name}')`);
    return { name: `${name}.npy`, parts: [encodeNpyHeader(arr.dtype, arr.shape), littleEndianBytes(arr)] };
  });
  writeStoredZip(path, inputs, opts.forceZip64 ?? false);
}

export type { DType, NdArray };
