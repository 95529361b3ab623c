// Conformance: src/quant against the ONNX backend test data in Debian's libonnx-testdata, bit for bit.
// Direct: (De)QuantizeLinear, DynamicQuantizeLinear. Cross-checks: QLinearMatMul, QLinearConv, MatMulInteger,
// ConvInteger computed by dequantize -> float64 reference matmul/conv -> quantize.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeModel, decodeTensor } from '../../src/onnx/decode.js';
import { dimsOf, tensorStorage, unpackInt4 } from '../../src/onnx/tensor.js';
import { attrInt, attrInts } from '../../src/onnx/attributes.js';
import { DataType, type NodeProto } from '../../src/onnx/proto.js';
import {
  dequantizeLinear,
  dynamicQuantizeLinear,
  quantType,
  quantizeLinear,
  type QuantArray,
} from '../../src/quant/index.js';

const NODE = '/usr/share/libonnx-testdata/data/node';
const present = existsSync(NODE);
if (!present && process.env.CI) throw new Error(`${NODE} is missing; CI must install libonnx-testdata`);
const skip = present ? false : `libonnx-testdata is not installed (${NODE}); apt install libonnx-testdata`;

interface T {
  dims: number[];
  dataType: number;
  data: ArrayLike<number>;
}

function readTensor(path: string): T {
  const t = decodeTensor(new Uint8Array(readFileSync(path)));
  const dims = dimsOf(t);
  const dataType = t.dataType ?? 0;
  let data = tensorStorage(t) as ArrayLike<number>;
  if (dataType === DataType.INT4 || dataType === DataType.UINT4) {
    const n = dims.reduce((a, b) => a * b, 1);
    data = unpackInt4(data as Uint8Array, n, dataType === DataType.INT4);
  }
  return { dims, dataType, data };
}

/** The case's node and its data sets: inputs by graph input name ('' for omitted optional ones), outputs by index. */
function loadCase(dir: string): { node: NodeProto; sets: { inputs: Map<string, T>; outputs: T[] }[] } {
  const model = decodeModel(new Uint8Array(readFileSync(join(dir, 'model.onnx'))));
  const graph = model.graph!;
  const node = graph.node[0]!;
  const sets = readdirSync(dir)
    .filter((d) => d.startsWith('test_data_set_'))
    .sort()
    .map((d) => {
      const files = readdirSync(join(dir, d));
      const inputs = new Map<string, T>();
      graph.input.forEach((vi, k) => {
        if (files.includes(`input_${k}.pb`)) inputs.set(vi.name ?? '', readTensor(join(dir, d, `input_${k}.pb`)));
      });
      const outputs = graph.output.map((_, k) => readTensor(join(dir, d, `output_${k}.pb`)));
      return { inputs, outputs };
    });
  assert.ok(sets.length > 0, `${dir} has no test_data_set_*`);
  return { node, sets };
}

/** Input `k` of the node (by position, as the op defines it), or undefined when omitted. */
const arg = (node: NodeProto, inputs: Map<string, T>, k: number): T | undefined =>
  node.input[k] ? inputs.get(node.input[k]!) : undefined;

const f32 = (t: T): Float32Array => (t.data instanceof Float32Array ? t.data : Float32Array.from(t.data));
const asQuant = (t: T): QuantArray => t.data as QuantArray;
/** A per-tensor scale as a number, else the tensor. */
const scaleArg = (t: T): number | Float32Array => (t.data.length === 1 ? t.data[0]! : f32(t));
const zpArg = (t: T | undefined): number | ArrayLike<number> | undefined =>
  t === undefined ? undefined : t.data.length === 1 ? t.data[0]! : t.data;
/** Float results compared bit for bit (Object.is semantics through deepStrictEqual). */
const same = (got: ArrayLike<number>, want: ArrayLike<number>, msg: string): void =>
  assert.deepStrictEqual(Array.from(got), Array.from(want), msg);

function caseDirs(pattern: RegExp): string[] {
  return present ? readdirSync(NODE).filter((d) => pattern.test(d)).sort() : [];
}

const QDQ = caseDirs(/^test_(de)?quantizelinear/);

test('the expected quantization cases are present', { skip }, () => {
  for (const name of ['test_quantizelinear', 'test_quantizelinear_axis', 'test_dequantizelinear', 'test_dequantizelinear_axis']) {
    assert.ok(QDQ.includes(name), `${name} missing from ${NODE}`);
  }
});

