// The lowbit.json config of `lowbit quantize --config`: schema checks (unknown keys and wrong types name the
// key), the merge under explicit options and CLI flags, the file round trip, and the new option checks.

import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toQuantizeOptions } from '../../src/cli/commands/quantize.js';
import { applyQuantizeConfig, configKeys, configOf, defaultConfigPath, parseQuantizeConfig, readQuantizeConfig, writeQuantizeConfig } from '../../src/pipeline/config.js';
import { resolveQuantizeOptions } from '../../src/pipeline/options.js';
import { throwsLowbit } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'lowbit-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const p = (name: string): string => join(dir, name);

describe('quantize config: schema', () => {
  it('accepts every documented key and returns a copy', () => {
    const raw = {
      mode: 'static',
      method: 'percentile',
      percentile: 99.9,
      numBins: 1024,
      perChannel: false,
      weightType: 'int8',
      activationType: 'int8',
      excludeNodes: ['a'],
      excludeOps: ['Softmax'],
      symmetricActivations: true,
      reduceRange: true,
      optimizeFor: 'size',
      backend: 'wasm',
      maxDrop: 0.5,
      format: 'qoperator',
    };
    const c = parseQuantizeConfig(raw);
    assert.deepEqual(c, raw);
    assert.notEqual(c.excludeNodes, raw.excludeNodes);
    assert.deepEqual(configKeys(), ['mode', 'method', 'movingAverage', 'averagingConstant', 'percentile', 'numBins', 'perChannel', 'weightType', 'activationType', 'excludeNodes', 'excludeOps', 'symmetricActivations', 'reduceRange', 'optimizeFor', 'backend', 'maxDrop', 'gateFallback', 'activationTypeOverrides', 'format', 'dynamicConv', 'bits', 'blockSize', 'algorithm', 'symmetric', 'accuracyLevel', 'actOrder', 'damp']);
  });

  it('rejects an unknown key, naming it and listing the valid keys', () => {
    const e = throwsLowbit(() => parseQuantizeConfig({ method: 'minmax', perchannel: true }, 'lowbit.json'), 'BAD_OPTION', 'lowbit.json', 'unknown key "perchannel"');
    assert.match(e.hint ?? '', /valid keys: mode, method, .*perChannel.*maxDrop/);
    // Paths and run settings are not config keys.
    throwsLowbit(() => parseQuantizeConfig({ calib: 'x.npy' }), 'BAD_OPTION', 'unknown key "calib"');
    throwsLowbit(() => parseQuantizeConfig({ threads: 2 }), 'BAD_OPTION', 'unknown key "threads"');
  });

  it('rejects wrong types, naming the key and the expected type', () => {
    throwsLowbit(() => parseQuantizeConfig({ perChannel: 'yes' }), 'BAD_OPTION', '"perChannel" must be true or false', '"yes"');
    throwsLowbit(() => parseQuantizeConfig({ method: 'kl' }), 'BAD_OPTION', '"method" must be one of "minmax", "percentile", "entropy", "mse"');
    throwsLowbit(() => parseQuantizeConfig({ maxDrop: '1' }), 'BAD_OPTION', '"maxDrop" must be a number');
    throwsLowbit(() => parseQuantizeConfig({ numBins: 10.5 }), 'BAD_OPTION', '"numBins" must be an integer');
    throwsLowbit(() => parseQuantizeConfig({ excludeNodes: 'conv1' }), 'BAD_OPTION', '"excludeNodes" must be a list of non-empty strings');
    throwsLowbit(() => parseQuantizeConfig({ excludeOps: ['Conv', 3] }), 'BAD_OPTION', '"excludeOps"');
    throwsLowbit(() => parseQuantizeConfig([1, 2]), 'BAD_OPTION', 'must be a JSON object', 'an array');
    throwsLowbit(() => parseQuantizeConfig(null), 'BAD_OPTION', 'must be a JSON object');
  });

  it('reads files: invalid JSON and missing files are typed errors naming the file', () => {
    writeFileSync(p('bad.json'), '{"method": "minmax",}');
    throwsLowbit(() => readQuantizeConfig(p('bad.json')), 'BAD_OPTION', 'bad.json', 'not valid JSON');
    throwsLowbit(() => readQuantizeConfig(p('none.json')), 'FILE_NOT_FOUND', 'none.json');
    writeFileSync(p('wrong.json'), '{"weightType": 8}');
    throwsLowbit(() => readQuantizeConfig(p('wrong.json')), 'BAD_OPTION', 'wrong.json', '"weightType" must be one of "int8", "uint8", "int4"');
  });
});

