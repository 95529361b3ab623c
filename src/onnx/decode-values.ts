// Decoders for ONNX value messages (tensors, types, value infos, test-data sequences/maps/optionals)
// and the plumbing shared with decode.ts. Pure; import the public functions through decode.ts.

import { LowbitError } from '../errors.js';
import type * as P from './proto.js';
import { Reader, countVarints, copyFixed } from './wire.js';

/** Decodes one message body ending at `end`, merging into `into` when given. @internal */
export type Decoder<T> = (r: Reader, end: number, into?: T) => T;
type NumArray = Float32Array | Float64Array | Int32Array | BigInt64Array | BigUint64Array;
type Parts<A> = (A | number | bigint)[];

/** Joins packed chunks and single unpacked elements (both encodings may mix) in wire order. */
function joinParts<A extends NumArray>(parts: Parts<A>, make: (n: number) => A): A {
  if (parts.length === 1 && typeof parts[0] === 'object') return parts[0];
  let n = 0;
  for (const p of parts) n += typeof p === 'object' ? p.length : 1;
  const out = make(n) as unknown as { [i: number]: number | bigint; set(a: ArrayLike<number | bigint>, o: number): void };
  let o = 0;
  for (const p of parts) {
    if (typeof p === 'object') {
      out.set(p as ArrayLike<number | bigint>, o);
      o += p.length;
    } else out[o++] = p;
  }
  return out as unknown as A;
}

/** Stores the field that started at `start` raw in unknownFields. @internal */
export function keep(r: Reader, m: P.HasUnknown, start: number, tag: number, end: number): void {
  (m.unknownFields ??= []).push(r.skip(start, tag, end));
}

/** @internal @throws LowbitError NOT_ONNX unless the reader stopped exactly at `end` */
export function checkEnd(r: Reader, end: number): void {
  if (r.pos !== end) r.corrupt(end, 'a field crosses the end of its enclosing message');
}

/** Reads a length-delimited sub-message (merging into `prev`, as protobuf does for repeats). */
export function sub<T>(r: Reader, end: number, dec: Decoder<T>, prev?: T): T {
  const stop = r.lenEnd(end);
  const m = dec(r, stop, prev);
  checkEnd(r, stop);
  return m;
}

/** Appends a packed run of varints to `out`. @internal */
export function packedVarints<T>(r: Reader, end: number, out: T[], read: () => T): void {
  const stop = r.lenEnd(end);
  while (r.pos < stop) out.push(read());
  checkEnd(r, stop);
}

function packedTyped<A extends Int32Array | BigInt64Array | BigUint64Array>(r: Reader, end: number, make: (n: number) => A, read: () => number | bigint): A {
  const stop = r.lenEnd(end);
  const out = make(countVarints(r.buf, r.pos, stop)) as unknown as { [i: number]: number | bigint; length: number };
  for (let i = 0; i < out.length; i++) out[i] = read();
  checkEnd(r, stop);
  return out as unknown as A;
}

/** A packed run of floats/doubles, copied into an aligned typed array. @internal */
export function packedFixed<A extends Float32Array | Float64Array>(r: Reader, end: number, ctor: { new (n: number): A; BYTES_PER_ELEMENT: number }): A {
  const stop = r.lenEnd(end);
  const out = copyFixed(r, r.pos, stop - r.pos, ctor);
  r.pos = stop;
  return out;
}

export const stringEntry: Decoder<P.StringStringEntryProto> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.key = r.string(end);
    else if (tag === 0x12) m.value = r.string(end);
    else keep(r, m, start, tag, end);
  }
  return m;
};

export const opsetId: Decoder<P.OperatorSetIdProto> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.domain = r.string(end);
    else if (tag === 0x10) m.version = r.int64();
    else keep(r, m, start, tag, end);
  }
  return m;
};

const segment: Decoder<P.TensorSegment> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x08) m.begin = r.int64();
    else if (tag === 0x10) m.end = r.int64();
    else keep(r, m, start, tag, end);
  }
  return m;
};

const newF32 = (n: number) => new Float32Array(n);
const newF64 = (n: number) => new Float64Array(n);
const newI32 = (n: number) => new Int32Array(n);
const newI64 = (n: number) => new BigInt64Array(n);
const newU64 = (n: number) => new BigUint64Array(n);

