// Shape inference by running: tap every value of the main graph, run one feed, read the element
// type and dims ORT produced. Exact for that sample (no symbolic reasoning), which is all the
// passes need; the batch axis is the first dim of the graph inputs.

import * as ort from 'onnxruntime-node';
import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';
import { encodeModel } from '../onnx/encode.js';
import { addTaps, graphValues } from '../passes/taps.js';
import { DTYPE_INFO } from './arrays.js';
import { Session, elemTypeOfOrtType, type SessionOptions } from './session.js';
import { modelProtoOf, type ModelRef } from './tapped.js';

/** A value's element type (ONNX DataType) and its dims in the run that observed it. */
export interface ValueShape {
  elemType: number;
  dims: number[];
}

/**
 * Element type and dims of every tensor value of the main graph: graph inputs (from `feeds`),
 * initializers (from the model) and node outputs (from one ORT run of `feeds`). Dims are those of
 * this sample: a symbolic batch dim shows the fed batch size. Values that are sequences, maps or
 * optionals are left out, as are values only defined inside subgraphs.
 * @throws LowbitError('RUNTIME') when ORT rejects the model or the feed; errors of modelProtoOf.
 */
export async function shapesByRunning(model: ModelRef, feeds: Record<string, NdArray>, opts: SessionOptions = {}): Promise<Map<string, ValueShape>> {
  const { proto, label } = await modelProtoOf(model);
  const vals = graphValues(proto);
  const shapes = new Map<string, ValueShape>();
  for (const t of proto.graph!.initializer) {
    // Also for initializers listed as inputs: ORT's Node binding computes with the stored value.
    const name = t.name ?? '';
    if (name && t.dataType) shapes.set(name, { elemType: t.dataType, dims: t.dims.map((d) => Number(d)) });
  }
  const outputs = proto.graph!.output.map((o) => o.name ?? '');
  const wanted = vals.nodeOutputs.filter((n) => !shapes.has(n) && !vals.inputs.includes(n));
  const session = await Session.create(encodeModel(addTaps(proto, wanted)), { ...opts, label: `${opts.label ?? label} (all values tapped)` });
  try {
    const fetch = session.outputs.filter((m) => m.isTensor && (wanted.includes(m.name) || outputs.includes(m.name))).map((m) => m.name);
    const got = await session.runRaw(feeds, fetch);
    for (const [name, v] of Object.entries(got)) {
      if (!(v instanceof ort.Tensor)) continue;
      const elemType = elemTypeOfOrtType(v.type);
      if (elemType === undefined) continue;
      shapes.set(name, { elemType, dims: [...v.dims] });
    }
  } finally {
    await session.release();
  }
  // The run validated the feeds.
  for (const name of vals.inputs) {
    const arr = feeds[name];
    if (arr) shapes.set(name, { elemType: DTYPE_INFO[arr.dtype].elemType, dims: [...arr.shape] });
  }
  if (shapes.size === 0) throw new LowbitError('INTERNAL', `${label}: running found no values`);
  return shapes;
}