describe('quantize config: merge', () => {
  it('fills what the options leave out; explicit options win, lists replaced', () => {
    const m = applyQuantizeConfig({
      input: 'm.onnx',
      output: 'q.onnx',
      calib: 'x.npy',
      method: 'entropy',
      excludeNodes: ['b'],
      config: { method: 'percentile', perChannel: false, excludeNodes: ['a'], maxDrop: 1 },
    });
    assert.equal('config' in m, false);
    assert.equal(m.method, 'entropy');
    assert.equal(m.perChannel, false);
    assert.deepEqual(m.excludeNodes, ['b']);
    assert.equal(m.maxDrop, 1);
    const r = resolveQuantizeOptions(m);
    assert.equal(r.calibration.method, 'entropy');
    assert.equal(r.maxDrop, 1);
  });

  it('CLI flags override a config file', () => {
    writeFileSync(p('lowbit.json'), JSON.stringify({ mode: 'static', method: 'percentile', percentile: 99.9, perChannel: false, activationType: 'int8', excludeOps: ['Softmax'], maxDrop: 2, optimizeFor: 'size' }));
    const fromFile = resolveQuantizeOptions(applyQuantizeConfig(toQuantizeOptions('m.onnx', { output: 'q.onnx', calib: 'x.npy', config: p('lowbit.json') })));
    assert.equal(fromFile.calibration.method, 'percentile');
    assert.equal(fromFile.perChannel, false);
    assert.equal(fromFile.activationType, 'int8');
    assert.deepEqual(fromFile.excludeOps, ['Softmax']);
    assert.equal(fromFile.maxDrop, 2);
    assert.equal(fromFile.optimizeFor, 'size');
    const flags = toQuantizeOptions('m.onnx', { output: 'q.onnx', calib: 'x.npy', config: p('lowbit.json'), perChannel: true, activationType: 'uint8', excludeOps: ['Gemm'], maxDrop: 0.5, percentile: 99, optimizeFor: 'speed', backend: 'wasm' });
    const r = resolveQuantizeOptions(applyQuantizeConfig(flags));
    assert.equal(r.perChannel, true);
    assert.equal(r.activationType, 'uint8');
    assert.deepEqual(r.excludeOps, ['Gemm']);
    assert.equal(r.maxDrop, 0.5);
    assert.equal(r.optimizeFor, 'speed');
    assert.equal(r.backend, 'wasm');
    assert.deepEqual(r.calibration, { method: 'percentile', percentile: 99, numBins: 2048 });
  });

  it('value checks of the options apply to config values; an unapplied config is refused', () => {
    throwsLowbit(() => resolveQuantizeOptions(applyQuantizeConfig({ input: 'm.onnx', output: 'q.onnx', calib: 'x.npy', config: { maxDrop: -1 } })), 'BAD_OPTION', 'maxDrop must be a number of percentage points in [0, 100]');
    throwsLowbit(() => resolveQuantizeOptions(applyQuantizeConfig({ input: 'm.onnx', output: 'q.onnx', config: { maxDrop: 1 } })), 'BAD_OPTION', 'maxDrop needs samples');
    throwsLowbit(() => resolveQuantizeOptions(applyQuantizeConfig({ input: 'm.onnx', output: 'q.onnx', config: { reduceRange: true } })), 'BAD_OPTION', 'reduceRange applies to static mode only');
    throwsLowbit(() => resolveQuantizeOptions(applyQuantizeConfig({ input: 'm.onnx', output: 'q.onnx', config: { optimizeFor: 'size' } })), 'BAD_OPTION', 'optimizeFor applies to static mode only');
    throwsLowbit(() => parseQuantizeConfig({ optimizeFor: 'latency' }), 'BAD_OPTION', '"optimizeFor" must be one of "speed", "size"');
    throwsLowbit(() => parseQuantizeConfig({ backend: 'webgpu' }), 'BAD_OPTION', '"backend" must be one of "cpu", "wasm"');
    throwsLowbit(() => resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', calib: 'x.npy', format: 'unpack-on-load' }), 'BAD_OPTION', 'the unpack-on-load format applies to weight-only mode only');
    throwsLowbit(() => resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', mode: 'weight-only', format: 'unpack-on-load', bits: 2 }), 'BAD_OPTION', '2-bit codes need INT2/UINT2 tensors');
    assert.equal(resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', mode: 'weight-only', format: 'unpack-on-load' }).format, 'unpack-on-load');
    assert.equal(configOf(resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', mode: 'weight-only', format: 'unpack-on-load', backend: 'wasm' }), []).backend, 'wasm', 'backend is kept in every mode\'s config');
    throwsLowbit(() => resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', mode: 'fp16', optimizeFor: 'size' }), 'BAD_OPTION', 'optimizeFor does not apply to fp16 mode');
    throwsLowbit(() => resolveQuantizeOptions({ input: 'm.onnx', output: 'q.onnx', config: { maxDrop: 1 } }), 'BAD_OPTION', 'config must be merged');
    throwsLowbit(() => applyQuantizeConfig({ input: 'm.onnx', output: 'q.onnx', config: 3 as never }), 'BAD_OPTION', 'config must be a file path or an object');
  });
});

describe('quantize config: writing', () => {
  it('round-trips configOf through an atomic write and refuses model paths', () => {
    const o = resolveQuantizeOptions({ input: p('m.onnx'), output: p('m.int8.onnx'), calib: 'x.npy', method: 'percentile', maxDrop: 0.3, excludeOps: ['Softmax'] });
    const c = configOf(o, ['conv3']);
    assert.deepEqual(c, {
      mode: 'static',
      method: 'percentile',
      percentile: 99.999,
      numBins: 2048,
      symmetricActivations: false,
      reduceRange: false,
      optimizeFor: 'speed',
      backend: 'cpu',
      format: 'qdq',
      perChannel: true,
      weightType: 'int8',
      activationType: 'uint8',
      excludeNodes: ['conv3'],
      excludeOps: ['Softmax'],
      maxDrop: 0.3,
    });
    const target = defaultConfigPath(o.output);
    assert.equal(target, p('m.int8.lowbit.json'));
    writeQuantizeConfig(target, c, [o.input, o.output]);
    assert.deepEqual(readQuantizeConfig(target), c);
    assert.deepEqual(JSON.parse(readFileSync(target, 'utf8')), c);
    assert.equal(readdirSync(dir).some((f) => f.endsWith('.tmp')), false);
    throwsLowbit(() => writeQuantizeConfig(o.input, c, [o.input, o.output]), 'SAME_INPUT_OUTPUT', 'is a model file');
    throwsLowbit(() => writeQuantizeConfig(p('no/such/dir/x.json'), c), 'BAD_OPTION', 'cannot write the config file');
    // Re-resolving the written config reproduces the run's options.
    const again = resolveQuantizeOptions(applyQuantizeConfig({ input: o.input, output: o.output, calib: 'x.npy', config: target }));
    assert.deepEqual({ ...again, onProgress: undefined }, { ...o, excludeNodes: ['conv3'], onProgress: undefined });
  });
});
