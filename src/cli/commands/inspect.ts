// `lowbit inspect MODEL [--json]`: what is in a model file. Reads only the .onnx file (external
// data is reported, not loaded). CLI only.

import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { Model } from '../../onnx/ir.js';
import { inspectModel, type InspectSummary, type ValueSummary } from '../../pipeline/inspect.js';
import { formatBytes, formatCount } from '../../report/format.js';
import { renderTable } from '../../report/table.js';
import { decodeModelFile, jsonOption, printJson, printText, requireFile } from '../args.js';

interface InspectFlags {
  json?: boolean;
}

const shapeText = (v: ValueSummary): string => (v.shape === null ? '(unknown)' : `[${v.shape.map((d) => (d === null ? '?' : String(d))).join(', ')}]`);

/** The human rendering: a few key/value lines, then tables. */
export function renderInspect(path: string, s: InspectSummary): string {
  const kv: [string, string][] = [
    ['model', `${path}${s.fileSizeBytes === null ? '' : ` (${formatBytes(s.fileSizeBytes)})`}`],
    ['ir_version', s.irVersion === null ? '(absent)' : String(s.irVersion)],
    ['producer', [s.producerName, s.producerVersion].filter(Boolean).join(' ') || '(absent)'],
    ['opsets', s.opsets.map((o) => `${o.domain} ${o.version}`).join(', ') || '(none)'],
    ['nodes', `${formatCount(s.nodeCount)}${s.subgraphCount ? ` (in ${s.subgraphCount + 1} graphs: main + ${s.subgraphCount} subgraphs)` : ''}`],
    ['parameters', `${formatCount(s.parameters.count)} in ${formatCount(s.parameters.tensors)} tensors (${formatBytes(s.parameters.bytes)})${s.constantNodes.tensors ? `, ${formatCount(s.constantNodes.tensors)} of them in Constant nodes` : ''}`],
  ];
  kv.push([
    'external data',
    s.externalData.tensors
      ? `${s.externalData.tensors} tensors, ${formatBytes(s.externalData.bytes)} in ${s.externalData.files.join(', ') || '(no location)'}`
      : 'none',
  ]);
  if (s.functionCount) kv.push(['functions', String(s.functionCount)]);
  kv.push([
    'quantized',
    s.quantization.alreadyQuantized ? `yes: ${s.quantization.ops.map((o) => `${o.opType} x${o.count}`).join(', ')}` : 'no',
  ]);
  const keyWidth = Math.max(...kv.map(([k]) => k.length));
  const parts = [kv.map(([k, v]) => `${k.padEnd(keyWidth)}  ${v}`).join('\n')];
  const io = (title: string, values: ValueSummary[]): string =>
    renderTable(['name', 'type', 'shape'], values.map((v) => [v.name, v.type, shapeText(v)]), { title });
  parts.push(io('Inputs', s.inputs), io('Outputs', s.outputs));
  parts.push(
    renderTable(
      ['op', 'domain', { header: 'count', align: 'right' }],
      s.ops.map((o) => [o.opType, o.domain || 'ai.onnx', o.count]),
      { title: 'Ops' },
    ),
  );
  if (s.parameters.byType.length) {
    parts.push(
      renderTable(
        ['type', 'tensors', 'elements', 'bytes'],
        s.parameters.byType.map((t) => [t.dataType, formatCount(t.tensors), formatCount(t.count), formatBytes(t.bytes)]),
        { title: 'Parameters by type' },
      ),
    );
  }
  return parts.join('\n\n');
}

/**
 * Reads and summarises a model file.
 * @throws LowbitError FILE_NOT_FOUND, NOT_ONNX, TRUNCATED
 */
export function inspectFile(path: string): InspectSummary {
  requireFile(path, 'model');
  const model = new Model(decodeModelFile(path));
  return inspectModel(model, { fileSizeBytes: statSync(path).size });
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('summarise a model: opsets, inputs/outputs, ops, parameters, external data, quantized ops')
    .argument('<MODEL>', 'ONNX model file')
    .addOption(jsonOption())
    .action((model: string, flags: InspectFlags) => {
      const summary = inspectFile(model);
      if (flags.json) printJson({ model, ...summary });
      else printText(renderInspect(model, summary));
    });
}
