// `lowbit compare FLOAT QUANT --data DATA`: where a static (QDQ) quantized model loses precision, layer
// by layer, via pipeline/compare.ts (loaded lazily) and report/compare-report.ts. CLI only.

import type { Command } from 'commander';
import { Option } from 'commander';
import type { CompareResult } from '../../pipeline/compare.js';
import type { ProgressEvent } from '../../pipeline/options.js';
import { renderCompareReport } from '../../report/compare-report.js';
import { batchOption, decodeModelFile, explainModelErrors, jsonOption, positiveInt, printJson, printText, requireFile, threadsOption } from '../args.js';
import { stageProgress } from '../lazy.js';
import { IMAGE_HELP, imageOptions, requireData, toImagePreprocess, type ImageFlags } from '../image-flags.js';

interface CompareFlags extends ImageFlags {
  data: string;
  batch?: number;
  top: number;
  threads?: number;
  json?: boolean;
}

/** The --json object: `layers` and `weights` are the worst `--top` of each, worst first. */
export interface CompareJson {
  samples: number;
  output: { sqnrDb: number; cosine: number; agreement?: number };
  layers: {
    tensor: string;
    node: string;
    opType: string;
    localSqnrDb: number;
    accumulatedSqnrDb: number;
    cosine: number;
    floatRange: [number, number];
    quantRange: [number, number];
    clippedFraction: number;
  }[];
  weights: { name: string; node: string; opType: string; qtype: string; sqnrDb: number; worstChannel: number | null; worstChannelSqnrDb: number | null }[];
  notes: string[];
}

/** The --json object of a result, `top` entries per list. */
export function compareJson(r: CompareResult, top: number): CompareJson {
  const output: CompareJson['output'] = { sqnrDb: r.output.sqnrDb, cosine: r.output.cosine };
  if (r.output.agreement !== undefined) output.agreement = r.output.agreement;
  return {
    samples: r.samples,
    output,
    layers: r.layers.slice(0, top).map((l) => ({
      tensor: l.tensor,
      node: l.node,
      opType: l.opType,
      localSqnrDb: l.localSqnrDb,
      accumulatedSqnrDb: l.accumulatedSqnrDb,
      cosine: l.cosine,
      floatRange: l.floatRange,
      quantRange: l.quantRange,
      clippedFraction: l.clippedFraction,
    })),
    weights: r.weights.slice(0, top).map((w) => ({
      name: w.name,
      node: w.node,
      opType: w.opType,
      qtype: w.qtype,
      sqnrDb: w.sqnrDb,
      worstChannel: w.worstChannel,
      worstChannelSqnrDb: w.worstChannelSqnrDb,
    })),
    notes: r.notes,
  };
}

const DEFINITIONS = `
Per quantized activation t (scale s, zero point z; f = t in the float model, over all samples):
  local SQNR    10*log10(sum f^2 / sum (f - QDQ(f))^2), QDQ(f) = DequantizeLinear(QuantizeLinear(f, s, z)):
                the error quantizing t alone adds, given exact float inputs
  accumulated   the same with the quantized model's own (dequantized) t, both models fed the same
                inputs: all error up to and including t; cosine likewise
  float range   [min f, max f];  quant range  [(qmin - z)*s, (qmax - z)*s]
  clipped       share of f outside the quant range (saturated by QuantizeLinear)
Per quantized weight: SQNR of the float weight vs its dequantized values, and the output channel with
the lowest SQNR. Rows are sorted worst first (by local SQNR); the last row is the model output (SQNR,
cosine and, for classifier outputs, top-1 agreement, as lowbit eval --reference reports them).
SQNR values print as null in --json when infinite (no error at all).

Example:
  lowbit compare model.onnx model.qdq.onnx --data samples.npz --top 10`;

/** The graph inputs of a model file (decoded here; external data is not read). */
async function modelInputsOf(path: string): Promise<ReturnType<typeof import('../../pipeline/quantize.js').modelInputs>> {
  const [{ Model }, { modelInputs }] = await Promise.all([import('../../onnx/ir.js'), import('../../pipeline/quantize.js')]);
  return modelInputs(new Model(decodeModelFile(path)));
}

/**
 * Opens the data, runs the comparison. ONNX Runtime and the pipeline load here, not when the CLI starts.
 */
async function runCompare(float: string, quant: string, flags: CompareFlags, onProgress: (e: ProgressEvent) => void): Promise<CompareResult> {
  const [{ compare }, { openDataSource, openModelData, isDirectory }] = await Promise.all([import('../../pipeline/compare.js'), import('../../data/calib-data.js')]);
  const image = toImagePreprocess(flags);
  // An image folder is preprocessed for the float model's input, so that input is read first.
  const data = isDirectory(flags.data) || image !== undefined ? openModelData(flags.data, await modelInputsOf(float), image) : openDataSource(flags.data);
  return compare({
    float,
    quant,
    data,
    ...(flags.batch === undefined ? {} : { batch: flags.batch }),
    ...(flags.threads === undefined ? {} : { threads: flags.threads }),
    onProgress,
  });
}

export function registerCompare(program: Command): void {
  const command = program
    .command('compare')
    .description('per-layer error of a static (QDQ) quantized model against its float original: where precision was lost')
    .argument('<FLOAT>', 'the float ONNX model')
    .argument('<QUANT>', 'the QDQ model quantized from it (lowbit quantize --mode static, or another QDQ quantizer)')
    .requiredOption('--data <DATA>', 'inputs (.npy, or .npz keyed by input name; first axis = samples), or a folder of images (see below)')
    .addOption(batchOption("samples per run (default: 1 or the model's fixed batch size; every tapped tensor of a batch is held at once)"))
    .addOption(new Option('--top <K>', 'rows per table, and entries per list in --json (worst first)').argParser(positiveInt).default(20))
    .addOption(threadsOption())
    .addOption(jsonOption())
    .addHelpText('after', DEFINITIONS)
    .action(async (float: string, quant: string, flags: CompareFlags) => {
      requireFile(float, 'float model');
      requireFile(quant, 'quantized model');
      requireData(flags.data, 'data');
      const progress = stageProgress(!flags.json);
      let result: CompareResult;
      try {
        result = await explainModelErrors([float, quant], () => runCompare(float, quant, flags, progress.onProgress));
      } finally {
        progress.stop();
      }
      if (flags.json) printJson(compareJson(result, flags.top));
      else printText(renderCompareReport(result, { top: flags.top, float, quant }));
    });
  for (const option of imageOptions()) command.addOption(option);
  command.addHelpText('after', IMAGE_HELP);
}
