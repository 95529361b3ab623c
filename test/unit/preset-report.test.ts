// The --preset summary (src/report/preset-report.ts): a row per variant, the dtype legend, failures and variants
// that converted nothing called out, skipped inputs grouped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderPresetReport } from '../../src/report/preset-report.js';

test('preset report: rows, legend, a variant that converted nothing, a web failure, skipped files', () => {
  const base = { source: '/m/onnx/model.onnx', sourceBytes: 4_000_000, node: 'ok', web: 'ok' };
  const text = renderPresetReport({
    variants: [
      { ...base, dtype: 'q4', output: '/m/onnx/model_q4.onnx', bytes: 600_000, quantizedNodes: 12, sqnrDb: 21.5, webMs: 42, sourceWebMs: 2.1 },
      { ...base, dtype: 'q8', output: '/m/onnx/model_quantized.onnx', bytes: 1_100_000, quantizedNodes: 12, sqnrDb: 30, webMs: 1.05, sourceWebMs: 2.1 },
      { ...base, dtype: 'bnb4', output: '/m/onnx/model_bnb4.onnx', bytes: 4_000_000, quantizedNodes: 0, sqnrDb: Infinity, web: 'no kernel for MatMulBnb4' },
      { ...base, dtype: 'fp16', output: '/m/onnx/model_fp16.onnx', bytes: 2_000_000, quantizedNodes: 40, web: 'skipped: over 1 GiB (the wasm heap is 4 GiB)' },
      { ...base, dtype: 'q4f16', output: '/m/onnx/model_q4f16.onnx', bytes: 0, quantizedNodes: 0, node: 'skipped: not written', web: 'skipped: not written', error: 'a pass refused the model (do this)' },
    ],
    skipped: [
      { file: '/m/onnx/model_fp16.onnx', reason: 'already a dtype variant' },
      { file: '/m/onnx/model_q8.onnx', reason: 'already a dtype variant' },
    ],
    weightFormat: 'matmulnbits',
    samples: 'one synthetic sample (floats uniform in [0, 1), integer inputs 0)',
  });
  assert.match(text, /model_q4\.onnx\s*│ q4\s*│\s*600 kB\s*│\s*6\.67x\s*│\s*21\.5 dB/);
  assert.match(text, /model_q4\.onnx .*│\s*42\.0 ms\s*│ 20\.00x SLOWER\s*│/);
  assert.match(text, /model_quantized\.onnx .*│ 2\.00x faster\s*│/);
  assert.match(text, /model\.onnx: fp32 4\.0 MB, 2\.10 ms per run in onnxruntime-web \(wasm, 1 thread, median of 3\); SQNR and times on one synthetic sample/);
  assert.match(text, /model_fp16\.onnx .*│\s*-\s*│\s*-\s*│$/m);
  assert.match(text, /^q4: MatMulNBits 4-bit/m);
  assert.match(text, /!!! model_bnb4\.onnx: no node was converted \(bnb4 rewrites MatMul \/ Gemm with a constant weight; the model has none\)/);
  assert.match(text, /!!! model_bnb4\.onnx does not run in onnxruntime-web: no kernel for MatMulBnb4/);
  assert.match(text, /model_fp16\.onnx\s*│ fp16 .*│ ✓\s*│ -\s*│/);
  assert.match(text, /not run: model_fp16\.onnx \(onnxruntime-web\): over 1 GiB/);
  assert.doesNotMatch(text, /model_fp16\.onnx does not run/);
  assert.match(text, /model_q4f16\.onnx\s*│ q4f16 │ not written │/);
  assert.match(text, /!!! model_q4f16\.onnx was not written: a pass refused the model \(do this\)/);
  assert.doesNotMatch(text, /model_q4f16\.onnx: no node was converted/);
  assert.match(text, /skipped 2 files \(already a dtype variant\): model_fp16\.onnx, model_q8\.onnx/);
});

test('preset report: the q4 legend follows the weight format; the check samples and an untimed float32 model are named', () => {
  const v = { source: '/m/model.onnx', sourceBytes: 4_000_000, node: 'ok', web: 'ok', dtype: 'q4' as const, output: '/m/model_q4.onnx', bytes: 700_000, quantizedNodes: 3 };
  const samples = 'up to the first 4 samples of tokens.npy';
  const text = renderPresetReport({ variants: [{ ...v, sourceWebError: 'no kernel for Foo' }], skipped: [], weightFormat: 'matmulnbits', samples });
  assert.match(text, /^q4: MatMulNBits 4-bit/m);
  assert.match(text, /SQNR and times on up to the first 4 samples of tokens\.npy/);
  assert.match(text, /^not timed: model\.onnx \(fp32\) in onnxruntime-web: no kernel for Foo$/m);
  assert.match(renderPresetReport({ variants: [v], skipped: [], weightFormat: 'unpack-on-load', samples }), /^q4: MatMul \/ Gemm weights and embedding tables as 4-bit codes .* unpacks to float32 when the session loads/m);
});
