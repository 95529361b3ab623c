// ONNX protobuf messages as plain TypeScript data (onnx/onnx.proto, IR version 10/11).
// Pure and isomorphic: imported by the codec, the IR and every pass. No node: imports.
//
// Conventions (they make decode -> encode lossless):
// - int64 / uint64 fields are `bigint` (Slice ends of INT64_MAX survive); the IR offers number views.
// - bytes fields are `Uint8Array` views into the decoded buffer (zero-copy), never copies.
// - every message may carry `unknownFields`: the raw bytes (tag included) of fields the codec
//   does not know, in the order met; the encoder writes them back after the known ones.
// - optional scalar fields are `undefined` when absent from the wire, so "absent" and
//   "present with the default value" stay distinct.

/** TensorProto.DataType values. https://onnx.ai/onnx/api/mapping.html */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
  FLOAT8E4M3FN: 17,
  FLOAT8E4M3FNUZ: 18,
  FLOAT8E5M2: 19,
  FLOAT8E5M2FNUZ: 20,
  UINT4: 21,
  INT4: 22,
  FLOAT4E2M1: 23,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

/** AttributeProto.AttributeType values. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  SPARSE_TENSOR: 11,
  TYPE_PROTO: 13,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSORS: 12,
  TYPE_PROTOS: 14,
} as const;
export type AttributeType = (typeof AttributeType)[keyof typeof AttributeType];

/** TensorProto.DataLocation. */
export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;

/** Raw bytes of fields the codec does not know (tag + payload), preserved on round trip. */
export interface HasUnknown {
  unknownFields?: Uint8Array[];
}

export interface StringStringEntryProto extends HasUnknown {
  key?: string;
  value?: string;
}

export interface OperatorSetIdProto extends HasUnknown {
  domain?: string;
  version?: bigint;
}

export interface TensorSegment extends HasUnknown {
  begin?: bigint;
  end?: bigint;
}

export interface TensorProto extends HasUnknown {
  dims: bigint[];
  dataType?: number;
  segment?: TensorSegment;
  /** Packed repeated fields: decoded into typed arrays (small tensors only, in practice). */
  floatData?: Float32Array;
  int32Data?: Int32Array;
  stringData?: Uint8Array[];
  int64Data?: BigInt64Array;
  name?: string;
  docString?: string;
  /** Zero-copy view into the source buffer, or bytes set by a pass. */
  rawData?: Uint8Array;
  externalData: StringStringEntryProto[];
  dataLocation?: number;
  doubleData?: Float64Array;
  uint64Data?: BigUint64Array;
  metadataProps: StringStringEntryProto[];
}

export interface SparseTensorProto extends HasUnknown {
  values?: TensorProto;
  indices?: TensorProto;
  dims: bigint[];
}

export interface DimensionProto extends HasUnknown {
  dimValue?: bigint;
  dimParam?: string;
  denotation?: string;
}

export interface TensorShapeProto extends HasUnknown {
  dim: DimensionProto[];
}

export interface TypeProtoTensor extends HasUnknown {
  elemType?: number;
  shape?: TensorShapeProto;
}

export interface TypeProtoSequence extends HasUnknown {
  elemType?: TypeProto;
}

export interface TypeProtoMap extends HasUnknown {
  keyType?: number;
  valueType?: TypeProto;
}

export interface TypeProtoOptional extends HasUnknown {
  elemType?: TypeProto;
}

export interface TypeProtoOpaque extends HasUnknown {
  domain?: string;
  name?: string;
}

/** TypeProto: at most one of the `*Type` members is set (a protobuf oneof). */
export interface TypeProto extends HasUnknown {
  tensorType?: TypeProtoTensor;
  sequenceType?: TypeProtoSequence;
  mapType?: TypeProtoMap;
  optionalType?: TypeProtoOptional;
  sparseTensorType?: TypeProtoTensor;
  opaqueType?: TypeProtoOpaque;
  denotation?: string;
}

export interface ValueInfoProto extends HasUnknown {
  name?: string;
  type?: TypeProto;
  docString?: string;
  metadataProps: StringStringEntryProto[];
}

export interface AttributeProto extends HasUnknown {
  name?: string;
  refAttrName?: string;
  docString?: string;
  type?: number;
  f?: number;
  i?: bigint;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  sparseTensor?: SparseTensorProto;
  tp?: TypeProto;
  floats: number[];
  ints: bigint[];
  strings: Uint8Array[];
  tensors: TensorProto[];
  graphs: GraphProto[];
  sparseTensors: SparseTensorProto[];
  typeProtos: TypeProto[];
}

export interface NodeProto extends HasUnknown {
  input: string[];
  output: string[];
  name?: string;
  opType?: string;
  domain?: string;
  overload?: string;
  attribute: AttributeProto[];
  docString?: string;
  metadataProps: StringStringEntryProto[];
}

export interface TensorAnnotation extends HasUnknown {
  tensorName?: string;
  quantParameterTensorNames: StringStringEntryProto[];
}

export interface GraphProto extends HasUnknown {
  node: NodeProto[];
  name?: string;
  initializer: TensorProto[];
  sparseInitializer: SparseTensorProto[];
  docString?: string;
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo: ValueInfoProto[];
  quantizationAnnotation: TensorAnnotation[];
  metadataProps: StringStringEntryProto[];
}

export interface TrainingInfoProto extends HasUnknown {
  initialization?: GraphProto;
  algorithm?: GraphProto;
  initializationBinding: StringStringEntryProto[];
  updateBinding: StringStringEntryProto[];
}

export interface FunctionProto extends HasUnknown {
  name?: string;
  input: string[];
  output: string[];
  attribute: string[];
  attributeProto: AttributeProto[];
  node: NodeProto[];
  docString?: string;
  opsetImport: OperatorSetIdProto[];
  domain?: string;
  overload?: string;
  valueInfo: ValueInfoProto[];
  metadataProps: StringStringEntryProto[];
}

export interface ModelProto extends HasUnknown {
  irVersion?: bigint;
  opsetImport: OperatorSetIdProto[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: bigint;
  docString?: string;
  graph?: GraphProto;
  metadataProps: StringStringEntryProto[];
  trainingInfo: TrainingInfoProto[];
  functions: FunctionProto[];
}

// onnx-data.proto: the values of ONNX test data (input_*.pb / output_*.pb) that are not tensors.

/** SequenceProto / OptionalProto elem_type values. */
export const ValueKind = { UNDEFINED: 0, TENSOR: 1, SPARSE_TENSOR: 2, SEQUENCE: 3, MAP: 4, OPTIONAL: 5 } as const;

export interface SequenceProto extends HasUnknown {
  name?: string;
  elemType?: number;
  tensorValues: TensorProto[];
  sparseTensorValues: SparseTensorProto[];
  sequenceValues: SequenceProto[];
  mapValues: MapProto[];
  optionalValues: OptionalProto[];
}

export interface MapProto extends HasUnknown {
  name?: string;
  keyType?: number;
  keys: bigint[];
  stringKeys: Uint8Array[];
  values?: SequenceProto;
}

export interface OptionalProto extends HasUnknown {
  name?: string;
  elemType?: number;
  tensorValue?: TensorProto;
  sparseTensorValue?: SparseTensorProto;
  sequenceValue?: SequenceProto;
  mapValue?: MapProto;
  optionalValue?: OptionalProto;
}
