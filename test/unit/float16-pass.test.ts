// fp16 / bf16 conversion pass (src/passes/float16.ts): types, Casts at the edges and around blocked nodes,
// clamping, IO types, bit-exact rounding, Constant/Cast rewrites, If bodies and the subgraph holders it refuses. Pure, no ORT.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { attrInt, attrTensor, makeAttribute } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Model, makeValueInfo } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { makeTensor, tensorStorage } from '../../src/onnx/tensor.js';

const makeTensorF32 = (name: string, v: number[]) => makeTensor(name, DataType.FLOAT, [v.length], Float32Array.from(v));
import { DEFAULT_BLOCK, convertFloat16, toFloat16Bits } from '../../src/passes/float16.js';
import { float32ArrayToBfloat16, float32ArrayToFloat16 } from '../../src/quant/float16.js';
import { configOf } from '../../src/pipeline/config.js';
import { resolveQuantizeOptions } from '../../src/pipeline/options.js';
import { throwsLowbit } from '../helpers.js';

const elemOf = (vi: { type?: { tensorType?: { elemType?: number } } } | undefined): number | undefined => vi?.type?.tensorType?.elemType;
const castTo = (n: NodeProto): number | undefined => attrInt(n, 'to');

/** x [1,4] -> MatMul(W) -> Add(B) -> Exp -> Mul(c) -> y. */
function mlp(wValues?: Float32Array): Model {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, [1, 4]);
  const w = b.initializer('W', wValues ?? Float32Array.from({ length: 16 }, (_, i) => (i - 8) / 7), [4, 4]);
  const bias = b.initializer('B', Float32Array.from([0.1, -0.2, 0.3, 1e-9]), [4]);
  const h = b.op('Add', [b.op('MatMul', [x, w], {}, { name: 'mm' }), bias], {}, { name: 'add' });
  const e = b.op('Exp', [h], {}, { name: 'exp' });
  const c = b.initializer('c', Float32Array.from([0.5]), [1]);
  b.output(b.op('Mul', [e, c], {}, { name: 'mul' }), DataType.FLOAT, [1, 4]);
  return b.build();
}

