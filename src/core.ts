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
export { batchMinMax, MinMaxObserver, MovingAverageMinMaxObserver, type Range, type RangeObserver } from './calib/observer.js';
export { createObserver } from './calib/create.js';
export { CALIBRATION_METHODS, resolveCalibration, type CalibrationMethod, type CalibrationSettings, type ResolvedCalibration } from './calib/methods.js';
export { quantTarget, type QuantTarget } from './calib/target.js';
export { StreamingHistogram, foldAbs, valueAtCount, type HistogramView } from './calib/histogram.js';
export { HistogramObserver, DEFAULT_NUM_BINS, type HistogramRangeRule } from './calib/histogram-observer.js';
export { PercentileObserver, percentileRange, DEFAULT_PERCENTILE } from './calib/percentile.js';
export { EntropyObserver, entropyRange } from './calib/entropy.js';
export { MseObserver, mseRange } from './calib/mse.js';
export { quantizeDynamic, type QuantizeDynamicOptions, type QuantizeDynamicReport } from './passes/quantize-dynamic.js';
export { planQdq, quantizeStatic, type StaticQuantOptions, type StaticQuantReport, type TensorRanges } from './passes/quantize-qdq.js';
export { qdqToQOperator, QOPERATOR_OPS, type QOperatorReport } from './passes/qdq-to-qoperator.js';
export { exportQat, insertFakeQuant, planFakeQuant, type FakeQuantOptions, type FakeQuantResult, type QatExportOptions, type QatExportReport } from './passes/qat.js';
export { mseClipQParams, type WeightClip } from './passes/quant-weight.js';
export { preprocessForQuantization } from './passes/preprocess.js';
export { addTaps } from './passes/taps.js';
export { ActivationErrorStats, mapQdq, readDqParams, weightError, type ActivationErrorSummary, type ActivationLink, type DqParams, type QdqMap, type WeightError, type WeightLink } from './passes/qdq-map.js';
export * from './grad/index.js';
export * from './train/index.js';
export { buildDigitCnn, buildDigitMobileNet, DIGIT_CNN_NAME, DIGIT_CNN_SUMMARY, DIGIT_MOBILENET_NAME, DIGIT_MOBILENET_SUMMARY, type DigitCnnOptions, type DigitMobileNetOptions } from './models/digits.js';
export { padDepthwiseChannels } from './passes/pad-channels.js';
export { convertFloat16, DEFAULT_BLOCK as FLOAT16_DEFAULT_BLOCK, FLOAT16_TYPES, toFloat16Bits, type Float16Options, type Float16Report, type Float16Type } from './passes/float16.js';
