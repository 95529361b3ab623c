// Synthetic samples for a model's inputs, for verifying a quantized model when the user gave no data.
// Always labelled as synthetic in reports: fidelity on random inputs is only a smoke signal.

import { bindToModelInputs, dataSourceFromArrays, type BoundDataSource } from '../data/calib-data.js';
import type { NdArray } from '../ndarray.js';
import { randomFeeds } from './bench.js';

/**
 * `count` random samples (floats uniform in [0, 1), integers 0) for inputs described by ONNX
 * element type and dims; symbolic non-batch dims get bench's default size.
 */
export function syntheticSource(
  inputs: { name: string; elemType: number; dims: (number | string | undefined)[] }[],
  count: number,
  seed: number,
): BoundDataSource {
  const arrays: Record<string, NdArray> = {};
  for (const input of inputs) {
    const batched = input.dims.length > 0 && typeof input.dims[0] !== 'number';
    // Inputs without a free batch axis (scalars, fixed leading dims) get one extra sample axis.
    const dims = batched ? input.dims : [undefined, ...input.dims];
    const meta = { name: input.name, isTensor: true, type: '', elemType: input.elemType, dims };
    const feed = randomFeeds([meta], { batch: count, seed })[input.name]!;
    arrays[input.name] = feed;
  }
  return bindToModelInputs(dataSourceFromArrays(arrays, '<synthetic>'), inputs);
}
