// --format qoperator inside If bodies (src/passes/qdq-to-qoperator.ts): the real silero VAD (legacy), whose compute
// lives in If branches, statically quantized, then converted: QLinearConv inside the branch ORT runs, and the speech
// probabilities equal the QDQ model's (the same integer kernels, written out).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readWav, realModelPath, runVad } from '../../src/data/realistic.js';
import { loadModel } from '../../src/io/model-file.js';
import { encodeModel } from '../../src/onnx/encode.js';
import { Model } from '../../src/onnx/ir.js';
import type { NdArray } from '../../src/ndarray.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { qdqToQOperator } from '../../src/passes/qdq-to-qoperator.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { Session } from '../../src/runtime/session.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true, speedPolicy: true };

test('qoperator in If branches: QLinearConv in the 16 kHz branch, outputs equal to the QDQ model', async () => {
  const model = new Model((await loadModel(realModelPath('vadLegacy'))).model);
  const wav = readWav('test/fixtures/audio/speech-16k.wav');
  const probs = async (m: Model, collect = false): Promise<{ probs: Float32Array; feeds?: Record<string, NdArray>[] }> => {
    const s = await Session.create(encodeModel(m.toProto()), { threads: 1 });
    try {
      return await runVad(wav.samples, 'legacy', (f) => s.run(f), { collectFeeds: collect });
    } finally {
      await s.release();
    }
  };
  const feeds = (await probs(model, true)).feeds!;
  const plan = planQdq(model, OPTS);
  const ranges = await calibrate(plan.model, { count: feeds.length, batches: () => feeds }, { tensors: plan.tensors });
  const qdq = quantizeStatic(plan.model, ranges, OPTS).model;
  const { model: qop, report } = qdqToQOperator(qdq);
  const ifNode = qop.graph.nodes.find((n) => n.opType === 'If')!;
  const convs = qop.graph.subgraphs(ifNode).map(({ graph }) => graph.nodes.filter((n) => n.opType === 'QLinearConv').length).sort((a, b) => a - b);
  assert.equal(convs[0], 0, 'the 8 kHz branch never ran in calibration: float');
  assert.ok(convs[1]! >= 18, `${convs[1]} QLinearConv in the 16 kHz branch`);
  assert.ok((report.converted.QLinearConv ?? 0) >= 18);
  const a = (await probs(qdq)).probs;
  const b = (await probs(qop)).probs;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  assert.ok(maxDiff < 1e-3, `QDQ vs QOperator speech probabilities differ by ${maxDiff}`);
});
