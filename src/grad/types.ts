// The contract of a gradient rule (one per op type) and the context rules emit backward nodes through.
// Pure; imported by the rule tables (src/grad/rules/) and the engine (src/grad/engine.ts).

import { LowbitError } from '../errors.js';
import type { AttrValue } from '../onnx/attributes.js';
import type { NodeProto } from '../onnx/proto.js';

/** One dimension: a number when fixed, a string when symbolic (same string = same size), undefined when unknown. */
export type Dim = number | string | undefined;
/** Static dims of a value; `undefined` (instead of an array) when even the rank is unknown. */
export type Dims = readonly Dim[];

/** A shape as rules pass it around: static numbers, or the name of a 1-D int64 value computed at run time. */
export type ShapeLike = readonly number[] | string;

/** Options of the training graph that change what rules emit. */
export interface GradOptions {
  /**
   * LSQ's gradient scale for learned quantization scales (Esser et al. 2019, sec. 2.2): the gradient of
   * a QuantizeLinear/DequantizeLinear scale is multiplied by 1/sqrt(N * qmax), N the number of elements
   * one scale value covers (static dims only; symbolic dims such as the batch are left out).
   */
  readonly lsqGradScale: boolean;
}

/** What a rule may do while it builds the backward nodes of one forward node. */
export interface GradContext {
  /** Opset of the default domain (13 or more: the engine refuses older models). */
  readonly opset: number;
  readonly options: GradOptions;
  /** Whether input `slot` of the node needs a gradient (a rule may skip expensive work when not). */
  wants(slot: number): boolean;
  /** Emits a node of the default domain with one output; returns the output's name. */
  emit(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>): string;
  /** Emits a node with `outputs` outputs; returns their names. */
  emitMulti(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue>, outputs: number): string[];
  /** A scalar constant of the element type of `like` (FLOAT, DOUBLE or FLOAT16). */
  scalar(value: number, like: string): string;
  /** A constant of the element type of `like` with the given dims. */
  constant(values: readonly number[], dims: readonly number[], like: string): string;
  /** An int64 constant (axes, shapes, starts/ends): 1-D by default, `[]` dims for a scalar. */
  ints(values: readonly number[], dims?: readonly number[]): string;
  /** ONNX element type of a forward value, or of a gradient (same as its forward value). */
  elemType(value: string): number | undefined;
  /** Static dims of a forward value or gradient, or undefined when the rank is unknown. */
  dims(value: string): Dims | undefined;
  /**
   * The rank of `value`.
   * @throws LowbitError UNSUPPORTED_MODEL naming the node and `why` when the rank is not known statically
   */
  rank(value: string, why: string): number;
  /** A constant forward input (initializer or Constant node) as numbers, or undefined when not constant. */
  constantValues(value: string): number[] | undefined;
  /**
   * Dims [start, end) of `value`: static numbers when all are known, else a Shape node. Shape nodes are
   * placed in the forward part of the graph, so reading a shape never keeps an activation alive and need
   * not be declared in `saves`.
   */
  shapeOf(value: string, start?: number, end?: number): ShapeLike;
  /** Concatenates shapes into one 1-D int64 value (a constant when all parts are static). */
  shapeCat(...parts: ShapeLike[]): string;
  /**
   * Sums gradient `g` (of dims `gDims`) down to the shape of `x`, undoing numpy broadcasting: the engine's
   * one implementation, also used for the rows' `broadcast` slots.
   */
  sumToShape(g: string, gDims: Dims | undefined, x: string): string;
  /**
   * Throws LowbitError UNSUPPORTED_MODEL for this node with `why` (an attribute combination the rule
   * cannot differentiate) and `hint`.
   */
  fail(why: string, hint?: string): never;
}

/**
 * The gradient rule of one op type. Given the forward node, the gradients of its outputs (undefined
 * where none flows) and the context, `grad` returns one gradient per input: a value name, or null when
 * the input gets none (integer inputs: shapes, axes, indices; inputs not differentiated).
 */
export interface GradRule {
  /**
   * Forward values the backward nodes read (tfjs's inputsToSave / outputsToSave): these activations stay
   * alive until the backward pass. The engine checks that a rule reads nothing else.
   */
  readonly saves: { readonly inputs?: readonly number[]; readonly outputs?: readonly number[] };
  /**
   * Input slots whose returned gradient has the shape of output 0 (numpy broadcasting); the engine sums
   * them down to the input's shape ('all' for variadic ops such as Sum).
   */
  readonly broadcast?: readonly number[] | 'all';
  /**
   * Output slots that carry a gradient although they are not float (QuantizeLinear's integer output: its
   * gradient is a float tensor of the same shape, so a fake-quant pair differentiates op by op).
   */
  readonly carries?: readonly number[];
  grad(node: NodeProto, dy: readonly (string | undefined)[], ctx: GradContext): (string | null)[];
}

/** Gradient rules by op type (default domain; other domains as 'domain:OpType'). Missing = not differentiable. */
export type GradTable = Readonly<Partial<Record<string, GradRule>>>;

/**
 * Merges family tables into one.
 * @throws LowbitError INTERNAL when two tables define the same op type
 */
export function mergeGradTables(...tables: GradTable[]): GradTable {
  const out: Partial<Record<string, GradRule>> = {};
  for (const t of tables) {
    for (const [op, rule] of Object.entries(t)) {
      if (Object.hasOwn(out, op)) throw new LowbitError('INTERNAL', `gradient rule for '${op}' is defined twice`);
      out[op] = rule;
    }
  }
  return Object.freeze(out);
}
