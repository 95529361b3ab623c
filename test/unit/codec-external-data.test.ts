// Unit tests of src/onnx/external-data.ts: location validation, entry parsing, tensor walking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { externalDataInfo, forEachTensor, mapTensors, toExternal, toInline, validateLocation } from '../../src/onnx/external-data.js';
import { AttributeType, DataType, type GraphProto, type ModelProto, type TensorProto } from '../../src/onnx/proto.js';
import { LowbitError } from '../../src/errors.js';

const tensor = (name: string, extra: Partial<TensorProto> = {}): TensorProto => ({ dims: [1n], dataType: DataType.FLOAT, name, rawData: new Uint8Array(4), externalData: [], metadataProps: [], ...extra });
const graph = (name: string, extra: Partial<GraphProto> = {}): GraphProto => ({ node: [], name, initializer: [], sparseInitializer: [], input: [], output: [], valueInfo: [], quantizationAnnotation: [], metadataProps: [], ...extra });
const attr = (name: string, fields: object) => ({ name, type: AttributeType.TENSOR, floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensors: [], typeProtos: [], ...fields });

function throwsCode(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, String(e));
    assert.equal(e.code, code, e.message);
    assert.ok(e.hint, 'has a hint');
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('validateLocation normalises safe relative paths', () => {
  assert.equal(validateLocation('weights.bin'), 'weights.bin');
  assert.equal(validateLocation('./data/w.bin'), 'data/w.bin');
  assert.equal(validateLocation('data/../w.bin'), 'w.bin');
  assert.equal(validateLocation('data\\w.bin'), 'data/w.bin');
  assert.equal(validateLocation('a//b/./c'), 'a/b/c');
});

test('validateLocation refuses unsafe paths', () => {
  throwsCode(() => validateLocation('../x.bin'), 'UNSAFE_PATH', /outside the model folder/);
  throwsCode(() => validateLocation('a/../../x.bin'), 'UNSAFE_PATH', /outside/);
  throwsCode(() => validateLocation('..\\x.bin'), 'UNSAFE_PATH', /outside/);
  throwsCode(() => validateLocation('/etc/passwd'), 'UNSAFE_PATH', /absolute/);
  throwsCode(() => validateLocation('\\\\server\\share\\x'), 'UNSAFE_PATH', /absolute/);
  throwsCode(() => validateLocation('C:\\x.bin'), 'UNSAFE_PATH', /drive letter/);
  throwsCode(() => validateLocation('c:x.bin'), 'UNSAFE_PATH', /drive letter/);
  throwsCode(() => validateLocation('x.bin\0.png'), 'UNSAFE_PATH', /NUL/);
  throwsCode(() => validateLocation(''), 'UNSAFE_PATH', /empty/);
  throwsCode(() => validateLocation('a/..'), 'UNSAFE_PATH', /folder itself/);
});

test('externalDataInfo reads location, offset, length and checksum', () => {
  const t = tensor('w', { dataLocation: 1, externalData: [{ key: 'location', value: './w.bin' }, { key: 'offset', value: '4096' }, { key: 'length', value: '16' }, { key: 'checksum', value: 'abc' }] });
  assert.deepEqual(externalDataInfo(t), { location: 'w.bin', offset: 4096, length: 16, checksum: 'abc' });
  assert.deepEqual(externalDataInfo(tensor('w', { externalData: [{ key: 'location', value: 'w.bin' }] })), { location: 'w.bin', offset: 0 });
  throwsCode(() => externalDataInfo(tensor('w', { externalData: [{ key: 'offset', value: '0' }] })), 'EXTERNAL_DATA', /no 'location'/);
  throwsCode(() => externalDataInfo(tensor('w', { externalData: [{ key: 'location', value: 'a' }, { key: 'offset', value: '-1' }] })), 'EXTERNAL_DATA', /not a non-negative integer/);
  throwsCode(() => externalDataInfo(tensor('w', { externalData: [{ key: 'location', value: '../a' }] })), 'UNSAFE_PATH');
});

test('toExternal / toInline produce copies', () => {
  const t = tensor('w', { floatData: new Float32Array(1) });
  const e = toExternal(t, { location: 'w.bin', offset: 0, length: 4 });
  assert.equal(e.dataLocation, 1);
  assert.equal(e.rawData, undefined);
  assert.equal(e.floatData, undefined);
  assert.deepEqual(e.externalData.map((x) => x.key), ['location', 'offset', 'length']);
  assert.ok(t.rawData && t.floatData, 'input untouched');
  const back = toInline(e, new Uint8Array(4));
  assert.equal(back.dataLocation, undefined);
  assert.deepEqual(back.externalData, []);
});

function walkModel(): ModelProto {
  const sub = graph('body', { initializer: [tensor('sub_init')], node: [{ input: [], output: ['c'], opType: 'Constant', attribute: [attr('value', { t: tensor('const_attr') })], metadataProps: [] }] });
  const main = graph('main', {
    initializer: [tensor('init')],
    sparseInitializer: [{ values: tensor('sp_values'), indices: tensor('sp_indices'), dims: [4n] }],
    node: [{ input: [], output: ['y'], opType: 'Loop', attribute: [attr('body', { type: AttributeType.GRAPH, g: sub })], metadataProps: [] }],
  });
  return {
    irVersion: 9n,
    opsetImport: [],
    metadataProps: [],
    graph: main,
    trainingInfo: [{ initialization: graph('ti', { initializer: [tensor('ti_init')] }), initializationBinding: [], updateBinding: [] }],
    functions: [{ name: 'f', input: [], output: [], attribute: [], attributeProto: [attr('def', { tensors: [tensor('fn_default')] })], node: [], opsetImport: [], valueInfo: [], metadataProps: [] }],
  };
}

test('forEachTensor visits every tensor with its role', () => {
  const seen: string[] = [];
  forEachTensor(walkModel(), (t, role) => seen.push(`${t.name}:${role}`));
  assert.deepEqual(seen.sort(), ['const_attr:attribute', 'fn_default:attribute', 'init:initializer', 'sp_indices:sparse-initializer', 'sp_values:sparse-initializer', 'sub_init:initializer', 'ti_init:initializer']);
});

test('mapTensors is copy-on-write and never mutates its input', () => {
  const m = walkModel();
  const snapshot = structuredClone(m);
  const out = mapTensors(m, (t) => (t.name === 'sub_init' ? { ...t, name: 'renamed' } : t));
  assert.deepStrictEqual(m, snapshot);
  assert.notEqual(out, m);
  assert.notEqual(out.graph, m.graph);
  assert.equal(out.graph!.node[0].attribute[0].g!.initializer[0].name, 'renamed');
  // Untouched branches are shared, not copied.
  assert.equal(out.graph!.initializer, m.graph!.initializer);
  assert.equal(out.trainingInfo, m.trainingInfo);
  assert.equal(out.functions, m.functions);
  // Identity mapping returns the very same model.
  assert.equal(mapTensors(m, (t) => t), m);
});
