// Package entry (`lowbit`): everything in `lowbit/core` plus the Node.js side: model files,
// calibration data, ONNX Runtime sessions and the quantize / evaluate / bench pipelines.

export * from './core.js';
export { loadModel, saveModel, type LoadedModel, type SaveOptions } from './io/model-file.js';
export { openDataSource, bindToModelInputs, dataSourceFromArrays, split } from './data/calib-data.js';
export { parseNpy, encodeNpy, openNpy, writeNpy } from './data/npy.js';
export { openNpz, writeNpz } from './data/npz.js';
export { Session, type SessionOptions } from './runtime/session.js';
export { quantize } from './pipeline/quantize.js';
export { resolveQuantizeOptions, type QuantizeOptions, type QuantizeResult } from './pipeline/options.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './pipeline/evaluate.js';
export { bench, compareLatency, type BenchOptions, type BenchResult } from './pipeline/bench.js';
export { calibrate } from './pipeline/calibrate.js';
export { inspectModel } from './pipeline/inspect.js';
export { renderQuantizeReport } from './report/quantize-report.js';
