// The emitter behind GradContext: fresh names, backward nodes, constants, shapes (static or read at run
// time), and the one place broadcasting is undone (sumToShape). Pure; imported by src/grad/engine.ts only.

import { LowbitError } from '../errors.js';
import { type AttrValue, makeAttribute } from '../onnx/attributes.js';
import type { Graph } from '../onnx/ir.js';
import { makeNode } from '../onnx/ir.js';
import { DataType, type NodeProto } from '../onnx/proto.js';
import { dataTypeName, makeTensor } from '../onnx/tensor.js';
import { float32ArrayToFloat16 } from '../quant/float16.js';
import { constantNumbers } from './shapes.js';
import type { Dims, GradContext, GradOptions, ShapeLike } from './types.js';

const FLOAT_STORAGE: Readonly<Partial<Record<number, (v: readonly number[]) => Float32Array | Float64Array | Uint16Array>>> = {
  [DataType.FLOAT]: (v) => Float32Array.from(v),
  [DataType.DOUBLE]: (v) => Float64Array.from(v),
  [DataType.FLOAT16]: (v) => float32ArrayToFloat16(Float32Array.from(v)),
};

/** Builds the backward nodes of one training graph; one instance per buildTrainingGraph call. */
export class Emitter {
  /** Backward nodes, in emission order (already topological). */
  readonly backward: NodeProto[] = [];
  /** Shape nodes placed right after the producer of the value they read (null = at the graph start). */
  readonly hoisted = new Map<NodeProto | null, NodeProto[]>();
  private readonly constants = new Map<string, string>();
  private readonly shapes = new Map<string, string>();

  constructor(
    readonly graph: Graph,
    readonly opset: number,
    readonly options: GradOptions,
    readonly types: Map<string, number>,
    readonly dims: Map<string, Dims>,
    /** Values of the forward graph (inputs, initializers, node outputs): what `saves` guards. */
    readonly forward: ReadonlySet<string>,
  ) {}

  node(base: string, opType: string, inputs: readonly string[], attrs: Record<string, AttrValue>, outputs: number): string[] {
    const name = this.graph.freshName(`${base}/${opType}`);
    const outs = outputs === 1 ? [name] : Array.from({ length: outputs }, (_, k) => this.graph.freshName(`${name}:${k}`));
    const attribute = Object.entries(attrs).map(([k, v]) => makeAttribute(k, v));
    this.backward.push(makeNode(opType, [...inputs], outs, { name, attribute }));
    return outs;
  }

  scalar(value: number, elemType: number): string {
    return this.constant([value], [], elemType);
  }

