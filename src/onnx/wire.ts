// Protobuf wire format primitives: a bounds-checked Reader over a Uint8Array (bytes come back
// as zero-copy views) and a growable Writer. Pure; imported by decode.ts, encode.ts and tests.

import { LowbitError } from '../errors.js';

/** Protobuf wire types. */
export const WireType = { VARINT: 0, I64: 1, LEN: 2, SGROUP: 3, EGROUP: 4, I32: 5 } as const;

interface Utf8Decoder {
  decode(b: Uint8Array): string;
}
interface Utf8Encoder {
  encode(s: string): Uint8Array;
  encodeInto(s: string, dest: Uint8Array): { read: number; written: number };
}
// TextDecoder/TextEncoder are runtime globals (Node, browsers) but not in the ES2022 lib.
const textGlobals = globalThis as unknown as {
  TextDecoder: new (label: string, opts: { ignoreBOM: boolean }) => Utf8Decoder;
  TextEncoder: new () => Utf8Encoder;
};
// ignoreBOM: keep a leading U+FEFF in the string instead of silently dropping it (lossless).
const utf8Decoder = new textGlobals.TextDecoder('utf-8', { ignoreBOM: true });
const utf8Encoder: Utf8Encoder = new textGlobals.TextEncoder();

/** UTF-8 bytes -> string (BOM kept, invalid sequences become U+FFFD). */
export function decodeUtf8(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}

/** string -> UTF-8 bytes. */
export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

/** True on little-endian hosts (all mainstream ones); typed-array views rely on it. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const TWO32 = 4294967296;

/**
 * Cursor over protobuf bytes. Every read checks bounds and throws LowbitError('TRUNCATED')
 * past the end of the buffer, LowbitError('NOT_ONNX') for structurally invalid protobuf.
 * Callers pass the end of the enclosing message to length-delimited reads.
 */
export class Reader {
  readonly buf: Uint8Array;
  readonly view: DataView;
  /** Used in error messages, e.g. "model file". */
  readonly what: string;
  pos = 0;

  constructor(bytes: Uint8Array, what = 'protobuf message') {
    // Normalise subclasses (Node's Buffer) so every view handed out is a plain Uint8Array.
    this.buf = Object.getPrototypeOf(bytes) === Uint8Array.prototype ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.what = what;
  }

  get length(): number {
    return this.buf.length;
  }

  /** @throws LowbitError TRUNCATED */
  truncated(at: number): never {
    throw new LowbitError('TRUNCATED', `${this.what} is truncated at byte ${at} (it has ${this.buf.length} bytes)`, 'the file was probably cut short by an interrupted download or copy; fetch it again');
  }

  /** @throws LowbitError NOT_ONNX */
  corrupt(at: number, problem: string): never {
    throw new LowbitError('NOT_ONNX', `${this.what} is not valid protobuf: ${problem} at byte ${at}`, 'check that the file is an ONNX model (.onnx) or tensor (.pb) and is not corrupted');
  }

