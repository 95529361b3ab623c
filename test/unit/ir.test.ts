// IR: producers/consumers, editing, topological order, fresh names, subgraphs, type inference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBuilder } from '../../src/onnx/builder.js';
import { Graph, Model, makeNode, makeValueInfo } from '../../src/onnx/ir.js';
import { attrFloat, attrInt, attrInts, attrString, floatAttr, makeAttribute } from '../../src/onnx/attributes.js';
import { inferElemTypes, isFloatType } from '../../src/onnx/infer.js';
import { DataType, type GraphProto } from '../../src/onnx/proto.js';
import { LowbitError } from '../../src/errors.js';

function mlp() {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 4]);
  const w1 = b.initializer('w1', new Float32Array(12).fill(0.5), [4, 3]);
  const h = b.op('MatMul', [x, w1], {}, { name: 'mm1' });
  const r = b.op('Relu', [h], {}, { name: 'relu' });
  const w2 = b.initializer('w2', new Float32Array(6).fill(1), [3, 2]);
  const y = b.op('MatMul', [r, w2], {}, { name: 'mm2' });
  b.output(y, DataType.FLOAT, ['N', 2]);
  return { model: b.build(), x, h, r, y };
}

test('producer and consumers', () => {
  const { model, x, h, r } = mlp();
  const g = model.graph;
  assert.equal(g.producer(h)?.name, 'mm1');
  assert.equal(g.producer(x), undefined);
  assert.deepEqual(g.consumers(h).map((n) => n.name), ['relu']);
  assert.deepEqual(g.consumers(r).map((n) => n.name), ['mm2']);
  assert.ok(g.isGraphInput(x));
  assert.ok(g.initializer('w1'));
});

test('edits keep the index right and topoSort restores order', () => {
  const { model, h } = mlp();
  const g = model.graph;
  const relu = g.producer(g.consumers(h)[0]!.output[0]!)!;
  const idOut = g.freshName('h_id');
  const id = makeNode('Identity', [h], [idOut], { name: g.freshName('id') });
  g.addNodes([id]); // appended after its consumer on purpose
  g.setInput(relu, 0, idOut);
  assert.deepEqual(g.consumers(h).map((n) => n.opType), ['Identity']);
  assert.equal(g.consumers(idOut)[0], relu);
  const order = g.topoSort().map((n) => n.name);
  assert.ok(order.indexOf('id') < order.indexOf('relu'));
  g.sortInPlace();
  assert.equal(g.nodes[1]!.name, 'id');
});

test('replaceAllUses rewires nodes and, when asked, graph outputs', () => {
  const { model, r, y } = mlp();
  const g = model.graph;
  g.replaceAllUses(y, 'renamed', { outputs: true });
  assert.equal(g.outputs[0]!.name, 'renamed');
  g.replaceAllUses(r, 'x');
  assert.deepEqual(g.consumers('x').map((n) => n.name), ['mm1', 'mm2']);
});

test('topoSort names the node that reads an undefined value', () => {
  const { model } = mlp();
  model.graph.addNodes([makeNode('Relu', ['nowhere'], ['z'], { name: 'lost' })]);
  assert.throws(() => model.graph.topoSort(), (e: unknown) => e instanceof LowbitError && /lost/.test(e.message) && /nowhere/.test(e.message));
});

test('freshName never collides with existing names', () => {
  const { model } = mlp();
  const a = model.graph.freshName('mm1');
  const b = model.graph.freshName('mm1');
  assert.notEqual(a, 'mm1');
  assert.notEqual(a, b);
});

test('pruneDead drops unused nodes and initializers', () => {
  const { model, x } = mlp();
  const g = model.graph;
  g.addNodes([makeNode('Neg', [x], ['unused'], { name: 'neg' })]);
  g.removeNodes([]);
  assert.equal(g.pruneDead(), 1);
  assert.ok(!g.nodes.some((n) => n.name === 'neg'));
  g.outputs = [makeValueInfo(g.nodes[0]!.output[0]!, DataType.FLOAT)];
  g.pruneDead();
  assert.ok(!g.initializers.has('w2'));
  assert.ok(g.initializers.has('w1'));
});

test('attributes: typed getters and makeAttribute', () => {
  const n = makeNode('Conv', [], [], {
    attribute: [
      makeAttribute('group', 2),
      makeAttribute('strides', [2, 2]),
      makeAttribute('alpha', floatAttr(1)),
      makeAttribute('auto_pad', 'SAME_UPPER'),
      makeAttribute('end', 9223372036854775807n),
    ],
  });
  assert.equal(attrInt(n, 'group', 1), 2);
  assert.equal(attrInt(n, 'missing', 7), 7);
  assert.deepEqual(attrInts(n, 'strides'), [2, 2]);
  assert.equal(attrFloat(n, 'alpha'), 1);
  assert.equal(attrString(n, 'auto_pad'), 'SAME_UPPER');
  assert.equal(attrInt(n, 'end'), 2 ** 63);
  assert.throws(() => attrFloat(n, 'auto_pad'), LowbitError);
});

