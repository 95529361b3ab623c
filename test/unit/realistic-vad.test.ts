// Unit tests of the WAV reader (src/data/wav.ts) on the committed speech fixture and on bad files, and of
// the VAD framing / frame-by-frame driver (src/data/realistic-vad.ts) with a fake model runner.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeWav, parseWav, readWav, runVad, vadFrames, type VadRunner } from '../../src/data/realistic.js';
import { isLowbitError } from '../../src/errors.js';
import type { NdArray } from '../../src/ndarray.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/audio/speech-16k.wav', import.meta.url));
const SEGMENTS = JSON.parse(readFileSync(fileURLToPath(new URL('../fixtures/audio/speech-16k.json', import.meta.url)), 'utf8')) as {
  sampleRate: number;
  samples: number;
  segments: { startSample: number; endSample: number }[];
};
const code = (c: string, re?: RegExp) => (e: unknown) => isLowbitError(e) && e.code === c && (!re || re.test(e.message));

const rms = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);

/** A WAV header + body with a given fmt chunk (16 bytes unless `extra`), for the bad-file tests. */
function wavWith(format: number, channels: number, bits: number, dataBytes: number, opts: { extensibleSub?: number; declaredData?: number } = {}): Uint8Array {
  const fmtSize = opts.extensibleSub === undefined ? 16 : 40;
  const out = new Uint8Array(12 + 8 + fmtSize + 8 + dataBytes);
  const v = new DataView(out.buffer);
  const put = (at: number, s: string) => [...s].forEach((ch, i) => (out[at + i] = ch.charCodeAt(0)));
  put(0, 'RIFF');
  v.setUint32(4, out.length - 8, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  v.setUint32(16, fmtSize, true);
  v.setUint16(20, format, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, 16000, true);
  v.setUint32(28, 16000 * channels * (bits / 8), true);
  v.setUint16(32, channels * (bits / 8), true);
  v.setUint16(34, bits, true);
  if (opts.extensibleSub !== undefined) {
    v.setUint16(36, 22, true);
    v.setUint16(44, opts.extensibleSub, true);
  }
  const d = 20 + fmtSize;
  put(d, 'data');
  v.setUint32(d + 4, opts.declaredData ?? dataBytes, true);
  return out;
}

describe('WAV reader', () => {
  it('reads the speech fixture: 16 kHz mono 16-bit, length and loudness as built', () => {
    const wav = readWav(FIXTURE);
    assert.equal(wav.sampleRate, 16000);
    assert.equal(wav.channels, 1);
    assert.equal(wav.samples.length, SEGMENTS.samples);
    assert.ok(wav.samples.length / 16000 > 3 && wav.samples.length / 16000 < 4.5);
    let peak = 0;
    for (const s of wav.samples) peak = Math.max(peak, Math.abs(s));
    assert.ok(peak > 0.6 && peak < 0.75, `peak ${peak} (sentences were normalized to -3 dBFS)`);
    const [s1, s2] = SEGMENTS.segments;
    const lead = wav.samples.subarray(0, s1!.startSample);
    const gap = wav.samples.subarray(s1!.endSample, s2!.startSample);
    assert.ok(rms(lead) < 0.003 && rms(gap) < 0.003, `silence rms ${rms(lead)}, ${rms(gap)}`);
    assert.ok(rms(wav.samples.subarray(s1!.startSample, s1!.endSample)) > 0.05);
    assert.ok(rms(wav.samples.subarray(s2!.startSample, s2!.endSample)) > 0.05);
  });

  it('round-trips stereo through encodeWav (mono = channel mean, odd chunks skipped)', () => {
    const l = Float32Array.of(0, 0.5, -0.5, 0.25);
    const r = Float32Array.of(1, -1, 0.5, 0.25);
    const enc = encodeWav([l, r], 8000);
    // Insert an odd-sized LIST chunk (with its pad byte) before 'data'.
    const list = Uint8Array.of(...[...'LIST'].map((c) => c.charCodeAt(0)), 3, 0, 0, 0, 1, 2, 3, 0);
    const withList = new Uint8Array(enc.length + list.length);
    withList.set(enc.subarray(0, 36));
    withList.set(list, 36);
    withList.set(enc.subarray(36), 36 + list.length);
    for (const bytes of [enc, withList]) {
      const w = parseWav(bytes);
      assert.equal(w.sampleRate, 8000);
      assert.equal(w.channels, 2);
      assert.deepEqual(Array.from(w.channelData[0]!), [0, 0.5, -0.5, 0.25]);
      assert.deepEqual(Array.from(w.channelData[1]!), [32767 / 32768, -1, 0.5, 0.25]);
      assert.ok(Math.abs(w.samples[1]! - -0.25) < 1e-6 && Math.abs(w.samples[3]! - 0.25) < 1e-6);
    }
  });

  it('accepts WAVE_FORMAT_EXTENSIBLE wrapping 16-bit PCM', () => {
    const w = parseWav(wavWith(0xfffe, 1, 16, 4, { extensibleSub: 1 }));
    assert.equal(w.samples.length, 2);
  });

  it('rejects other formats, truncation and non-WAV with BAD_DATA', () => {
    assert.throws(() => parseWav(new TextEncoder().encode('not a wav file at all')), code('BAD_DATA', /not a RIFF\/WAVE/));
    assert.throws(() => parseWav(wavWith(3, 1, 32, 8)), code('BAD_DATA', /IEEE float/));
    assert.throws(() => parseWav(wavWith(0xfffe, 1, 32, 8, { extensibleSub: 3 })), code('BAD_DATA', /IEEE float/));
    assert.throws(() => parseWav(wavWith(1, 1, 24, 6)), code('BAD_DATA', /24-bit/));
    assert.throws(() => parseWav(wavWith(1, 1, 8, 6)), code('BAD_DATA', /8-bit/));
    assert.throws(() => parseWav(wavWith(1, 3, 16, 12)), code('BAD_DATA', /channel count 3/));
    assert.throws(() => parseWav(wavWith(1, 1, 16, 4, { declaredData: 400 })), code('BAD_DATA', /truncated/));
    const fixture = readFileSync(FIXTURE);
    assert.throws(() => parseWav(fixture.subarray(0, 30)), code('BAD_DATA', /fmt/));
    assert.throws(() => readWav('/nonexistent/x.wav'), code('FILE_NOT_FOUND'));
  });
});

describe('vadFrames', () => {
  const samples = Float32Array.from({ length: 1000 }, (_, i) => i + 1);

  it('cuts [1, frame] inputs covering every sample once, zero-padding the last', () => {
    const frames = vadFrames(samples, 256);
    assert.equal(frames.length, 4);
    assert.deepEqual(frames[0]!.shape, [1, 256]);
    const seen = frames.flatMap((f) => Array.from(f.data as Float32Array)).filter((v) => v !== 0);
    assert.deepEqual(seen, Array.from(samples));
    assert.equal((frames[3]!.data as Float32Array)[1000 - 768], 0);
  });

  it('prepends the previous frame tail as context (zeros before frame 0)', () => {
    const frames = vadFrames(samples, 512, 64);
    assert.equal(frames.length, 2);
    assert.deepEqual(frames[1]!.shape, [1, 576]);
    const f0 = frames[0]!.data as Float32Array;
    const f1 = frames[1]!.data as Float32Array;
    assert.ok(f0.subarray(0, 64).every((v) => v === 0));
    assert.equal(f0[64], 1);
    assert.deepEqual(Array.from(f1.subarray(0, 64)), Array.from(samples.subarray(448, 512)));
    assert.equal(f1[64], 513);
  });

  it('rejects bad sizes', () => {
    assert.throws(() => vadFrames(samples, 0), code('BAD_OPTION'));
    assert.throws(() => vadFrames(samples, 16, 17), code('BAD_OPTION'));
  });
});

describe('runVad', () => {
  it('feeds sr, zero states first, then each call the state the previous call returned', async () => {
    const calls: Record<string, NdArray>[] = [];
    let n = 0;
    const runner: VadRunner = (feeds) => {
      calls.push(feeds);
      n++;
      return {
        output: { dtype: 'float32', shape: [1, 1], data: Float32Array.of(n / 10) },
        stateN: { dtype: 'float32', shape: [0, 0, 0], data: new Float32Array(256).fill(n) },
      };
    };
    const run = await runVad(new Float32Array(1500), 'v5', runner, { collectFeeds: true });
    assert.equal(run.frameSize, 512);
    assert.deepEqual(Array.from(run.probs).map((p) => Math.round(p * 10)), [1, 2, 3]);
    assert.equal(calls.length, 3);
    assert.equal(run.feeds!.length, 3);
    assert.deepEqual(calls[0]!['sr'], { dtype: 'int64', shape: [], data: BigInt64Array.of(16000n) });
    assert.deepEqual(calls[0]!['input']!.shape, [1, 576]);
    assert.deepEqual(calls[0]!['state']!.shape, [2, 1, 128]);
    assert.ok((calls[0]!['state']!.data as Float32Array).every((v) => v === 0));
    assert.ok((calls[2]!['state']!.data as Float32Array).every((v) => v === 2));
  });

  it('drives the legacy model with h and c and 1536-sample frames', async () => {
    const seen: string[][] = [];
    const runner: VadRunner = async (feeds) => {
      seen.push(Object.keys(feeds).sort());
      assert.deepEqual(feeds['input']!.shape, [1, 1536]);
      return {
        output: { dtype: 'float32', shape: [1, 1], data: Float32Array.of(0.5) },
        hn: { dtype: 'float32', shape: [2, 1, 64], data: new Float32Array(128) },
        cn: { dtype: 'float32', shape: [2, 1, 64], data: new Float32Array(128) },
      };
    };
    const run = await runVad(new Float32Array(3073), 'legacy', runner);
    assert.equal(run.probs.length, 3);
    assert.equal(run.feeds, undefined);
    assert.deepEqual(seen[0], ['c', 'h', 'input', 'sr']);
  });

  it('reports a runner that is not a silero model, and non-16 kHz audio', async () => {
    const wrong: VadRunner = () => ({ output: { dtype: 'float32', shape: [1, 1], data: Float32Array.of(0) } });
    await assert.rejects(runVad(new Float32Array(600), 'v5', wrong), code('DATA_MISMATCH', /stateN/));
    await assert.rejects(runVad(new Float32Array(600), 'v5', () => ({})), code('DATA_MISMATCH', /output/));
    await assert.rejects(runVad(new Float32Array(600), 'v5', wrong, { sampleRate: 8000 }), code('BAD_OPTION'));
  });
});