  constant(values: readonly number[], dims: readonly number[], elemType: number): string {
    const key = `${elemType}|${dims.join(',')}|${values.join(',')}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    let data;
    if (elemType === DataType.INT64) data = BigInt64Array.from(values, (v) => BigInt(v));
    else {
      const make = FLOAT_STORAGE[elemType];
      if (!make) {
        throw new LowbitError('UNSUPPORTED_MODEL', `gradients of ${dataTypeName(elemType)} values are not supported`, 'train in float32 (convert float16/bfloat16 models to float32 first)');
      }
      data = make(values);
    }
    const name = this.graph.freshName(elemType === DataType.INT64 ? 'grad/const_i64' : 'grad/const');
    this.graph.setInitializer(makeTensor(name, elemType, dims, data));
    this.constants.set(key, name);
    this.dims.set(name, dims);
    this.types.set(name, elemType);
    return name;
  }

  /** Dims [start, end) of `value` (negative = from the end): static, or a Shape node hoisted after its producer. */
  shapeOf(base: string, value: string, start = 0, end?: number): ShapeLike {
    const d = this.dims.get(value);
    if (d) {
      const part = d.slice(start, end);
      if (part.every((x) => typeof x === 'number')) return part as number[];
    }
    const key = `${value}|${start}|${end ?? ''}`;
    const hit = this.shapes.get(key);
    if (hit) return hit;
    const attrs: Record<string, AttrValue> = {};
    if (this.opset >= 15 && start !== 0) attrs.start = start;
    if (this.opset >= 15 && end !== undefined) attrs.end = end;
    const name = this.graph.freshName(`${value}/shape`);
    const nodes = [makeNode('Shape', [value], [name], { name, attribute: Object.entries(attrs).map(([k, v]) => makeAttribute(k, v)) })];
    let out = name;
    if (this.opset < 15 && (start !== 0 || end !== undefined)) {
      out = this.graph.freshName(`${value}/shape_slice`);
      const s = this.constant([start], [1], DataType.INT64);
      const e = this.constant([end ?? Number.MAX_SAFE_INTEGER], [1], DataType.INT64);
      nodes.push(makeNode('Slice', [name, s, e], [out], { name: out }));
    }
    if (this.forward.has(value)) {
      const at = this.graph.producer(value) ?? null;
      this.hoisted.set(at, [...(this.hoisted.get(at) ?? []), ...nodes]);
    } else this.backward.push(...nodes);
    this.shapes.set(key, out);
    return out;
  }

  shapeCat(base: string, parts: ShapeLike[]): string {
    if (parts.every((p) => typeof p !== 'string')) return this.constant((parts as number[][]).flat(), [parts.reduce((n, p) => n + p.length, 0)], DataType.INT64);
    const names = parts.filter((p) => typeof p === 'string' || p.length > 0).map((p) => (typeof p === 'string' ? p : this.constant(p, [p.length], DataType.INT64)));
    return names.length === 1 ? names[0]! : this.node(base, 'Concat', names, { axis: 0 }, 1)[0]!;
  }

  /**
   * Sums `g` down to the shape of `x`. Static when `x`'s dims and `g`'s rank decide every axis (a dim of 1
   * in `x` is summed, a fixed or same-symbol dim kept); otherwise the axes are found at run time.
   */
  sumToShape(base: string, g: string, gDims: Dims | undefined, x: string): string {
    const xd = this.dims.get(x);
    if (xd && gDims && gDims.length >= xd.length) {
      const lead = gDims.length - xd.length;
      const inner: number[] = [];
      let decided = true;
      xd.forEach((d, i) => {
        const gd = gDims[lead + i];
        if (d === 1) {
          if (gd !== 1) inner.push(lead + i);
        } else if (typeof d !== 'number' && (d === undefined || d !== gd)) decided = false;
      });
      if (decided) {
        let out = g;
        if (inner.length) out = this.node(base, 'ReduceSum', [out, this.constant(inner, [inner.length], DataType.INT64)], { keepdims: 1 }, 1)[0]!;
        if (lead) out = this.node(base, 'ReduceSum', [out, this.constant(range(lead), [lead], DataType.INT64)], { keepdims: 0 }, 1)[0]!;
        return out;
      }
    }
    // Run time: pad x's shape with leading 1s to g's rank, sum every axis where it is 1, reshape to x.
    const xs = this.shapeOf(base, x);
    const xShape = typeof xs === 'string' ? xs : this.constant(xs, [xs.length], DataType.INT64);
    const [gShape] = this.node(base, 'Shape', [g], {}, 1);
    const [gRank] = this.node(base, 'Shape', [gShape!], {}, 1);
    const [xRank] = this.node(base, 'Shape', [xShape], {}, 1);
    const [diff] = this.node(base, 'Sub', [gRank!, xRank!], {}, 1);
    const oneT = makeTensor('value', DataType.INT64, [1], BigInt64Array.of(1n));
    const [ones] = this.node(base, 'ConstantOfShape', [diff!], { value: oneT }, 1);
    const [padded] = this.node(base, 'Concat', [ones!, xShape], { axis: 0 }, 1);
    const [isOne] = this.node(base, 'Equal', [padded!, this.constant([1], [], DataType.INT64)], {}, 1);
    const [nz] = this.node(base, 'NonZero', [isOne!], {}, 1);
    const [axes] = this.node(base, 'Reshape', [nz!, this.constant([-1], [1], DataType.INT64)], {}, 1);
    const [summed] = this.node(base, 'ReduceSum', [g, axes!], { keepdims: 1, noop_with_empty_axes: 1 }, 1);
    return this.node(base, 'Reshape', [summed!, xShape], {}, 1)[0]!;
  }

  /** The GradContext handed to the rule of `node`; `wants[i]` says whether input i needs a gradient. */
  contextFor(node: NodeProto, wants: readonly boolean[]): GradContext {
    const base = `${node.name || node.opType || 'node'}/grad`;
    const what = `node '${node.name ?? ''}' (${node.opType})`;
    const fail = (why: string, hint?: string): never => {
      throw new LowbitError('UNSUPPORTED_MODEL', `cannot differentiate ${what}: ${why}`, hint ?? 'train a model without this construct, or give the op a custom gradient rule (options.rules)');
    };
    const typeOf = (like: string): number => this.types.get(like) ?? fail(`the element type of '${like}' is unknown`);
    return {
      opset: this.opset,
      options: this.options,
      wants: (slot) => wants[slot] === true,
      emit: (op, inputs, attrs = {}) => this.node(base, op, inputs, attrs, 1)[0]!,
      emitMulti: (op, inputs, attrs, outputs) => this.node(base, op, inputs, attrs, outputs),
      scalar: (value, like) => this.scalar(value, typeOf(like)),
      constant: (values, dims, like) => this.constant(values, dims, typeOf(like)),
      ints: (values, dims) => this.constant(values, dims ?? [values.length], DataType.INT64),
      elemType: (v) => this.types.get(v),
      dims: (v) => this.dims.get(v),
      rank: (v, why) => this.dims.get(v)?.length ?? fail(`${why} needs the rank of '${v}', which is not known statically`, 'give the model input shapes (or pass `dims` from a run) so ranks can be inferred'),
      constantValues: (v) => (this.forward.has(v) ? constantNumbers(this.graph, v) : undefined),
      shapeOf: (v, start, end) => this.shapeOf(base, v, start, end),
      shapeCat: (...parts) => this.shapeCat(base, parts),
      sumToShape: (g, gDims, x) => this.sumToShape(base, g, gDims, x),
      fail,
    };
  }
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
