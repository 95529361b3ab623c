// Minimal ZIP container codec for .npz: finds the (zip64) end-of-central-directory, lists entries,
// locates entry data via local headers; writes stored (method 0) archives. Node-side adapter.
// Spec: PKWARE APPNOTE.TXT 6.3 (sections 4.3.7, 4.3.12, 4.3.14-16, 4.5.3).

import { closeSync, fstatSync } from 'node:fs';
import { LowbitError } from '../errors.js';
import { openFile, readAt, writeAll } from './npy.js';

/** One central-directory entry. */
export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate; anything else is reported when the entry is read. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const EOCD_SIZE = 22;

/** Random access to the archive bytes. */
export type ReadAt = (position: number, length: number) => Uint8Array;

function bad(file: string, what: string): LowbitError {
  return new LowbitError('BAD_DATA', `${file}: ${what}`, 'the archive is damaged or not an .npz; re-save it with numpy.savez');
}

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const u64 = (v: DataView, at: number, file: string): number => {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(file, 'zip64 size or offset beyond 2^53');
  return Number(n);
};

/**
 * Reads the central directory of a ZIP archive of `size` bytes.
 * @throws LowbitError('BAD_DATA') naming `file` when no end-of-central-directory record is found,
 *   the archive spans several disks, or records are inconsistent.
 */
