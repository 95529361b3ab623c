// Unit tests of src/onnx/tensor.ts: shapes, bit widths, typed storage views, makeTensor, int4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bitWidth, bytesPerElement, dataTypeName, dimsOf, elementCount, makeTensor, packInt4, storageByteLength, tensorStorage, unpackInt4 } from '../../src/onnx/tensor.js';
import { decodeTensor } from '../../src/onnx/decode.js';
import { encodeTensor } from '../../src/onnx/encode.js';
import { DataType, type TensorProto } from '../../src/onnx/proto.js';
import { LowbitError } from '../../src/errors.js';

const t = (dataType: number, dims: number[], extra: Partial<TensorProto>): TensorProto => ({ dims: dims.map(BigInt), dataType, name: 'x', externalData: [], metadataProps: [], ...extra });

function throwsCode(fn: () => unknown, code: string, pattern?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LowbitError, String(e));
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

test('dimsOf / elementCount', () => {
  assert.deepEqual(dimsOf(t(DataType.FLOAT, [2, 3, 4], {})), [2, 3, 4]);
  assert.equal(elementCount([2, 3, 4]), 24);
  assert.equal(elementCount([]), 1);
  assert.equal(elementCount([5, 0]), 0);
  throwsCode(() => dimsOf({ ...t(DataType.FLOAT, [], {}), dims: [-1n] }), 'BAD_DATA', /invalid dimension -1/);
});

test('bit widths per data type', () => {
  const want: [number, number][] = [
    [DataType.FLOAT, 32], [DataType.UINT8, 8], [DataType.INT8, 8], [DataType.UINT16, 16], [DataType.INT16, 16],
    [DataType.INT32, 32], [DataType.INT64, 64], [DataType.BOOL, 8], [DataType.FLOAT16, 16], [DataType.DOUBLE, 64],
    [DataType.UINT32, 32], [DataType.UINT64, 64], [DataType.COMPLEX64, 64], [DataType.COMPLEX128, 128],
    [DataType.BFLOAT16, 16], [DataType.FLOAT8E4M3FN, 8], [DataType.FLOAT8E4M3FNUZ, 8], [DataType.FLOAT8E5M2, 8],
    [DataType.FLOAT8E5M2FNUZ, 8], [DataType.UINT4, 4], [DataType.INT4, 4], [DataType.FLOAT4E2M1, 4],
  ];
  for (const [dt, bits] of want) assert.equal(bitWidth(dt), bits, dataTypeName(dt));
  assert.equal(bytesPerElement(DataType.INT4), 0.5);
  assert.equal(storageByteLength(DataType.INT4, 5), 3);
  assert.equal(storageByteLength(DataType.FLOAT16, 5), 10);
  throwsCode(() => bitWidth(DataType.STRING), 'UNSUPPORTED_MODEL', /STRING/);
  throwsCode(() => bitWidth(99), 'UNSUPPORTED_MODEL', /DataType\(99\)/);
});

test('tensorStorage from aligned raw_data is a zero-copy view', () => {
  const buf = new Uint8Array(16);
  new Float32Array(buf.buffer).set([1, 2, 3]);
  const tensor = t(DataType.FLOAT, [3], { rawData: buf.subarray(0, 12) });
  const s = tensorStorage(tensor);
  assert.ok(s instanceof Float32Array);
  assert.deepEqual([...s], [1, 2, 3]);
  assert.equal(s.buffer, buf.buffer);
});

test('tensorStorage from unaligned raw_data copies once', () => {
  const buf = new Uint8Array(13);
  const f = new Float32Array([1.5, -2, 7]);
  buf.set(new Uint8Array(f.buffer), 1);
  const s = tensorStorage(t(DataType.FLOAT, [3], { rawData: buf.subarray(1) }));
  assert.deepEqual([...s], [1.5, -2, 7]);
  assert.notEqual(s.buffer, buf.buffer);
});

test('tensorStorage picks the storage kind per data type', () => {
  const raw = (dt: number, dims: number[], bytes: number[]) => tensorStorage(t(dt, dims, { rawData: new Uint8Array(bytes) }));
  assert.ok(raw(DataType.INT8, [2], [0xff, 1]) instanceof Int8Array);
  assert.deepEqual([...raw(DataType.INT8, [2], [0xff, 1])], [-1, 1]);
  assert.ok(raw(DataType.BOOL, [2], [1, 0]) instanceof Uint8Array);
  assert.deepEqual([...raw(DataType.FLOAT16, [1], [0x00, 0x3c])], [0x3c00]);
  assert.ok(raw(DataType.BFLOAT16, [1], [0x80, 0x3f]) instanceof Uint16Array);
  assert.deepEqual([...raw(DataType.INT16, [1], [0xfe, 0xff])], [-2]);
  assert.deepEqual([...raw(DataType.UINT32, [1], [0xff, 0xff, 0xff, 0xff])], [2 ** 32 - 1]);
  assert.deepEqual([...raw(DataType.INT64, [1], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])], [2n ** 63n - 1n]);
  assert.deepEqual([...raw(DataType.UINT64, [1], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])], [2n ** 64n - 1n]);
  assert.ok(raw(DataType.FLOAT8E5M2, [3], [1, 2, 3]) instanceof Uint8Array);
  assert.deepEqual([...raw(DataType.INT4, [3], [0x21, 0x0f])], [0x21, 0x0f]);
  assert.equal(raw(DataType.COMPLEX64, [1], [0, 0, 0x80, 0x3f, 0, 0, 0, 0x40]).length, 2);
  assert.deepEqual([...raw(DataType.DOUBLE, [1], [0, 0, 0, 0, 0, 0, 0xf0, 0x3f])], [1]);
});

