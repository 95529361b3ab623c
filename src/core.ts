// Browser-safe entry (`lowbit/core`): the ONNX codec and IR, quantization math, observers and graph
// passes, with no Node.js or ONNX Runtime imports (checked by tsconfig.core.json, "types": []).

export * from './errors.js';
export * from './ndarray.js';
export * from './onnx/proto.js';
export { decodeModel, decodeTensor, decodeGraph } from './onnx/decode.js';
export { encodeModel, encodeTensor, encodeGraph, encodedModelSize } from './onnx/encode.js';
export { dimsOf, elementCount, makeTensor, tensorStorage, packInt4, unpackInt4 } from './onnx/tensor.js';
export { Graph, Model, makeNode, makeValueInfo, valueInfoTensor } from './onnx/ir.js';
export { ModelBuilder } from './onnx/builder.js';
export * from './onnx/attributes.js';
export { inferElemTypes, isFloatType } from './onnx/infer.js';
export * from './quant/index.js';
export { createObserver, MinMaxObserver, MovingAverageMinMaxObserver, type Range, type RangeObserver } from './calib/observer.js';
export { quantizeDynamic, type QuantizeDynamicOptions, type QuantizeDynamicReport } from './passes/quantize-dynamic.js';
export { planQdq, quantizeStatic, type StaticQuantOptions, type StaticQuantReport, type TensorRanges } from './passes/quantize-qdq.js';
export { preprocessForQuantization } from './passes/preprocess.js';
export { addTaps } from './passes/taps.js';
export * from './grad/index.js';
