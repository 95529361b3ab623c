// ONNX protobuf encoder: proto.ts messages -> bytes, in the reference (C++) serializer's layout:
// known fields in field-number order, [packed = true] fields packed, unknown fields last.
// Two passes over one body per message (sizes, then bytes into one exact buffer), so large
// raw_data is copied exactly once. Pure; anyone may import.

import type * as P from './proto.js';
import { type Body, NONE, encodeParts, encodeTop, opsetId, sizeOf, sparseTensor, stringEntry, tensor, type, valueInfo } from './encode-values.js';

export { PROTOBUF_MAX_BYTES, encodedTensorSize, encodeTensor, encodeSparseTensor, encodeType, encodeValueInfo, encodeSequence, encodeMap, encodeOptional } from './encode-values.js';

const attribute: Body<P.AttributeProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  if (m.f !== undefined) s.float(0x15, m.f);
  if (m.i !== undefined) s.int64(0x18, m.i);
  if (m.s) s.bytes(0x22, m.s);
  if (m.t) s.msg(0x2a, m.t, tensor);
  if (m.g) s.msg(0x32, m.g, graph);
  for (const v of m.floats ?? NONE) s.float(0x3d, v); // floats and ints are not packed in onnx.proto
  for (const v of m.ints ?? NONE) s.int64(0x40, v);
  for (const b of m.strings ?? NONE) s.bytes(0x4a, b);
  for (const t of m.tensors ?? NONE) s.msg(0x52, t, tensor);
  for (const g of m.graphs ?? NONE) s.msg(0x5a, g, graph);
  if (m.docString !== undefined) s.str(0x6a, m.docString);
  if (m.tp) s.msg(0x72, m.tp, type);
  for (const t of m.typeProtos ?? NONE) s.msg(0x7a, t, type);
  if (m.type !== undefined) s.int32(0xa0, m.type);
  if (m.refAttrName !== undefined) s.str(0xaa, m.refAttrName);
  if (m.sparseTensor) s.msg(0xb2, m.sparseTensor, sparseTensor);
  for (const t of m.sparseTensors ?? NONE) s.msg(0xba, t, sparseTensor);
  s.unknown(m.unknownFields);
};

const node: Body<P.NodeProto> = (m, s) => {
  for (const v of m.input ?? NONE) s.str(0x0a, v);
  for (const v of m.output ?? NONE) s.str(0x12, v);
  if (m.name !== undefined) s.str(0x1a, m.name);
  if (m.opType !== undefined) s.str(0x22, m.opType);
  for (const a of m.attribute ?? NONE) s.msg(0x2a, a, attribute);
  if (m.docString !== undefined) s.str(0x32, m.docString);
  if (m.domain !== undefined) s.str(0x3a, m.domain);
  if (m.overload !== undefined) s.str(0x42, m.overload);
  for (const e of m.metadataProps ?? NONE) s.msg(0x4a, e, stringEntry);
  s.unknown(m.unknownFields);
};

const annotation: Body<P.TensorAnnotation> = (m, s) => {
  if (m.tensorName !== undefined) s.str(0x0a, m.tensorName);
  for (const e of m.quantParameterTensorNames ?? NONE) s.msg(0x12, e, stringEntry);
  s.unknown(m.unknownFields);
};

const graph: Body<P.GraphProto> = (m, s) => {
  for (const n of m.node ?? NONE) s.msg(0x0a, n, node);
  if (m.name !== undefined) s.str(0x12, m.name);
  for (const t of m.initializer ?? NONE) s.msg(0x2a, t, tensor);
  if (m.docString !== undefined) s.str(0x52, m.docString);
  for (const v of m.input ?? NONE) s.msg(0x5a, v, valueInfo);
  for (const v of m.output ?? NONE) s.msg(0x62, v, valueInfo);
  for (const v of m.valueInfo ?? NONE) s.msg(0x6a, v, valueInfo);
  for (const a of m.quantizationAnnotation ?? NONE) s.msg(0x72, a, annotation);
  for (const t of m.sparseInitializer ?? NONE) s.msg(0x7a, t, sparseTensor);
  for (const e of m.metadataProps ?? NONE) s.msg(0x82, e, stringEntry);
  s.unknown(m.unknownFields);
};

