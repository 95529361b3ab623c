// Dynamic int8 quantization of the real pretrained models in node_modules (PaddleOCR v4 rec, v2 cls,
// silero VAD legacy), run in onnxruntime-node against their float originals.
// Inputs: OCR lines of REAL handwritten digits (MNIST) in a SYNTHETIC layout and SYNTHESIZED speech
// (espeak-ng) from src/data/realistic.ts, plus one SYNTHETIC random-normal batch for rec.
// Bounds sit below the values measured (onnxruntime-node 1.30 CPU) quoted in the comments.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  clsPredictsRotated,
  ctcGreedyDecode,
  loadOcrDictionary,
  mulberry32,
  ocrClsBatch,
  ocrRecBatch,
  readWav,
  realModelPath,
  runVad,
  type RealModelName,
} from '../../src/data/realistic.js';
import type { NdArray } from '../../src/ndarray.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { quantizeDynamic, type QuantizeDynamicReport } from '../../src/passes/quantize-dynamic.js';
import { cosineSimilarity, sqnrDb } from '../../src/quant/metrics.js';
import { Session } from '../../src/runtime/session.js';

interface Quantized {
  float: Session;
  quant: Session;
  report: QuantizeDynamicReport;
  /** quantized / float file size */
  ratio: number;
  /** int8 bytes / float32 bytes of the weights that were quantized */
  weightRatio: number;
}

async function quantize(name: RealModelName, perChannel: boolean): Promise<Quantized> {
  const bytes = new Uint8Array(readFileSync(realModelPath(name)));
  const src = new Model(decodeModel(bytes));
  const { model, report } = quantizeDynamic(src, { weightType: 'int8', perChannel });
  const qbytes = encodeModel(model.toProto());
  // The quantized weights and what they replaced: every INT8 initializer with > 1 element is a weight.
  let intBytes = 0;
  const walk = (gs: Model['graph'][]): void => {
    for (const g of gs) {
      for (const t of g.initializers.values()) if (t.dataType === DataType.INT8 && (t.rawData?.length ?? 0) > 1) intBytes += t.rawData!.length;
      walk(g.nodes.flatMap((n) => g.subgraphs(n).map((s) => s.graph)));
    }
  };
  walk([model.graph]);
  const float = await Session.create(bytes);
  const quant = await Session.create(qbytes);
  const weightRatio = (qbytes.length - (bytes.length - intBytes * 4)) / (intBytes * 4);
  return { float, quant, report, ratio: qbytes.length / bytes.length, weightRatio };
}

const only = (o: Record<string, NdArray>): Float32Array => Object.values(o)[0]!.data as Float32Array;
const count = (r: QuantizeDynamicReport, op: string) => r.quantized.filter((q) => q.opType === op).length;