function ifModel(): Model {
  const branch = (op: string, out: string): GraphProto => ({
    node: [makeNode(op, ['outer'], [out], { name: `${op}_in_branch` })],
    name: `${op}_branch`,
    initializer: [],
    sparseInitializer: [],
    input: [],
    output: [makeValueInfo(out, DataType.FLOAT)],
    valueInfo: [],
    quantizationAnnotation: [],
    metadataProps: [],
  });
  const b = new ModelBuilder({ opset: 17 });
  const c = b.input('cond', DataType.BOOL, []);
  const x = b.input('x', DataType.FLOAT, [3]);
  const outer = b.op('Relu', [x], {}, { name: 'outer_relu' });
  const m = b.build();
  const g = m.graph;
  // rename the Relu output to 'outer' so branch graphs read it from the enclosing scope
  g.replaceAllUses(outer, 'outer');
  g.producer(outer)!.output[0] = 'outer';
  g.touch();
  g.addNodes([
    makeNode('If', [c], ['y'], {
      name: 'if',
      attribute: [makeAttribute('then_branch', branch('Neg', 't')), makeAttribute('else_branch', branch('Abs', 'e'))],
    }),
  ]);
  g.outputs.push(makeValueInfo('y', DataType.FLOAT));
  return m;
}

test('subgraphs: implicit inputs count as uses, edits inside survive toProto', () => {
  const m = ifModel();
  const g = m.graph;
  const ifNode = g.nodes.find((n) => n.opType === 'If')!;
  assert.deepEqual(g.implicitInputs(ifNode), ['outer']);
  assert.ok(g.consumers('outer').includes(ifNode));
  const subs = g.subgraphs(ifNode);
  assert.deepEqual(subs.map((s) => s.attribute), ['then_branch', 'else_branch']);
  g.replaceAllUses('outer', 'x');
  const proto = m.toProto();
  const then = proto.graph!.node.find((n) => n.opType === 'If')!.attribute[0]!.g!;
  assert.deepEqual(then.node[0]!.input, ['x']);
  assert.equal(subs[0]!.graph.parent, g);
});

test('Model keeps opsets and adds new domains on toProto', () => {
  const { model } = mlp();
  assert.equal(model.opset(), 17);
  assert.equal(model.opset('ai.onnx'), 17);
  model.setOpset('com.microsoft', 1);
  model.setOpset('', 19);
  const p = model.toProto();
  assert.deepEqual(
    p.opsetImport.map((o) => [o.domain, o.version]),
    [['', 19n], ['com.microsoft', 1n]],
  );
  assert.throws(() => new Model({ ...p, graph: undefined }), LowbitError);
});

test('type inference follows the rule table', () => {
  const b = new ModelBuilder({ opset: 17 });
  const x = b.input('x', DataType.FLOAT, ['N', 4]);
  const s = b.op('Shape', [x]);
  const c = b.op('Cast', [s], { to: DataType.FLOAT });
  const e = b.op('Equal', [x, x]);
  const r = b.op('Relu', [x]);
  const am = b.op('ArgMax', [r]);
  const types = inferElemTypes(b.build().graph);
  assert.equal(types.get(s), DataType.INT64);
  assert.equal(types.get(c), DataType.FLOAT);
  assert.equal(types.get(e), DataType.BOOL);
  assert.equal(types.get(r), DataType.FLOAT);
  assert.equal(types.get(am), DataType.INT64);
  assert.ok(isFloatType(types.get(r)));
  assert.ok(!isFloatType(types.get(s)));
});

test('a Graph built from a proto gives the same proto back', () => {
  const { model } = mlp();
  const p = model.toProto();
  const again = new Graph(p.graph!).toProto();
  assert.deepEqual(again, p.graph);
});

test('type inference types If outputs from the branches, not from the condition', () => {
  const m = ifModel();
  m.graph.outputs = m.graph.outputs.map((v) => makeValueInfo(v.name ?? '')); // no declared types
  const types = inferElemTypes(m.graph);
  assert.equal(types.get('cond'), DataType.BOOL);
  assert.equal(types.get('y'), DataType.FLOAT);
  assert.equal(types.get('t'), DataType.FLOAT);
});
