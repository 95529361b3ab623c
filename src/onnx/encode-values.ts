// Encoder plumbing (size pass + write pass over one body per message) and the bodies of ONNX
// value messages (tensors, types, value infos, test-data sequences/maps/optionals).
// Pure; import the public functions through encode.ts.

import { LowbitError } from '../errors.js';
import { deferredData, readDeferred } from './deferred.js';
import type * as P from './proto.js';
import { LITTLE_ENDIAN, Writer, bigVarintSize, int32Size, utf8Length, varintSize } from './wire.js';

/** Protobuf's hard limit on a serialized message (2 GiB - 1). */
export const PROTOBUF_MAX_BYTES = 2 ** 31 - 1;

/** What a message body emits; implemented once for sizing and once for writing. Tags are precomputed. */
export interface Sink {
  int32(tag: number, v: number): void;
  int64(tag: number, v: bigint): void;
  float(tag: number, v: number): void;
  str(tag: number, s: string): void;
  bytes(tag: number, b: Uint8Array): void;
  /** A bytes field of known length whose payload is read only when written (deferred tensor data). */
  lazyBytes(tag: number, length: number, read: () => Uint8Array): void;
  msg<T>(tag: number, m: T, body: Body<T>): void;
  packedFixed(tag: number, a: Float32Array | Float64Array): void;
  packedInt32(tag: number, a: Int32Array): void;
  packedInt64(tag: number, a: BigInt64Array | BigUint64Array): void;
  unknown(fields: Uint8Array[] | undefined): void;
}
export type Body<T> = (m: T, s: Sink) => void;

function badValue(what: string, v: unknown): never {
  throw new LowbitError('INTERNAL', `cannot encode ${what}: got ${typeof v} ${String(v)}`, 'int64 fields of ONNX messages must be bigint, float fields numbers');
}

/**
 * Pass 1: byte counts. Lengths of strings, sub-messages and packed varints go to `sizes`, in
 * visit order. Payloads of `cutAt`+ bytes are counted in `spliced` too: pass 2 does not copy them.
 */
class Sizer implements Sink {
  n = 0;
  spliced = 0;
  readonly sizes: number[] = [];
  constructor(readonly cutAt = Infinity) {}
  int32(tag: number, v: number): void {
    if (typeof v !== 'number') badValue(`int32 field (tag ${tag})`, v);
    this.n += varintSize(tag) + int32Size(v);
  }
  int64(tag: number, v: bigint): void {
    if (typeof v !== 'bigint') badValue(`int64 field (tag ${tag})`, v);
    this.n += varintSize(tag) + bigVarintSize(v);
  }
  float(tag: number): void {
    this.n += varintSize(tag) + 4;
  }
  str(tag: number, s: string): void {
    if (typeof s !== 'string') badValue(`string field (tag ${tag})`, s);
    const len = utf8Length(s);
    this.sizes.push(len);
    this.n += varintSize(tag) + varintSize(len) + len;
  }
  bytes(tag: number, b: Uint8Array): void {
    this.n += varintSize(tag) + varintSize(b.length) + b.length;
    if (b.length >= this.cutAt) this.spliced += b.length;
  }
  lazyBytes(tag: number, length: number): void {
    this.n += varintSize(tag) + varintSize(length) + length;
    if (length >= this.cutAt) this.spliced += length;
  }
  msg<T>(tag: number, m: T, body: Body<T>): void {
    const slot = this.sizes.length;
    this.sizes.push(0);
    const before = this.n;
    body(m, this);
    const len = this.n - before;
    this.sizes[slot] = len;
    this.n += varintSize(tag) + varintSize(len);
  }
  packedFixed(tag: number, a: Float32Array | Float64Array): void {
    if (a.length === 0) return;
    this.n += varintSize(tag) + varintSize(a.byteLength) + a.byteLength;
    if (LITTLE_ENDIAN && a.byteLength >= this.cutAt) this.spliced += a.byteLength;
  }
  packedInt32(tag: number, a: Int32Array): void {
    if (a.length === 0) return;
    let len = 0;
    for (let i = 0; i < a.length; i++) len += int32Size(a[i]);
    this.sizes.push(len);
    this.n += varintSize(tag) + varintSize(len) + len;
  }
  packedInt64(tag: number, a: BigInt64Array | BigUint64Array): void {
    if (a.length === 0) return;
    let len = 0;
    for (let i = 0; i < a.length; i++) len += bigVarintSize(a[i]);
    this.sizes.push(len);
    this.n += varintSize(tag) + varintSize(len) + len;
  }
  unknown(fields: Uint8Array[] | undefined): void {
    if (!fields) return;
    for (const f of fields) {
      this.n += f.length;
      if (f.length >= this.cutAt) this.spliced += f.length;
    }
  }
}

