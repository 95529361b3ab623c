// ONNX Runtime Web (the WebAssembly backend browsers run) from Node: does a model lowbit wrote load and run
// there, and what does it compute? transformers.js runs models through onnxruntime-web, so a variant that
// works in onnxruntime-node but not in the wasm build (an operator or type the web build lacks) is caught
// here. onnxruntime-web is loaded on first use (a devDependency: this check is optional).

import type { NdArray } from '../ndarray.js';
import { LowbitError } from '../errors.js';
import { DTYPE_INFO } from './arrays.js';

type OrtWeb = typeof import('onnxruntime-web');
let ortWeb: Promise<OrtWeb> | undefined;

async function load(): Promise<OrtWeb> {
  ortWeb ??= import('onnxruntime-web').then((m) => {
    m.env.wasm.numThreads = 1; // no worker threads: deterministic, and what every browser can run
    return m;
  });
  try {
    return await ortWeb;
  } catch (e) {
    ortWeb = undefined;
    throw new LowbitError('RUNTIME', `onnxruntime-web cannot be loaded: ${(e as Error).message}`, 'install it (npm i -D onnxruntime-web) to check models in the WebAssembly backend', { cause: e });
  }
}

/** External-data files of a model, as onnxruntime-web takes them: the location written in the model and the bytes. */
export interface WebExternalData {
  path: string;
  data: Uint8Array;
}

/**
 * Loads `model` (its bytes) in onnxruntime-web's wasm backend, runs `feeds` once and returns the outputs as
 * NdArrays (outputs of types an NdArray cannot hold are left out).
 * @throws LowbitError('RUNTIME') when the web build cannot load or run the model (the message is ORT's).
 */
export async function runInWeb(model: Uint8Array, feeds: Record<string, NdArray>, externalData: WebExternalData[] = []): Promise<Record<string, NdArray>> {
  const ort = await load();
  let session: Awaited<ReturnType<OrtWeb['InferenceSession']['create']>> | undefined;
  try {
    session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], ...(externalData.length ? { externalData } : {}) });
    const inputs = Object.fromEntries(Object.entries(feeds).map(([k, a]) => [k, new ort.Tensor(a.dtype, a.data as never, a.shape)]));
    const out = await session.run(inputs);
    const result: Record<string, NdArray> = {};
    for (const [name, t] of Object.entries(out)) {
      const info = DTYPE_INFO[t.type as keyof typeof DTYPE_INFO];
      if (info && t.data instanceof info.ctor) result[name] = { dtype: t.type as NdArray['dtype'], shape: [...t.dims], data: t.data } as NdArray;
    }
    return result;
  } catch (e) {
    if (e instanceof LowbitError) throw e;
    throw new LowbitError('RUNTIME', `onnxruntime-web (wasm) cannot run the model: ${(e as Error).message ?? String(e)}`, 'the web build lacks an operator or type this model uses: use another variant for the browser', { cause: e });
  } finally {
    await session?.release();
  }
}
