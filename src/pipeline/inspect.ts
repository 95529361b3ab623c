// `lowbit inspect`: a plain-data summary of a model (opsets, inputs/outputs, op counts, parameters,
// external data, quantized ops). Pure: reads a decoded Model, touches no file; the CLI renders it.

import { isExternal } from '../onnx/external-data.js';
import { DataType } from '../onnx/proto.js';
import { dataTypeName, STORAGE } from '../onnx/tensor.js';
import type { NodeProto, TensorProto, TypeProto, ValueInfoProto } from '../onnx/proto.js';
import type { Graph, Model } from '../onnx/ir.js';

/** A graph input or output: its type ('FLOAT', 'seq(FLOAT)', ...) and shape (null = unknown rank). */
export interface ValueSummary {
  name: string;
  type: string;
  /** Per dim: a size, a symbolic name, or null when unknown. */
  shape: (number | string | null)[] | null;
}

/** Count of nodes of one op type in one domain ('' = ai.onnx). */
export interface OpCount {
  opType: string;
  domain: string;
  count: number;
}

/** Tensors, elements and bytes of one element type. */
export interface TypeTotal {
  dataType: string;
  tensors: number;
  count: number;
  bytes: number;
}

/** Tensors, elements and bytes overall and per element type (largest bytes first). */
export interface TensorTotals {
  tensors: number;
  count: number;
  bytes: number;
  byType: TypeTotal[];
}

/** Everything `lowbit inspect` shows. Plain JSON-safe data (no bigint). */
export interface InspectSummary {
  irVersion: number | null;
  producerName: string;
  producerVersion: string;
  /** Operator sets, 'ai.onnx' for the default domain. */
  opsets: { domain: string; version: number }[];
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  /** Nodes in the main graph and all subgraphs. */
  nodeCount: number;
  /** Node counts by op type over all graphs, most frequent first. */
  ops: OpCount[];
  /**
   * Constant tensors of all graphs: initializers plus the `value` tensors of Constant nodes (some
   * exporters, e.g. paddle2onnx, keep every weight in Constant nodes).
   */
  parameters: TensorTotals;
  /** The part of `parameters` held by Constant nodes. */
  constantNodes: TensorTotals;
  /** Initializers whose bytes live in external files (data_location = EXTERNAL). */
  externalData: { tensors: number; bytes: number; files: string[] };
  /** Size of the .onnx file itself, when known. */
  fileSizeBytes: number | null;
  /** If/Loop/Scan bodies and other graph attributes, counted recursively. */
  subgraphCount: number;
  /** Model-local functions (FunctionProto). */
  functionCount: number;
  /** Whether the model already holds quantized ops, and which. */
  quantization: { alreadyQuantized: boolean; ops: OpCount[] };
}

/** Ops that only appear in quantized models (exact names, any domain). */
const QUANTIZED_OPS: ReadonlySet<string> = new Set([
  'QuantizeLinear',
  'DequantizeLinear',
  'DynamicQuantizeLinear',
  'MatMulInteger',
  'ConvInteger',
  'MatMulIntegerToFloat',
  'MatMulNBits',
  'MatMulBnb4',
  'GatherBlockQuantized',
  'QAttention',
  'QGemm',
  'QEmbedLayerNormalization',
]);
/** Prefixes of quantized op families: QLinearConv, QLinearMatMul, DynamicQuantizeMatMul, QOrdered*. */
const QUANTIZED_PREFIXES: readonly string[] = ['QLinear', 'DynamicQuantize', 'QOrdered'];

/** True for ops that only a quantized model contains (QuantizeLinear, QLinear*, MatMulInteger, ...). */
export function isQuantizedOp(opType: string): boolean {
  return QUANTIZED_OPS.has(opType) || QUANTIZED_PREFIXES.some((p) => opType.startsWith(p));
}

/** ONNX name of an element type ('FLOAT', 'INT8', ...; '?' when absent). */
function typeNameOf(t: number | undefined): string {
  return t === undefined ? '?' : dataTypeName(t);
}

function typeName(t: TypeProto | undefined): string {
  if (!t) return '?';
  if (t.tensorType) return typeNameOf(t.tensorType.elemType);
  if (t.sparseTensorType) return `sparse(${typeNameOf(t.sparseTensorType.elemType)})`;
  if (t.sequenceType) return `seq(${typeName(t.sequenceType.elemType)})`;
  if (t.mapType) return `map(${typeNameOf(t.mapType.keyType)}, ${typeName(t.mapType.valueType)})`;
  if (t.optionalType) return `optional(${typeName(t.optionalType.elemType)})`;
  if (t.opaqueType) return `opaque(${t.opaqueType.domain ?? ''}.${t.opaqueType.name ?? ''})`;
  return '?';
}

function valueSummary(vi: ValueInfoProto): ValueSummary {
  const tt = vi.type?.tensorType ?? vi.type?.sparseTensorType;
  const shape = tt?.shape
    ? tt.shape.dim.map((d) => (d.dimValue !== undefined ? Number(d.dimValue) : (d.dimParam ?? null)))
    : null;
  return { name: vi.name ?? '', type: typeName(vi.type), shape };
}

