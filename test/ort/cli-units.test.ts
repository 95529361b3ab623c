// The CLI's building blocks without spawning: error -> exit code mapping, quantize option
// validation, and inspectModel on small built models (quantized ops, external data, subgraphs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { describeError, ExitCode } from '../../src/cli/errors.js';
import { LowbitError, type ErrorCode } from '../../src/errors.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { makeAttribute } from '../../src/onnx/attributes.js';
import { makeNode, makeValueInfo, Model } from '../../src/onnx/ir.js';
import { DataLocation, DataType, type GraphProto } from '../../src/onnx/proto.js';
import { makeTensor, packInt4 } from '../../src/onnx/tensor.js';
import { inspectModel, isQuantizedOp } from '../../src/pipeline/inspect.js';
import { resolveQuantizeOptions } from '../../src/pipeline/options.js';

test('describeError: every LowbitError code has its exit code, message and hint, no stack', () => {
  const expected: Record<ErrorCode, number> = {
    FILE_NOT_FOUND: 3,
    NOT_ONNX: 3,
    TRUNCATED: 3,
    UNSUPPORTED_OPSET: 3,
    UNSUPPORTED_MODEL: 3,
    EXTERNAL_DATA: 3,
    UNSAFE_PATH: 3,
    DATA_MISMATCH: 3,
    BAD_DATA: 3,
    BAD_OPTION: 2,
    SAME_INPUT_OUTPUT: 2,
    NON_FINITE: 4,
    RUNTIME: 4,
    INTERNAL: 1,
  };
  for (const [code, exit] of Object.entries(expected)) {
    const f = describeError(new LowbitError(code as ErrorCode, `what ${code}`, `do ${code}`), { debug: false });
    assert.equal(f.exitCode, exit, code);
    assert.deepEqual(f.lines, [`error: what ${code}`, `hint: do ${code}`]);
  }
});

test('describeError: LOWBIT_DEBUG adds the stack and the cause', () => {
  const e = new LowbitError('RUNTIME', 'ORT failed', undefined, { cause: new Error('inner') });
  const f = describeError(e, { debug: true });
  assert.equal(f.exitCode, ExitCode.RUNTIME);
  assert.equal(f.lines[0], 'error: ORT failed');
  assert.ok(f.lines.some((l) => /^\s+at /.test(l)));
  assert.ok(f.lines.includes('caused by:'));
  assert.ok(f.lines.some((l) => l.includes('inner')));
});

test('describeError: unknown errors are internal (exit 1), stack only in debug mode', () => {
  const bug = new TypeError("Cannot read properties of undefined (reading 'x')");
  const quiet = describeError(bug, { debug: false });
  assert.equal(quiet.exitCode, ExitCode.INTERNAL);
  assert.equal(quiet.lines[0], "error: internal error: Cannot read properties of undefined (reading 'x')");
  assert.match(quiet.lines[1]!, /LOWBIT_DEBUG=1/);
  assert.ok(!quiet.lines.some((l) => /^\s+at /.test(l)));
  assert.ok(describeError(bug, { debug: true }).lines.some((l) => /^\s+at /.test(l)));
  assert.equal(describeError('a string', { debug: false }).lines[0], 'error: internal error: a string');
});