export const tensor: Decoder<P.TensorProto> = (r, end, m = { dims: [], externalData: [], metadataProps: [] }) => {
  // Repeated numeric fields are gathered as parts and joined once (they may arrive in pieces).
  let f32: Parts<Float32Array> | undefined;
  let i32: Parts<Int32Array> | undefined;
  let i64: Parts<BigInt64Array> | undefined;
  let f64: Parts<Float64Array> | undefined;
  let u64: Parts<BigUint64Array> | undefined;
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x08: m.dims.push(r.int64()); break;
      case 0x0a: packedVarints(r, end, m.dims, () => r.int64()); break;
      case 0x10: m.dataType = r.int32(); break;
      case 0x1a: m.segment = sub(r, end, segment, m.segment); break;
      case 0x22: (f32 ??= m.floatData ? [m.floatData] : []).push(packedFixed(r, end, Float32Array)); break;
      case 0x25: (f32 ??= m.floatData ? [m.floatData] : []).push(r.float()); break;
      case 0x2a: (i32 ??= m.int32Data ? [m.int32Data] : []).push(packedTyped(r, end, newI32, () => r.int32())); break;
      case 0x28: (i32 ??= m.int32Data ? [m.int32Data] : []).push(r.int32()); break;
      case 0x32: (m.stringData ??= []).push(r.bytes(end)); break;
      case 0x3a: (i64 ??= m.int64Data ? [m.int64Data] : []).push(packedTyped(r, end, newI64, () => r.int64())); break;
      case 0x38: (i64 ??= m.int64Data ? [m.int64Data] : []).push(r.int64()); break;
      case 0x42: m.name = r.string(end); break;
      case 0x4a: m.rawData = r.bytes(end); break;
      case 0x52: (f64 ??= m.doubleData ? [m.doubleData] : []).push(packedFixed(r, end, Float64Array)); break;
      case 0x51: (f64 ??= m.doubleData ? [m.doubleData] : []).push(r.double()); break;
      case 0x5a: (u64 ??= m.uint64Data ? [m.uint64Data] : []).push(packedTyped(r, end, newU64, () => r.uint64())); break;
      case 0x58: (u64 ??= m.uint64Data ? [m.uint64Data] : []).push(r.uint64()); break;
      case 0x62: m.docString = r.string(end); break;
      case 0x6a: m.externalData.push(sub(r, end, stringEntry)); break;
      case 0x70: m.dataLocation = r.int32(); break;
      case 0x82: m.metadataProps.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  // An empty packed field decodes as absent: the reference serializer never writes one.
  if (f32) m.floatData = joinParts(f32, newF32);
  if (i32) m.int32Data = joinParts(i32, newI32);
  if (i64) m.int64Data = joinParts(i64, newI64);
  if (f64) m.doubleData = joinParts(f64, newF64);
  if (u64) m.uint64Data = joinParts(u64, newU64);
  for (const k of ['floatData', 'int32Data', 'int64Data', 'doubleData', 'uint64Data'] as const) if (m[k]?.length === 0) delete m[k];
  return m;
};

export const sparseTensor: Decoder<P.SparseTensorProto> = (r, end, m = { dims: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.values = sub(r, end, tensor, m.values); break;
      case 0x12: m.indices = sub(r, end, tensor, m.indices); break;
      case 0x18: m.dims.push(r.int64()); break;
      case 0x1a: packedVarints(r, end, m.dims, () => r.int64()); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const dimension: Decoder<P.DimensionProto> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    // dim_value / dim_param are a oneof: the last one on the wire wins.
    if (tag === 0x08) {
      m.dimValue = r.int64();
      delete m.dimParam;
    } else if (tag === 0x12) {
      m.dimParam = r.string(end);
      delete m.dimValue;
    } else if (tag === 0x1a) m.denotation = r.string(end);
    else keep(r, m, start, tag, end);
  }
  return m;
};

const shape: Decoder<P.TensorShapeProto> = (r, end, m = { dim: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.dim.push(sub(r, end, dimension));
    else keep(r, m, start, tag, end);
  }
  return m;
};

const typeTensor: Decoder<P.TypeProtoTensor> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x08) m.elemType = r.int32();
    else if (tag === 0x12) m.shape = sub(r, end, shape, m.shape);
    else keep(r, m, start, tag, end);
  }
  return m;
};

/** Sequence and Optional share one layout: elem_type (TypeProto) = 1. */
const typeWrapper: Decoder<P.TypeProtoSequence> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.elemType = sub(r, end, type, m.elemType);
    else keep(r, m, start, tag, end);
  }
  return m;
};

const typeMap: Decoder<P.TypeProtoMap> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x08) m.keyType = r.int32();
    else if (tag === 0x12) m.valueType = sub(r, end, type, m.valueType);
    else keep(r, m, start, tag, end);
  }
  return m;
};

const typeOpaque: Decoder<P.TypeProtoOpaque> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.domain = r.string(end);
    else if (tag === 0x12) m.name = r.string(end);
    else keep(r, m, start, tag, end);
  }
  return m;
};

