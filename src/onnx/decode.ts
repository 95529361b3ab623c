// ONNX protobuf decoder: bytes -> the plain messages of proto.ts. Zero-copy (bytes fields are
// views into the input), lossless (unknown fields kept raw). Pure; anyone may import.

import { LowbitError } from '../errors.js';
import type * as P from './proto.js';
import { type Decoder, decodeTop, keep, opsetId, packedFixed, packedVarints, sparseTensor, stringEntry, sub, tensor, type, valueInfo } from './decode-values.js';

export { decodeTensor, decodeSparseTensor, decodeType, decodeValueInfo, decodeSequence, decodeMap, decodeOptional } from './decode-values.js';

const newAttribute = (): P.AttributeProto => ({ floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensors: [], typeProtos: [] });

const attribute: Decoder<P.AttributeProto> = (r, end, m = newAttribute()) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x15: m.f = r.float(); break;
      case 0x18: m.i = r.int64(); break;
      case 0x22: m.s = r.bytes(end); break;
      case 0x2a: m.t = sub(r, end, tensor, m.t); break;
      case 0x32: m.g = sub(r, end, graph, m.g); break;
      case 0x3d: m.floats.push(r.float()); break;
      case 0x3a: for (const v of packedFixed(r, end, Float32Array)) m.floats.push(v); break;
      case 0x40: m.ints.push(r.int64()); break;
      case 0x42: packedVarints(r, end, m.ints, () => r.int64()); break;
      case 0x4a: m.strings.push(r.bytes(end)); break;
      case 0x52: m.tensors.push(sub(r, end, tensor)); break;
      case 0x5a: m.graphs.push(sub(r, end, graph)); break;
      case 0x6a: m.docString = r.string(end); break;
      case 0x72: m.tp = sub(r, end, type, m.tp); break;
      case 0x7a: m.typeProtos.push(sub(r, end, type)); break;
      case 0xa0: m.type = r.int32(); break;
      case 0xaa: m.refAttrName = r.string(end); break;
      case 0xb2: m.sparseTensor = sub(r, end, sparseTensor, m.sparseTensor); break;
      case 0xba: m.sparseTensors.push(sub(r, end, sparseTensor)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const node: Decoder<P.NodeProto> = (r, end, m = { input: [], output: [], attribute: [], metadataProps: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.input.push(r.string(end)); break;
      case 0x12: m.output.push(r.string(end)); break;
      case 0x1a: m.name = r.string(end); break;
      case 0x22: m.opType = r.string(end); break;
      case 0x2a: m.attribute.push(sub(r, end, attribute)); break;
      case 0x32: m.docString = r.string(end); break;
      case 0x3a: m.domain = r.string(end); break;
      case 0x42: m.overload = r.string(end); break;
      case 0x4a: m.metadataProps.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const annotation: Decoder<P.TensorAnnotation> = (r, end, m = { quantParameterTensorNames: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    if (tag === 0x0a) m.tensorName = r.string(end);
    else if (tag === 0x12) m.quantParameterTensorNames.push(sub(r, end, stringEntry));
    else keep(r, m, start, tag, end);
  }
  return m;
};

const newGraph = (): P.GraphProto => ({ node: [], initializer: [], sparseInitializer: [], input: [], output: [], valueInfo: [], quantizationAnnotation: [], metadataProps: [] });

const graph: Decoder<P.GraphProto> = (r, end, m = newGraph()) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.node.push(sub(r, end, node)); break;
      case 0x12: m.name = r.string(end); break;
      case 0x2a: m.initializer.push(sub(r, end, tensor)); break;
      case 0x52: m.docString = r.string(end); break;
      case 0x5a: m.input.push(sub(r, end, valueInfo)); break;
      case 0x62: m.output.push(sub(r, end, valueInfo)); break;
      case 0x6a: m.valueInfo.push(sub(r, end, valueInfo)); break;
      case 0x72: m.quantizationAnnotation.push(sub(r, end, annotation)); break;
      case 0x7a: m.sparseInitializer.push(sub(r, end, sparseTensor)); break;
      case 0x82: m.metadataProps.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const trainingInfo: Decoder<P.TrainingInfoProto> = (r, end, m = { initializationBinding: [], updateBinding: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.initialization = sub(r, end, graph, m.initialization); break;
      case 0x12: m.algorithm = sub(r, end, graph, m.algorithm); break;
      case 0x1a: m.initializationBinding.push(sub(r, end, stringEntry)); break;
      case 0x22: m.updateBinding.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const newFunction = (): P.FunctionProto => ({ input: [], output: [], attribute: [], attributeProto: [], node: [], opsetImport: [], valueInfo: [], metadataProps: [] });

const functionProto: Decoder<P.FunctionProto> = (r, end, m = newFunction()) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x0a: m.name = r.string(end); break;
      case 0x22: m.input.push(r.string(end)); break;
      case 0x2a: m.output.push(r.string(end)); break;
      case 0x32: m.attribute.push(r.string(end)); break;
      case 0x3a: m.node.push(sub(r, end, node)); break;
      case 0x42: m.docString = r.string(end); break;
      case 0x4a: m.opsetImport.push(sub(r, end, opsetId)); break;
      case 0x52: m.domain = r.string(end); break;
      case 0x5a: m.attributeProto.push(sub(r, end, attribute)); break;
      case 0x62: m.valueInfo.push(sub(r, end, valueInfo)); break;
      case 0x6a: m.overload = r.string(end); break;
      case 0x72: m.metadataProps.push(sub(r, end, stringEntry)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

const model: Decoder<P.ModelProto> = (r, end, m = { opsetImport: [], metadataProps: [], trainingInfo: [], functions: [] }) => {
  while (r.pos < end) {
    const start = r.pos;
    const tag = r.uint32();
    switch (tag) {
      case 0x08: m.irVersion = r.int64(); break;
      case 0x12: m.producerName = r.string(end); break;
      case 0x1a: m.producerVersion = r.string(end); break;
      case 0x22: m.domain = r.string(end); break;
      case 0x28: m.modelVersion = r.int64(); break;
      case 0x32: m.docString = r.string(end); break;
      case 0x3a: m.graph = sub(r, end, graph, m.graph); break;
      case 0x42: m.opsetImport.push(sub(r, end, opsetId)); break;
      case 0x72: m.metadataProps.push(sub(r, end, stringEntry)); break;
      case 0xa2: m.trainingInfo.push(sub(r, end, trainingInfo)); break;
      case 0xca: m.functions.push(sub(r, end, functionProto)); break;
      default: keep(r, m, start, tag, end);
    }
  }
  return m;
};

// First-byte tags a ModelProto may start with (the known fields with their wire types, plus
// IR v11's configuration = 26). Anything else is not worth a full parse: it is not ONNX.
const MODEL_FIRST_TAGS = new Set([0x08, 0x12, 0x1a, 0x22, 0x28, 0x32, 0x3a, 0x42, 0x72, 0xa2, 0xca, 0xd2]);

function notOnnx(detail: string): LowbitError {
  return new LowbitError('NOT_ONNX', `not an ONNX model: ${detail}`, 'pass an ONNX model file (.onnx) exported by PyTorch, TensorFlow (tf2onnx), ONNX Runtime tools or similar');
}

/**
 * Decodes an ONNX model. Bytes fields of the result (raw_data, ...) are views into `bytes`.
 * @throws LowbitError NOT_ONNX when the bytes are not a protobuf ModelProto (empty file, text,
 *   image, ...), TRUNCATED when the file ends early
 */
export function decodeModel(bytes: Uint8Array): P.ModelProto {
  if (bytes.length === 0) throw notOnnx('the file is empty');
  const first = bytes[0] < 0x80 ? bytes[0] : bytes.length > 1 && bytes[1] === 0x01 ? bytes[0] : -1;
  if (!MODEL_FIRST_TAGS.has(first)) {
    const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw notOnnx(`it does not start like a protobuf ModelProto (first bytes: ${head})`);
  }
  let m: P.ModelProto;
  try {
    m = decodeTop(bytes, model, 'model file');
  } catch (e) {
    // Garbage that happens to start with a plausible tag fails somewhere inside; if nothing
    // model-like was read before that, call it what it is.
    // (The reference serializer always starts with ir_version, tag 0x08.)
    if (e instanceof LowbitError && bytes[0] !== 0x08) throw notOnnx(`it does not parse as protobuf (${e.message})`);
    throw e;
  }
  if (m.graph === undefined) {
    if (m.irVersion === undefined) throw notOnnx('it has neither an ir_version nor a graph');
    // A cut at a field boundary parses cleanly; the missing graph gives it away.
    throw new LowbitError('TRUNCATED', `model file is truncated at byte ${bytes.length}: it has no graph`, 'the file was probably cut short by an interrupted download or copy; fetch it again');
  }
  return m;
}

/** Decodes a GraphProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export function decodeGraph(bytes: Uint8Array): P.GraphProto {
  return decodeTop(bytes, graph, 'graph');
}

/** Decodes a NodeProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export function decodeNode(bytes: Uint8Array): P.NodeProto {
  return decodeTop(bytes, node, 'node');
}

/** Decodes an AttributeProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export function decodeAttribute(bytes: Uint8Array): P.AttributeProto {
  return decodeTop(bytes, attribute, 'attribute');
}

/** Decodes a FunctionProto. @throws LowbitError TRUNCATED / NOT_ONNX */
export function decodeFunction(bytes: Uint8Array): P.FunctionProto {
  return decodeTop(bytes, functionProto, 'function');
}
