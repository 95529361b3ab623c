// QDQ -> QOperator (src/passes/qdq-to-qoperator.ts) on quantizeStatic's output, with made-up ranges (no ORT):
// each converted op type is checked input by input (quantized tensor, scale, zero point in ORT's schema
// order), Relu/Clip folds disappear, value-preserving ops read the 8-bit tensor, int4 units stay QDQ.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { attrInt } from '../../src/onnx/attributes.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import type { Graph, Model } from '../../src/onnx/ir.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import { dimsOf } from '../../src/onnx/tensor.js';
import { qdqToQOperator } from '../../src/passes/qdq-to-qoperator.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { buildDenseCnn, buildSmallCnn, buildTransformer } from '../ort/quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };

/** quantizeStatic with a range [-2, 4] per planned tensor ([0, 4] after Relu/Clip, as real data gives). */
function qdq(model: Model, opts: Partial<StaticQuantOptions> = {}): Model {
  const plan = planQdq(model, { ...OPTS, ...opts });
  const nonNegative = (t: string) => ['Relu', 'Clip'].includes(plan.model.graph.producer(t)?.opType ?? '');
  const ranges = new Map(plan.tensors.map((t) => [t, nonNegative(t) ? { min: 0, max: 4 } : { min: -2, max: 4 }]));
  return quantizeStatic(plan.model, ranges, { ...OPTS, ...opts }).model;
}