test('tensorStorage from the typed fields follows onnx.proto', () => {
  assert.deepEqual([...tensorStorage(t(DataType.FLOAT, [2], { floatData: new Float32Array([1, 2]) }))], [1, 2]);
  const fp16 = tensorStorage(t(DataType.FLOAT16, [2], { int32Data: new Int32Array([0x3c00, 0xc000]) }));
  assert.ok(fp16 instanceof Uint16Array);
  assert.deepEqual([...fp16], [0x3c00, 0xc000]);
  const i8 = tensorStorage(t(DataType.INT8, [2], { int32Data: new Int32Array([-128, 127]) }));
  assert.ok(i8 instanceof Int8Array);
  assert.deepEqual([...i8], [-128, 127]);
  // int4: each int32_data entry is one packed byte (two elements).
  const i4 = tensorStorage(t(DataType.INT4, [3], { int32Data: new Int32Array([0x21, 0x0f]) }));
  assert.deepEqual([...i4], [0x21, 0x0f]);
  assert.deepEqual([...tensorStorage(t(DataType.UINT32, [1], { uint64Data: new BigUint64Array([7n]) }))], [7]);
  assert.deepEqual([...tensorStorage(t(DataType.INT64, [1], { int64Data: new BigInt64Array([-3n]) }))], [-3n]);
  assert.deepEqual([...tensorStorage(t(DataType.DOUBLE, [1], { doubleData: new Float64Array([0.5]) }))], [0.5]);
  assert.equal(tensorStorage(t(DataType.FLOAT, [0], {})).length, 0);
});

test('tensorStorage rejects mismatched, missing and external data', () => {
  throwsCode(() => tensorStorage(t(DataType.FLOAT, [3], { rawData: new Uint8Array(8) })), 'BAD_DATA', /8 bytes of raw_data, its shape needs 12/);
  throwsCode(() => tensorStorage(t(DataType.FLOAT, [3], { floatData: new Float32Array(2) })), 'BAD_DATA', /2 values in floatData/);
  throwsCode(() => tensorStorage(t(DataType.FLOAT, [3], {})), 'BAD_DATA', /no data/);
  throwsCode(() => tensorStorage(t(DataType.FLOAT, [3], { dataLocation: 1 })), 'EXTERNAL_DATA');
  throwsCode(() => tensorStorage(t(DataType.STRING, [1], { stringData: [new Uint8Array(1)] })), 'UNSUPPORTED_MODEL');
});

test('makeTensor builds raw_data that round-trips through the codec', () => {
  const cases: [number, number[], Parameters<typeof makeTensor>[3]][] = [
    [DataType.FLOAT, [2, 2], new Float32Array([1, -2, 3.5, 0])],
    [DataType.INT8, [3], new Int8Array([-128, 0, 127])],
    [DataType.UINT8, [2], new Uint8Array([0, 255])],
    [DataType.FLOAT16, [2], new Uint16Array([0x3c00, 0x7c00])],
    [DataType.BFLOAT16, [1], new Uint16Array([0x3f80])],
    [DataType.INT32, [1], new Int32Array([-5])],
    [DataType.INT64, [2], new BigInt64Array([2n ** 63n - 1n, -1n])],
    [DataType.DOUBLE, [1], new Float64Array([Math.E])],
    [DataType.INT4, [3], packInt4([-8, 7, -1])],
    [DataType.FLOAT8E4M3FN, [2], new Uint8Array([0x38, 0xb8])],
  ];
  for (const [dt, dims, data] of cases) {
    const made = makeTensor('w', dt, dims, data);
    assert.equal(made.rawData!.byteLength, data.byteLength);
    const back = decodeTensor(encodeTensor(made));
    assert.deepEqual(back, made, dataTypeName(dt));
    assert.deepEqual([...tensorStorage(back)], [...data], dataTypeName(dt));
  }
  throwsCode(() => makeTensor('w', DataType.FLOAT, [3], new Float32Array(2)), 'BAD_DATA', /needs 12 bytes/);
  throwsCode(() => makeTensor('w', DataType.FLOAT, [-1], new Float32Array(0)), 'BAD_DATA', /invalid dimension/);
  throwsCode(() => makeTensor('w', DataType.FLOAT16, [2], new Float32Array(1)), 'BAD_DATA');
});

test('int4 packing: first element in the low nibble, sign extension, odd counts', () => {
  const packed = packInt4([1, 2, -1, -8, 7]);
  assert.deepEqual([...packed], [0x21, 0x8f, 0x07]);
  assert.deepEqual([...unpackInt4(packed, 5, true)], [1, 2, -1, -8, 7]);
  assert.deepEqual([...unpackInt4(packed, 5, false)], [1, 2, 15, 8, 7]);
  assert.deepEqual([...unpackInt4(packInt4([15, 0, 9]), 3, false)], [15, 0, 9]);
  throwsCode(() => unpackInt4(new Uint8Array(1), 3, true), 'BAD_DATA');
});
