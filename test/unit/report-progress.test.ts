// CLI progress bar (src/cli/progress.ts): draws on a TTY stream only when enabled; no-op otherwise.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createProgress } from '../../src/cli/progress.js';

function fakeStream(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const stream = {
    isTTY,
    columns: 120,
    write(s: string) {
      chunks.push(String(s));
      return true;
    },
    on() { return stream; },
    once() { return stream; },
    removeListener() { return stream; },
  };
  // eslint-disable-next-line no-control-regex
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => chunks.join('').replace(/\x1b(\[[?0-9;]*[a-zA-Z]|[78])/g, '') };
}

test('enabled on a TTY: draws label, bar, counts; stop is idempotent', () => {
  const s = fakeStream(true);
  const p = createProgress({ label: 'calibrating', total: 8, enabled: true, stream: s.stream });
  assert.equal(p.enabled, true);
  p.tick(3);
  p.tick(5);
  p.stop();
  p.stop();
  p.tick(); // after stop: ignored, no throw
  const out = s.text();
  assert.match(out, /calibrating \[-+\] 0% \| 0\/8/);
  assert.match(out, /calibrating \[=+\] 100% \| 8\/8/);
  assert.equal(out.match(/100%/g)?.length, 1);
});

test('disabled, non-TTY or empty total: a silent no-op', () => {
  for (const [enabled, tty, total] of [[false, true, 5], [true, false, 5], [true, true, 0]] as const) {
    const s = fakeStream(tty);
    const p = createProgress({ label: 'x', total, enabled, stream: s.stream });
    assert.equal(p.enabled, false);
    p.tick(2);
    p.stop();
    assert.equal(s.text(), '');
  }
});