  /** Reads a varint and returns its low 32 bits as an unsigned number (tags, lengths). */
  uint32(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos < buf.length && buf[pos] < 0x80) {
      this.pos = pos + 1;
      return buf[pos];
    }
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (pos >= buf.length) this.truncated(pos);
      const b = buf[pos++];
      if (shift < 32) result += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) {
        this.pos = pos;
        return result % TWO32;
      }
    }
    return this.corrupt(this.pos, 'varint longer than 10 bytes');
  }

  /** int32 / enum fields: low 32 bits of the varint, signed. */
  int32(): number {
    return this.uint32() | 0;
  }

  /** A varint as its 64-bit two's-complement halves [lo, hi] (both unsigned 32-bit). */
  private varint64(): [number, number] {
    const buf = this.buf;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) this.truncated(pos);
      const b = buf[pos++];
      const bits = b & 0x7f;
      if (i < 4) lo += bits * 2 ** (7 * i);
      else if (i === 4) {
        lo += (bits & 0x0f) * 2 ** 28;
        hi += bits >>> 4;
      } else hi += bits * 2 ** (7 * i - 32);
      if (b < 0x80) {
        this.pos = pos;
        return [lo, hi % TWO32];
      }
    }
    return this.corrupt(this.pos, 'varint longer than 10 bytes');
  }

  /** int64 fields: signed bigint (negative values are 10-byte varints). */
  int64(): bigint {
    const buf = this.buf;
    const pos = this.pos;
    if (pos < buf.length && buf[pos] < 0x80) {
      this.pos = pos + 1;
      return BigInt(buf[pos]);
    }
    const [lo, hi] = this.varint64();
    if (hi < 0x200000) return BigInt(hi * TWO32 + lo); // < 2^53: exact as a number
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }

  /** uint64 fields: unsigned bigint. */
  uint64(): bigint {
    const [lo, hi] = this.varint64();
    if (hi < 0x200000) return BigInt(hi * TWO32 + lo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  private need(n: number): number {
    const p = this.pos;
    if (p + n > this.buf.length) this.truncated(this.buf.length);
    this.pos = p + n;
    return p;
  }

  float(): number {
    return this.view.getFloat32(this.need(4), true);
  }

  double(): number {
    return this.view.getFloat64(this.need(8), true);
  }

  /**
   * Reads a length prefix and returns the end offset of the payload, checked against `end`
   * (the enclosing message's end) and the buffer.
   */
  lenEnd(end: number): number {
    const at = this.pos;
    const len = this.uint32();
    if (this.pos - at > 5) this.corrupt(at, 'length prefix longer than 5 bytes');
    const stop = this.pos + len;
    if (stop > end) {
      if (stop > this.buf.length) this.truncated(this.buf.length);
      this.corrupt(at, `a field of ${len} bytes runs past the end of its enclosing message (byte ${end})`);
    }
    return stop;
  }

  /** Length-delimited bytes as a zero-copy view. */
  bytes(end: number): Uint8Array {
    const stop = this.lenEnd(end);
    const out = this.buf.subarray(this.pos, stop);
    this.pos = stop;
    return out;
  }

  /** Length-delimited UTF-8 string. */
  string(end: number): string {
    const stop = this.lenEnd(end);
    const buf = this.buf;
    const start = this.pos;
    this.pos = stop;
    if (stop - start <= 32) {
      // Short ASCII names dominate ONNX files; building them by hand beats TextDecoder.
      let s = '';
      for (let p = start; p < stop; p++) {
        const c = buf[p];
        if (c >= 0x80) return utf8Decoder.decode(buf.subarray(start, stop));
        s += String.fromCharCode(c);
      }
      return s;
    }
    return utf8Decoder.decode(buf.subarray(start, stop));
  }

  /**
   * Skips the field whose tag started at `tagStart` and returns its raw bytes (tag included)
   * as a view, for `unknownFields`.
   * @throws LowbitError NOT_ONNX for invalid wire types, TRUNCATED past the end
   */
  skip(tagStart: number, tag: number, end: number): Uint8Array {
    this.skipPayload(tag, end, tagStart);
    if (this.pos > end) this.corrupt(tagStart, `a field runs past the end of its enclosing message (byte ${end})`);
    return this.buf.subarray(tagStart, this.pos);
  }

  private skipPayload(tag: number, end: number, tagStart: number): void {
    const field = tag >>> 3;
    if (field === 0) this.corrupt(tagStart, 'field number 0');
    switch (tag & 7) {
      case WireType.VARINT:
        this.varint64();
        return;
      case WireType.I64:
        this.need(8);
        return;
      case WireType.LEN:
        this.pos = this.lenEnd(end);
        return;
      case WireType.I32:
        this.need(4);
        return;
      case WireType.SGROUP: {
        // Deprecated groups: skip nested fields until the matching end-group tag.
        for (;;) {
          if (this.pos >= end) this.truncated(this.pos);
          const at = this.pos;
          const t = this.uint32();
          if ((t & 7) === WireType.EGROUP) {
            if (t >>> 3 !== field) this.corrupt(at, 'mismatched end-group tag');
            return;
          }
          this.skipPayload(t, end, at);
        }
      }
      default:
        this.corrupt(tagStart, `invalid wire type ${tag & 7}`);
    }
  }
}

/** Bytes needed for `v` (an unsigned 32-bit number or a non-negative safe integer) as a varint. */
export function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 4;
  let x = Math.floor(v / 0x10000000);
  while (x > 0) {
    n++;
    x = Math.floor(x / 128);
  }
  return n;
}

const INT64_FAST = 2n ** 53n;

/** Bytes an int64/uint64 value takes as a varint (negative: always 10). */
export function bigVarintSize(v: bigint): number {
  if (v >= 0n && v < INT64_FAST) return varintSize(Number(v));
  if (v < 0n) return 10;
  return varintSize64(BigInt.asUintN(64, v));
}