const TYPE_ONEOF = ['tensorType', 'sequenceType', 'mapType', 'optionalType', 'sparseTensorType', 'opaqueType'] as const;
type TypeOneof = (typeof TYPE_ONEOF)[number];
/** TypeProto oneof members by tag: [member, decoder]. */
const TYPE_MEMBERS: Record<number, [TypeOneof, Decoder<never>]> = {
  0x0a: ['tensorType', typeTensor as unknown as Decoder<never>],
  0x22: ['sequenceType', typeWrapper as unknown as Decoder<never>],
  0x2a: ['mapType', typeMap as unknown as Decoder<never>],
  0x3a: ['opaqueType', typeOpaque as unknown as Decoder<never>],
  0x42: ['sparseTensorType', typeTensor as unknown as Decoder<never>],
  0x4a: ['optionalType', typeWrapper as unknown as Decoder<never>],
};

export const type: Decoder<P.TypeProto> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    const member = TYPE_MEMBERS[tag];
    if (member) {
      const [key, dec] = member;
      // A oneof: a different member clears the current one; the same member merges.
      for (const k of TYPE_ONEOF) if (k !== key) delete m[k];
      (m as Record<TypeOneof, unknown>)[key] = sub(r, end, dec, m[key] as never);
    } else if (tag === 0x32) m.denotation = r.string(end);
    else keep(r, m, start, tag, end);
  }
  return m;
};

export const valueInfo: Decoder<P.ValueInfoProto> = (r, end, m = { metadataProps: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x12: m.type = sub(r, end, type, m.type); break;
      case 0x1a: m.docString = r.string(end); break;
      case 0x22: m.metadataProps.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const newSequence = (): P.SequenceProto => ({ tensorValues: [], sparseTensorValues: [], sequenceValues: [], mapValues: [], optionalValues: [] });

const sequence: Decoder<P.SequenceProto> = (r, end, m = newSequence()) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x10: m.elemType = r.int32(); break;
      case 0x1a: m.tensorValues.push(sub(r, end, tensor)); break;
      case 0x22: m.sparseTensorValues.push(sub(r, end, sparseTensor)); break;
      case 0x2a: m.sequenceValues.push(sub(r, end, sequence)); break;
      case 0x32: m.mapValues.push(sub(r, end, map)); break;
      case 0x3a: m.optionalValues.push(sub(r, end, optional)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const map: Decoder<P.MapProto> = (r, end, m = { keys: [], stringKeys: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x10: m.keyType = r.int32(); break;
      case 0x18: m.keys.push(r.int64()); break;
      case 0x1a: packedVarints(r, end, m.keys, () => r.int64()); break;
      case 0x22: m.stringKeys.push(r.bytes(end)); break;
      case 0x2a: m.values = sub(r, end, sequence, m.values); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const optional: Decoder<P.OptionalProto> = (r, end, m = {}) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x10: m.elemType = r.int32(); break;
      case 0x1a: m.tensorValue = sub(r, end, tensor, m.tensorValue); break;
      case 0x22: m.sparseTensorValue = sub(r, end, sparseTensor, m.sparseTensorValue); break;
      case 0x2a: m.sequenceValue = sub(r, end, sequence, m.sequenceValue); break;
      case 0x32: m.mapValue = sub(r, end, map, m.mapValue); break;
      case 0x3a: m.optionalValue = sub(r, end, optional, m.optionalValue); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

/** Decodes a whole buffer as one message. @internal @throws LowbitError TRUNCATED / NOT_ONNX */
export function decodeTop<T>(bytes: Uint8Array, dec: Decoder<T>, what: string): T {
  if (!(bytes instanceof Uint8Array)) throw new LowbitError('BAD_OPTION', `${what}: expected a Uint8Array, got ${typeof bytes}`, 'pass the file contents as bytes');
  const r = new Reader(bytes, what);
  const m = dec(r, r.length);
  checkEnd(r, r.length);
  return m;
}

/** Decodes a TensorProto (e.g. the input_*.pb / output_*.pb files of ONNX test data). @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeTensor = (bytes: Uint8Array): P.TensorProto => decodeTop(bytes, tensor, 'tensor file');
/** Decodes a SparseTensorProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeSparseTensor = (bytes: Uint8Array): P.SparseTensorProto => decodeTop(bytes, sparseTensor, 'sparse tensor');
/** Decodes a TypeProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeType = (bytes: Uint8Array): P.TypeProto => decodeTop(bytes, type, 'type');
/** Decodes a ValueInfoProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeValueInfo = (bytes: Uint8Array): P.ValueInfoProto => decodeTop(bytes, valueInfo, 'value info');
/** Decodes a SequenceProto (test data of sequence-typed inputs/outputs). @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeSequence = (bytes: Uint8Array): P.SequenceProto => decodeTop(bytes, sequence, 'sequence file');
/** Decodes a MapProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeMap = (bytes: Uint8Array): P.MapProto => decodeTop(bytes, map, 'map file');
/** Decodes an OptionalProto (test data of optional-typed inputs/outputs). @throws LowbitError TRUNCATED / NOT_ONNX */
export const decodeOptional = (bytes: Uint8Array): P.OptionalProto => decodeTop(bytes, optional, 'optional file');
