// Unit tests of decode.ts / encode.ts on hand-built models: every message and attribute kind,
// subgraphs, functions, training info, unknown fields, packed/unpacked input, malformed input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeAttribute, decodeGraph, decodeModel, decodeNode, decodeTensor, decodeType } from '../../src/onnx/decode.js';
import { encodeAttribute, encodeGraph, encodeModel, encodeModelChunks, encodeNode, encodeTensor, encodedModelSize } from '../../src/onnx/encode.js';
import { AttributeType, DataType, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../../src/onnx/proto.js';
import { Writer, WireType } from '../../src/onnx/wire.js';
import { LowbitError } from '../../src/errors.js';

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
const utf8 = (s: string) => new TextEncoder().encode(s);

function tensor(name: string, dataType: number, dims: bigint[], extra: Partial<TensorProto> = {}): TensorProto {
  return { dims, dataType, name, externalData: [], metadataProps: [], ...extra };
}

function vi(name: string, elemType: number, dims: (bigint | string)[]): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
    metadataProps: [],
  };
}

function attr(name: string, type: number, fields: Partial<AttributeProto>): AttributeProto {
  return { name, type, floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensors: [], typeProtos: [], ...fields };
}

function node(opType: string, input: string[], output: string[], attribute: AttributeProto[] = [], extra: Partial<NodeProto> = {}): NodeProto {
  return { input, output, opType, attribute, metadataProps: [], ...extra };
}

function graph(name: string, extra: Partial<GraphProto>): GraphProto {
  return { node: [], name, initializer: [], sparseInitializer: [], input: [], output: [], valueInfo: [], quantizationAnnotation: [], metadataProps: [], ...extra };
}