/**
 * Pass 2: bytes, into a Writer of exactly the size pass 1 found. Payloads of `cutAt`+ bytes are
 * not copied but recorded in `cuts` as (writer position, view), to be spliced in by the caller.
 */
class Emitter implements Sink {
  next = 0;
  readonly cuts: [number, Uint8Array][] = [];
  constructor(
    readonly w: Writer,
    readonly sizes: number[],
    readonly cutAt = Infinity,
  ) {}
  int32(tag: number, v: number): void {
    this.w.varint(tag).int32(v);
  }
  int64(tag: number, v: bigint): void {
    this.w.varint(tag).int64(v);
  }
  float(tag: number, v: number): void {
    this.w.varint(tag).float(v);
  }
  str(tag: number, s: string): void {
    this.w.varint(tag).string(s, this.sizes[this.next++]);
  }
  bytes(tag: number, b: Uint8Array): void {
    if (b.length < this.cutAt) this.w.varint(tag).bytes(b);
    else this.cuts.push([this.w.varint(tag).varint(b.length).pos, b]);
  }
  lazyBytes(tag: number, _length: number, read: () => Uint8Array): void {
    this.bytes(tag, read());
  }
  msg<T>(tag: number, m: T, body: Body<T>): void {
    this.w.varint(tag).varint(this.sizes[this.next++]);
    body(m, this);
  }
  packedFixed(tag: number, a: Float32Array | Float64Array): void {
    if (a.length === 0) return;
    const w = this.w.varint(tag).varint(a.byteLength);
    if (LITTLE_ENDIAN && a.byteLength >= this.cutAt) this.cuts.push([w.pos, new Uint8Array(a.buffer, a.byteOffset, a.byteLength)]);
    else if (LITTLE_ENDIAN) w.raw(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    else if (a instanceof Float32Array) for (const v of a) w.float(v);
    else for (const v of a) w.double(v);
  }
  packedInt32(tag: number, a: Int32Array): void {
    if (a.length === 0) return;
    const w = this.w.varint(tag).varint(this.sizes[this.next++]);
    for (let i = 0; i < a.length; i++) w.int32(a[i]);
  }
  packedInt64(tag: number, a: BigInt64Array | BigUint64Array): void {
    if (a.length === 0) return;
    const w = this.w.varint(tag).varint(this.sizes[this.next++]);
    for (let i = 0; i < a.length; i++) w.int64(a[i]);
  }
  unknown(fields: Uint8Array[] | undefined): void {
    if (!fields) return;
    for (const f of fields) {
      if (f.length < this.cutAt) this.w.raw(f);
      else this.cuts.push([this.w.pos, f]);
    }
  }
}

// Tolerate hand-built messages that omit empty repeated fields.
export const NONE: never[] = [];

export const stringEntry: Body<P.StringStringEntryProto> = (m, s) => {
  if (m.key !== undefined) s.str(0x0a, m.key);
  if (m.value !== undefined) s.str(0x12, m.value);
  s.unknown(m.unknownFields);
};

export const opsetId: Body<P.OperatorSetIdProto> = (m, s) => {
  if (m.domain !== undefined) s.str(0x0a, m.domain);
  if (m.version !== undefined) s.int64(0x10, m.version);
  s.unknown(m.unknownFields);
};

const segment: Body<P.TensorSegment> = (m, s) => {
  if (m.begin !== undefined) s.int64(0x08, m.begin);
  if (m.end !== undefined) s.int64(0x10, m.end);
  s.unknown(m.unknownFields);
};

export const tensor: Body<P.TensorProto> = (m, s) => {
  for (const d of m.dims ?? NONE) s.int64(0x08, d); // not [packed = true] in onnx.proto
  if (m.dataType !== undefined) s.int32(0x10, m.dataType);
  if (m.segment) s.msg(0x1a, m.segment, segment);
  if (m.floatData) s.packedFixed(0x22, m.floatData);
  if (m.int32Data) s.packedInt32(0x2a, m.int32Data);
  for (const b of m.stringData ?? NONE) s.bytes(0x32, b);
  if (m.int64Data) s.packedInt64(0x3a, m.int64Data);
  if (m.name !== undefined) s.str(0x42, m.name);
  if (m.rawData) s.bytes(0x4a, m.rawData);
  else {
    const d = deferredData(m); // read only by the write pass, never kept (src/onnx/deferred.ts)
    if (d) s.lazyBytes(0x4a, d.byteLength, () => readDeferred(m));
  }
  if (m.doubleData) s.packedFixed(0x52, m.doubleData);
  if (m.uint64Data) s.packedInt64(0x5a, m.uint64Data);
  if (m.docString !== undefined) s.str(0x62, m.docString);
  for (const e of m.externalData ?? NONE) s.msg(0x6a, e, stringEntry);
  if (m.dataLocation !== undefined) s.int32(0x70, m.dataLocation);
  for (const e of m.metadataProps ?? NONE) s.msg(0x82, e, stringEntry);
  s.unknown(m.unknownFields);
};

export const sparseTensor: Body<P.SparseTensorProto> = (m, s) => {
  if (m.values) s.msg(0x0a, m.values, tensor);
  if (m.indices) s.msg(0x12, m.indices, tensor);
  for (const d of m.dims ?? NONE) s.int64(0x18, d);
  s.unknown(m.unknownFields);
};

const dimension: Body<P.DimensionProto> = (m, s) => {
  if (m.dimValue !== undefined) s.int64(0x08, m.dimValue);
  if (m.dimParam !== undefined) s.str(0x12, m.dimParam);
  if (m.denotation !== undefined) s.str(0x1a, m.denotation);
  s.unknown(m.unknownFields);
};

const shape: Body<P.TensorShapeProto> = (m, s) => {
  for (const d of m.dim ?? NONE) s.msg(0x0a, d, dimension);
  s.unknown(m.unknownFields);
};

const typeTensor: Body<P.TypeProtoTensor> = (m, s) => {
  if (m.elemType !== undefined) s.int32(0x08, m.elemType);
  if (m.shape) s.msg(0x12, m.shape, shape);
  s.unknown(m.unknownFields);
};

const typeWrapper: Body<P.TypeProtoSequence | P.TypeProtoOptional> = (m, s) => {
  if (m.elemType) s.msg(0x0a, m.elemType, type);
  s.unknown(m.unknownFields);
};

const typeMap: Body<P.TypeProtoMap> = (m, s) => {
  if (m.keyType !== undefined) s.int32(0x08, m.keyType);
  if (m.valueType) s.msg(0x12, m.valueType, type);
  s.unknown(m.unknownFields);
};

const typeOpaque: Body<P.TypeProtoOpaque> = (m, s) => {
  if (m.domain !== undefined) s.str(0x0a, m.domain);
  if (m.name !== undefined) s.str(0x12, m.name);
  s.unknown(m.unknownFields);
};

export const type: Body<P.TypeProto> = (m, s) => {
  if (m.tensorType) s.msg(0x0a, m.tensorType, typeTensor);
  if (m.sequenceType) s.msg(0x22, m.sequenceType, typeWrapper);
  if (m.mapType) s.msg(0x2a, m.mapType, typeMap);
  if (m.denotation !== undefined) s.str(0x32, m.denotation);
  if (m.opaqueType) s.msg(0x3a, m.opaqueType, typeOpaque);
  if (m.sparseTensorType) s.msg(0x42, m.sparseTensorType, typeTensor);
  if (m.optionalType) s.msg(0x4a, m.optionalType, typeWrapper);
  s.unknown(m.unknownFields);
};

export const valueInfo: Body<P.ValueInfoProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  if (m.type) s.msg(0x12, m.type, type);
  if (m.docString !== undefined) s.str(0x1a, m.docString);
  for (const e of m.metadataProps ?? NONE) s.msg(0x22, e, stringEntry);
  s.unknown(m.unknownFields);
};