describe('convertFloat16', () => {
  it('converts float32 initializers and activations to FLOAT16 with Casts at the graph edges', () => {
    const m = mlp();
    const { model, report } = convertFloat16(m);
    const g = model.graph;
    for (const name of ['W', 'B', 'c']) assert.equal(g.initializers.get(name)!.dataType, DataType.FLOAT16, name);
    // bits equal the kernel's round-to-nearest-even
    assert.deepEqual(tensorStorage(g.initializers.get('W')!), float32ArrayToFloat16(tensorStorage(m.graph.initializers.get('W')!) as Float32Array));
    // IO types kept float32
    assert.equal(elemOf(g.inputs[0]), DataType.FLOAT);
    assert.equal(elemOf(g.outputs[0]), DataType.FLOAT);
    // the first node casts the input to FLOAT16, the output is produced by a Cast back to FLOAT
    const first = g.nodes[0]!;
    assert.equal(first.opType, 'Cast');
    assert.deepEqual(first.input, ['x']);
    assert.equal(castTo(first), DataType.FLOAT16);
    const mm = g.nodes.find((n) => n.name === 'mm')!;
    assert.equal(mm.input[0], first.output[0]);
    const outName = g.outputs[0]!.name!;
    const last = g.producer(outName)!;
    assert.equal(last.opType, 'Cast');
    assert.equal(castTo(last), DataType.FLOAT);
    assert.equal(g.producer(last.input[0]!)!.name, 'mul');
    assert.equal(report.type, 'float16');
    assert.equal(report.tensors, 3);
    assert.equal(report.bytesBefore, (16 + 4 + 1) * 4);
    assert.equal(report.bytesAfter, (16 + 4 + 1) * 2);
    // the input model is untouched
    assert.equal(m.graph.initializers.get('W')!.dataType, DataType.FLOAT);
    assert.equal(m.graph.nodes.length, 4);
  });

  it('wraps blocked ops (Exp by default, blockNodes, blockOps) in Casts to float32 and back', () => {
    const { model, report } = convertFloat16(mlp());
    const g = model.graph;
    const exp = g.nodes.find((n) => n.name === 'exp')!;
    const before = g.producer(exp.input[0]!)!;
    assert.equal(before.opType, 'Cast');
    assert.equal(castTo(before), DataType.FLOAT);
    assert.equal(g.producer(before.input[0]!)!.name, 'add');
    const mul = g.nodes.find((n) => n.name === 'mul')!;
    const after = g.producer(mul.input[0]!)!;
    assert.equal(after.opType, 'Cast');
    assert.equal(castTo(after), DataType.FLOAT16);
    assert.deepEqual(after.input, exp.output);
    assert.deepEqual(report.blocked, [{ node: 'exp', opType: 'Exp', reason: DEFAULT_BLOCK.Exp }]);
    assert.equal(report.casts, 4); // input, around Exp (2), output

    // blockNodes: the Add and its bias stay float32 (B is read only by the blocked node, so it is not converted)
    const r2 = convertFloat16(mlp(), { blockNodes: ['add'] });
    assert.equal(r2.model.graph.initializers.get('B')!.dataType, DataType.FLOAT);
    const add = r2.model.graph.nodes.find((n) => n.name === 'add')!;
    assert.equal(castTo(r2.model.graph.producer(add.input[0]!)!), DataType.FLOAT);
    assert.ok(r2.report.blocked.some((b) => b.node === 'add' && b.reason === 'in blockNodes'));

    // blockOps replaces the default list: Exp converted, nothing blocked
    const r3 = convertFloat16(mlp(), { blockOps: [] });
    assert.equal(r3.report.blocked.length, 0);
    assert.equal(r3.report.casts, 2);
  });

  it('clamps values beyond float16 range with a warning naming the tensor, and counts values flushed to zero', () => {
    const w = Float32Array.from({ length: 16 }, (_, i) => i / 10);
    w[3] = 1e5;
    w[5] = -7e4;
    w[6] = 1e-9; // far below float16's smallest subnormal (6e-8)
    const { model, report } = convertFloat16(mlp(w));
    const bits = tensorStorage(model.graph.initializers.get('W')!) as Uint16Array;
    assert.equal(bits[3], 0x7bff); // +65504
    assert.equal(bits[5], 0xfbff); // -65504
    assert.equal(bits[6], 0);
    assert.deepEqual(report.clamped, [{ tensor: 'W', count: 2, maxAbs: 1e5 }]);
    assert.ok(report.warnings.some((x) => x.includes("'W'") && x.includes('clamped') && x.includes('65504')), report.warnings.join('\n'));
    assert.equal(report.flushedToZero, 2); // W[6] and B[3] = 1e-9
    assert.equal(report.warnings.length, 1);
    // Infinity and NaN are kept, not clamped
    const r = toFloat16Bits(Float32Array.from([Infinity, -Infinity, NaN, 65504, 65519]), 'float16');
    assert.deepEqual([...r.bits.slice(0, 2)], [0x7c00, 0xfc00]);
    assert.ok((r.bits[2]! & 0x7c00) === 0x7c00 && (r.bits[2]! & 0x3ff) !== 0);
    assert.equal(r.bits[3], 0x7bff);
    assert.equal(r.bits[4], 0x7bff); // 65519 rounds to 65504 in float16 (below the half-way point to 65536)
    assert.equal(r.clamped, 1);
  });

  it('keepIoTypes false makes the graph inputs and outputs FLOAT16 without edge Casts', () => {
    const { model, report } = convertFloat16(mlp(), { keepIoTypes: false, blockOps: [] });
    const g = model.graph;
    assert.equal(elemOf(g.inputs[0]), DataType.FLOAT16);
    assert.equal(elemOf(g.outputs[0]), DataType.FLOAT16);
    assert.equal(report.casts, 0);
    assert.ok(g.nodes.every((n) => n.opType !== 'Cast'));
    assert.equal(g.nodes.find((n) => n.name === 'mm')!.input[0], 'x');
    assert.equal(g.producer(g.outputs[0]!.name!)!.name, 'mul');
  });

  it('bfloat16: initializers are BFLOAT16 with bits equal to the round-to-nearest-even kernel', () => {
    const w = Float32Array.from({ length: 16 }, (_, i) => Math.PI * (i - 7) + 1 / 3);
    const { model, report } = convertFloat16(mlp(w), { type: 'bfloat16' });
    const t = model.graph.initializers.get('W')!;
    assert.equal(t.dataType, DataType.BFLOAT16);
    assert.deepEqual(tensorStorage(t), float32ArrayToBfloat16(w));
    assert.equal(castTo(model.graph.nodes[0]!), DataType.BFLOAT16);
    assert.equal(report.clamped.length, 0);
    assert.equal(report.flushedToZero, 0); // bfloat16 keeps float32's exponent range: 1e-9 survives
  });

  it('weightsOnly: weights stored as 16 bits behind one Cast to float32 each; the graph computes in float32', () => {
    const m = mlp();
    const { model, report } = convertFloat16(m, { type: 'bfloat16', weightsOnly: true });
    const g = model.graph;
    assert.equal(report.casts, 3);
    assert.equal(report.converted, 0);
    for (const name of ['W', 'B', 'c']) {
      const cast = g.producer(name)!;
      assert.equal(cast.opType, 'Cast');
      assert.equal(castTo(cast), DataType.FLOAT);
      assert.equal(g.initializers.get(cast.input[0]!)!.dataType, DataType.BFLOAT16);
      assert.equal(g.initializers.has(name), false);
    }
    assert.equal(elemOf(g.inputs[0]), DataType.FLOAT);
    assert.equal(g.nodes.find((n) => n.name === 'exp')!.opType, 'Exp');

    // weights held by Constant nodes: the Constant holds the 16-bit tensor, a Cast restores the name as float32
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, [2]);
    const k = b.op('Constant', [], { value: makeTensorF32('k', [1.5, -3]) }, { name: 'k' });
    b.output(b.op('Mul', [x, k], {}, { name: 'mul' }), DataType.FLOAT);
    const r = convertFloat16(b.build(), { type: 'bfloat16', weightsOnly: true });
    const kNode = r.model.graph.nodes.find((n) => n.name === 'k')!;
    assert.equal(attrTensor(kNode, 'value')!.dataType, DataType.BFLOAT16);
    const cast = r.model.graph.producer(k)!;
    assert.equal(cast.opType, 'Cast');
    assert.deepEqual(cast.input, kNode.output);
    assert.equal(r.report.tensors, 1);
  });

  it('rewrites Constant values, Cast(to=FLOAT) and ConstantOfShape; keeps Resize scales float32; types value_info', () => {
    const b = new ModelBuilder({ opset: 17 });
    const x = b.input('x', DataType.FLOAT, [1, 1, 2, 2]);
    const k = b.op('Constant', [], { value_float: { kind: 'float', value: 2.5 } }, { name: 'k' });
    const i = b.input('i', DataType.INT64, [1]);
    const f = b.op('Cast', [i], { to: DataType.FLOAT }, { name: 'cast' });
    const scales = b.initializer('scales', Float32Array.from([1, 1, 2, 2]), [4]);
    const r = b.op('Resize', [b.op('Mul', [x, k], {}, { name: 'mul' }), '', scales], { mode: 'nearest' }, { name: 'resize' });
    const z = b.op('ConstantOfShape', [b.initializer('shape', BigInt64Array.from([1n]), [1])], {}, { name: 'cos' });
    b.output(b.op('Add', [b.op('Add', [r, f], {}, { name: 'add' }), z], {}, { name: 'add2' }), DataType.FLOAT);
    const m = b.build();
    m.graph.valueInfo.set('mul_out', makeValueInfo('mul_out', DataType.FLOAT, [1, 1, 2, 2]));
    const { model } = convertFloat16(m);
    const g = model.graph;
    const kNode = g.nodes.find((n) => n.name === 'k')!;
    assert.equal(attrTensor(kNode, 'value')!.dataType, DataType.FLOAT16);
    assert.deepEqual([...(tensorStorage(attrTensor(kNode, 'value')!) as Uint16Array)], [0x4100]); // 2.5
    assert.equal(castTo(g.nodes.find((n) => n.name === 'cast')!), DataType.FLOAT16);
    assert.equal(attrTensor(g.nodes.find((n) => n.name === 'cos')!, 'value')!.dataType, DataType.FLOAT16);
    assert.equal(g.initializers.get('scales')!.dataType, DataType.FLOAT);
    assert.equal(g.nodes.find((n) => n.name === 'resize')!.input[2], 'scales');
    assert.equal(elemOf(g.valueInfo.get('mul_out')), DataType.FLOAT16);
    assert.equal(elemOf(m.graph.valueInfo.get('mul_out')), DataType.FLOAT); // input model untouched
  });

  it('converts If bodies; refuses other subgraph holders and unknown types clearly', () => {
    const body = new ModelBuilder({ opset: 17 });
    body.output(body.op('Constant', [], { value_float: { kind: 'float', value: 1 } }), DataType.FLOAT);
    const b = new ModelBuilder({ opset: 17 });
    const c = b.input('c', DataType.BOOL, []);
    const out = b.op('If', [c], {}, { name: 'branch' });
    b.output(out, DataType.FLOAT);
    const m = b.build();
    const g = body.build().graph.toProto();
    const ifNode = m.graph.nodes[0]!;
    ifNode.attribute = [makeAttribute('then_branch', g), makeAttribute('else_branch', g)];
    const fresh = new Model(m.toProto());
    const r = convertFloat16(fresh);
    const then = r.model.graph.subgraphs(r.model.graph.nodes.find((n) => n.opType === 'If')!)[0]!.graph;
    assert.equal(attrTensor(then.nodes[0]!, 'value')!.dataType, DataType.FLOAT16);
    assert.equal(r.model.graph.outputs[0]!.type!.tensorType!.elemType, DataType.FLOAT); // keepIoTypes: main graph only
    // A subgraph holder other than If/Loop/Scan is refused, naming it.
    const seq = new Model(m.toProto());
    seq.graph.nodes[0]!.opType = 'SequenceMap';
    seq.graph.nodes[0]!.attribute = [makeAttribute('body', g)];
    throwsLowbit(() => convertFloat16(seq), 'UNSUPPORTED_MODEL', 'branch', 'SequenceMap', 'subgraph');
    throwsLowbit(() => convertFloat16(mlp(), { type: 'float8' as never }), 'BAD_OPTION', 'float8');
    const old = mlp();
    old.setOpset('', 11);
    throwsLowbit(() => convertFloat16(old, { type: 'bfloat16', weightsOnly: true }), 'UNSUPPORTED_MODEL', 'bfloat16 needs opset 13', 'opset 11');
  });
});

