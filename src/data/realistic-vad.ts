// Feeds for the silero VAD models of @ricky0123/vad-web: audio cut into frames and a frame-by-frame driver
// that carries the recurrent state. The model runner is injected, so this module never imports onnxruntime.
// Pure (no node: imports); anyone on the node side may import it.

import { LowbitError } from '../errors.js';
import type { NdArray } from '../ndarray.js';

/** 'legacy' = silero_vad_legacy.onnx (v4); 'v5' = silero_vad_v5.onnx, also right for silero_vad_v6.onnx. */
export type VadModelKind = 'legacy' | 'v5';

/** One recurrent state tensor: fed as `input`, returned as `output`, zeros at the start. */
interface VadState {
  input: string;
  output: string;
  /** Shape with batch 1. */
  shape: number[];
}

/** What each model expects at 16 kHz (from the models' graph inputs and vad-web's dist/models/*.js). */
interface VadSpec {
  /** New samples per call (vad-web: 1536 for legacy, 512 for v5/v6). */
  frameSize: number;
  /** Samples of the previous frame prepended to each frame (silero v5's OnnxWrapper and vad-web use 64). */
  contextSize: number;
  states: VadState[];
}

export const VAD_SPECS: Readonly<Record<VadModelKind, VadSpec>> = {
  legacy: {
    frameSize: 1536,
    contextSize: 0,
    states: [
      { input: 'h', output: 'hn', shape: [2, 1, 64] },
      { input: 'c', output: 'cn', shape: [2, 1, 64] },
    ],
  },
  v5: { frameSize: 512, contextSize: 64, states: [{ input: 'state', output: 'stateN', shape: [2, 1, 128] }] },
};

/** The only rate these specs are for; the models also accept 8 kHz with other frame sizes. */
export const VAD_SAMPLE_RATE = 16000;

/** Runs the model once: graph input name -> array, returns graph output name -> array. */
export type VadRunner = (feeds: Record<string, NdArray>) => Promise<Record<string, NdArray>> | Record<string, NdArray>;

/**
 * Cuts audio into model inputs of shape [1, contextSize + frameSize]: frame k holds samples
 * [k*frameSize, (k+1)*frameSize) (the last one zero-padded), preceded by the last `contextSize` samples
 * of frame k-1 (zeros before frame 0). Every sample lands in exactly one frame.
 * @throws LowbitError('BAD_OPTION') for a frameSize < 1 or a contextSize outside [0, frameSize].
 */
export function vadFrames(samples: Float32Array, frameSize: number, contextSize = 0): NdArray[] {
  if (!Number.isSafeInteger(frameSize) || frameSize < 1) {
    throw new LowbitError('BAD_OPTION', `VAD frame size must be a positive integer, got ${frameSize}`);
  }
  if (!Number.isSafeInteger(contextSize) || contextSize < 0 || contextSize > frameSize) {
    throw new LowbitError('BAD_OPTION', `VAD context size must be an integer in [0, ${frameSize}], got ${contextSize}`);
  }
  const frames: NdArray[] = [];
  for (let start = 0; start < samples.length; start += frameSize) {
    const data = new Float32Array(contextSize + frameSize);
    const from = Math.max(0, start - contextSize);
    data.set(samples.subarray(from, start), contextSize - (start - from));
    data.set(samples.subarray(start, Math.min(samples.length, start + frameSize)), contextSize);
    frames.push({ dtype: 'float32', shape: [1, data.length], data });
  }
  return frames;
}

/** Result of {@link runVad}. */
export interface VadRun {
  /** Speech probability per frame. */
  probs: Float32Array;
  /** New samples per frame (frame k starts at sample k*frameSize). */
  frameSize: number;
  /** Each call's feeds, in order (only with `collectFeeds`): realistic inputs, states included, e.g. for calibration. */
  feeds?: Record<string, NdArray>[];
}

/** Options of {@link runVad}. */
export interface RunVadOptions {
  /** Must be 16000 (resample other audio first). */
  sampleRate?: number;
  /** Keep every call's feeds in the result. */
  collectFeeds?: boolean;
}

/**
 * Runs a whole recording through a silero VAD model frame by frame (batch 1), feeding each call the state
 * the previous call returned, as vad-web does. `runner` runs the model (onnxruntime-node, src/runtime, ...).
 * @throws LowbitError('BAD_OPTION') for a sample rate other than 16000;
 *   LowbitError('DATA_MISMATCH') if the runner's outputs lack `output` or a state, or have the wrong size.
 */
export async function runVad(samples: Float32Array, kind: VadModelKind, runner: VadRunner, options: RunVadOptions = {}): Promise<VadRun> {
  const sampleRate = options.sampleRate ?? VAD_SAMPLE_RATE;
  if (sampleRate !== VAD_SAMPLE_RATE) {
    throw new LowbitError('BAD_OPTION', `silero VAD frames are set up for 16000 Hz audio, got ${sampleRate} Hz`, 'resample to 16 kHz, e.g. `sox in.wav -r 16000 out.wav`');
  }
  const spec = VAD_SPECS[kind];
  const sr: NdArray = { dtype: 'int64', shape: [], data: BigInt64Array.of(BigInt(sampleRate)) };
  let states: Record<string, NdArray> = {};
  for (const s of spec.states) states[s.input] = { dtype: 'float32', shape: [...s.shape], data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) };
  const frames = vadFrames(samples, spec.frameSize, spec.contextSize);
  const probs = new Float32Array(frames.length);
  const collected: Record<string, NdArray>[] = [];
  for (let k = 0; k < frames.length; k++) {
    const feeds: Record<string, NdArray> = { input: frames[k]!, sr, ...states };
    if (options.collectFeeds) collected.push(feeds);
    const out = await runner(feeds);
    const p = out['output'];
    if (!p || p.data.length < 1 || !(p.data instanceof Float32Array)) {
      throw new LowbitError('DATA_MISMATCH', `VAD runner returned no float32 'output' at frame ${k} (got: ${Object.keys(out).join(', ') || 'nothing'})`, `is this a silero ${kind} model?`);
    }
    probs[k] = p.data[0]!;
    const next: Record<string, NdArray> = {};
    for (const s of spec.states) {
      const o = out[s.output];
      const want = states[s.input]!.data.length;
      if (!o || o.data.length !== want) {
        throw new LowbitError('DATA_MISMATCH', `VAD runner returned no '${s.output}' of ${want} values at frame ${k}`, `is this a silero ${kind} model?`);
      }
      // The model reports stateN's shape as [0,0,0] in its graph; feed it back with the known shape.
      next[s.input] = { dtype: 'float32', shape: [...s.shape], data: o.data };
    }
    states = next;
  }
  return options.collectFeeds ? { probs, frameSize: spec.frameSize, feeds: collected } : { probs, frameSize: spec.frameSize };
}