for (const name of QDQ) {
  test(`${name}: bit-exact`, { skip }, () => {
    const dir = join(NODE, name);
    const { node, sets } = loadCase(dir);
    const axis = attrInt(node, 'axis', 1);
    const blockSize = attrInt(node, 'block_size', 0);
    const saturate = attrInt(node, 'saturate', 1) !== 0;
    for (const { inputs, outputs } of sets) {
      const x = arg(node, inputs, 0)!;
      const scale = arg(node, inputs, 1)!;
      const zp = arg(node, inputs, 2);
      const y = outputs[0]!;
      const opts = { axis, dims: x.dims, blockSize };
      if (node.opType === 'QuantizeLinear') {
        assert.equal(x.dataType, DataType.FLOAT, `${name}: x is not float32`);
        const qtype = quantType(y.dataType);
        const got = quantizeLinear(f32(x), scaleArg(scale), zpArg(zp), qtype, { ...opts, saturate });
        same(got, y.data, name);
      } else {
        assert.equal(node.opType, 'DequantizeLinear');
        assert.equal(y.dataType, DataType.FLOAT, `${name}: y is not float32`);
        same(dequantizeLinear(asQuant(x), scaleArg(scale), zpArg(zp), opts), y.data, name);
      }
    }
  });
}

for (const name of caseDirs(/^test_dynamicquantizelinear/)) {
  test(`${name}: y, scale and zero point bit-exact`, { skip }, () => {
    for (const { inputs, outputs } of loadCase(join(NODE, name)).sets) {
      const [x] = [...inputs.values()];
      const r = dynamicQuantizeLinear(f32(x!));
      same(r.y, outputs[0]!.data, `${name} y`);
      assert.ok(Object.is(r.scale, outputs[1]!.data[0]), `${name} scale ${r.scale} vs ${outputs[1]!.data[0]}`);
      assert.equal(r.zeroPoint, outputs[2]!.data[0], `${name} zero point`);
    }
  });
}

/** Batched matmul with numpy broadcasting over leading dims (float64 accumulation). */
function matmul(a: Float64Array, ad: number[], b: Float64Array, bd: number[]): { data: Float64Array; dims: number[] } {
  const [m, k] = ad.slice(-2) as [number, number];
  const n = bd[bd.length - 1]!;
  assert.equal(bd[bd.length - 2], k);
  const ab = ad.slice(0, -2);
  const bb = bd.slice(0, -2);
  const rank = Math.max(ab.length, bb.length);
  const pad = (d: number[]): number[] => [...new Array<number>(rank - d.length).fill(1), ...d];
  const pa = pad(ab);
  const pb = pad(bb);
  const batch = pa.map((v, i) => Math.max(v, pb[i]!));
  const nb = batch.reduce((x, y) => x * y, 1);
  const out = new Float64Array(nb * m * n);
  const offset = (idx: number[], shape: number[]): number =>
    idx.reduce((acc, v, i) => acc * shape[i]! + (shape[i] === 1 ? 0 : v), 0);
  for (let bi = 0; bi < nb; bi++) {
    const idx: number[] = [];
    for (let r = rank - 1, t = bi; r >= 0; r--) {
      idx[r] = t % batch[r]!;
      t = Math.floor(t / batch[r]!);
    }
    const ao = offset(idx, pa) * m * k;
    const bo = offset(idx, pb) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ao + i * k + p]! * b[bo + p * n + j]!;
        out[bi * m * n + i * n + j] = s;
      }
    }
  }
  return { data: out, dims: [...batch, m, n] };
}

/** Direct 2-D convolution, NCHW, with pads / strides / dilations / group (float64 accumulation). */
function conv2d(x: Float64Array, xd: number[], w: Float64Array, wd: number[], node: NodeProto): { data: Float64Array; dims: number[] } {
  const [N, C, H, W] = xd as [number, number, number, number];
  const [M, CG, KH, KW] = wd as [number, number, number, number];
  const group = attrInt(node, 'group', 1);
  const [sh, sw] = attrInts(node, 'strides', [1, 1]) as [number, number];
  const [dh, dw] = attrInts(node, 'dilations', [1, 1]) as [number, number];
  const [pt, pl, pb, pr] = attrInts(node, 'pads', [0, 0, 0, 0]) as [number, number, number, number];
  assert.equal(attrInt(node, 'auto_pad') ?? 0, 0, 'auto_pad is not used by these cases');
  assert.equal(C, CG * group);
  const OH = Math.floor((H + pt + pb - (dh * (KH - 1) + 1)) / sh) + 1;
  const OW = Math.floor((W + pl + pr - (dw * (KW - 1) + 1)) / sw) + 1;
  const out = new Float64Array(N * M * OH * OW);
  const mg = M / group;
  for (let n = 0; n < N; n++)
    for (let m = 0; m < M; m++) {
      const g = Math.floor(m / mg);
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          let s = 0;
          for (let c = 0; c < CG; c++)
            for (let kh = 0; kh < KH; kh++)
              for (let kw = 0; kw < KW; kw++) {
                const ih = oh * sh - pt + kh * dh;
                const iw = ow * sw - pl + kw * dw;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += x[((n * C + g * CG + c) * H + ih) * W + iw]! * w[((m * CG + c) * KH + kh) * KW + kw]!;
              }
          out[((n * M + m) * OH + oh) * OW + ow] = s;
        }
    }
  return { data: out, dims: [N, M, OH, OW] };
}