describe('quantize options: fp16 / bf16 modes', () => {
  const io = { input: 'a.onnx', output: 'b.onnx' };
  it('resolves keepIoTypes (default true) and writes a config without quantization keys', () => {
    const o = resolveQuantizeOptions({ ...io, mode: 'fp16' });
    assert.equal(o.keepIoTypes, true);
    assert.equal(resolveQuantizeOptions({ ...io, mode: 'fp16', keepIoTypes: false }).keepIoTypes, false);
    assert.deepEqual(configOf(resolveQuantizeOptions({ ...io, mode: 'fp16', excludeOps: ['Softmax'] }), []), { mode: 'fp16', backend: 'cpu', excludeOps: ['Softmax'], excludeNodes: [] });
    assert.deepEqual(configOf(resolveQuantizeOptions({ ...io, mode: 'bf16' }), []), { mode: 'bf16', backend: 'cpu' });
    // verification data is allowed (it does not switch the mode to static)
    assert.equal(resolveQuantizeOptions({ ...io, mode: 'fp16', calib: 'd.npy' }).mode, 'fp16');
  });
  it('refuses calibration and quantization options, and keepIoTypes elsewhere', () => {
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'fp16', percentile: 99.9 }), 'BAD_OPTION', 'calibration options (percentile)');
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'bf16', perChannel: false, weightType: 'int8' }), 'BAD_OPTION', 'weightType, perChannel do not apply to bf16 mode');
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'fp16', calib: 'd.npy', maxDrop: 1 }), 'BAD_OPTION', 'maxDrop does not apply to fp16 mode');
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'bf16', excludeOps: ['Exp'] }), 'BAD_OPTION', 'bf16');
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'fp16', keepIoTypes: 'no' as never }), 'BAD_OPTION', 'keepIoTypes must be true or false');
    throwsLowbit(() => resolveQuantizeOptions({ ...io, mode: 'dynamic', keepIoTypes: true }), 'BAD_OPTION', 'keepIoTypes applies to fp16 and bf16 modes only');
  });
});
