// Minimal RIFF/WAVE reader: 16-bit integer PCM, mono or stereo -> Float32Array in [-1, 1].
// parseWav is pure; readWav is the node-side file adapter. Used by the VAD test data (realistic-vad.ts).

import { readFileSync } from 'node:fs';
import { LowbitError } from '../errors.js';

/** A decoded WAV file. */
export interface WavAudio {
  sampleRate: number;
  channels: number;
  /** Mono signal: the only channel, or the mean of the channels. In [-1, 1). */
  samples: Float32Array;
  /** Each channel on its own (for mono, `[samples]`). */
  channelData: Float32Array[];
}

const FORMAT_PCM = 1;
const FORMAT_EXTENSIBLE = 0xfffe;
/** Format tags worth naming in errors. */
const FORMAT_NAMES: Record<number, string> = { 1: 'PCM', 2: 'MS ADPCM', 3: 'IEEE float', 6: 'A-law', 7: 'mu-law', 0x11: 'IMA ADPCM', 0x55: 'MP3' };
const HINT = 'convert it to 16-bit PCM WAV, e.g. `sox in.wav -b 16 -e signed-integer out.wav`';

function bad(what: string, message: string): LowbitError {
  return new LowbitError('BAD_DATA', `${what}: ${message}`, HINT);
}

/**
 * Decodes a RIFF/WAVE file held in memory. Unknown chunks (LIST, fact, ...) are skipped; an odd-sized
 * chunk is followed by its pad byte, as RIFF requires.
 * @param what name used in error messages (e.g. the file path).
 * @throws LowbitError('BAD_DATA') if it is not RIFF/WAVE, is truncated, or is anything other than
 *   16-bit integer PCM with 1 or 2 channels (WAVE_FORMAT_EXTENSIBLE wrapping such PCM is accepted).
 */
export function parseWav(bytes: Uint8Array, what = 'WAV data'): WavAudio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number): string => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw bad(what, 'not a RIFF/WAVE file');
  let fmt: { format: number; channels: number; sampleRate: number; blockAlign: number; bits: number } | undefined;
  let data: Uint8Array | undefined;
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === 'data') {
      // Streaming writers may leave the size at 0xFFFFFFFF ("unknown"): then take the rest of the file.
      if (size !== 0xffffffff && body + size > bytes.length) throw bad(what, `truncated: data chunk says ${size} bytes, ${bytes.length - body} present`);
      data = bytes.subarray(body, size === 0xffffffff ? bytes.length : body + size);
    } else if (id === 'fmt ') {
      if (size < 16 || body + size > bytes.length) throw bad(what, `malformed fmt chunk (${size} bytes)`);
      let format = view.getUint16(body, true);
      if (format === FORMAT_EXTENSIBLE) {
        if (size < 40) throw bad(what, 'WAVE_FORMAT_EXTENSIBLE fmt chunk is shorter than 40 bytes');
        format = view.getUint16(body + 24, true); // first two bytes of the SubFormat GUID
      }
      fmt = {
        format,
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        blockAlign: view.getUint16(body + 12, true),
        bits: view.getUint16(body + 14, true),
      };
    }
    at = body + size + (size & 1);
  }
  if (!fmt) throw bad(what, 'no fmt chunk');
  if (!data) throw bad(what, 'no data chunk');
  if (fmt.format !== FORMAT_PCM) throw bad(what, `unsupported encoding ${FORMAT_NAMES[fmt.format] ?? `format tag 0x${fmt.format.toString(16)}`}; only 16-bit integer PCM is read`);
  if (fmt.bits !== 16) throw bad(what, `unsupported ${fmt.bits}-bit PCM; only 16-bit is read`);
  if (fmt.channels !== 1 && fmt.channels !== 2) throw bad(what, `unsupported channel count ${fmt.channels}; only mono and stereo are read`);
  if (fmt.blockAlign !== 2 * fmt.channels) throw bad(what, `block align ${fmt.blockAlign} does not match ${fmt.channels} channel(s) of 16 bits`);
  if (!(fmt.sampleRate > 0)) throw bad(what, 'sample rate is 0');
  const frames = Math.floor(data.length / fmt.blockAlign);
  const pcm = new DataView(data.buffer, data.byteOffset, frames * fmt.blockAlign);
  const channelData = Array.from({ length: fmt.channels }, () => new Float32Array(frames));
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < fmt.channels; c++) channelData[c]![i] = pcm.getInt16((i * fmt.channels + c) * 2, true) / 32768;
  }
  let samples = channelData[0]!;
  if (fmt.channels === 2) {
    samples = new Float32Array(frames);
    for (let i = 0; i < frames; i++) samples[i] = (channelData[0]![i]! + channelData[1]![i]!) / 2;
  }
  return { sampleRate: fmt.sampleRate, channels: fmt.channels, samples, channelData };
}

/**
 * Reads and decodes a WAV file (see {@link parseWav}).
 * @throws LowbitError('FILE_NOT_FOUND') if it cannot be read; LowbitError('BAD_DATA') as parseWav.
 */
export function readWav(path: string): WavAudio {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new LowbitError('FILE_NOT_FOUND', `cannot read WAV file ${path}`, 'check the path', { cause: e });
  }
  return parseWav(bytes, path);
}

/**
 * Encodes 16-bit PCM WAV (the inverse of parseWav, for tests and fixtures). Samples are clamped to
 * [-1, 1] and rounded; `channelData` are interleaved.
 * @throws LowbitError('BAD_OPTION') for no channels, channels of different lengths, or a bad sample rate.
 */
export function encodeWav(channelData: Float32Array[], sampleRate: number): Uint8Array {
  const channels = channelData.length;
  const frames = channelData[0]?.length ?? 0;
  if (channels < 1 || channelData.some((c) => c.length !== frames) || !Number.isSafeInteger(sampleRate) || sampleRate <= 0) {
    throw new LowbitError('BAD_OPTION', 'encodeWav needs >= 1 channel of equal length and a positive integer sample rate');
  }
  const bytes = new Uint8Array(44 + frames * channels * 2);
  const v = new DataView(bytes.buffer);
  const put = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) bytes[at + i] = s.charCodeAt(i);
  };
  put(0, 'RIFF');
  v.setUint32(4, bytes.length - 8, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, FORMAT_PCM, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * channels * 2, true);
  v.setUint16(32, channels * 2, true);
  v.setUint16(34, 16, true);
  put(36, 'data');
  v.setUint32(40, frames * channels * 2, true);
  for (let i = 0; i < frames; i++) {
    for (let c = 0; c < channels; c++) {
      const s = Math.max(-1, Math.min(1, channelData[c]![i]!));
      v.setInt16(44 + (i * channels + c) * 2, Math.max(-32768, Math.min(32767, Math.round(s * 32768))), true);
    }
  }
  return bytes;
}
