// Op coverage of static (QDQ) quantization in ONNX Runtime: one row per op type of the QDQ rule table, each
// a small model (the op behind a Conv where it needs a quantized producer), calibrated on random data,
// quantized, run in ORT against the float model (SQNR above a per-op bound), and checked in ORT's optimized
// graph: the fused integer kernel appears, the op runs on the 8-bit tensor (its Q/DQ dropped), or the op stays
// a float op (the rows ORT cannot run quantized).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NdArray } from '../../src/ndarray.js';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/encode.js';
import type { Model } from '../../src/onnx/ir.js';
import { DataType, type ModelProto, type NodeProto } from '../../src/onnx/proto.js';
import { QDQ_RULES } from '../../src/passes/rules/qdq/index.js';
import { planQdq, quantizeStatic, type StaticQuantOptions } from '../../src/passes/quantize-qdq.js';
import { calibrate } from '../../src/pipeline/calibrate.js';
import { sqnrDb } from '../../src/quant/metrics.js';
import { mulberry32 } from '../../src/rng.js';
import { optimizedModel, opTypeCounts } from '../../src/runtime/optimized.js';
import { Session } from '../../src/runtime/session.js';
import { arraySource, normalArray } from './quantize-static-fixtures.js';

const OPTS: StaticQuantOptions = { activationType: 'uint8', weightType: 'int8', perChannel: true };
const F = DataType.FLOAT;
const I64 = (...v: number[]) => BigInt64Array.from(v.map(BigInt));

/**
 * What ORT makes of the node unit:
 * - fused: the op is gone, `kernel` (an op type key of opTypeCounts) is there;
 * - int8: the op runs on the 8-bit tensor (its input is no DequantizeLinear output, its outputs feed no
 *   QuantizeLinear);
 * - float: the op stays a float op reading a DequantizeLinear, and lowbit reports it not quantized.
 */
type Treatment = { kind: 'fused'; kernel: string } | { kind: 'int8' } | { kind: 'float' };

interface Case {
  /** Builds the model on x [N, 4, 8, 8] (or [N, 16] with `flat`); returns the graph outputs. */
  build: (b: Net) => string[];
  treatment: Treatment;
  /** Lowest SQNR (dB) of the quantized outputs against the float ones (ArgMax: top-1 agreement in %). */
  bound: number;
  flat?: boolean;
  /** Element type of the outputs (default float). */
  outType?: number;
}

/** A builder with seeded He-initialized Convs. */
class Net {
  readonly b = new ModelBuilder({ opset: 17 });
  private readonly rng = mulberry32(7);
  readonly x: string;
  constructor(flat: boolean) {
    this.x = this.b.input('x', F, flat ? ['N', 16] : ['N', 4, 8, 8]);
  }
  rand(name: string, dims: number[], scale: number): string {
    const n = dims.reduce((a, d) => a * d, 1);
    return this.b.initializer(name, Float32Array.from({ length: n }, () => this.rng.normal() * scale), dims);
  }
  /** 3x3 Conv, same padding, cout filters. */
  conv(input: string, cin: number, cout: number, name: string): string {
    const w = this.rand(`${name}_W`, [cout, cin, 3, 3], Math.sqrt(2 / (cin * 9)));
    return this.b.op('Conv', [input, w, this.rand(`${name}_B`, [cout], 0.1)], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, { name });
  }
  /** The usual quantized producer: Conv 4 -> 8 channels on x. */
  pre(name = 'pre'): string {
    return this.conv(this.x, 4, 8, name);
  }
  op(opType: string, inputs: string[], attrs: Record<string, number | number[] | string> = {}): string {
    return this.b.op(opType, inputs, attrs as never, { name: 'n' });
  }
}

const unaryAfterConv =
  (opType: string, attrs: Record<string, number | number[] | string> = {}, extra: (n: Net) => string[] = () => []) =>
  (n: Net): string[] => [n.op(opType, [n.pre(), ...extra(n)], attrs)];

