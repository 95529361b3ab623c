// Shared pieces of the command line: value parsers, common options, input/output path checks,
// and the little output helpers every command uses. CLI only.

import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { LowbitError } from '../errors.js';
import { decodeModel } from '../onnx/decode.js';
import type { ModelProto } from '../onnx/proto.js';

/** commander value parser: a positive integer ('4'), else an error naming what was expected. */
export function positiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('expected a positive integer.');
  }
  return Number(value);
}

/** commander value parser: 'A,B, C' -> ['A', 'B', 'C']; repeated flags accumulate. */
export function nameList(value: string, previous: string[] | undefined): string[] {
  const names = value.split(',').map((s) => s.trim());
  if (names.some((s) => s.length === 0)) throw new InvalidArgumentError('expected comma-separated names, e.g. A,B.');
  return [...(previous ?? []), ...names];
}

/** `--json`: one JSON object on stdout, nothing else there; no progress bars. */
export const jsonOption = (): Option => new Option('--json', 'print one JSON object on stdout instead of a table');

/** `--threads T`: ONNX Runtime intra-op threads. */
export const threadsOption = (): Option =>
  new Option('--threads <T>', 'ONNX Runtime intra-op threads (default: 2)').argParser(positiveInt);

/** `--batch N`. */
export const batchOption = (description: string): Option => new Option('--batch <N>', description).argParser(positiveInt);

/** An option taking one of `choices`; commander rejects anything else and lists the valid values. */
export const choiceOption = (flags: string, description: string, choices: readonly string[]): Option =>
  new Option(flags, description).choices(choices);

/**
 * Checks that `path` is an existing regular file before any heavy work starts.
 * @returns the path as given
 * @throws LowbitError FILE_NOT_FOUND when it does not exist or is not a file
 */
export function requireFile(path: string, what: string): string {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new LowbitError('FILE_NOT_FOUND', `${what} not found: ${path}`, 'check the path (relative paths start from the current directory)');
  }
  if (!st.isFile()) {
    throw new LowbitError('FILE_NOT_FOUND', `${what} is not a file: ${path}`, st.isDirectory() ? 'pass a file, not a directory' : 'pass a regular file');
  }
  return path;
}

/** Resolved real path when it exists (symlinks followed), else the resolved path. */
function canonical(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch {
    return abs;
  }
}

/**
 * Checks an output path: not the input file itself (even through a symlink or another spelling)
 * and in an existing directory.
 * @throws LowbitError SAME_INPUT_OUTPUT, or FILE_NOT_FOUND when the directory is missing
 */
export function checkOutput(output: string, input: string): string {
  if (canonical(output) === canonical(input)) {
    throw new LowbitError('SAME_INPUT_OUTPUT', `the output path is the input model: ${output}`, 'pass a different -o path; lowbit never overwrites its input');
  }
  const dir = dirname(resolve(output));
  if (!existsSync(dir)) {
    throw new LowbitError('BAD_OPTION', `output directory does not exist: ${dir}`, 'create it first, or pass another -o path');
  }
  if (existsSync(output) && statSync(output).isDirectory()) {
    throw new LowbitError('BAD_OPTION', `the output path is a directory: ${output}`, 'pass a file path such as model.int8.onnx');
  }
  return output;
}

/**
 * Reads and decodes a model file (external data is not read).
 * @throws LowbitError NOT_ONNX / TRUNCATED with the path in the message
 */
export function decodeModelFile(path: string): ModelProto {
  const bytes = readFileSync(path);
  try {
    return decodeModel(bytes);
  } catch (e) {
    if (e instanceof LowbitError) throw new LowbitError(e.code, `${path}: ${e.message}`, e.hint, { cause: e });
    throw e;
  }
}

/**
 * Runs `work` (which loads `models` in ONNX Runtime). When ORT fails, checks each model file with
 * lowbit's own decoder first, so a file that is not ONNX or is truncated is reported as such
 * (NOT_ONNX / TRUNCATED, exit 3) rather than as a runtime failure. Costs nothing when `work` succeeds.
 */
export async function explainModelErrors<T>(models: readonly string[], work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof LowbitError && e.code === 'RUNTIME') {
      for (const path of models) decodeModelFile(path);
    }
    throw e;
  }
}

/** Writes one JSON object (and a newline) to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Writes text (and a newline) to stdout. */
export function printText(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}