const sequence: Body<P.SequenceProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  if (m.elemType !== undefined) s.int32(0x10, m.elemType);
  for (const v of m.tensorValues ?? NONE) s.msg(0x1a, v, tensor);
  for (const v of m.sparseTensorValues ?? NONE) s.msg(0x22, v, sparseTensor);
  for (const v of m.sequenceValues ?? NONE) s.msg(0x2a, v, sequence);
  for (const v of m.mapValues ?? NONE) s.msg(0x32, v, map);
  for (const v of m.optionalValues ?? NONE) s.msg(0x3a, v, optional);
  s.unknown(m.unknownFields);
};

const map: Body<P.MapProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  if (m.keyType !== undefined) s.int32(0x10, m.keyType);
  for (const k of m.keys ?? NONE) s.int64(0x18, k);
  for (const k of m.stringKeys ?? NONE) s.bytes(0x22, k);
  if (m.values) s.msg(0x2a, m.values, sequence);
  s.unknown(m.unknownFields);
};

const optional: Body<P.OptionalProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  if (m.elemType !== undefined) s.int32(0x10, m.elemType);
  if (m.tensorValue) s.msg(0x1a, m.tensorValue, tensor);
  if (m.sparseTensorValue) s.msg(0x22, m.sparseTensorValue, sparseTensor);
  if (m.sequenceValue) s.msg(0x2a, m.sequenceValue, sequence);
  if (m.mapValue) s.msg(0x32, m.mapValue, map);
  if (m.optionalValue) s.msg(0x3a, m.optionalValue, optional);
  s.unknown(m.unknownFields);
};

