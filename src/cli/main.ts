#!/usr/bin/env node
// The `lowbit` bin: builds the command tree, runs one command, maps failures to stderr text and an
// exit code. The only module that calls process.exit or reads process.env.

import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerBench } from './commands/bench.js';
import { registerCompare } from './commands/compare.js';
import { registerDemo } from './commands/demo.js';
import { registerEval } from './commands/eval.js';
import { registerInspect } from './commands/inspect.js';
import { registerQuantize } from './commands/quantize.js';
import { registerTrain } from './commands/train.js';
import { registerQat } from './commands/qat.js';
import { describeError } from './errors.js';

function packageVersion(): string {
  try {
    // Same relative place from src/cli/main.ts and dist/cli/main.js.
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

const EXAMPLES = `
Examples:
  lowbit inspect model.onnx
  lowbit quantize model.onnx -o model.int8.onnx --calib samples.npz
  lowbit eval model.int8.onnx --data test.npz --labels labels.npy --reference model.onnx
  lowbit compare model.onnx model.int8.onnx --data test.npz --top 10
  lowbit bench model.int8.onnx --batch 8 --threads 4
  lowbit train digits-cnn --data x.npy --labels y.npy -o digits.onnx --val-split 0.1

Exit codes: 0 ok, 1 internal error, 2 bad command line, 3 bad input file or data, 4 runtime failure.`;

/** The command tree. Parse errors surface as CommanderError (exitOverride), never as an exit. */
export function buildProgram(): Command {
  const program = new Command('lowbit')
    .description('quantize ONNX models to int8 in TypeScript, run by ONNX Runtime')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .showSuggestionAfterError(true)
    .addHelpText('after', EXAMPLES);
  registerInspect(program);
  registerQuantize(program);
  registerEval(program);
  registerCompare(program);
  registerBench(program);
  registerTrain(program);
  registerQat(program);
  registerDemo(program);
  for (const cmd of program.commands) {
    cmd.showHelpAfterError(`(run 'lowbit ${cmd.name()} --help' for usage)`);
  }
  program.showHelpAfterError("(run 'lowbit --help' for usage)");
  return program;
}

async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    // A command that succeeded with a verdict (e.g. quantize --max-drop not met) sets process.exitCode.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    const failure = describeError(e, { debug: process.env.LOWBIT_DEBUG === '1' });
    for (const line of failure.lines) process.stderr.write(`${line}\n`);
    return failure.exitCode;
  }
}

// ONNX Runtime may keep worker threads alive; exit explicitly once stdout has drained.
const code = await main(process.argv);
process.stdout.write('', () => process.exit(code));
