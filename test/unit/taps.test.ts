// addTaps / graphValues: which outputs are added, how they are typed, what is rejected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { makeValueInfo, valueInfoTensor } from '../../src/onnx/ir.js';
import { DataType } from '../../src/onnx/proto.js';
import { LowbitError } from '../../src/errors.js';
import { addTaps, graphValues } from '../../src/passes/taps.js';

function tiny() {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 4]);
  const w = b.initializer('w', new Float32Array(12), [4, 3]);
  const mm = b.op('MatMul', [x, w]);
  const r = b.op('Relu', [mm]);
  const s = b.op('Softmax', [r], { axis: -1 });
  b.output(s, DataType.FLOAT, ['N', 3]);
  return { model: b.build(), x, w, mm, r, s };
}

test('graphValues lists inputs, initializers and node outputs in order', () => {
  const { model, x, w, mm, r, s } = tiny();
  assert.deepEqual(graphValues(model), { inputs: [x], initializers: [w], nodeOutputs: [mm, r, s] });
});

test('addTaps appends the tapped values after the existing outputs, skipping outputs and repeats', () => {
  const { model, mm, r, s } = tiny();
  const tapped = addTaps(model, [r, mm, s, r]);
  assert.deepEqual(tapped.graph!.output.map((o) => o.name), [s, r, mm]);
  // the input is not modified
  assert.deepEqual(model.toProto().graph!.output.map((o) => o.name), [s]);
});

test('addTaps works on a ModelProto and shares nodes with it', () => {
  const { model, mm } = tiny();
  const proto = model.toProto();
  const tapped = addTaps(proto, [mm]);
  assert.equal(tapped.graph!.node, proto.graph!.node);
  assert.equal(proto.graph!.output.length, 1);
  assert.equal(tapped.graph!.output.length, 2);
});

test('added outputs are typed from value_info, initializers, inputs; else name only', () => {
  const { model, x, w, mm, r } = tiny();
  model.graph.valueInfo.set(mm, makeValueInfo(mm, DataType.FLOAT, ['N', 3]));
  const out = addTaps(model, [mm, r, w, x]).graph!.output;
  const byName = new Map(out.map((o) => [o.name, o]));
  assert.deepEqual(valueInfoTensor(byName.get(mm)), { elemType: DataType.FLOAT, dims: ['N', 3] });
  assert.equal(byName.get(r)!.type, undefined);
  assert.deepEqual(valueInfoTensor(byName.get(w)), { elemType: DataType.FLOAT, dims: [4, 3] });
  assert.deepEqual(valueInfoTensor(byName.get(x)), { elemType: DataType.FLOAT, dims: ['N', 4] });
});

test('an unknown name is a BAD_OPTION naming it', () => {
  const { model } = tiny();
  assert.throws(
    () => addTaps(model, ['nope']),
    (e: unknown) => e instanceof LowbitError && e.code === 'BAD_OPTION' && e.message.includes("'nope'"),
  );
});

test('a model without a graph is NOT_ONNX', () => {
  assert.throws(
    () => addTaps({ opsetImport: [], metadataProps: [], trainingInfo: [], functions: [] }, []),
    (e: unknown) => e instanceof LowbitError && e.code === 'NOT_ONNX',
  );
});