describe('dynamic int8 on real models', () => {
  it('PaddleOCR v4 rec: 9 weight MatMuls quantized, decoded text unchanged on handwritten-digit lines', async () => {
    const q = await quantize('ocrRec', true);
    assert.equal(count(q.report, 'MatMul'), 9);
    assert.ok(q.report.quantized.every((e) => e.form === 'DynamicQuantizeMatMul (+bias)'));
    assert.equal(q.report.skipped.filter((s) => s.opType === 'MatMul' && /not a constant/.test(s.reason)).length, 4, 'attention QK/V stay float');
    assert.equal(q.report.skipped.filter((s) => s.opType === 'Conv').length, 38);
    const dict = loadOcrDictionary();
    let same = 0, total = 0, exactF = 0, exactQ = 0;
    for (const seed of [101, 102]) {
      const batch = ocrRecBatch(16, seed);
      const [of, oq] = [await q.float.run({ x: batch.input }), await q.quant.run({ x: batch.input })];
      const [f, t] = [only(of), only(oq)];
      const cos = cosineSimilarity(f, t);
      const sqnr = sqnrDb(f, t);
      const [df, dq] = [ctcGreedyDecode(Object.values(of)[0]!, dict), ctcGreedyDecode(Object.values(oq)[0]!, dict)];
      df.forEach((d, i) => {
        if (d.text === dq[i]!.text) same++;
        if (d.text === batch.texts[i]) exactF++;
        if (dq[i]!.text === batch.texts[i]) exactQ++;
        total++;
      });
      console.log(`rec seed ${seed}: cos ${cos.toFixed(5)} SQNR ${sqnr.toFixed(1)} dB`);
      // Measured: cos 0.99999, SQNR 46-47 dB (16 lines per seed; 40-44 dB on 32-line batches).
      assert.ok(cos > 0.9995, `cosine ${cos}`);
      assert.ok(sqnr > 30, `SQNR ${sqnr}`);
    }
    console.log(`rec: same text ${same}/${total}, exact float ${exactF} int8 ${exactQ}; size ratio ${q.ratio.toFixed(3)}, quantized weights ${q.weightRatio.toFixed(3)}`);
    // Measured: 32/32 lines decode identically (63/64 on 32-line batches); exact matches 18 vs 18.
    assert.ok(same / total >= 0.9, `identical decodes ${same}/${total}`);
    assert.ok(Math.abs(exactF - exactQ) <= 2, `exact matches float ${exactF} vs int8 ${exactQ}`);
    // Conv weights stay float, so the file shrinks to ~72%; the quantized MatMul weights to 26.6% (int8 + per-column scales).
    assert.ok(q.ratio < 0.75, `size ratio ${q.ratio}`);
    assert.ok(q.weightRatio < 0.28, `quantized-weight size ratio ${q.weightRatio}`);

    // SYNTHETIC: a random-normal batch (no text); measured cos 0.99994, SQNR 38 dB.
    const rng = mulberry32(5);
    const x: NdArray = { dtype: 'float32', shape: [2, 3, 48, 320], data: Float32Array.from({ length: 2 * 3 * 48 * 320 }, () => rng.normal()) };
    const [f, t] = [only(await q.float.run({ x })), only(await q.quant.run({ x }))];
    assert.ok(cosineSimilarity(f, t) > 0.999, `random input cosine ${cosineSimilarity(f, t)}`);
    await q.float.release();
    await q.quant.release();
  });

  it('PaddleOCR v2 cls: the fc MatMul quantized, orientation predictions unchanged', async () => {
    const q = await quantize('ocrCls', true);
    assert.equal(count(q.report, 'MatMul'), 1);
    let agree = 0, total = 0;
    for (const seed of [201, 202]) {
      const batch = ocrClsBatch(32, seed);
      const [of, oq] = [await q.float.run({ x: batch.input }), await q.quant.run({ x: batch.input })];
      const cos = cosineSimilarity(only(of), only(oq));
      // Measured: cos 0.999999, SQNR 56-58 dB.
      assert.ok(cos > 0.9999, `cosine ${cos}`);
      const [pf, pq] = [clsPredictsRotated(Object.values(of)[0]!), clsPredictsRotated(Object.values(oq)[0]!)];
      pf.forEach((p, i) => {
        if (p === pq[i]) agree++;
        total++;
      });
    }
    // Measured: 128/128 agree (64-line batches).
    assert.equal(agree, total);
    // Only the small fc is quantized (convs stay float): smaller, barely.
    assert.ok(q.ratio < 1, `size ratio ${q.ratio}`);
    await q.float.release();
    await q.quant.release();
  });

  for (const perChannel of [true, false]) {
    it(`silero VAD legacy: the 8 LSTMs (inside If branches) -> DynamicQuantizeLSTM, ${perChannel ? 'per channel' : 'per direction'}; speech probabilities follow float`, async () => {
      const q = await quantize('vadLegacy', perChannel);
      assert.equal(count(q.report, 'LSTM'), 8);
      assert.ok(q.report.quantized.every((e) => e.form === 'DynamicQuantizeLSTM'));
      const wav = readWav(fileURLToPath(new URL('../fixtures/audio/speech-16k.wav', import.meta.url)));
      const [rf, rq] = [await runVad(wav.samples, 'legacy', (f) => q.float.run(f)), await runVad(wav.samples, 'legacy', (f) => q.quant.run(f))];
      let maxDiff = 0, agree = 0;
      rf.probs.forEach((p, i) => {
        maxDiff = Math.max(maxDiff, Math.abs(p - rq.probs[i]!));
        if (p > 0.5 === rq.probs[i]! > 0.5) agree++;
      });
      console.log(`vad ${perChannel ? 'pc' : 'pt'}: ${rf.probs.length} frames, max |dp| ${maxDiff.toFixed(4)}, SQNR ${sqnrDb(rf.probs, rq.probs).toFixed(1)} dB, size ratio ${q.ratio.toFixed(3)}`);
      // Measured: max |dp| 0.0045 per channel, 0.022 per direction; every frame's speech decision agrees.
      assert.ok(maxDiff < 0.06, `max probability difference ${maxDiff}`);
      assert.equal(agree, rf.probs.length);
      // LSTM weights are ~70% of the file: measured ratio 0.566-0.577.
      assert.ok(q.ratio < 0.62, `size ratio ${q.ratio}`);
      await q.float.release();
      await q.quant.release();
    });
  }
});
