// Calibration / evaluation data for the pipeline: open .npy/.npz or image folders (or wrap arrays in memory), bind
// them to a model's inputs, stream checked batches, hold out samples. Node-side adapter (file system).
// Public façade over source.ts (reading, slicing) and bind.ts (model binding).

export { UNNAMED, openDataSource, dataSourceFromArrays, split } from './source.js';
export type { ArrayInfo, BatchRange, DataSource, Sliceable } from './source.js';
export { bindToModelInputs } from './bind.js';
export type { BoundDataSource, BoundInput, Conversion, ModelInput } from './bind.js';
export type { DType, NdArray, TypedArray } from './dtype.js';
export { isDirectory, listImageFiles, openImageFolder, openModelData } from './image-source.js';
export { resolveImagePreprocess } from './image-options.js';
export type { ImagePreprocess, ImageSize, ResolvedImagePreprocess } from './image-options.js';
