// Package entry (`lowbit`): everything in `lowbit/core` plus the Node.js side: model files,
// calibration data, ONNX Runtime sessions and the quantize / evaluate / bench pipelines.

export * from './core.js';
export { loadModel, saveModel, type LoadedModel, type SaveOptions } from './io/model-file.js';
export { openDataSource, bindToModelInputs, dataSourceFromArrays, split, openModelData, openImageFolder } from './data/calib-data.js';
export type { ImagePreprocess } from './data/calib-data.js';
export { parseQuantizeConfig, readQuantizeConfig, applyQuantizeConfig, writeQuantizeConfig, type QuantizeConfig } from './pipeline/config.js';
export { parseNpy, encodeNpy, openNpy, writeNpy } from './data/npy.js';
export { openNpz, writeNpz } from './data/npz.js';
export { Session, type SessionOptions } from './runtime/session.js';
export { quantize } from './pipeline/quantize.js';
export { resolveQuantizeOptions, type QuantizeOptions, type QuantizeResult } from './pipeline/options.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './pipeline/evaluate.js';
export { compare, type CompareOptions, type CompareResult, type LayerComparison, type WeightComparison } from './pipeline/compare.js';
export { bench, compareLatency, type BenchOptions, type BenchResult } from './pipeline/bench.js';
export { calibrate, type CalibrateOptions } from './pipeline/calibrate.js';
export { inspectModel } from './pipeline/inspect.js';
export { qat, type QatOptions, type QatResult, type QatRow } from './pipeline/qat.js';
export { train, type EpochStats, type TrainData, type TrainOptions, type TrainProgress, type TrainResult, type TrainTimes } from './pipeline/train.js';
export { quantizeTransformersJs, buildVariant, type PresetOptions, type PresetResult, type PresetVariant } from './pipeline/preset.js';
export { collectHessians, gptqHook, hessianTargets } from './pipeline/hessian.js';
export { runInWeb } from './runtime/web.js';
export { renderQuantizeReport } from './report/quantize-report.js';
export { renderPresetReport } from './report/preset-report.js';
export { renderCompareReport } from './report/compare-report.js';
