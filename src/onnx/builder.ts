// A small builder for ONNX models: tests, the demo model and passes that emit whole graphs use it.
// Pure.

import { makeAttribute, type AttrValue } from './attributes.js';
import { Graph, Model, makeNode, makeValueInfo } from './ir.js';
import { DataType, type NodeProto } from './proto.js';
import { makeTensor } from './tensor.js';

type Dims = (number | string | undefined)[];
type TypedData = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array | BigInt64Array;

const dtypeOf = (data: TypedData): number => {
  if (data instanceof Float32Array) return DataType.FLOAT;
  if (data instanceof Float64Array) return DataType.DOUBLE;
  if (data instanceof Int8Array) return DataType.INT8;
  if (data instanceof Uint8Array) return DataType.UINT8;
  if (data instanceof Int16Array) return DataType.INT16;
  if (data instanceof Uint16Array) return DataType.UINT16;
  if (data instanceof Int32Array) return DataType.INT32;
  if (data instanceof Uint32Array) return DataType.UINT32;
  return DataType.INT64;
};

/**
 * Builds a single-graph model op by op.
 * ```ts
 * const b = new ModelBuilder({ opset: 17 });
 * const x = b.input('x', DataType.FLOAT, ['N', 4]);
 * const w = b.initializer('w', new Float32Array(12), [4, 3]);
 * b.output(b.op('MatMul', [x, w]), DataType.FLOAT);
 * const model = b.build();
 * ```
 */
export class ModelBuilder {
  private readonly graph: Graph;
  private readonly opsets = new Map<string, number>();

  constructor(opts: { opset?: number; name?: string; opsets?: Record<string, number> } = {}) {
    this.graph = new Graph({
      node: [],
      name: opts.name ?? 'main',
      initializer: [],
      sparseInitializer: [],
      input: [],
      output: [],
      valueInfo: [],
      quantizationAnnotation: [],
      metadataProps: [],
    });
    this.opsets.set('', opts.opset ?? 17);
    for (const [d, v] of Object.entries(opts.opsets ?? {})) this.opsets.set(d, v);
  }

  /** Declares a graph input; returns its name. */
  input(name: string, elemType: number, dims: Dims): string {
    this.graph.inputs.push(makeValueInfo(name, elemType, dims));
    return name;
  }

  /** Adds an initializer from typed data; returns its name (made unique when taken). */
  initializer(name: string, data: TypedData, dims: number[], dataType = dtypeOf(data)): string {
    const unique = this.graph.freshName(name);
    this.graph.setInitializer(makeTensor(unique, dataType, dims, data));
    return unique;
  }

  /**
   * Appends a node; returns its output names (one unless `outputs` > 1).
   * Attributes: integers → INT(S), other numbers → FLOAT(S), use floatAttr() for integral floats.
   */
  op(opType: string, inputs: string[], attrs?: Record<string, AttrValue>, opts?: { name?: string; domain?: string }): string;
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> | undefined, opts: { name?: string; domain?: string; outputs: number }): string[];
  op(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { name?: string; domain?: string; outputs?: number } = {},
  ): string | string[] {
    const name = this.graph.freshName(opts.name ?? opType);
    const count = opts.outputs ?? 1;
    const outputs = Array.from({ length: count }, (_, i) => this.graph.freshName(count === 1 ? `${name}_out` : `${name}_out${i}`));
    const node: NodeProto = makeNode(opType, inputs, outputs, {
      name,
      ...(opts.domain ? { domain: opts.domain } : {}),
      attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)),
    });
    this.graph.addNodes([node]);
    return opts.outputs === undefined ? outputs[0]! : outputs;
  }

  /** Declares `value` a graph output. */
  output(value: string, elemType: number, dims?: Dims): void {
    this.graph.outputs.push(makeValueInfo(value, elemType, dims));
  }

  /** Imports an extra operator domain (e.g. 'com.microsoft'). */
  opset(domain: string, version: number): void {
    this.opsets.set(domain, version);
  }

  build(): Model {
    const g = this.graph.toProto();
    return new Model({
      irVersion: 8n,
      producerName: 'lowbit',
      opsetImport: [...this.opsets].map(([domain, v]) => ({ domain, version: BigInt(v) })),
      graph: g,
      metadataProps: [],
      trainingInfo: [],
      functions: [],
    });
  }
}