test('describeError: commander errors (already printed) map to 0 for help, 2 otherwise', () => {
  assert.deepEqual(describeError(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)'), { debug: false }), { exitCode: 0, lines: [] });
  assert.deepEqual(describeError(new CommanderError(1, 'commander.unknownOption', 'x'), { debug: false }), { exitCode: 2, lines: [] });
});

test('describeError: system errors name the path; a full disk is a runtime failure', () => {
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/out/m.onnx', syscall: 'write' });
  const f = describeError(enospc, { debug: false });
  assert.equal(f.exitCode, ExitCode.RUNTIME);
  assert.equal(f.lines[0], 'error: /out/m.onnx: no space left on device (write)');
  const eacces = Object.assign(new Error('EACCES'), { code: 'EACCES', path: '/root/x' });
  assert.equal(describeError(eacces, { debug: false }).exitCode, ExitCode.BAD_INPUT);
});

test('resolveQuantizeOptions: defaults follow --calib; bad values and unknown keys are errors', () => {
  const dyn = resolveQuantizeOptions({ input: 'a.onnx', output: 'b.onnx' });
  assert.equal(dyn.mode, 'dynamic');
  assert.equal(dyn.perChannel, true);
  assert.equal(dyn.weightType, 'int8');
  assert.equal(dyn.activationType, 'uint8');
  assert.equal(dyn.method, 'minmax');
  assert.deepEqual(dyn.excludeOps, []);
  assert.equal(resolveQuantizeOptions({ input: 'a', output: 'b', calib: 'c.npz' }).mode, 'static');
  assert.equal(resolveQuantizeOptions({ input: 'a', output: 'b', calib: 'c.npz', mode: 'dynamic' }).mode, 'dynamic');

  const fails = (o: unknown, re: RegExp): void =>
    assert.throws(() => resolveQuantizeOptions(o as never), (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && re.test(e.message));
  fails({ input: 'a', output: 'b', perchannel: true }, /unknown quantize option: perchannel/);
  fails({ input: 'a', output: 'b', mode: 'qat' }, /mode must be one of dynamic, static, fp16, bf16, weight-only \(got "qat"\)/);
  fails({ input: 'a', output: 'b', weightType: 'int2' }, /weightType must be one of int8, uint8, int4/);
  fails({ input: 'a', output: 'b', weightType: 'int4' }, /int4 weights need static mode/);
  assert.equal(resolveQuantizeOptions({ input: 'a', output: 'b', calib: 'c.npz', weightType: 'int4' }).weightType, 'int4');
  fails({ input: 'a', output: 'b', mode: 'static' }, /needs calibration data/);
  fails({ input: 'a', output: 'b', threads: 0 }, /threads must be a positive integer/);
  fails({ input: 'a', output: 'b', excludeOps: 'Softmax' }, /excludeOps must be a list/);
  fails({ input: '', output: 'b' }, /input must be a file path/);
});

test('isQuantizedOp: exact names and families', () => {
  for (const op of ['QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'QLinearMatMul', 'MatMulInteger', 'ConvInteger', 'DynamicQuantizeLinear', 'DynamicQuantizeMatMul', 'MatMulNBits']) {
    assert.ok(isQuantizedOp(op), op);
  }
  for (const op of ['Conv', 'MatMul', 'Quantize', 'Gemm', 'Linear']) assert.ok(!isQuantizedOp(op), op);
});

test('inspectModel: a QDQ model with an int4 weight, an external initializer and an If subgraph', () => {
  const b = new ModelBuilder({ opset: 21 });
  const x = b.input('x', DataType.FLOAT, ['N', 4]);
  const w = b.initializer('w', packInt4([1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5]), [4, 3], DataType.INT4);
  const s = b.initializer('s', new Float32Array([0.5]), []);
  const dq = b.op('DequantizeLinear', [w, s]);
  const y = b.op('MatMul', [x, dq]);
  const q = b.op('QuantizeLinear', [y, s]);
  b.output(b.op('DequantizeLinear', [q, s]), DataType.FLOAT, ['N', 3]);
  const model = b.build();

  // An initializer whose 1000 floats live in a side file (never read by inspect).
  const ext = makeTensor('big', DataType.FLOAT, [10, 100], new Float32Array(1000));
  delete ext.rawData;
  ext.dataLocation = DataLocation.EXTERNAL;
  ext.externalData = [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '0' }];
  model.graph.setInitializer(ext);

  // An If node whose branches hold one node each; one branch has its own initializer.
  const branch = (name: string, withInit: boolean): GraphProto => ({
    node: [makeNode('Identity', [withInit ? 'k' : 'x'], [`${name}_out`])],
    name,
    initializer: withInit ? [makeTensor('k', DataType.INT64, [2], new BigInt64Array([1n, 2n]))] : [],
    sparseInitializer: [],
    input: [],
    output: [makeValueInfo(`${name}_out`, DataType.FLOAT)],
    valueInfo: [],
    quantizationAnnotation: [],
    metadataProps: [],
  });
  model.graph.setInitializer(makeTensor('cond', DataType.BOOL, [], new Uint8Array([1])));
  model.graph.addNodes([
    makeNode('If', ['cond'], ['if_out'], { attribute: [makeAttribute('then_branch', branch('then', true)), makeAttribute('else_branch', branch('else', false))] }),
  ]);
  // Older exporters also list initializers among the inputs: not real inputs.
  model.graph.inputs.push(makeValueInfo('w', DataType.INT4, [4, 3]));

  const r = inspectModel(new Model(model.toProto()), { fileSizeBytes: 1234 });
  assert.deepEqual(r.inputs, [{ name: 'x', type: 'FLOAT', shape: ['N', 4] }]);
  assert.equal(r.nodeCount, 7); // DQ, MatMul, Q, DQ, If + one Identity per branch
  assert.equal(r.subgraphCount, 2);
  assert.deepEqual(r.ops[0], { opType: 'DequantizeLinear', domain: '', count: 2 });
  assert.deepEqual(r.quantization, {
    alreadyQuantized: true,
    ops: [
      { opType: 'DequantizeLinear', domain: '', count: 2 },
      { opType: 'QuantizeLinear', domain: '', count: 1 },
    ],
  });
  assert.deepEqual(r.externalData, { tensors: 1, bytes: 4000, files: ['weights.bin'] });
  // w: 12 int4 = 6 bytes; s: 4; big: 4000; cond: 1; k: 2 int64 = 16.
  assert.equal(r.parameters.tensors, 5);
  assert.equal(r.parameters.count, 12 + 1 + 1000 + 1 + 2);
  assert.equal(r.parameters.bytes, 6 + 4 + 4000 + 1 + 16);
  assert.deepEqual(r.parameters.byType.find((t) => t.dataType === 'INT4'), { dataType: 'INT4', tensors: 1, count: 12, bytes: 6 });
  assert.equal(r.fileSizeBytes, 1234);
  assert.deepEqual(r.opsets, [{ domain: 'ai.onnx', version: 21 }]);
  assert.equal(r.producerName, 'lowbit');
  assert.doesNotThrow(() => JSON.stringify(r)); // no bigint anywhere
});
