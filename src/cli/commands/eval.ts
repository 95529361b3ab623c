// `lowbit eval MODEL --data DATA [--labels L] [--reference FLOAT]`: accuracy against labels and/or
// fidelity against a reference model, via pipeline/evaluate.ts (loaded lazily). CLI only.

import type { Command } from 'commander';
import { formatCount, formatDb, formatPct } from '../../report/format.js';
import { renderTable } from '../../report/table.js';
import { batchOption, explainModelErrors, jsonOption, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';
import { IMAGE_HELP, imageOptions, requireData, toImagePreprocess, type ImageFlags } from '../image-flags.js';
import type { ProgressEvent } from '../../pipeline/options.js';

interface EvalFlags extends ImageFlags {
  data: string;
  labels?: string;
  reference?: string;
  batch?: number;
  threads?: number;
  json?: boolean;
}

/** The --json object; fractions are 0..1. */
export interface EvalJson {
  samples: number;
  accuracy?: number;
  agreement?: number;
  sqnrDb?: number;
  cosine?: number;
}

/** The human table of an evaluation. */
export function renderEval(model: string, r: EvalJson): string {
  const rows: [string, string][] = [['samples', formatCount(r.samples)]];
  if (r.accuracy !== undefined) rows.push(['accuracy (vs labels)', formatPct(r.accuracy, { digits: 2 })]);
  if (r.agreement !== undefined) rows.push(['top-1 agreement (vs reference)', formatPct(r.agreement, { digits: 2 })]);
  if (r.sqnrDb !== undefined) rows.push(['output SQNR (vs reference)', formatDb(r.sqnrDb)]);
  if (r.cosine !== undefined) rows.push(['output cosine (vs reference)', r.cosine.toFixed(5)]);
  return renderTable(['metric', 'value'], rows, { title: `Evaluation of ${model}` });
}

/**
 * Opens the model, binds the data file to its inputs, reads the labels and evaluates.
 * ONNX Runtime and the pipeline load here, not when the CLI starts.
 */
async function runEval(model: string, flags: EvalFlags, onProgress: (e: ProgressEvent) => void): Promise<EvalJson> {
  const [{ evaluate }, { Session }, { openModelData }, { openNpy }] = await Promise.all([
    import('../../pipeline/evaluate.js'),
    import('../../runtime/session.js'),
    import('../../data/calib-data.js'),
    import('../../data/npy.js'),
  ]);
  const threads = flags.threads === undefined ? {} : { threads: flags.threads };
  const session = await Session.create(model, { ...threads, label: model });
  try {
    const data = openModelData(flags.data, session.inputs, toImagePreprocess(flags));
    const r = await evaluate({
      model: session,
      data,
      ...(flags.labels === undefined ? {} : { labels: openNpy(flags.labels).readAll() }),
      ...(flags.reference === undefined ? {} : { reference: flags.reference }),
      ...(flags.batch === undefined ? {} : { batch: flags.batch }),
      ...threads,
      onProgress,
    });
    const out: EvalJson = { samples: r.samples };
    if (r.accuracy !== undefined) out.accuracy = r.accuracy;
    if (r.agreement !== undefined) out.agreement = r.agreement;
    if (r.sqnrDb !== undefined) out.sqnrDb = r.sqnrDb;
    if (r.cosine !== undefined) out.cosine = r.cosine;
    return out;
  } finally {
    await session.release();
  }
}

export function registerEval(program: Command): void {
  const command = program
    .command('eval')
    .description('measure accuracy against labels and/or fidelity against a reference (float) model')
    .argument('<MODEL>', 'ONNX model file to evaluate')
    .requiredOption('--data <DATA>', 'inputs (.npy, or .npz keyed by input name; first axis = samples), or a folder of images (see below)')
    .option('--labels <LABELS.npy>', 'integer class labels, one per sample: reports top-1 accuracy')
    .option('--reference <FLOAT_MODEL>', 'model to compare outputs with: reports agreement, SQNR and cosine')
    .addOption(batchOption('samples per run (default: 1 or the model\'s fixed batch size)'))
    .addOption(threadsOption())
    .addOption(jsonOption())
    .action(async (model: string, flags: EvalFlags) => {
      requireFile(model, 'model');
      requireData(flags.data, 'data');
      if (flags.labels !== undefined) requireFile(flags.labels, 'labels');
      if (flags.reference !== undefined) requireFile(flags.reference, 'reference model');
      const progress = stageProgress(!flags.json);
      let result: EvalJson;
      try {
        const models = flags.reference === undefined ? [model] : [model, flags.reference];
        result = await explainModelErrors(models, () => runEval(model, flags, progress.onProgress));
      } finally {
        progress.stop();
      }
      if (flags.json) printJson(result);
      else printText(renderEval(model, result));
    });
  for (const option of imageOptions()) command.addOption(option);
  command.addHelpText('after', IMAGE_HELP);
}
