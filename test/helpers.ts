// Shared test helpers (not a test file).
import assert from 'node:assert/strict';
import { LowbitError } from '../src/errors.js';

/** Runs `fn`, asserts it throws a LowbitError with `code` whose message contains every part. */
export function throwsLowbit(fn: () => unknown, code: string, ...parts: string[]): LowbitError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof LowbitError, `expected LowbitError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  for (const p of parts) assert.ok(err.message.includes(p), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(p)}`);
  return err;
}