const ops = (g: Graph): Map<string, number> => {
  const m = new Map<string, number>();
  for (const n of g.nodes) {
    const k = n.domain ? `${n.domain}:${n.opType}` : n.opType!;
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
};
const byOp = (g: Graph, op: string): NodeProto[] => g.nodes.filter((n) => n.opType === op);
const elemType = (g: Graph, name: string): number | undefined => g.initializers.get(name)?.dataType;
/** Asserts (value, scale, zero point) at slots i, i+1, i+2: scale a float initializer, zero point of the value's type. */
function assertTriple(g: Graph, n: NodeProto, i: number, what: string, valueType?: number): void {
  const [v, s, z] = [n.input[i]!, n.input[i + 1]!, n.input[i + 2]!];
  assert.equal(elemType(g, s), DataType.FLOAT, `${n.name} ${what} scale '${s}'`);
  const zt = elemType(g, z);
  assert.ok(zt === DataType.UINT8 || zt === DataType.INT8, `${n.name} ${what} zero point '${z}' type ${zt}`);
  if (valueType !== undefined) assert.equal(elemType(g, v), valueType, `${n.name} ${what} '${v}'`);
  else {
    // An activation: produced by a QuantizeLinear or another 8-bit op, never a float DequantizeLinear output.
    const p = g.producer(v);
    assert.ok(!p || p.opType !== 'DequantizeLinear', `${n.name} ${what} reads a DequantizeLinear output`);
  }
}

describe('qdqToQOperator: the fixture CNN', () => {
  const q = qdq(buildSmallCnn(1));
  const { model, report } = qdqToQOperator(q);
  const g = model.graph;

  it('converts every unit: one QuantizeLinear at the input, one DequantizeLinear at the output', () => {
    assert.deepEqual(report.converted, {
      QLinearConv: 6,
      'com.microsoft:QLinearAdd': 1,
      'com.microsoft:QLinearMul': 1,
      'com.microsoft:QLinearConcat': 1,
      'com.microsoft:QLinearAveragePool': 1,
      'com.microsoft:QLinearGlobalAveragePool': 1,
      'com.microsoft:QGemm': 1,
      'com.microsoft:QLinearSoftmax': 1,
    });
    assert.deepEqual(report.passthrough, { MaxPool: 1, Flatten: 1, Reshape: 1 });
    assert.deepEqual(report.keptQdq, []);
    const counts = ops(g);
    assert.equal(counts.get('QuantizeLinear'), 1);
    assert.equal(counts.get('DequantizeLinear'), 1);
    for (const op of ['Conv', 'Gemm', 'Add', 'Mul', 'Relu', 'Clip', 'Concat', 'AveragePool', 'GlobalAveragePool', 'Softmax']) assert.equal(counts.get(op), undefined, op);
        assert.equal(g.consumers(g.inputs[0]!.name!)[0]!.opType, 'QuantizeLinear');
    assert.equal(g.producer(g.outputs[0]!.name!)!.opType, 'DequantizeLinear');
    assert.equal(model.opset('com.microsoft'), 1);
  });

  it('QLinearConv: x, x_scale, x_zp, int8 w, per-channel w_scale / w_zp, y_scale, y_zp, int32 B; Conv attributes kept', () => {
    for (const n of byOp(g, 'QLinearConv')) {
      assert.equal(n.domain ?? '', '');
      assert.equal(n.input.length, 9, n.name);
      assertTriple(g, n, 0, 'x');
      assertTriple(g, n, 3, 'w', DataType.INT8);
      const cout = dimsOf(g.initializers.get(n.input[3]!)!)[0]!;
      assert.deepEqual(dimsOf(g.initializers.get(n.input[4]!)!), [cout], 'per-channel w_scale');
      assert.equal(elemType(g, n.input[6]!), DataType.FLOAT);
      assert.equal(elemType(g, n.input[8]!), DataType.INT32);
      assert.deepEqual(dimsOf(g.initializers.get(n.input[8]!)!), [cout]);
      assert.ok(n.attribute.some((a) => a.name === 'kernel_shape'), n.name);
    }
    const dw = byOp(g, 'QLinearConv').find((n) => n.name!.startsWith('dwconv'))!;
    assert.equal(attrInt(dw, 'group', 1), 16);
  });

  it('QGemm, QLinearConcat, QLinearSoftmax, pools and the binary ops take ORT schema input orders', () => {
    const gemm = byOp(g, 'QGemm')[0]!;
    assert.equal(gemm.domain, 'com.microsoft');
    assert.equal(gemm.input.length, 9);
    assertTriple(g, gemm, 0, 'A');
    assertTriple(g, gemm, 3, 'B', DataType.INT8);
    assert.equal(elemType(g, gemm.input[6]!), DataType.INT32);
    assert.equal(attrInt(gemm, 'transB', 0), 1);
    const cat = byOp(g, 'QLinearConcat')[0]!;
    assert.equal(cat.input.length, 2 + 3 * 2);
    assert.equal(elemType(g, cat.input[0]!), DataType.FLOAT, 'Y_scale first');
    assertTriple(g, cat, 2, 'X0');
    assertTriple(g, cat, 5, 'X1');
    assert.equal(attrInt(cat, 'axis', 0), 1);
    const sm = byOp(g, 'QLinearSoftmax')[0]!;
    assert.deepEqual([attrInt(sm, 'axis', 0), attrInt(sm, 'opset', 0)], [-1, 13]);
    for (const op of ['QLinearAdd', 'QLinearMul']) {
      const n = byOp(g, op)[0]!;
      assert.equal(n.input.length, 8, op);
      assertTriple(g, n, 0, 'A');
      assert.equal(elemType(g, n.input[6]!), DataType.FLOAT, `${op} C_scale`);
    }
    // The Mul's constant operand is an 8-bit initializer with its own parameters.
    assert.equal(elemType(g, byOp(g, 'QLinearMul')[0]!.input[3]!), DataType.UINT8);
    for (const op of ['QLinearAveragePool', 'QLinearGlobalAveragePool']) {
      const n = byOp(g, op)[0]!;
      assert.equal(n.input.length, 5, op);
      assertTriple(g, n, 0, 'X');
    }
    assert.deepEqual(byOp(g, 'QLinearAveragePool')[0]!.attribute.find((a) => a.name === 'kernel_shape')!.ints.map(Number), [2, 2]);
  });

  it('value-preserving ops read and write 8-bit tensors', () => {
    for (const op of ['MaxPool', 'Flatten', 'Reshape']) {
      const n = byOp(g, op)[0]!;
      const p = g.producer(n.input[0]!)!;
      assert.ok(p.opType!.startsWith('QLinear') || ['MaxPool', 'Flatten'].includes(p.opType!), `${op} reads ${p.opType}`);
      assert.ok(g.consumers(n.output[0]!).every((c) => c.opType !== 'QuantizeLinear'), `${op} output re-quantized`);
    }
  });

  it('leaves the input model unchanged', () => {
    assert.ok(ops(q.graph).get('Conv')! >= 6);
    assert.ok(ops(q.graph).get('QuantizeLinear')! > 1);
  });
});

describe('qdqToQOperator: other models', () => {
  it('the transformer: QLinearMatMul with per-column int8 weights and 8-bit activations on both sides; Reshape/Transpose pass through', () => {
    const { model, report } = qdqToQOperator(qdq(buildTransformer(1, { hidden: 32, seq: 8, heads: 4, layers: 1 })));
    const g = model.graph;
    assert.deepEqual(report.converted, { QLinearMatMul: 8, 'com.microsoft:QLinearAdd': 8, 'com.microsoft:QLinearSoftmax': 1 });
    assert.deepEqual(report.passthrough, { Reshape: 4, Transpose: 4 });
    let perColumn = 0;
    for (const n of byOp(g, 'QLinearMatMul')) {
      assert.equal(n.input.length, 8);
      assertTriple(g, n, 0, 'a');
      const b = g.initializers.get(n.input[3]!);
      if (b) {
        assert.equal(b.dataType, DataType.INT8);
        assert.deepEqual(dimsOf(g.initializers.get(n.input[4]!)!), [dimsOf(b)[1]], 'b_scale per column');
        perColumn++;
      } else assertTriple(g, n, 3, 'b (activation)');
    }
    assert.equal(perColumn, 6);
    assert.equal(ops(g).get('MatMul'), undefined);
  });

  it('the dense CNN: the Relu after each Conv is gone, MaxPool runs on uint8', () => {
    const { model } = qdqToQOperator(qdq(buildDenseCnn(1, { channels: 8 })));
    const counts = ops(model.graph);
    assert.equal(counts.get('QLinearConv'), 5);
    assert.equal(counts.get('Relu'), undefined);
    assert.equal(counts.get('MaxPool'), 2);
    assert.equal(counts.get('QuantizeLinear'), 1);
  });

  it('int4 weights stay QDQ (no QLinear op takes them), the rest converts', () => {
    const { model, report } = qdqToQOperator(qdq(buildSmallCnn(1), { weightType: 'int4' }));
    const counts = ops(model.graph);
    assert.equal(counts.get('QLinearConv'), undefined);
    assert.equal(counts.get('Conv'), 6);
    assert.ok(report.keptQdq.length >= 7, report.keptQdq.join('\n'));
    assert.ok(report.keptQdq.every((r) => /int4/.test(r)), report.keptQdq.join('\n'));
    assert.equal(report.converted['com.microsoft:QLinearAdd'], 1);
  });

  it('symmetric activations: Conv converts, the unfolded Relu stays a float op after a DequantizeLinear', () => {
    const { model, report } = qdqToQOperator(qdq(buildDenseCnn(1, { channels: 8 }), { symmetricActivations: true }));
    const g = model.graph;
    assert.equal(report.converted.QLinearConv, 5);
    const relus = byOp(g, 'Relu');
    assert.equal(relus.length, 5);
    for (const r of relus) assert.equal(g.producer(r.input[0]!)!.opType, 'DequantizeLinear');
  });

  it('rejects a model below opset 10', () => {
    const b = new ModelBuilder({ opset: 9 });
    const x = b.input('x', DataType.FLOAT, [1, 4]);
    b.output(b.op('Relu', [x]), DataType.FLOAT, [1, 4]);
    assert.throws(() => qdqToQOperator(b.build()), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /opset 9/.test(e.message));
  });
});

describe('the format option', () => {
  it("defaults to qdq, accepts qoperator in static mode, and names the valid values otherwise", async () => {
    const { resolveQuantizeOptions } = await import('../../src/pipeline/options.js');
    const base = { input: 'm.onnx', output: 'o.onnx', calib: 'c.npy' };
    assert.equal(resolveQuantizeOptions(base).format, 'qdq');
    assert.equal(resolveQuantizeOptions({ ...base, format: 'qoperator' }).format, 'qoperator');
    assert.throws(() => resolveQuantizeOptions({ ...base, format: 'QOp' as never }), (e: Error & { code?: string; hint?: string }) => e.code === 'BAD_OPTION' && /format must be one of qdq, qoperator, matmulnbits, unpack-on-load \(got "QOp"\)/.test(e.message));
    assert.throws(() => resolveQuantizeOptions({ input: 'm.onnx', output: 'o.onnx', format: 'qoperator' }), /static mode only/);
  });

  it('--format reaches the options', async () => {
    const { toQuantizeOptions } = await import('../../src/cli/commands/quantize.js');
    assert.equal(toQuantizeOptions('m.onnx', { output: 'o.onnx', format: 'qoperator' }).format, 'qoperator');
    assert.equal('format' in toQuantizeOptions('m.onnx', { output: 'o.onnx' }), false);
  });
});