/** Element count of a tensor (its dims' product; 1 for a scalar). */
function elementCount(t: TensorProto): number {
  let n = 1;
  for (const d of t.dims) n *= Number(d);
  return n;
}

/** Bytes a tensor's values take, from dims and type (so external data is counted without reading it). */
function tensorBytes(t: TensorProto): number {
  const n = elementCount(t);
  if (t.dataType === DataType.STRING) return (t.stringData ?? []).reduce((s, b) => s + b.length, 0);
  const bits = t.dataType !== undefined ? STORAGE[t.dataType]?.bits : undefined;
  if (bits === undefined) return t.rawData?.length ?? 0;
  return Math.ceil((n * bits) / 8);
}

class Totals {
  private readonly byType = new Map<number, TypeTotal>();
  add(t: TensorProto): void {
    const key = t.dataType ?? 0;
    let e = this.byType.get(key);
    if (!e) this.byType.set(key, (e = { dataType: dataTypeName(key), tensors: 0, count: 0, bytes: 0 }));
    e.tensors += 1;
    e.count += elementCount(t);
    e.bytes += tensorBytes(t);
  }
  result(): TensorTotals {
    const byType = [...this.byType.values()].sort((a, b) => b.bytes - a.bytes || a.dataType.localeCompare(b.dataType));
    const sum = (k: 'tensors' | 'count' | 'bytes'): number => byType.reduce((s, e) => s + e[k], 0);
    return { tensors: sum('tensors'), count: sum('count'), bytes: sum('bytes'), byType };
  }
}

function countOps(counts: Map<string, OpCount>, n: NodeProto): void {
  const domain = n.domain === 'ai.onnx' ? '' : (n.domain ?? '');
  const opType = n.opType ?? '';
  const key = `${domain}\u0000${opType}`;
  const e = counts.get(key);
  if (e) e.count += 1;
  else counts.set(key, { opType, domain, count: 1 });
}

function sortOps(ops: Iterable<OpCount>): OpCount[] {
  return [...ops].sort(
    (a, b) => b.count - a.count || a.opType.localeCompare(b.opType) || a.domain.localeCompare(b.domain),
  );
}

/** Visits `graph` and every subgraph below it; returns how many subgraphs were met. */
function walk(graph: Graph, visit: (g: Graph) => void): number {
  visit(graph);
  let subgraphs = 0;
  for (const n of graph.nodes) {
    for (const { graph: sub } of graph.subgraphs(n)) subgraphs += 1 + walk(sub, visit);
  }
  return subgraphs;
}

/**
 * Summarises a decoded model. Reads no tensor bytes (sizes come from dims and types), so it is
 * cheap even for models with external data that is not loaded.
 * @param opts.fileSizeBytes size of the .onnx file, reported as is
 */
export function inspectModel(model: Model, opts: { fileSizeBytes?: number } = {}): InspectSummary {
  const ops = new Map<string, OpCount>();
  const params = new Totals();
  const constants = new Totals();
  const external = { tensors: 0, bytes: 0, files: new Set<string>() };
  let nodeCount = 0;

  const subgraphCount = walk(model.graph, (g) => {
    for (const t of g.initializers.values()) {
      params.add(t);
      if (isExternal(t)) {
        external.tensors += 1;
        external.bytes += tensorBytes(t);
        const loc = t.externalData.find((e) => e.key === 'location')?.value;
        if (loc !== undefined) external.files.add(loc);
      }
    }
    for (const n of g.nodes) {
      nodeCount += 1;
      countOps(ops, n);
      if (n.opType === 'Constant' && (n.domain ?? '') === '') {
        const value = n.attribute.find((a) => a.name === 'value')?.t;
        if (value) {
          params.add(value);
          constants.add(value);
        }
      }
    }
  });

  const sortedOps = sortOps(ops.values());
  const quantOps = sortedOps.filter((o) => isQuantizedOp(o.opType));
  const g = model.graph;
  const ir = model.rest.irVersion;
  return {
    irVersion: ir === undefined ? null : Number(ir),
    producerName: model.rest.producerName ?? '',
    producerVersion: model.rest.producerVersion ?? '',
    opsets: [...model.opsets]
      .map(([domain, version]) => ({ domain: domain === '' ? 'ai.onnx' : domain, version }))
      .sort((a, b) => (a.domain === 'ai.onnx' ? -1 : b.domain === 'ai.onnx' ? 1 : a.domain.localeCompare(b.domain))),
    // Older exporters (IR < 4) list initializers among the inputs; those are not real inputs.
    inputs: g.inputs.filter((v) => !g.initializers.has(v.name ?? '')).map(valueSummary),
    outputs: g.outputs.map(valueSummary),
    nodeCount,
    ops: sortedOps,
    parameters: params.result(),
    constantNodes: constants.result(),
    externalData: { tensors: external.tensors, bytes: external.bytes, files: [...external.files].sort() },
    fileSizeBytes: opts.fileSizeBytes ?? null,
    subgraphCount,
    functionCount: model.rest.functions.length,
    quantization: { alreadyQuantized: quantOps.length > 0, ops: quantOps },
  };
}
