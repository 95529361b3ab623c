// Shared helpers for tests that spawn the `lowbit` bin as users run it (not a test file).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';

/** The repository root: the bin runs from here. */
export const ROOT = new URL('../', import.meta.url).pathname;

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `lowbit ARGS` (src/cli/main.ts through tsx) from the repository root; never rejects. */
export function lowbit(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { cwd: ROOT, env: { ...process.env, LOWBIT_DEBUG: '', ...env }, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A failed run: the exit code, a message on stderr, nothing on stdout, no stack trace, no internal error. */
export function assertFails(r: Run, code: number, message: RegExp): void {
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  assert.match(r.stderr, message);
  assert.equal(r.stdout, '');
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /internal error/);
}