/** Dequantizes (per tensor, or per output channel on `axis` for weights) to float64 for the references. */
function deq(t: T, scale: T | number, zp: T | undefined, axis: number): Float64Array {
  const s = typeof scale === 'number' ? scale : scaleArg(scale);
  return Float64Array.from(dequantizeLinear(asQuant(t), s, zpArg(zp), { axis, dims: t.dims }));
}

const CROSS: Record<string, (node: NodeProto, i: (k: number) => T | undefined) => { got: ArrayLike<number>; dims: number[] }> = {
  // QLinearMatMul: y = quantize(dequant(a) @ dequant(b), y_scale, y_zero_point)
  QLinearMatMul: (node, i) => {
    const r = matmul(deq(i(0)!, i(1)!, i(2), 1), i(0)!.dims, deq(i(3)!, i(4)!, i(5), -1), i(3)!.dims);
    const y = quantizeLinear(Float32Array.from(r.data), scaleArg(i(6)!), zpArg(i(7)), quantType(i(7)!.dataType));
    return { got: y, dims: r.dims };
  },
  // QLinearConv: per-output-channel weight scales sit on axis 0; the int32 bias is dequantized with x_scale * w_scale
  QLinearConv: (node, i) => {
    const x = i(0)!;
    const w = i(3)!;
    const r = conv2d(deq(x, i(1)!, i(2), 1), x.dims, deq(w, i(4)!, i(5), 0), w.dims, node);
    const bias = i(8);
    if (bias) {
      const sx = i(1)!.data[0]!;
      const M = w.dims[0]!;
      const per = r.data.length / (x.dims[0]! * M);
      for (let p = 0; p < r.data.length; p++) {
        const m = Math.floor(p / per) % M;
        const sw = i(4)!.data.length === 1 ? i(4)!.data[0]! : i(4)!.data[m]!;
        r.data[p] += bias.data[m]! * Math.fround(sx * sw);
      }
    }
    const y = quantizeLinear(Float32Array.from(r.data), scaleArg(i(6)!), zpArg(i(7)), quantType(i(7)!.dataType));
    return { got: y, dims: r.dims };
  },
  // MatMulInteger / ConvInteger: dequantize with scale 1 gives the exact (q - zero point) integers
  MatMulInteger: (node, i) => {
    const r = matmul(deq(i(0)!, 1, i(2), 1), i(0)!.dims, deq(i(1)!, 1, i(3), -1), i(1)!.dims);
    return { got: r.data, dims: r.dims };
  },
  ConvInteger: (node, i) => {
    const r = conv2d(deq(i(0)!, 1, i(2), 1), i(0)!.dims, deq(i(1)!, 1, i(3), 0), i(1)!.dims, node);
    return { got: r.data, dims: r.dims };
  },
};

const CROSS_DIRS = caseDirs(/^test_(qlinearmatmul|qlinearconv|matmulinteger|.*convinteger)/);

test('the expected cross-check cases are present', { skip }, () => {
  for (const name of ['test_qlinearmatmul_2D', 'test_qlinearmatmul_3D', 'test_qlinearconv', 'test_matmulinteger']) {
    assert.ok(CROSS_DIRS.includes(name), `${name} missing from ${NODE}`);
  }
});

for (const name of CROSS_DIRS) {
  test(`${name}: dequantize -> reference op -> quantize is bit-exact`, { skip }, () => {
    const { node, sets } = loadCase(join(NODE, name));
    const run = CROSS[node.opType ?? ''];
    assert.ok(run, `no cross-check for ${node.opType}`);
    for (const { inputs, outputs } of sets) {
      const { got, dims } = run(node, (k) => arg(node, inputs, k));
      assert.deepEqual(dims, outputs[0]!.dims, `${name} output shape`);
      same(got, outputs[0]!.data, name);
    }
  });
}
