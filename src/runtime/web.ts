// ONNX Runtime Web (the WebAssembly backend browsers run) from Node: does a model lowbit wrote load and run
// there, and what does it compute? transformers.js runs models through onnxruntime-web, so a variant that
// works in onnxruntime-node but not in the wasm build (an operator or type the web build lacks) is caught
// here. onnxruntime-web is loaded on first use (a devDependency: this check is optional).

import type { NdArray } from '../ndarray.js';
import { LowbitError } from '../errors.js';
import { DTYPE_INFO, toMeta, type ValueMeta } from './arrays.js';

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

/** A model loaded in onnxruntime-web's wasm backend (one thread), run on NdArrays. */
export class WebSession {
  /** The model inputs as the web build reports them. */
  readonly inputs: readonly ValueMeta[];

  private constructor(
    private readonly ort: OrtWeb,
    private readonly session: Awaited<ReturnType<OrtWeb['InferenceSession']['create']>>,
  ) {
    this.inputs = session.inputMetadata.map(toMeta);
  }

  /**
   * Loads `model` (its bytes) in the wasm backend.
   * @throws LowbitError('RUNTIME') when onnxruntime-web is missing or cannot load the model (the message is ORT's).
   */
  static async create(model: Uint8Array, externalData: WebExternalData[] = []): Promise<WebSession> {
    const ort = await load();
    try {
      return new WebSession(ort, await ort.InferenceSession.create(model, { executionProviders: ['wasm'], ...(externalData.length ? { externalData } : {}) }));
    } catch (e) {
      throw webError(e);
    }
  }

  /** Runs `feeds` once; outputs of types an NdArray cannot hold are left out. @throws LowbitError('RUNTIME'). */
  async run(feeds: Record<string, NdArray>): Promise<Record<string, NdArray>> {
    try {
      const inputs = Object.fromEntries(Object.entries(feeds).map(([k, a]) => [k, new this.ort.Tensor(a.dtype, a.data as never, a.shape)]));
      const out = await this.session.run(inputs);
      const result: Record<string, NdArray> = {};
      for (const [name, t] of Object.entries(out)) {
        const info = DTYPE_INFO[t.type as keyof typeof DTYPE_INFO];
        if (info && t.data instanceof info.ctor) result[name] = { dtype: t.type as NdArray['dtype'], shape: [...t.dims], data: t.data } as NdArray;
      }
      return result;
    } catch (e) {
      throw webError(e);
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function webError(e: unknown): LowbitError {
  if (e instanceof LowbitError) return e;
  return new LowbitError('RUNTIME', `onnxruntime-web (wasm) cannot run the model: ${(e as Error).message ?? String(e)}`, 'the web build lacks an operator or type this model uses: use another variant for the browser', { cause: e });
}

/**
 * Loads `model` (its bytes) in onnxruntime-web's wasm backend, runs `feeds` once and returns the outputs as
 * NdArrays (outputs of types an NdArray cannot hold are left out).
 * @throws LowbitError('RUNTIME') when the web build cannot load or run the model (the message is ORT's).
 */
export async function runInWeb(model: Uint8Array, feeds: Record<string, NdArray>, externalData: WebExternalData[] = []): Promise<Record<string, NdArray>> {
  const session = await WebSession.create(model, externalData);
  try {
    return await session.run(feeds);
  } finally {
    await session.release();
  }
}