/** A model touching every message, field and attribute kind. */
function bigModel(): ModelProto {
  const fp16 = tensor('w_fp16', DataType.FLOAT16, [2n], { rawData: new Uint8Array([0x00, 0x3c, 0x00, 0xc0]) });
  const bf16 = tensor('w_bf16', DataType.BFLOAT16, [2n], { int32Data: new Int32Array([0x3f80, 0xc000]) });
  const int4 = tensor('w_int4', DataType.INT4, [3n], { rawData: new Uint8Array([0x21, 0x0f]) });
  const fp8 = tensor('w_fp8', DataType.FLOAT8E4M3FN, [2n], { int32Data: new Int32Array([0x38, 0xb8]) });
  const i64 = tensor('w_i64', DataType.INT64, [4n], { int64Data: new BigInt64Array([INT64_MAX, INT64_MIN, -1n, 0n]) });
  const u64 = tensor('w_u64', DataType.UINT64, [2n], { uint64Data: new BigUint64Array([2n ** 64n - 1n, 3n]) });
  const f64 = tensor('w_f64', DataType.DOUBLE, [2n], { doubleData: new Float64Array([Math.PI, -0]), docString: 'doubles' });
  const f32 = tensor('w_f32', DataType.FLOAT, [2n, 1n], { floatData: new Float32Array([1.5, -2]), metadataProps: [{ key: 'k', value: 'v' }] });
  const str = tensor('w_str', DataType.STRING, [2n], { stringData: [utf8('a'), utf8('bé')] });
  const seg = tensor('w_seg', DataType.FLOAT, [4n], { segment: { begin: 0n, end: 2n }, floatData: new Float32Array([1, 2]) });
  const ext = tensor('w_ext', DataType.FLOAT, [1024n], { dataLocation: 1, externalData: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: '4096' }] });
  const sparse = { values: tensor('sp', DataType.FLOAT, [2n], { floatData: new Float32Array([5, 6]) }), indices: tensor('sp_idx', DataType.INT64, [2n], { int64Data: new BigInt64Array([1n, 3n]) }), dims: [4n] };
  const thenG = graph('then', { node: [node('Constant', [], ['t_out'], [attr('value', AttributeType.TENSOR, { t: tensor('c', DataType.FLOAT, [], { rawData: new Uint8Array(4) }) })])], output: [vi('t_out', DataType.FLOAT, [])] });
  const elseG = graph('else', {
    node: [node('If', ['cond2'], ['e_out'], [attr('then_branch', AttributeType.GRAPH, { g: graph('inner_then', { output: [vi('x', DataType.FLOAT, [])] }) }), attr('else_branch', AttributeType.GRAPH, { g: graph('inner_else', { output: [vi('x', DataType.FLOAT, [])] }) })])],
    output: [vi('e_out', DataType.FLOAT, [])],
  });
  const attrs: AttributeProto[] = [
    attr('f', AttributeType.FLOAT, { f: 0.5, docString: 'a float' }),
    attr('i_neg', AttributeType.INT, { i: -7n }),
    attr('i_max', AttributeType.INT, { i: INT64_MAX }),
    attr('s', AttributeType.STRING, { s: utf8('héllo') }),
    attr('t', AttributeType.TENSOR, { t: fp16 }),
    attr('g', AttributeType.GRAPH, { g: thenG }),
    attr('sparse', AttributeType.SPARSE_TENSOR, { sparseTensor: sparse }),
    attr('tp', AttributeType.TYPE_PROTO, { tp: { sequenceType: { elemType: { tensorType: { elemType: DataType.FLOAT } } }, denotation: 'SEQ' } }),
    attr('floats', AttributeType.FLOATS, { floats: [1, -0.25, Math.fround(3e38)] }),
    attr('ints', AttributeType.INTS, { ints: [1n, -1n, INT64_MAX, INT64_MIN, 0n] }),
    attr('strings', AttributeType.STRINGS, { strings: [utf8('x'), new Uint8Array(0)] }),
    attr('tensors', AttributeType.TENSORS, { tensors: [bf16, int4] }),
    attr('graphs', AttributeType.GRAPHS, { graphs: [elseG, graph('empty', {})] }),
    attr('sparse_tensors', AttributeType.SPARSE_TENSORS, { sparseTensors: [sparse] }),
    attr('type_protos', AttributeType.TYPE_PROTOS, {
      typeProtos: [
        { mapType: { keyType: DataType.INT64, valueType: { tensorType: { elemType: DataType.FLOAT } } } },
        { optionalType: { elemType: { sparseTensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimValue: -1n, denotation: 'BATCH' }] } } } } },
        { opaqueType: { domain: 'com.x', name: 'Blob' } },
      ],
    }),
    attr('ref', AttributeType.FLOAT, { refAttrName: 'alpha' }),
  ];
  const main = graph('main', {
    node: [
      node('If', ['cond'], ['y'], [attr('then_branch', AttributeType.GRAPH, { g: thenG }), attr('else_branch', AttributeType.GRAPH, { g: elseG })], { name: 'if0', domain: '', docString: 'branch', metadataProps: [{ key: 'origin', value: 'test' }] }),
      node('Custom', ['y'], ['z', ''], attrs, { domain: 'com.lowbit', overload: 'v2', name: 'custom' }),
    ],
    initializer: [fp16, bf16, int4, fp8, i64, u64, f64, f32, str, seg, ext],
    sparseInitializer: [sparse],
    docString: 'main graph',
    input: [vi('cond', DataType.BOOL, []), vi('x', DataType.FLOAT, ['N', 3n])],
    output: [vi('z', DataType.FLOAT, ['N'])],
    valueInfo: [{ name: 'y', docString: 'mid', metadataProps: [{ key: 'a', value: 'b' }] }],
    quantizationAnnotation: [{ tensorName: 'y', quantParameterTensorNames: [{ key: 'SCALE_TENSOR', value: 's' }] }],
    metadataProps: [{ key: 'g', value: '1' }],
  });
  return {
    irVersion: 10n,
    opsetImport: [{ domain: '', version: 21n }, { domain: 'com.lowbit', version: 1n }],
    producerName: 'lowbit-test',
    producerVersion: '0.1',
    domain: 'ai.lowbit',
    modelVersion: INT64_MAX,
    docString: 'a model with everything',
    graph: main,
    metadataProps: [{ key: 'author', value: 'me' }],
    trainingInfo: [{ initialization: graph('init', { initializer: [f32] }), algorithm: graph('algo', { node: [node('Add', ['a', 'b'], ['c'])] }), initializationBinding: [{ key: 'w', value: 'w0' }], updateBinding: [{ key: 'w', value: 'w1' }] }],
    functions: [
      {
        name: 'MyFn',
        input: ['X'],
        output: ['Y'],
        attribute: ['alpha'],
        attributeProto: [attr('beta', AttributeType.FLOAT, { f: 2 })],
        node: [node('LeakyRelu', ['X'], ['Y'], [attr('alpha', AttributeType.FLOAT, { refAttrName: 'alpha' })])],
        docString: 'fn',
        opsetImport: [{ domain: '', version: 18n }],
        domain: 'com.lowbit',
        overload: 'o',
        valueInfo: [vi('X', DataType.FLOAT, [1n])],
        metadataProps: [{ key: 'fk', value: 'fv' }],
      },
    ],
  };
}