const CASES: Record<string, Case> = {
  // Compute ops with weights.
  Conv: { build: (n) => [n.op('Conv', [n.x, n.rand('W', [8, 4, 3, 3], 0.3), n.rand('B', [8], 0.1)], { kernel_shape: [3, 3] })], treatment: { kind: 'fused', kernel: 'QLinearConv' }, bound: 33 },
  ConvTranspose: {
    build: (n) => [n.op('ConvTranspose', [n.pre(), n.rand('W', [8, 4, 3, 3], 0.2), n.rand('B', [4], 0.1)], { kernel_shape: [3, 3], strides: [2, 2] })],
    treatment: { kind: 'float' },
    bound: 33,
  },
  MatMul: { flat: true, build: (n) => [n.op('MatMul', [n.x, n.rand('W', [16, 8], 0.3)])], treatment: { kind: 'fused', kernel: 'QLinearMatMul' }, bound: 25 },
  Gemm: { flat: true, build: (n) => [n.op('Gemm', [n.x, n.rand('W', [8, 16], 0.3), n.rand('C', [8], 0.1)], { transB: 1 })], treatment: { kind: 'fused', kernel: 'com.microsoft:QGemm' }, bound: 20 },
  // Requantizing ops.
  Add: { build: (n) => [n.op('Add', [n.pre(), n.pre('pre2')])], treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearAdd' }, bound: 31 },
  Mul: { build: (n) => [n.op('Mul', [n.pre(), n.pre('pre2')])], treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearMul' }, bound: 27 },
  Concat: { build: (n) => [n.op('Concat', [n.pre(), n.pre('pre2')], { axis: 1 })], treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearConcat' }, bound: 32 },
  Where: {
    build: (n) => {
      const a = n.pre();
      // A constant condition: one computed from x would read x's DequantizeLinear and flip near the threshold.
      const cond = n.b.initializer('cond', Uint8Array.from({ length: 4 * 64 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0), [1, 4, 8, 8], DataType.BOOL);
      return [n.op('Where', [cond, n.b.op('Slice', [a, n.b.initializer('s0', I64(0), [1]), n.b.initializer('s1', I64(4), [1]), n.b.initializer('ax', I64(1), [1])]), n.conv(n.x, 4, 4, 'pre2')])];
    },
    treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearWhere' },
    bound: 32,
  },
  AveragePool: { build: unaryAfterConv('AveragePool', { kernel_shape: [2, 2], strides: [2, 2] }), treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearAveragePool' }, bound: 32 },
  GlobalAveragePool: { build: unaryAfterConv('GlobalAveragePool'), treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearGlobalAveragePool' }, bound: 33 },
  Sigmoid: { build: unaryAfterConv('Sigmoid'), treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearSigmoid' }, bound: 40 },
  LeakyRelu: { build: unaryAfterConv('LeakyRelu', { alpha: 0.1 }), treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearLeakyRelu' }, bound: 32 },
  Softmax: { build: unaryAfterConv('Softmax', { axis: -1 }), treatment: { kind: 'fused', kernel: 'com.microsoft:QLinearSoftmax' }, bound: 33 },
  // Relu / Clip fold into the Conv's output quantization.
  Relu: { build: unaryAfterConv('Relu'), treatment: { kind: 'fused', kernel: 'QLinearConv' }, bound: 36 },
  Clip: { build: unaryAfterConv('Clip', {}, (n) => [n.b.initializer('lo', Float32Array.of(0), []), n.b.initializer('hi', Float32Array.of(1), [])]), treatment: { kind: 'fused', kernel: 'QLinearConv' }, bound: 35 },
  // Value-preserving ops: run on the 8-bit tensor with the input's parameters.
  Reshape: { build: unaryAfterConv('Reshape', {}, (n) => [n.b.initializer('shape', I64(0, -1), [2])]), treatment: { kind: 'int8' }, bound: 33 },
  Transpose: { build: unaryAfterConv('Transpose', { perm: [0, 2, 3, 1] }), treatment: { kind: 'int8' }, bound: 33 },
  Flatten: { build: unaryAfterConv('Flatten', { axis: 1 }), treatment: { kind: 'int8' }, bound: 33 },
  Squeeze: {
    build: (n) => [n.op('Squeeze', [n.b.op('GlobalAveragePool', [n.pre()]), n.b.initializer('axes', I64(2, 3), [2])])],
    treatment: { kind: 'int8' },
    bound: 33,
  },
  Unsqueeze: { build: unaryAfterConv('Unsqueeze', {}, (n) => [n.b.initializer('axes', I64(1), [1])]), treatment: { kind: 'int8' }, bound: 33 },
  Slice: { build: unaryAfterConv('Slice', {}, (n) => [n.b.initializer('st', I64(1), [1]), n.b.initializer('en', I64(5), [1]), n.b.initializer('ax', I64(2), [1])]), treatment: { kind: 'int8' }, bound: 33 },
  Resize: { build: unaryAfterConv('Resize', { mode: 'nearest' }, (n) => ['', n.b.initializer('scales', Float32Array.of(1, 1, 2, 2), [4])]), treatment: { kind: 'int8' }, bound: 33 },
  MaxPool: { build: unaryAfterConv('MaxPool', { kernel_shape: [2, 2], strides: [2, 2] }), treatment: { kind: 'int8' }, bound: 35 },
  Gather: { build: unaryAfterConv('Gather', { axis: 1 }, (n) => [n.b.initializer('idx', I64(5, 0, 2), [3])]), treatment: { kind: 'int8' }, bound: 33 },
  GatherElements: {
    build: unaryAfterConv('GatherElements', { axis: 1 }, (n) => [n.b.initializer('idx', BigInt64Array.from({ length: 8 * 8 * 8 }, (_, i) => BigInt((i * 5) % 8)), [1, 8, 8, 8])]),
    treatment: { kind: 'int8' },
    bound: 33,
  },
  Split: {
    build: (n) => n.b.op('Split', [n.pre(), n.b.initializer('split', I64(3, 5), [2])], { axis: 1 }, { name: 'n', outputs: 2 }),
    treatment: { kind: 'int8' },
    bound: 33,
  },
  ArgMax: { build: unaryAfterConv('ArgMax', { axis: 1 }), outType: DataType.INT64, treatment: { kind: 'int8' }, bound: 95 },
  // No integer kernel in ORT: float.
  Pad: { build: unaryAfterConv('Pad', {}, (n) => [n.b.initializer('pads', I64(0, 0, 1, 1, 0, 0, 1, 1), [8])]), treatment: { kind: 'float' }, bound: 33 },
  HardSigmoid: { build: unaryAfterConv('HardSigmoid'), treatment: { kind: 'float' }, bound: 40 },
  InstanceNormalization: {
    build: unaryAfterConv('InstanceNormalization', {}, (n) => [n.rand('scale', [8], 1), n.rand('bias', [8], 0.1)]),
    treatment: { kind: 'float' },
    bound: 33,
  },
  LayerNormalization: { build: unaryAfterConv('LayerNormalization', { axis: -1 }, (n) => [n.rand('scale', [8], 1), n.rand('bias', [8], 0.1)]), treatment: { kind: 'float' }, bound: 32 },
};

function buildCase(c: Case): Model {
  const n = new Net(c.flat === true);
  const outs = c.build(n);
  for (const o of outs) n.b.output(o, c.outType ?? F);
  return n.b.build();
}

async function runAll(bytes: Uint8Array, feeds: Record<string, NdArray>): Promise<Record<string, NdArray>> {
  const s = await Session.create(bytes, { threads: 1 });
  try {
    return await s.run(feeds);
  } finally {
    await s.release();
  }
}

/** Nodes of the optimized graph by op type (domain-free), and the producer of each value. */
function wiring(m: ModelProto): { nodes: NodeProto[]; producer: Map<string, NodeProto>; readers: (v: string) => NodeProto[] } {
  const nodes = m.graph?.node ?? [];
  const producer = new Map<string, NodeProto>();
  for (const node of nodes) for (const o of node.output) producer.set(o, node);
  return { nodes, producer, readers: (v) => nodes.filter((x) => x.input.includes(v)) };
}

/** Top-1 agreement (%) of two index tensors. */
function agreement(a: NdArray, b: NdArray): number {
  let same = 0;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] === b.data[i]) same++;
  return (100 * same) / a.data.length;
}

describe('QDQ op coverage in ONNX Runtime', () => {
  it('has one row per op type of the rule table, and no extra', () => {
    assert.deepEqual(Object.keys(CASES).sort(), Object.keys(QDQ_RULES).sort());
  });

  for (const [op, c] of Object.entries(CASES)) {
    it(`${op}: ${c.treatment.kind === 'fused' ? c.treatment.kernel : c.treatment.kind}`, async () => {
      const model = buildCase(c);
      const shape = c.flat ? [16] : [4, 8, 8];
      const calib = normalArray([32, ...shape], 11);
      const heldOut = normalArray([16, ...shape], 12);
      const plan = planQdq(model, OPTS);
      const ranges = await calibrate(plan.model, arraySource('x', calib), { tensors: plan.tensors, batch: 16 });
      const { model: q, report } = quantizeStatic(plan.model, ranges, OPTS);
      const rep = report.nodes.find((r) => r.name === 'n');
      assert.ok(rep, `no report for the ${op} node`);
      assert.equal(rep.quantized, c.treatment.kind !== 'float', JSON.stringify(rep));
      if (c.treatment.kind === 'float') assert.match(rep.reason!, /ONNX Runtime has no/);

      const qBytes = encodeModel(q.toProto());
      const f = await runAll(encodeModel(model.toProto()), { x: heldOut });
      const g = await runAll(qBytes, { x: heldOut });
      for (const name of Object.keys(f)) {
        const fid = op === 'ArgMax' ? agreement(f[name]!, g[name]!) : sqnrDb(f[name]!.data as Float32Array, g[name]!.data as Float32Array);
        assert.ok(fid >= c.bound, `${op} output '${name}': ${op === 'ArgMax' ? 'agreement' : 'SQNR'} ${fid.toFixed(1)} < ${c.bound}`);
      }

      const opt = await optimizedModel(qBytes);
      const counts = opTypeCounts(opt);
      const { nodes, producer, readers } = wiring(opt);
      const t = c.treatment;
      if (t.kind === 'fused') {
        assert.ok((counts.get(t.kernel) ?? 0) >= 1, `${t.kernel} missing: ${JSON.stringify([...counts])}`);
        assert.equal(counts.get(op), undefined, `float ${op} remains: ${JSON.stringify([...counts])}`);
      } else {
        const node = nodes.find((x) => x.opType === op && !x.domain);
        assert.ok(node, `${op} missing: ${JSON.stringify([...counts])}`);
        const from = producer.get(node.input[0]!)?.opType;
        if (t.kind === 'int8') {
          assert.notEqual(from, 'DequantizeLinear', `${op} reads a float tensor: ${JSON.stringify([...counts])}`);
          for (const o of node.output) assert.ok(!readers(o).some((r) => r.opType === 'QuantizeLinear'), `${op} output '${o}' is requantized`);
        } else {
          assert.equal(from, 'DequantizeLinear', `${op} should read the dequantized Conv output`);
          for (const o of node.output) assert.equal(readers(o).length, 0, `${op} output '${o}' should be a float graph output`);
        }
        // The producer Conv is an integer kernel whatever the op does.
        assert.ok((counts.get('QLinearConv') ?? 0) >= 1, JSON.stringify([...counts]));
      }
    });
  }
});
