// quantize({ mode: 'dynamic', dynamicConv }): Conv stays float by default (ORT's CPU ConvInteger is slower),
// 'ConvInteger' quantizes it on request; the option is refused outside dynamic mode and kept in the config.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveModel } from '../../src/io/model-file.js';
import { decodeModel } from '../../src/onnx/decode.js';
import { parseQuantizeConfig } from '../../src/pipeline/config.js';
import { quantize } from '../../src/pipeline/quantize.js';
import { buildSmallCnn } from './quantize-static-fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'lowbit-dynconv-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const opTypes = (path: string): string[] => (decodeModel(readFileSync(path)).graph?.node ?? []).map((n) => n.opType ?? '');

test('dynamic Conv: float by default, ConvInteger on request, refused in static mode, kept in the config', async () => {
  const input = join(dir, 'cnn.onnx');
  await saveModel(buildSmallCnn(1).toProto(), input);
  const plain = await quantize({ input, output: join(dir, 'a.onnx'), mode: 'dynamic' });
  assert.ok(opTypes(plain.output).includes('Conv'));
  assert.ok(!opTypes(plain.output).includes('ConvInteger'));

  const forced = await quantize({ input, output: join(dir, 'b.onnx'), mode: 'dynamic', dynamicConv: 'ConvInteger' });
  const ops = opTypes(forced.output);
  assert.ok(ops.includes('ConvInteger') && !ops.includes('Conv'), ops.join(', '));
  assert.ok(forced.sizeBytes.after < plain.sizeBytes.after, `${forced.sizeBytes.after} vs ${plain.sizeBytes.after}`);
  assert.ok((forced.fidelity.cosine ?? 0) > 0.99, `cosine ${forced.fidelity.cosine}`);

  await assert.rejects(quantize({ input, output: join(dir, 'c.onnx'), calib: join(dir, 'none.npy'), dynamicConv: 'ConvInteger' }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /dynamic mode only/.test(e.message));
  await assert.rejects(quantize({ input, output: join(dir, 'c.onnx'), mode: 'dynamic', dynamicConv: 'int8' as 'float' }), (e: Error & { code?: string }) => e.code === 'BAD_OPTION' && /dynamicConv/.test(e.message));
  assert.equal(parseQuantizeConfig({ dynamicConv: 'ConvInteger' }, 'c').dynamicConv, 'ConvInteger');
});