test('a model with every message and attribute kind round-trips exactly', () => {
  const m = bigModel();
  const bytes = encodeModel(m);
  assert.equal(bytes.length, encodedModelSize(m));
  const back = decodeModel(bytes);
  assert.deepStrictEqual(back, m);
  assert.deepEqual(encodeModel(back), bytes);
});

test('decoded int64 edge values and typed data survive', () => {
  const back = decodeModel(encodeModel(bigModel()));
  const g = back.graph!;
  const custom = g.node[1].attribute;
  assert.equal(custom.find((a) => a.name === 'i_max')!.i, INT64_MAX);
  assert.equal(custom.find((a) => a.name === 'i_neg')!.i, -7n);
  assert.deepEqual(custom.find((a) => a.name === 'ints')!.ints, [1n, -1n, INT64_MAX, INT64_MIN, 0n]);
  assert.deepEqual([...g.initializer.find((t) => t.name === 'w_i64')!.int64Data!], [INT64_MAX, INT64_MIN, -1n, 0n]);
  assert.deepEqual([...g.initializer.find((t) => t.name === 'w_u64')!.uint64Data!], [2n ** 64n - 1n, 3n]);
  assert.equal(back.modelVersion, INT64_MAX);
  const dim = custom.find((a) => a.name === 'type_protos')!.typeProtos[1].optionalType!.elemType!.sparseTensorType!.shape!.dim[0];
  assert.equal(dim.dimValue, -1n);
  // Nested subgraph two levels down.
  const inner = g.node[0].attribute[1].g!.node[0].attribute[0].g!;
  assert.equal(inner.name, 'inner_then');
});

test('raw_data and bytes fields are views into the input buffer', () => {
  const bytes = encodeModel(bigModel());
  const back = decodeModel(bytes);
  const raw = back.graph!.initializer[0].rawData!;
  assert.equal(raw.buffer, bytes.buffer);
  assert.deepEqual([...raw], [0x00, 0x3c, 0x00, 0xc0]);
  assert.equal(back.graph!.initializer.find((t) => t.name === 'w_str')!.stringData![1].buffer, bytes.buffer);
});

test('fields are written in field-number order, dims and ints unpacked, typed data packed', () => {
  // TensorProto: dims(1) unpacked, data_type(2), float_data(4) packed, name(8).
  const t = tensor('n', DataType.FLOAT, [2n, 3n], { floatData: new Float32Array(6) });
  const hex = Buffer.from(encodeTensor(t)).toString('hex');
  assert.equal(hex, '0802' + '0803' + '1001' + '2218' + '00'.repeat(24) + '42016e');
  // AttributeProto ints(8) unpacked, type(20) after them.
  const a = Buffer.from(encodeAttribute(attr('k', AttributeType.INTS, { ints: [1n, 2n] }))).toString('hex');
  assert.equal(a, '0a016b' + '4001' + '4002' + 'a00107');
});

test('repeated scalars accept both packed and unpacked encodings, even mixed', () => {
  const w = new Writer();
  w.tag(1, WireType.LEN).bytes(new Writer().varint(2).varint(3).finish()); // dims packed
  w.tag(1, WireType.VARINT).varint(4); // dims unpacked
  w.tag(2, WireType.VARINT).varint(DataType.FLOAT);
  w.tag(4, WireType.I32).float(1); // float_data unpacked
  w.tag(4, WireType.LEN).bytes(new Uint8Array(new Float32Array([2, 3]).buffer)); // packed
  w.tag(5, WireType.VARINT).int32(-3);
  w.tag(5, WireType.LEN).bytes(new Writer().int32(4).int32(-5).finish());
  w.tag(7, WireType.VARINT).int64(-1n);
  w.tag(10, WireType.I64).double(0.5);
  w.tag(11, WireType.LEN).bytes(new Writer().int64(2n ** 64n - 1n).finish());
  const t = decodeTensor(w.finish());
  assert.deepEqual(t.dims, [2n, 3n, 4n]);
  assert.deepEqual([...t.floatData!], [1, 2, 3]);
  assert.deepEqual([...t.int32Data!], [-3, 4, -5]);
  assert.deepEqual([...t.int64Data!], [-1n]);
  assert.deepEqual([...t.doubleData!], [0.5]);
  assert.deepEqual([...t.uint64Data!], [2n ** 64n - 1n]);
  assert.equal(t.unknownFields, undefined);

  const aw = new Writer();
  aw.tag(7, WireType.LEN).bytes(new Uint8Array(new Float32Array([1, 2]).buffer)); // floats packed
  aw.tag(8, WireType.LEN).bytes(new Writer().int64(-1n).int64(5n).finish()); // ints packed
  const a = decodeAttribute(aw.finish());
  assert.deepEqual(a.floats, [1, 2]);
  assert.deepEqual(a.ints, [-1n, 5n]);
});