function sizePass<T>(m: T, body: Body<T>, cutAt = Infinity): Sizer {
  const sizer = new Sizer(cutAt);
  body(m, sizer);
  return sizer;
}

/** Serialized size of a message in bytes (may exceed 2 GiB). @internal */
export function sizeOf<T>(m: T, body: Body<T>): number {
  return sizePass(m, body).n;
}

/**
 * Encodes one message as chunks whose concatenation is the serialization: small fields packed
 * into one buffer, payloads of `cutAt`+ bytes (raw_data, ...) as views of the message's own
 * arrays, never copied. With cutAt = Infinity the result is a single exact-size buffer.
 * @internal @throws LowbitError UNSUPPORTED_MODEL over 2 GiB, INTERNAL on inconsistent input
 */
export function encodeParts<T>(m: T, body: Body<T>, what: string, cutAt = Infinity): Uint8Array[] {
  const sizer = sizePass(m, body, cutAt);
  if (sizer.n > PROTOBUF_MAX_BYTES) {
    throw new LowbitError('UNSUPPORTED_MODEL', `the ${what} would serialize to ${sizer.n} bytes, over protobuf's 2 GiB limit`, 'save it with external data (saveModel does this automatically for large models)');
  }
  const w = new Writer(sizer.n - sizer.spliced);
  const e = new Emitter(w, sizer.sizes, cutAt);
  body(m, e);
  if (w.pos !== sizer.n - sizer.spliced || e.next !== sizer.sizes.length) {
    throw new LowbitError('INTERNAL', `encoder size mismatch for ${what}: planned ${sizer.n - sizer.spliced} bytes, wrote ${w.pos}`, 'the message was probably modified while it was being encoded');
  }
  const out: Uint8Array[] = [];
  let from = 0;
  for (const [at, view] of e.cuts) {
    if (at > from) out.push(w.buf.subarray(from, at));
    out.push(view);
    from = at;
  }
  if (from < w.pos || out.length === 0) out.push(w.buf.subarray(from, w.pos));
  return out;
}

/** Encodes one message into an exact-size buffer. @internal @throws LowbitError as encodeParts */
export function encodeTop<T>(m: T, body: Body<T>, what: string): Uint8Array {
  return encodeParts(m, body, what)[0];
}

/** Serialized size of a tensor in bytes. */
export const encodedTensorSize = (t: P.TensorProto): number => sizeOf(t, tensor);
/** Serializes a TensorProto (the .pb format of ONNX test data). @throws LowbitError as encodeTop */
export const encodeTensor = (t: P.TensorProto): Uint8Array => encodeTop(t, tensor, 'tensor');
/** Serializes a SparseTensorProto. @throws LowbitError as encodeTop */
export const encodeSparseTensor = (t: P.SparseTensorProto): Uint8Array => encodeTop(t, sparseTensor, 'sparse tensor');
/** Serializes a TypeProto. @throws LowbitError as encodeTop */
export const encodeType = (t: P.TypeProto): Uint8Array => encodeTop(t, type, 'type');
/** Serializes a ValueInfoProto. @throws LowbitError as encodeTop */
export const encodeValueInfo = (v: P.ValueInfoProto): Uint8Array => encodeTop(v, valueInfo, 'value info');
/** Serializes a SequenceProto. @throws LowbitError as encodeTop */
export const encodeSequence = (v: P.SequenceProto): Uint8Array => encodeTop(v, sequence, 'sequence');
/** Serializes a MapProto. @throws LowbitError as encodeTop */
export const encodeMap = (v: P.MapProto): Uint8Array => encodeTop(v, map, 'map');
/** Serializes an OptionalProto. @throws LowbitError as encodeTop */
export const encodeOptional = (v: P.OptionalProto): Uint8Array => encodeTop(v, optional, 'optional');
