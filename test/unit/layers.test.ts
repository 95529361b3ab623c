// Layering: the browser-safe entry (src/core.ts) must not reach node: modules or ONNX Runtime through
// any import chain, and only src/runtime/ may import onnxruntime-node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'/gm;

function importsOf(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  return [...src.matchAll(IMPORT)].map((m) => m[1]!);
}

function closure(entry: string): Map<string, string[]> {
  const seen = new Map<string, string[]>();
  const stack = [resolve(entry)];
  while (stack.length) {
    const f = stack.pop()!;
    if (seen.has(f)) continue;
    const specs = importsOf(f);
    seen.set(f, specs);
    for (const s of specs) if (s.startsWith('.')) stack.push(resolve(dirname(f), s.replace(/\.js$/, '.ts')));
  }
  return seen;
}

test('src/core.ts reaches no node: module and no onnxruntime', () => {
  const files = closure('src/core.ts');
  assert.ok(files.size > 20, `core closure has ${files.size} files`);
  for (const [file, specs] of files) {
    for (const s of specs) {
      assert.ok(!s.startsWith('node:') && !s.startsWith('onnxruntime'), `${file} imports ${s}`);
    }
  }
});

test('only src/runtime/ imports onnxruntime-node', () => {
  const walk = (d: string): string[] => readdirSync(d).flatMap((n) => (statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]));
  const offenders = walk('src')
    .filter((f) => f.endsWith('.ts') && !f.startsWith(join('src', 'runtime')))
    .filter((f) => importsOf(f).some((s) => s.startsWith('onnxruntime')));
  assert.deepEqual(offenders, []);
});