/** Unknown fields of every wire type, as raw bytes. */
function unknownBlob(seed: number): Uint8Array {
  const w = new Writer();
  w.tag(900 + seed, WireType.VARINT).int64(-123n);
  w.tag(901 + seed, WireType.I64).double(seed);
  w.tag(902 + seed, WireType.LEN).bytes(utf8(`payload ${seed}`));
  w.tag(903 + seed, WireType.I32).float(seed);
  w.tag(904 + seed, WireType.SGROUP).tag(1, WireType.VARINT).varint(seed).tag(904 + seed, WireType.EGROUP);
  return w.finish();
}

const cat = (...parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

test('unknown fields at several nesting levels survive decode -> encode byte for byte', () => {
  // Build bytes by hand: model { ir_version, graph { node { op_type, attribute { name, t { dims, unknown }, unknown }, unknown }, unknown }, unknown }
  const tensorBytes = cat(new Writer().tag(1, WireType.VARINT).varint(1).finish(), unknownBlob(1));
  const typeBytes = cat(new Writer().tag(1, WireType.LEN).bytes(cat(new Writer().tag(1, WireType.VARINT).varint(1).finish(), unknownBlob(6))).finish(), unknownBlob(7));
  const attrBytes = cat(new Writer().tag(1, WireType.LEN).string('a').tag(5, WireType.LEN).bytes(tensorBytes).tag(14, WireType.LEN).bytes(typeBytes).finish(), unknownBlob(2));
  // NodeProto field 10 is IR v11's device_configurations; unknown to this codec.
  const nodeBytes = cat(new Writer().tag(4, WireType.LEN).string('Op').tag(5, WireType.LEN).bytes(attrBytes).finish(), unknownBlob(3));
  const graphBytes = cat(new Writer().tag(1, WireType.LEN).bytes(nodeBytes).finish(), unknownBlob(4));
  const modelBytes = cat(new Writer().tag(1, WireType.VARINT).varint(10).tag(7, WireType.LEN).bytes(graphBytes).finish(), unknownBlob(5));
  const m = decodeModel(modelBytes);
  assert.equal(m.unknownFields?.length, 5);
  assert.equal(m.graph!.unknownFields?.length, 5);
  assert.equal(m.graph!.node[0].unknownFields?.length, 5);
  assert.equal(m.graph!.node[0].attribute[0].unknownFields?.length, 5);
  assert.equal(m.graph!.node[0].attribute[0].t!.unknownFields?.length, 5);
  assert.equal(m.graph!.node[0].attribute[0].tp!.unknownFields?.length, 5);
  assert.equal(m.graph!.node[0].attribute[0].tp!.tensorType!.unknownFields?.length, 5);
  assert.deepEqual(cat(...m.unknownFields!), unknownBlob(5));
  assert.deepEqual(encodeModel(m), modelBytes);
});

test('a known field number with an unexpected wire type is kept as unknown', () => {
  const bytes = new Writer().tag(3, WireType.VARINT).varint(5).tag(4, WireType.LEN).string('Relu').finish(); // name(3) must be LEN
  const n = decodeNode(bytes);
  assert.equal(n.name, undefined);
  assert.equal(n.opType, 'Relu');
  assert.deepEqual(n.unknownFields, [new Uint8Array([0x18, 5])]);
  // Re-encoded after the known fields, and stable from then on.
  const again = encodeNode(n);
  assert.deepEqual(decodeNode(again), n);
});

test('a repeated singular sub-message merges, and the TypeProto oneof keeps the last member', () => {
  const g1 = new Writer().tag(2, WireType.LEN).string('first').finish();
  const g2 = new Writer().tag(1, WireType.LEN).bytes(new Writer().tag(4, WireType.LEN).string('Relu').finish()).finish();
  const m = decodeModel(new Writer().tag(1, WireType.VARINT).varint(8).tag(7, WireType.LEN).bytes(g1).tag(7, WireType.LEN).bytes(g2).finish());
  assert.equal(m.graph!.name, 'first');
  assert.equal(m.graph!.node[0].opType, 'Relu');

  const tp = new Writer().tag(1, WireType.LEN).bytes(new Writer().tag(1, WireType.VARINT).varint(1).finish()).tag(4, WireType.LEN).bytes(new Uint8Array(0)).finish();
  const t = decodeType(tp);
  assert.equal(t.tensorType, undefined);
  assert.deepEqual(t.sequenceType, {});
});

test('graphs, nodes and attributes encode standalone', () => {
  const g = bigModel().graph!;
  assert.deepStrictEqual(decodeGraph(encodeGraph(g)), g);
});

function throwsCode(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, `expected a LowbitError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('a truncated model reports TRUNCATED with the byte offset', () => {
  const bytes = encodeModel(bigModel());
  for (const cut of [1, 2, 10, bytes.length >> 1, bytes.length - 1]) {
    throwsCode(() => decodeModel(bytes.subarray(0, cut)), 'TRUNCATED', /model file is truncated at byte \d+/);
  }
});

test('non-ONNX input reports NOT_ONNX', () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
  throwsCode(() => decodeModel(png), 'NOT_ONNX', /not an ONNX model/);
  throwsCode(() => decodeModel(utf8('{"model": "resnet"}')), 'NOT_ONNX', /first bytes: 7b 22/);
  throwsCode(() => decodeModel(utf8('hello world, this is text')), 'NOT_ONNX');
  throwsCode(() => decodeModel(new Uint8Array(0)), 'NOT_ONNX', /empty/);
  // Valid protobuf, but no ir_version and no graph.
  throwsCode(() => decodeModel(new Writer().tag(2, WireType.LEN).string('x').finish()), 'NOT_ONNX', /neither an ir_version nor a graph/);
  // Deterministic pseudo-random garbage: always a LowbitError, never a RangeError.
  let s = 12345;
  for (let i = 0; i < 300; i++) {
    const junk = new Uint8Array(64 + (i % 50)).map(() => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) & 0xff);
    try {
      decodeModel(junk);
    } catch (e) {
      assert.ok(e instanceof LowbitError, `garbage #${i} threw ${String(e)}`);
      assert.ok(e.code === 'NOT_ONNX' || e.code === 'TRUNCATED', e.code);
    }
  }
});