const trainingInfo: Body<P.TrainingInfoProto> = (m, s) => {
  if (m.initialization) s.msg(0x0a, m.initialization, graph);
  if (m.algorithm) s.msg(0x12, m.algorithm, graph);
  for (const e of m.initializationBinding ?? NONE) s.msg(0x1a, e, stringEntry);
  for (const e of m.updateBinding ?? NONE) s.msg(0x22, e, stringEntry);
  s.unknown(m.unknownFields);
};

const functionProto: Body<P.FunctionProto> = (m, s) => {
  if (m.name !== undefined) s.str(0x0a, m.name);
  for (const v of m.input ?? NONE) s.str(0x22, v);
  for (const v of m.output ?? NONE) s.str(0x2a, v);
  for (const v of m.attribute ?? NONE) s.str(0x32, v);
  for (const n of m.node ?? NONE) s.msg(0x3a, n, node);
  if (m.docString !== undefined) s.str(0x42, m.docString);
  for (const o of m.opsetImport ?? NONE) s.msg(0x4a, o, opsetId);
  if (m.domain !== undefined) s.str(0x52, m.domain);
  for (const a of m.attributeProto ?? NONE) s.msg(0x5a, a, attribute);
  for (const v of m.valueInfo ?? NONE) s.msg(0x62, v, valueInfo);
  if (m.overload !== undefined) s.str(0x6a, m.overload);
  for (const e of m.metadataProps ?? NONE) s.msg(0x72, e, stringEntry);
  s.unknown(m.unknownFields);
};

const model: Body<P.ModelProto> = (m, s) => {
  if (m.irVersion !== undefined) s.int64(0x08, m.irVersion);
  if (m.producerName !== undefined) s.str(0x12, m.producerName);
  if (m.producerVersion !== undefined) s.str(0x1a, m.producerVersion);
  if (m.domain !== undefined) s.str(0x22, m.domain);
  if (m.modelVersion !== undefined) s.int64(0x28, m.modelVersion);
  if (m.docString !== undefined) s.str(0x32, m.docString);
  if (m.graph) s.msg(0x3a, m.graph, graph);
  for (const o of m.opsetImport ?? NONE) s.msg(0x42, o, opsetId);
  for (const e of m.metadataProps ?? NONE) s.msg(0x72, e, stringEntry);
  for (const t of m.trainingInfo ?? NONE) s.msg(0xa2, t, trainingInfo);
  for (const f of m.functions ?? NONE) s.msg(0xca, f, functionProto);
  s.unknown(m.unknownFields);
};

/**
 * Serializes a model, byte-identical to the reference serializer for models it wrote.
 * @throws LowbitError UNSUPPORTED_MODEL over 2 GiB (use external data), INTERNAL for ill-typed fields
 */
export function encodeModel(m: P.ModelProto): Uint8Array {
  return encodeTop(m, model, 'model');
}

/**
 * Serializes a model as chunks whose concatenation equals encodeModel(m): payloads of `cutAt`+
 * bytes (raw_data, big typed data, big unknown fields) are zero-copy views of the model's own
 * arrays, the rest is packed into one buffer. For writing big models to files without a copy.
 * @throws LowbitError as encodeModel
 */
export function encodeModelChunks(m: P.ModelProto, cutAt = 64 * 1024): Uint8Array[] {
  return encodeParts(m, model, 'model', cutAt);
}

/** Serialized size of a model in bytes, without serializing it (may exceed 2 GiB). */
export function encodedModelSize(m: P.ModelProto): number {
  return sizeOf(m, model);
}

/** Serializes a GraphProto. @throws LowbitError as encodeModel */
export function encodeGraph(g: P.GraphProto): Uint8Array {
  return encodeTop(g, graph, 'graph');
}

/** Serializes a NodeProto. @throws LowbitError as encodeModel */
export function encodeNode(n: P.NodeProto): Uint8Array {
  return encodeTop(n, node, 'node');
}

/** Serializes an AttributeProto. @throws LowbitError as encodeModel */
export function encodeAttribute(a: P.AttributeProto): Uint8Array {
  return encodeTop(a, attribute, 'attribute');
}

/** Serializes a FunctionProto. @throws LowbitError as encodeModel */
export function encodeFunction(f: P.FunctionProto): Uint8Array {
  return encodeTop(f, functionProto, 'function');
}
