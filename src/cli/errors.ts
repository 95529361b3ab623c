// Maps anything a command throws to what the user sees on stderr and to the process exit code.
// CLI only; the bin (main.ts) calls it once. The library never picks exit codes.

import { CommanderError } from 'commander';
import { LowbitError, type ErrorCode } from '../errors.js';

/** Exit codes; distinct per kind of failure so scripts can tell them apart. */
export const ExitCode = {
  OK: 0,
  /** A bug in lowbit (an error that is not a LowbitError). */
  INTERNAL: 1,
  /** Bad command line: unknown option, invalid value, missing argument, -o equal to the input. */
  USAGE: 2,
  /** Bad input file or data: missing, not ONNX, truncated, unsupported, mismatched data. */
  BAD_INPUT: 3,
  /** The run itself failed: ONNX Runtime error, disk full, non-finite results. */
  RUNTIME: 4,
  /** `quantize --max-drop X` wrote the best model it found, but its drop is above X. */
  GATE_NOT_MET: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Exit code per LowbitError code. A Record, so a new ErrorCode without a row fails to compile. */
const EXIT_BY_CODE: Readonly<Record<ErrorCode, ExitCode>> = {
  FILE_NOT_FOUND: ExitCode.BAD_INPUT,
  NOT_ONNX: ExitCode.BAD_INPUT,
  TRUNCATED: ExitCode.BAD_INPUT,
  UNSUPPORTED_OPSET: ExitCode.BAD_INPUT,
  UNSUPPORTED_MODEL: ExitCode.BAD_INPUT,
  EXTERNAL_DATA: ExitCode.BAD_INPUT,
  UNSAFE_PATH: ExitCode.BAD_INPUT,
  DATA_MISMATCH: ExitCode.BAD_INPUT,
  BAD_DATA: ExitCode.BAD_INPUT,
  BAD_OPTION: ExitCode.USAGE,
  SAME_INPUT_OUTPUT: ExitCode.USAGE,
  NON_FINITE: ExitCode.RUNTIME,
  RUNTIME: ExitCode.RUNTIME,
  INTERNAL: ExitCode.INTERNAL,
};

/** Node system errors that escape the library (a file vanished, a full disk): exit code and wording. */
const SYSTEM_ERRORS: Readonly<Record<string, { exit: ExitCode; what: string; hint: string }>> = {
  ENOENT: { exit: ExitCode.BAD_INPUT, what: 'no such file or directory', hint: 'check the path' },
  ENOTDIR: { exit: ExitCode.BAD_INPUT, what: 'a part of the path is not a directory', hint: 'check the path' },
  EISDIR: { exit: ExitCode.BAD_INPUT, what: 'is a directory', hint: 'pass a file, not a directory' },
  EACCES: { exit: ExitCode.BAD_INPUT, what: 'permission denied', hint: 'check the file permissions' },
  EPERM: { exit: ExitCode.BAD_INPUT, what: 'operation not permitted', hint: 'check the file permissions' },
  EROFS: { exit: ExitCode.RUNTIME, what: 'read-only file system', hint: 'write the output somewhere writable' },
  ENOSPC: { exit: ExitCode.RUNTIME, what: 'no space left on device', hint: 'free some disk space or write elsewhere' },
  EDQUOT: { exit: ExitCode.RUNTIME, what: 'disk quota exceeded', hint: 'free some disk space or write elsewhere' },
  EMFILE: { exit: ExitCode.RUNTIME, what: 'too many open files', hint: 'raise the limit (ulimit -n) and retry' },
  ENOMEM: { exit: ExitCode.RUNTIME, what: 'out of memory', hint: 'use a smaller --batch or fewer samples' },
};

/** What to print (lines for stderr, no trailing newline each) and which code to exit with. */
export interface Failure {
  exitCode: ExitCode;
  lines: string[];
}

interface SystemError extends Error {
  code: string;
  path?: string;
  syscall?: string;
}

function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as Partial<SystemError>).code === 'string' && (e as SystemError).code in SYSTEM_ERRORS;
}

function stackLines(e: unknown): string[] {
  const out: string[] = [];
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = cur.cause, depth++) {
    out.push(...(depth === 0 ? [] : ['caused by:']), ...(cur.stack ?? String(cur)).split('\n'));
  }
  return out;
}

/**
 * Turns a thrown value into stderr lines and an exit code.
 * - CommanderError: commander already printed its message; only the code is mapped (help and
 *   --version exit 0, every parse problem exits 2).
 * - LowbitError: `error: <message>` and `hint: <hint>`, never a stack (unless `debug`).
 * - Node system errors (ENOENT, ENOSPC, ...): one line naming the path.
 * - Anything else is a bug: `internal error: <message>`; the stack only when `debug`.
 * @param opts.debug print stack traces (the bin sets it from LOWBIT_DEBUG=1)
 */
export function describeError(e: unknown, opts: { debug: boolean }): Failure {
  if (e instanceof CommanderError) {
    return { exitCode: e.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE, lines: [] };
  }
  if (e instanceof LowbitError) {
    const lines = [`error: ${e.message}`];
    if (e.hint) lines.push(`hint: ${e.hint}`);
    if (opts.debug) lines.push(...stackLines(e));
    return { exitCode: EXIT_BY_CODE[e.code] ?? ExitCode.INTERNAL, lines };
  }
  if (isSystemError(e)) {
    const row = SYSTEM_ERRORS[e.code]!;
    const where = e.path ? `${e.path}: ` : '';
    const lines = [`error: ${where}${row.what}${e.syscall ? ` (${e.syscall})` : ''}`, `hint: ${row.hint}`];
    if (opts.debug) lines.push(...stackLines(e));
    return { exitCode: row.exit, lines };
  }
  const message = e instanceof Error ? e.message : String(e);
  const lines = [`error: internal error: ${message}`];
  if (opts.debug) lines.push(...stackLines(e));
  else lines.push('hint: this is a bug in lowbit; please report it with the command you ran (set LOWBIT_DEBUG=1 to see the stack trace)');
  return { exitCode: ExitCode.INTERNAL, lines };
}
