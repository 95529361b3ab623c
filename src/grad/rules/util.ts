// Rule combinators and small emit helpers shared by the gradient rule tables. Pure; rules/*.ts import this.

import { type AttrValue, attrString, floatAttr, getAttribute } from '../../onnx/attributes.js';
import { AttributeType, type NodeProto } from '../../onnx/proto.js';
import type { GradContext, GradRule } from '../types.js';

type Saves = GradRule['saves'];

/** [from, from+1, ..., n-1]. */
export const range = (n: number, from = 0): number[] => Array.from({ length: Math.max(0, n - from) }, (_, i) => from + i);

/** A negative axis counted from the end. */
export const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

/** The other inputs of a node get no gradient. */
const onlyFirst = (n: NodeProto, g: string | null): (string | null)[] => n.input.map((_, i) => (i === 0 ? g : null));

/** A one-input (or first-input-only) op: dx = f(dy). */
export function unary(saves: Saves, f: (dy: string, n: NodeProto, c: GradContext) => string): GradRule {
  return { saves, grad: (n, [dy], c) => onlyFirst(n, f(dy!, n, c)) };
}

/** y = x: dx = dy (Identity, inference Dropout). */
export const passthrough: GradRule = { saves: {}, grad: (n, [dy]) => onlyFirst(n, dy!) };

/** A pure reshape (Reshape, Flatten, Squeeze, Unsqueeze): dx = Reshape(dy, shape(x)). */
export const reshapeBack: GradRule = {
  saves: {},
  grad: (n, [dy], c) => onlyFirst(n, c.emit('Reshape', [dy!, c.shapeCat(c.shapeOf(n.input[0]!))])),
};

/** A two-input broadcasting op; `fa`/`fb` give the gradient at the output's shape (the engine reduces). */
export function binary(saves: Saves, fa: ((dy: string, n: NodeProto, c: GradContext) => string) | null, fb: ((dy: string, n: NodeProto, c: GradContext) => string) | null): GradRule {
  return {
    saves,
    broadcast: [0, 1],
    grad: (n, [dy], c) => [fa && c.wants(0) ? fa(dy!, n, c) : null, fb && c.wants(1) ? fb(dy!, n, c) : null],
  };
}

/** ReduceSum over `axes` (input since opset 13). */
export function reduceSum(c: GradContext, v: string, axes: readonly number[], keepdims: boolean): string {
  return c.emit('ReduceSum', [v, c.ints(axes)], { keepdims: keepdims ? 1 : 0 });
}

/** ReduceMean over `axes` (attribute before opset 18, input from 18). */
export function reduceMean(c: GradContext, v: string, axes: readonly number[], keepdims: boolean): string {
  const k = keepdims ? 1 : 0;
  return c.opset >= 18 ? c.emit('ReduceMean', [v, c.ints(axes)], { keepdims: k }) : c.emit('ReduceMean', [v], { axes, keepdims: k });
}

/** Where(cond, a, 0). */
export function maskOr0(c: GradContext, cond: string, a: string, like: string): string {
  return c.emit('Where', [cond, a, c.scalar(0, like)]);
}

/** Zeros with the shape of `v` (a forward value or gradient). */
export function zerosLike(c: GradContext, v: string, like: string): string {
  return c.emit('Expand', [c.scalar(0, like), c.shapeCat(c.shapeOf(v))]);
}

/** x cast to the element type of `like`. */
export function castLike(c: GradContext, x: string, like: string): string {
  return c.elemType(x) === c.elemType(like) ? x : c.emit('Cast', [x], { to: c.elemType(like) ?? c.fail(`the element type of '${like}' is unknown`) });
}

/** Multiplies by a constant (skipped when it is 1). */
export function scaleBy(c: GradContext, v: string, k: number, like: string): string {
  return k === 1 ? v : c.emit('Mul', [v, c.scalar(k, like)]);
}

/** The node's attributes among `names`, as values for emit (to rebuild a node with the same settings). */
export function copyAttrs(n: NodeProto, names: readonly string[]): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const name of names) {
    const a = getAttribute(n, name);
    if (!a) continue;
    if (a.type === AttributeType.INTS) out[name] = a.ints;
    else if (a.type === AttributeType.INT) out[name] = a.i ?? 0n;
    else if (a.type === AttributeType.FLOAT) out[name] = floatAttr(a.f ?? 0);
    else if (a.type === AttributeType.STRING) out[name] = attrString(n, name, '');
  }
  return out;
}