function varintSize64(u: bigint): number {
  let n = 1;
  while (u >= 128n) {
    u >>= 7n;
    n++;
  }
  return n;
}

/** Bytes an int32/enum value takes (negative values are sign-extended to 10 bytes). */
export function int32Size(v: number): number {
  return v < 0 ? 10 : varintSize(v);
}

/** Bytes a UTF-8 encoded string takes. */
export function utf8Length(s: string): number {
  const n = s.length;
  let len = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) len += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      len += 2; // surrogate pair: 2 UTF-16 units -> 4 bytes
      i++;
    } else len += 2; // BMP (lone surrogates become U+FFFD, also 3 bytes)
  }
  return len;
}

/**
 * Protobuf writer over one buffer. Give it the exact capacity (the encoder computes sizes
 * first, so large payloads are copied exactly once); otherwise it grows by doubling.
 */
export class Writer {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.pos + n, this.buf.length * 2, 64));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** Unsigned varint of a non-negative safe integer. */
  varint(v: number): this {
    if (this.pos + 10 > this.buf.length) this.ensure(varintSize(v));
    const buf = this.buf;
    let pos = this.pos;
    if (v <= 0x7fffffff) {
      while (v > 0x7f) {
        buf[pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
    } else {
      while (v >= 0x80) {
        buf[pos++] = (v % 128) | 0x80;
        v = Math.floor(v / 128);
      }
    }
    buf[pos++] = v;
    this.pos = pos;
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint(field * 8 + wireType);
  }

  /** int32/enum value: negative numbers become 10-byte sign-extended varints. */
  int32(v: number): this {
    return v < 0 ? this.int64(BigInt(v)) : this.varint(v);
  }

  /** int64 or uint64 value as a varint (two's complement for negatives). */
  int64(v: bigint): this {
    if (v >= 0n && v < INT64_FAST) return this.varint(Number(v));
    let u = BigInt.asUintN(64, v);
    this.ensure(bigVarintSize(v));
    while (u >= 128n) {
      this.buf[this.pos++] = Number(u & 127n) | 0x80;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
    return this;
  }

  float(v: number): this {
    this.ensure(4);
    this.view.setFloat32(this.pos, v, true);
    this.pos += 4;
    return this;
  }

  double(v: number): this {
    this.ensure(8);
    this.view.setFloat64(this.pos, v, true);
    this.pos += 8;
    return this;
  }

  /** Copies bytes verbatim (no length prefix). */
  raw(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Length-prefixed bytes. */
  bytes(b: Uint8Array): this {
    return this.varint(b.length).raw(b);
  }

  /** Length-prefixed UTF-8 string; `byteLength` may be passed when already known. */
  string(s: string, byteLength = utf8Length(s)): this {
    this.varint(byteLength);
    this.ensure(byteLength);
    const buf = this.buf;
    if (byteLength === s.length) {
      let pos = this.pos;
      for (let i = 0; i < s.length; i++) buf[pos++] = s.charCodeAt(i);
    } else utf8Encoder.encodeInto(s, buf.subarray(this.pos, this.pos + byteLength));
    this.pos += byteLength;
    return this;
  }

  /** The written bytes (a view; no copy when the capacity was exact). */
  finish(): Uint8Array {
    return this.pos === this.buf.length ? this.buf : this.buf.subarray(0, this.pos);
  }
}

/** Counts the varints in buf[start, stop) (bytes without the continuation bit). */
export function countVarints(buf: Uint8Array, start: number, stop: number): number {
  let n = 0;
  for (let p = start; p < stop; p++) if (buf[p] < 0x80) n++;
  return n;
}

/**
 * Copies `byteLength` little-endian bytes at `start` into a fresh, aligned typed array.
 * One memcpy on little-endian hosts; element-wise through a DataView otherwise.
 */
export function copyFixed<T extends Float32Array | Float64Array>(r: Reader, start: number, byteLength: number, ctor: { new (n: number): T; BYTES_PER_ELEMENT: number }): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (byteLength % size !== 0) r.corrupt(start, `packed field of ${byteLength} bytes is not a multiple of ${size}`);
  const out = new ctor(byteLength / size);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(r.buf.subarray(start, start + byteLength));
  else if (size === 4) for (let i = 0; i < out.length; i++) out[i] = r.view.getFloat32(start + 4 * i, true);
  else for (let i = 0; i < out.length; i++) out[i] = r.view.getFloat64(start + 8 * i, true);
  return out;
}