export function readZipDirectory(read: ReadAt, size: number, file: string): ZipEntry[] {
  // The EOCD sits at the end, followed only by a comment of at most 65535 bytes.
  const tailLen = Math.min(size, EOCD_SIZE + U16_MAX);
  const tailStart = size - tailLen;
  const tail = read(tailStart, tailLen);
  const tv = dv(tail);
  let at = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) <= tailLen) {
      at = i;
      break;
    }
  }
  if (at < 0) throw bad(file, 'not a ZIP/.npz archive (no end-of-central-directory record)');
  if (tv.getUint16(at + 4, true) !== 0 || tv.getUint16(at + 6, true) !== 0) throw bad(file, 'multi-disk ZIP archives are not supported');
  let count = tv.getUint16(at + 10, true);
  let cdSize = tv.getUint32(at + 12, true);
  let cdOffset = tv.getUint32(at + 16, true);
  const eocdPos = tailStart + at;
  if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
    // Zip64: a 20-byte locator right before the EOCD points at the zip64 EOCD record.
    if (eocdPos < 20) throw bad(file, 'zip64 end-of-central-directory locator missing');
    const loc = dv(read(eocdPos - 20, 20));
    if (loc.getUint32(0, true) !== SIG_EOCD64_LOCATOR) throw bad(file, 'zip64 end-of-central-directory locator missing');
    const recPos = u64(loc, 8, file);
    if (recPos + 56 > eocdPos) throw bad(file, 'zip64 end-of-central-directory record out of range');
    const rec = dv(read(recPos, 56));
    if (rec.getUint32(0, true) !== SIG_EOCD64) throw bad(file, 'zip64 end-of-central-directory record missing');
    count = u64(rec, 32, file);
    cdSize = u64(rec, 40, file);
    cdOffset = u64(rec, 48, file);
  }
  if (cdOffset + cdSize > eocdPos) throw bad(file, 'central directory lies outside the archive (file truncated?)');
  const cd = read(cdOffset, cdSize);
  const cv = dv(cd);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cv.getUint32(p, true) !== SIG_CENTRAL) throw bad(file, `central directory entry ${k} is malformed`);
    const flags = cv.getUint16(p + 8, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw bad(file, `central directory entry ${k} is malformed`);
    // Bit 11: UTF-8 name. Otherwise CP437, whose ASCII range is what NumPy array names use.
    const name = new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(cd.subarray(p + 46, p + 46 + nameLen));
    const e: ZipEntry = {
      name,
      method: cv.getUint16(p + 10, true),
      flags,
      crc32: cv.getUint32(p + 16, true),
      compressedSize: cv.getUint32(p + 20, true),
      uncompressedSize: cv.getUint32(p + 24, true),
      localHeaderOffset: cv.getUint32(p + 42, true),
    };
    applyZip64Extra(e, cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen), cv.getUint16(p + 34, true), file);
    entries.push(e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Fields saturated at 0xFFFFFFFF in the central directory come, in this order, from extra block 0x0001. */
function applyZip64Extra(e: ZipEntry, extra: Uint8Array, diskStart: number, file: string): void {
  const need = [e.uncompressedSize, e.compressedSize, e.localHeaderOffset].some((v) => v === U32_MAX) || diskStart === U16_MAX;
  if (!need) return;
  const xv = dv(extra);
  for (let q = 0; q + 4 <= extra.length; ) {
    const id = xv.getUint16(q, true);
    const len = xv.getUint16(q + 2, true);
    if (id === 0x0001) {
      let r = q + 4;
      const take = (): number => {
        if (r + 8 > q + 4 + len) throw bad(file, `zip64 extra field of '${e.name}' is too short`);
        const v = u64(xv, r, file);
        r += 8;
        return v;
      };
      if (e.uncompressedSize === U32_MAX) e.uncompressedSize = take();
      if (e.compressedSize === U32_MAX) e.compressedSize = take();
      if (e.localHeaderOffset === U32_MAX) e.localHeaderOffset = take();
      return;
    }
    q += 4 + len;
  }
  throw bad(file, `entry '${e.name}' needs a zip64 extra field but has none`);
}

/**
 * Byte offset of an entry's (compressed) data: after its local header, whose name/extra lengths
 * may differ from the central directory's (NumPy's writer puts a zip64 extra only there).
 * @throws LowbitError('BAD_DATA') if the local header is missing or the data runs past the end.
 */
export function entryDataOffset(read: ReadAt, size: number, e: ZipEntry, file: string): number {
  if (e.localHeaderOffset + 30 > size) throw bad(file, `local header of '${e.name}' is outside the archive`);
  const lh = dv(read(e.localHeaderOffset, 30));
  if (lh.getUint32(0, true) !== SIG_LOCAL) throw bad(file, `local header of '${e.name}' is missing`);
  const start = e.localHeaderOffset + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
  if (start + e.compressedSize > size) throw bad(file, `data of '${e.name}' runs past the end of the archive (file truncated?)`);
  return start;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ZIP / IEEE 802.3), continuing from `crc` (0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** An entry to store: its data given as consecutive parts (header + body, no concatenation). */
export interface ZipInput {
  name: string;
  parts: Uint8Array[];
}

/**
 * Writes a stored (uncompressed) ZIP archive. Zip64 records are written when sizes, offsets or
 * the entry count need them, or always with `forceZip64` (tests use it to exercise the reader).
 * Timestamps are fixed (1980-01-01) so output is reproducible.
 * @throws LowbitError('BAD_OPTION') if the file cannot be written.
 */
export function writeStoredZip(path: string, inputs: ZipInput[], forceZip64 = false): void {
  const enc = new TextEncoder();
  const fd = openFile(path, 'w');
  const central: Uint8Array[] = [];
  let pos = 0;
  const put = (b: Uint8Array): void => {
    writeAll(fd, b, path);
    pos += b.length;
  };
  try {
    for (const input of inputs) {
      const name = enc.encode(input.name);
      const size = input.parts.reduce((s, b) => s + b.length, 0);
      const crc = input.parts.reduce((c, b) => crc32(b, c), 0);
      const offset = pos;
      const z64 = forceZip64 || size >= U32_MAX || offset >= U32_MAX;
      const flags = /^[\x00-\x7f]*$/.test(input.name) ? 0 : 0x800;
      const local = new Uint8Array(30 + name.length + (z64 ? 20 : 0));
      const lv = dv(local);
      lv.setUint32(0, SIG_LOCAL, true);
      lv.setUint16(4, z64 ? 45 : 20, true);
      lv.setUint16(6, flags, true);
      lv.setUint16(12, 0x21, true); // DOS date 1980-01-01
      lv.setUint32(14, crc, true);
      lv.setUint32(18, z64 ? U32_MAX : size, true);
      lv.setUint32(22, z64 ? U32_MAX : size, true);
      lv.setUint16(26, name.length, true);
      lv.setUint16(28, z64 ? 20 : 0, true);
      local.set(name, 30);
      if (z64) {
        lv.setUint16(30 + name.length, 0x0001, true);
        lv.setUint16(32 + name.length, 16, true);
        lv.setBigUint64(34 + name.length, BigInt(size), true);
        lv.setBigUint64(42 + name.length, BigInt(size), true);
      }
      put(local);
      for (const part of input.parts) put(part);
      const cd = new Uint8Array(46 + name.length + (z64 ? 28 : 0));
      const cv = dv(cd);
      cv.setUint32(0, SIG_CENTRAL, true);
      cv.setUint16(4, (3 << 8) | (z64 ? 45 : 20), true); // made by: unix
      cv.setUint16(6, z64 ? 45 : 20, true);
      cv.setUint16(8, flags, true);
      cv.setUint16(14, 0x21, true);
      cv.setUint32(16, crc, true);
      cv.setUint32(20, z64 ? U32_MAX : size, true);
      cv.setUint32(24, z64 ? U32_MAX : size, true);
      cv.setUint16(28, name.length, true);
      cv.setUint16(30, z64 ? 28 : 0, true);
      cv.setUint32(38, (0o100644 << 16) >>> 0, true); // external attrs: regular file rw-r--r--
      cv.setUint32(42, z64 ? U32_MAX : offset, true);
      cd.set(name, 46);
      if (z64) {
        const x = 46 + name.length;
        cv.setUint16(x, 0x0001, true);
        cv.setUint16(x + 2, 24, true);
        cv.setBigUint64(x + 4, BigInt(size), true);
        cv.setBigUint64(x + 12, BigInt(size), true);
        cv.setBigUint64(x + 20, BigInt(offset), true);
      }
      central.push(cd);
    }
    const cdOffset = pos;
    for (const cd of central) put(cd);
    const cdSize = pos - cdOffset;
    const z64 = forceZip64 || inputs.length >= U16_MAX || cdOffset >= U32_MAX || cdSize >= U32_MAX;
    if (z64) {
      const recPos = pos;
      const rec = new Uint8Array(56 + 20);
      const rv = dv(rec);
      rv.setUint32(0, SIG_EOCD64, true);
      rv.setBigUint64(4, 44n, true);
      rv.setUint16(12, (3 << 8) | 45, true);
      rv.setUint16(14, 45, true);
      rv.setBigUint64(24, BigInt(inputs.length), true);
      rv.setBigUint64(32, BigInt(inputs.length), true);
      rv.setBigUint64(40, BigInt(cdSize), true);
      rv.setBigUint64(48, BigInt(cdOffset), true);
      rv.setUint32(56, SIG_EOCD64_LOCATOR, true);
      rv.setBigUint64(64, BigInt(recPos), true);
      rv.setUint32(72, 1, true);
      put(rec);
    }
    const eocd = new Uint8Array(EOCD_SIZE);
    const ev = dv(eocd);
    ev.setUint32(0, SIG_EOCD, true);
    ev.setUint16(8, z64 ? U16_MAX : inputs.length, true);
    ev.setUint16(10, z64 ? U16_MAX : inputs.length, true);
    ev.setUint32(12, z64 ? U32_MAX : cdSize, true);
    ev.setUint32(16, z64 ? U32_MAX : cdOffset, true);
    put(eocd);
  } finally {
    closeSync(fd);
  }
}

/** Opens `path` and returns a ReadAt over it plus its size; the caller closes `fd`. */
export function openForRead(path: string): { fd: number; size: number; read: ReadAt } {
  const fd = openFile(path, 'r');
  const size = fstatSync(fd).size;
  return { fd, size, read: (position, length) => readAt(fd, position, length, path) };
}
