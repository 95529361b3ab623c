// `lowbit demo`: quantize a bundled real model and print the size/fidelity/speed trade-off.
// The work lives in src/pipeline/demo.ts (runDemo), loaded only when the command runs. CLI only.

import type { Command } from 'commander';
import { jsonOption, printJson, printText, threadsOption } from '../args.js';
import { importLazily } from '../lazy.js';

interface DemoFlags {
  threads?: number;
  json?: boolean;
}

/** What this command needs from src/pipeline/demo.ts. */
interface DemoModule {
  runDemo(options: { threads?: number }): Promise<{ table: string } & Record<string, unknown>>;
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('quantize a bundled real model and print the size / fidelity / speed trade-off')
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (flags: DemoFlags) => {
      const { runDemo } = await importLazily<DemoModule>('pipeline/demo.js', 'the demo');
      const options: { threads?: number } = {};
      if (flags.threads !== undefined) options.threads = flags.threads;
      const { table, ...data } = await runDemo(options);
      if (flags.json) printJson(data);
      else printText(table);
    });
}
