// Structure of depthwise channel padding (passes/pad-channels.ts): which Convs grow and how, which groups
// are skipped and why. Exactness is checked in ORT (test/ort/pad-channels.test.ts).

import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { attrInt } from '../../src/onnx/attributes.js';
import type { Model } from '../../src/onnx/ir.js';
import { dimsOf, tensorStorage } from '../../src/onnx/tensor.js';
import { padDepthwiseChannels } from '../../src/passes/pad-channels.js';
import { buildMobileBlock } from './pad-channels-fixtures.js';

const node = (m: Model, name: string) => m.graph.nodes.find((n) => n.name === name)!;
const weight = (m: Model, name: string, slot = 1) => m.graph.initializers.get(node(m, name).input[slot]!)!;

test('an 88-channel block grows to 96: zero filters, zero depthwise filters, zero input channels', () => {
  const m = buildMobileBlock({ channels: 88 });
  const r = padDepthwiseChannels(m);
  assert.deepEqual(r.padded, [{ depthwise: ['dw'], from: 88, to: 96, producers: ['expand'], consumers: ['project'] }]);
  const p = r.model;
  assert.deepEqual(dimsOf(weight(p, 'expand')), [96, 16, 1, 1]);
  assert.deepEqual(dimsOf(weight(p, 'expand', 2)), [96]);
  assert.deepEqual(dimsOf(weight(p, 'dw')), [96, 1, 3, 3]);
  assert.deepEqual(dimsOf(weight(p, 'dw', 2)), [96]);
  assert.equal(attrInt(node(p, 'dw'), 'group', 1), 96);
  assert.deepEqual(dimsOf(weight(p, 'project')), [24, 96, 1, 1]);
  // Original values kept, new ones zero.
  const ew = tensorStorage(weight(p, 'expand')) as Float32Array;
  const ew0 = tensorStorage(weight(m, 'expand')) as Float32Array;
  assert.deepEqual(ew.subarray(0, 88 * 16), ew0);
  assert.ok(ew.subarray(88 * 16).every((v) => v === 0));
  const pw = tensorStorage(weight(p, 'project')) as Float32Array;
  const pw0 = tensorStorage(weight(m, 'project')) as Float32Array;
  for (let o = 0; o < 24; o++) {
    assert.deepEqual(pw.subarray(o * 96, o * 96 + 88), pw0.subarray(o * 88, (o + 1) * 88));
    assert.ok(pw.subarray(o * 96 + 88, (o + 1) * 96).every((v) => v === 0));
  }
  // The input model is untouched.
  assert.deepEqual(dimsOf(weight(m, 'dw')), [88, 1, 3, 3]);
  assert.equal(attrInt(node(m, 'dw'), 'group', 1), 88);
});

test('squeeze-and-excitation and HardSwish constants are padded with the group', () => {
  const m = buildMobileBlock({ channels: 104, se: true, hardSwish: true });
  const r = padDepthwiseChannels(m);
  assert.equal(r.padded.length, 1);
  assert.deepEqual(r.padded[0]!.producers.sort(), ['excite', 'expand']);
  assert.deepEqual(r.padded[0]!.consumers.sort(), ['project', 'squeeze']);
  assert.deepEqual(dimsOf(weight(r.model, 'squeeze')), [8, 112, 1, 1]);
  assert.deepEqual(dimsOf(weight(r.model, 'excite')), [112, 8, 1, 1]);
  const add = r.model.graph.nodes.find((n) => n.opType === 'Add')!;
  const three = tensorStorage(r.model.graph.initializers.get(add.input[1]!)!) as Float32Array;
  assert.equal(three.length, 112);
  assert.ok(three.subarray(0, 104).every((v) => v === 3) && three.subarray(104).every((v) => v === 0));
});

test('aligned, too narrow or too costly widths are left alone', () => {
  for (const channels of [96, 40, 24]) {
    const r = padDepthwiseChannels(buildMobileBlock({ channels }));
    assert.deepEqual(r.padded, [], `${channels} channels`);
    assert.deepEqual(r.skipped, []);
  }
  // 40 -> 48 is below 64 channels; with minChannels 32 it grows (growth 1.2).
  assert.equal(padDepthwiseChannels(buildMobileBlock({ channels: 40 }), { minChannels: 32 }).padded[0]?.to, 48);
  // 52 -> 64 grows by 1.23; with maxGrowth 1.2 it is too costly.
  assert.equal(padDepthwiseChannels(buildMobileBlock({ channels: 52 })).padded[0]?.to, 64);
  assert.deepEqual(padDepthwiseChannels(buildMobileBlock({ channels: 52 }), { maxGrowth: 1.2 }).padded, []);
});

test('a group that reaches a graph output or a Concat is skipped with the reason', () => {
  const out = padDepthwiseChannels(buildMobileBlock({ channels: 88, exposeDepthwise: true }));
  assert.deepEqual(out.padded, []);
  assert.equal(out.skipped.length, 1);
  assert.match(out.skipped[0]!.reason, /graph input or output/);
  const cat = padDepthwiseChannels(buildMobileBlock({ channels: 88, concat: true }));
  assert.deepEqual(cat.padded, []);
  assert.match(cat.skipped[0]!.reason, /Concat/);
  // Nothing was changed.
  assert.deepEqual(dimsOf(weight(cat.model, 'dw')), [88, 1, 3, 3]);
});
