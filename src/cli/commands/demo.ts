// `lowbit demo [digits|ocr-cls]`: quantize a bundled model and print the size / accuracy / speed
// trade-off. The work lives in src/pipeline/demo.ts (runDemo: the digit CNN, PTQ and QAT) and
// src/pipeline/demo-ocr.ts (runOcrDemo: the PaddleOCR classifier), loaded only when the command runs.

import { Argument, type Command } from 'commander';
import { jsonOption, printJson, printText, threadsOption } from '../args.js';
import { importLazily, stageProgress } from '../lazy.js';

interface DemoFlags {
  threads?: number;
  json?: boolean;
}

type DemoRun = (options: Record<string, unknown>) => Promise<{ table: string } & Record<string, unknown>>;

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('quantize a bundled model (PTQ and QAT) and print the size / accuracy / speed trade-off')
    .addArgument(new Argument('[model]', 'digits: the digit CNN trained by lowbit, PTQ vs QAT at int8 and 4-bit weights; ocr-cls: the PaddleOCR text-direction classifier, dynamic vs static int8').choices(['digits', 'ocr-cls']).default('digits'))
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (which: string, flags: DemoFlags) => {
      const options: Record<string, unknown> = {};
      if (flags.threads !== undefined) options.threads = flags.threads;
      let run: DemoRun;
      if (which === 'ocr-cls') {
        run = (await importLazily<{ runOcrDemo: DemoRun }>('pipeline/demo-ocr.js', 'the demo')).runOcrDemo;
      } else {
        run = (await importLazily<{ runDemo: DemoRun }>('pipeline/demo.js', 'the demo')).runDemo;
        if (!flags.json) options.onStep = (line: string) => process.stderr.write(`${line}\n`);
      }
      const progress = stageProgress(!flags.json);
      if (which !== 'ocr-cls') options.onProgress = progress.onProgress;
      let result: Awaited<ReturnType<DemoRun>>;
      try {
        result = await run(options);
      } finally {
        progress.stop();
      }
      const { table, ...data } = result;
      if (flags.json) printJson(data);
      else printText(table);
    });
}