test('encoding rejects ill-typed int64 fields with a LowbitError', () => {
  const t = tensor('x', DataType.FLOAT, [2 as unknown as bigint]);
  throwsCode(() => encodeTensor(t), 'INTERNAL', /int64 field/);
});

test('absent and default-valued optional fields stay distinct', () => {
  const a = decodeNode(encodeNode(node('Relu', ['x'], ['y'], [], { name: '', domain: '' })));
  assert.equal(a.name, '');
  assert.equal(a.domain, '');
  const b = decodeNode(encodeNode(node('Relu', ['x'], ['y'])));
  assert.equal('name' in b, false);
  assert.equal('domain' in b, false);
});

test('encodeModelChunks splices big payloads as views; the concatenation equals encodeModel', () => {
  const m = bigModel();
  const big = new Uint8Array(5000).map((_, i) => i % 251);
  m.graph!.initializer.push(tensor('big', DataType.UINT8, [5000n], { rawData: big }));
  m.graph!.initializer.push(tensor('big_f', DataType.FLOAT, [1500n], { floatData: new Float32Array(1500).fill(0.5) }));
  m.unknownFields = [new Writer().tag(999, WireType.LEN).bytes(new Uint8Array(3000)).finish()];
  const whole = encodeModel(m);
  for (const cutAt of [1, 16, 2048, Infinity]) {
    const parts = encodeModelChunks(m, cutAt);
    assert.deepEqual(new Uint8Array(Buffer.concat(parts)), whole, `cutAt ${cutAt}`);
    if (cutAt === 2048) {
      assert.ok(parts.includes(big), 'raw_data is passed through, not copied');
      assert.ok(parts.includes(m.unknownFields[0]), 'big unknown field passed through');
      assert.ok(parts.some((p) => p.buffer === m.graph!.initializer.at(-1)!.floatData!.buffer), 'float_data viewed in place');
    }
  }
  assert.equal(encodeModelChunks(m, Infinity).length, 1);
});
