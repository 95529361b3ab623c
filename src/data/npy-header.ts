// NumPy .npy header codec (format versions 1.0, 2.0, 3.0): magic, length, and the Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }. No node: imports; used by npy.ts, npz.ts.
// Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html

import { LowbitError } from '../errors.js';
import { DTYPES, fmtShape, shapeSize, type DType } from './dtype.js';

/** What a .npy header says about the array that follows it. */
export interface NpyHeader {
  dtype: DType;
  shape: number[];
  /** false only for big-endian ('>') multi-byte data, which readers byte-swap. */
  littleEndian: boolean;
  version: [number, number];
  /** Byte offset of the first data byte from the start of the .npy (magic included). */
  dataOffset: number;
  /** Bytes of array data that must follow the header. */
  dataBytes: number;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
/** Bytes needed to know the full header length (v2/v3 prefix; v1 needs 10). */
export const NPY_PREFIX_BYTES = 12;

/** NumPy '<kind><size>' -> dtype. Any other descr ('<c8', '|O', '<U5', '<M8[ns]') is rejected. */
const DESCR_TO_DTYPE: Readonly<Record<string, DType>> = {
  f2: 'float16', f4: 'float32', f8: 'float64',
  i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64',
  b1: 'bool',
};

function bad(file: string, what: string, hint?: string): LowbitError {
  return new LowbitError('BAD_DATA', `${file}: ${what}`, hint);
}

/**
 * Reads the length of the header from the first bytes of a .npy.
 * @returns the total header length (= data offset) and the version.
 * @throws LowbitError('BAD_DATA') on a bad magic string, unknown version or too few bytes.
 */
export function npyHeaderLength(prefix: Uint8Array, file: string): { dataOffset: number; version: [number, number] } {
  const magicOk = prefix.length >= 6 && MAGIC.every((b, i) => prefix[i] === b);
  if (!magicOk) {
    throw bad(file, 'not a NumPy .npy file (bad magic string; expected "\\x93NUMPY")', 'save the array with numpy.save');
  }
  if (prefix.length < 10) throw bad(file, 'file is truncated inside the .npy header');
  const major = prefix[6]!;
  const minor = prefix[7]!;
  const dv = new DataView(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  if (major === 1) return { dataOffset: 10 + dv.getUint16(8, true), version: [major, minor] };
  if (major === 2 || major === 3) {
    if (prefix.length < 12) throw bad(file, 'file is truncated inside the .npy header');
    return { dataOffset: 12 + dv.getUint32(8, true), version: [major, minor] };
  }
  throw bad(file, `unsupported .npy format version ${major}.${minor} (lowbit reads 1.0, 2.0 and 3.0)`, 'save with numpy.save');
}

/**
 * Parses a whole .npy header (`bytes` must hold at least `dataOffset` bytes).
 * @throws LowbitError('BAD_DATA') for truncated or malformed headers, Fortran order, big-endian
 *   ambiguity, structured/object/string/complex dtypes.
 */
export function parseNpyHeader(bytes: Uint8Array, file: string): NpyHeader {
  const { dataOffset, version } = npyHeaderLength(bytes, file);
  if (bytes.length < dataOffset) throw bad(file, 'file is truncated inside the .npy header');
  const prefix = version[0] === 1 ? 10 : 12;
  // v1/v2 headers are latin1, v3 is UTF-8; the keys and values we accept are ASCII either way.
  const text = new TextDecoder(version[0] === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(prefix, dataOffset));
  let dict: unknown;
  try {
    dict = new PyLiteral(text).parseTop();
  } catch (e) {
    throw bad(file, `malformed .npy header ${JSON.stringify(text.trim())}: ${(e as Error).message}`);
  }
  if (!isDict(dict) || !('descr' in dict) || !('shape' in dict) || !('fortran_order' in dict)) {
    throw bad(file, `malformed .npy header ${JSON.stringify(text.trim())}: needs keys descr, fortran_order, shape`);
  }
  if (dict.fortran_order !== false) {
    if (dict.fortran_order === true) {
      throw bad(file, 'array is stored in Fortran (column-major) order; lowbit reads C order only', 'save with np.save(path, np.ascontiguousarray(arr))');
    }
    throw bad(file, 'malformed .npy header: fortran_order must be True or False');
  }
  const shape = dict.shape;
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw bad(file, `malformed .npy header: shape must be a tuple of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const { dtype, littleEndian } = parseDescr(dict.descr, file);
  const dataBytes = shapeSize(shape as number[]) * DTYPES[dtype].itemSize;
  if (!Number.isSafeInteger(dataBytes)) throw bad(file, `shape ${fmtShape(shape as number[])} is too large`);
  return { dtype, shape: shape as number[], littleEndian, version, dataOffset, dataBytes };
}

function parseDescr(descr: unknown, file: string): { dtype: DType; littleEndian: boolean } {
  if (typeof descr !== 'string') {
    throw bad(file, 'structured (record) dtypes are not supported', 'save one plain numeric array per input (np.savez(path, name=arr, ...))');
  }
  const m = /^([<>|=]?)([a-zA-Z?]\d*)$/.exec(descr);
  const dtype = m ? DESCR_TO_DTYPE[m[2]!] : undefined;
  if (!m || !dtype) {
    throw bad(file, `unsupported dtype '${descr}'`, `lowbit reads float16/32/64, int8..int64, uint8..uint64 and bool; convert with arr.astype(np.float32)`);
  }
  const order = m[1]!;
  const itemSize = DTYPES[dtype].itemSize;
  if (itemSize === 1) return { dtype, littleEndian: true };
  if (order === '<') return { dtype, littleEndian: true };
  if (order === '>') return { dtype, littleEndian: false };
  // '|' means "not applicable" and is invalid for multi-byte items; '=' / '' mean "the writer's
  // native order", which the file does not record.
  throw bad(file, `dtype '${descr}' has no definite byte order`, "re-save with numpy.save, which writes '<' or '>' explicitly");
}

/** Builds a version 1.0 (or 2.0 when the header is too long for 1.0) .npy header. */
export function encodeNpyHeader(dtype: DType, shape: readonly number[]): Uint8Array {
  const itemSize = DTYPES[dtype].itemSize;
  const code = Object.entries(DESCR_TO_DTYPE).find(([, d]) => d === dtype)![0];
  const descr = (itemSize === 1 ? '|' : '<') + code;
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  for (const [major, prefix] of [[1, 10], [2, 12]] as const) {
    // Pad with spaces and a final newline so the data starts on a 64-byte boundary (as NumPy does).
    const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
    const hlen = total - prefix;
    if (major === 1 && hlen > 0xffff) continue;
    const out = new Uint8Array(total);
    out.set(MAGIC, 0);
    out[6] = major;
    out[7] = 0;
    const dv = new DataView(out.buffer);
    if (major === 1) dv.setUint16(8, hlen, true);
    else dv.setUint32(8, hlen, true);
    const text = dict.padEnd(hlen - 1, ' ') + '\n';
    for (let i = 0; i < text.length; i++) out[prefix + i] = text.charCodeAt(i);
    return out;
  }
  throw new LowbitError('INTERNAL', 'unreachable: .npy header too long');
}

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

function isDict(v: unknown): v is Record<string, PyValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Recursive-descent parser for the Python literal subset NumPy writes (dict, tuple, list, str, int, bool, None). */
class PyLiteral {
  private i = 0;
  constructor(private readonly s: string) {}

  parseTop(): PyValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) throw new Error(`unexpected '${this.s[this.i]}' at ${this.i}`);
    return v;
  }

  private ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.dict();
    if (c === '(') return this.seq(')');
    if (c === '[') return this.seq(']');
    if (c === "'" || c === '"') return this.str();
    const word = /^(True|False|None)\b/.exec(this.s.slice(this.i));
    if (word) {
      this.i += word[0].length;
      return word[0] === 'True' ? true : word[0] === 'False' ? false : null;
    }
    // Integers; Python 2 era files may carry an 'L' suffix (e.g. (3L, 4L)).
    const num = /^[-+]?\d+[lL]?/.exec(this.s.slice(this.i));
    if (num) {
      this.i += num[0].length;
      return Number(num[0].replace(/[lL]$/, ''));
    }
    throw new Error(c === undefined ? 'unexpected end' : `unexpected '${c}' at ${this.i}`);
  }

  private str(): string {
    const q = this.s[this.i++]!;
    let out = '';
    while (this.i < this.s.length && this.s[this.i] !== q) {
      if (this.s[this.i] === '\\') this.i++;
      out += this.s[this.i++] ?? '';
    }
    if (this.s[this.i] !== q) throw new Error('unterminated string');
    this.i++;
    return out;
  }

  private seq(close: string): PyValue[] {
    this.i++;
    const out: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) break;
      out.push(this.value());
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== close) throw new Error(`expected ',' or '${close}' at ${this.i}`);
    }
    this.i++;
    return out;
  }

  private dict(): Record<string, PyValue> {
    this.i++;
    const out: Record<string, PyValue> = {};
    for (;;) {
      this.ws();
      if (this.s[this.i] === '}') break;
      const k = this.value();
      if (typeof k !== 'string') throw new Error('dict keys must be strings');
      this.ws();
      if (this.s[this.i++] !== ':') throw new Error(`expected ':' at ${this.i - 1}`);
      out[k] = this.value();
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== '}') throw new Error(`expected ',' or '}' at ${this.i}`);
    }
    this.i++;
    return out;
  }
}
