// Reading and writing NodeProto attributes with ONNX defaults, numbers instead of bigints.
// Pure; imported by the IR, the builder, passes and rules.

import { LowbitError } from '../errors.js';
import { decodeUtf8, encodeUtf8 } from './wire.js';
import { AttributeType, type AttributeProto, type GraphProto, type NodeProto, type TensorProto } from './proto.js';


/** A float attribute value: JS cannot tell `1.0` from `1`, so floats that happen to be integral are wrapped. */
export interface FloatAttr {
  readonly kind: 'float';
  readonly value: number;
}
/** Marks a number (or list) as a FLOAT / FLOATS attribute. */
export function floatAttr(value: number): FloatAttr {
  return { kind: 'float', value };
}
export interface FloatsAttr {
  readonly kind: 'floats';
  readonly value: readonly number[];
}
export function floatsAttr(value: readonly number[]): FloatsAttr {
  return { kind: 'floats', value };
}

/** What a builder or pass may give as an attribute value. Integers become INT(S); non-integers FLOAT(S). */
export type AttrValue =
  | number
  | bigint
  | string
  | readonly number[]
  | readonly bigint[]
  | readonly string[]
  | FloatAttr
  | FloatsAttr
  | TensorProto
  | GraphProto;

function emptyAttr(name: string): AttributeProto {
  return { name, floats: [], ints: [], strings: [], tensors: [], graphs: [], sparseTensors: [], typeProtos: [] };
}

function isTensorProto(v: object): v is TensorProto {
  return 'dims' in v && 'externalData' in v;
}

/** Builds an AttributeProto from a plain value (see {@link AttrValue}). */
export function makeAttribute(name: string, value: AttrValue): AttributeProto {
  const a = emptyAttr(name);
  if (typeof value === 'number') {
    if (Number.isInteger(value)) {
      a.type = AttributeType.INT;
      a.i = BigInt(value);
    } else {
      a.type = AttributeType.FLOAT;
      a.f = value;
    }
  } else if (typeof value === 'bigint') {
    a.type = AttributeType.INT;
    a.i = value;
  } else if (typeof value === 'string') {
    a.type = AttributeType.STRING;
    a.s = encodeUtf8(value);
  } else if (Array.isArray(value)) {
    if (value.length > 0 && typeof value[0] === 'string') {
      a.type = AttributeType.STRINGS;
      a.strings = (value as string[]).map((s) => encodeUtf8(s));
    } else if ((value as unknown[]).every((v) => typeof v === 'bigint' || Number.isInteger(v))) {
      a.type = AttributeType.INTS;
      a.ints = (value as (number | bigint)[]).map((v) => BigInt(v));
    } else {
      a.type = AttributeType.FLOATS;
      a.floats = (value as number[]).slice();
    }
  } else if ('kind' in (value as object) && (value as FloatAttr).kind === 'float') {
    a.type = AttributeType.FLOAT;
    a.f = (value as FloatAttr).value;
  } else if ('kind' in (value as object) && (value as FloatsAttr).kind === 'floats') {
    a.type = AttributeType.FLOATS;
    a.floats = (value as FloatsAttr).value.slice();
  } else if (isTensorProto(value as object)) {
    a.type = AttributeType.TENSOR;
    a.t = value as TensorProto;
  } else {
    a.type = AttributeType.GRAPH;
    a.g = value as GraphProto;
  }
  return a;
}

/** The attribute named `name`, or undefined. */
export function getAttribute(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute.find((a) => a.name === name);
}

/** Sets (replacing) an attribute on a node. */
export function setAttribute(node: NodeProto, name: string, value: AttrValue): void {
  const a = makeAttribute(name, value);
  const i = node.attribute.findIndex((x) => x.name === name);
  if (i >= 0) node.attribute[i] = a;
  else node.attribute.push(a);
}

/** Removes an attribute if present. */
export function removeAttribute(node: NodeProto, name: string): void {
  const i = node.attribute.findIndex((x) => x.name === name);
  if (i >= 0) node.attribute.splice(i, 1);
}

function wrongType(node: NodeProto, name: string, want: string): LowbitError {
  return new LowbitError(
    'UNSUPPORTED_MODEL',
    `attribute '${name}' of node '${node.name ?? ''}' (${node.opType}) is not ${want}`,
    'the model does not follow the ONNX spec for this operator; re-export it',
  );
}

/** INT attribute as a number (INT64_MAX becomes 2^63, still "very large"). */
export function attrInt(node: NodeProto, name: string, dflt: number): number;
export function attrInt(node: NodeProto, name: string): number | undefined;
export function attrInt(node: NodeProto, name: string, dflt?: number): number | undefined {
  const a = getAttribute(node, name);
  if (!a) return dflt;
  if (a.i === undefined) {
    if (a.type === AttributeType.INT) return 0; // proto3 default: present with value 0
    throw wrongType(node, name, 'an integer');
  }
  return Number(a.i);
}

/** FLOAT attribute. */
export function attrFloat(node: NodeProto, name: string, dflt: number): number;
export function attrFloat(node: NodeProto, name: string): number | undefined;
export function attrFloat(node: NodeProto, name: string, dflt?: number): number | undefined {
  const a = getAttribute(node, name);
  if (!a) return dflt;
  if (a.f === undefined) {
    if (a.type === AttributeType.FLOAT) return 0;
    throw wrongType(node, name, 'a float');
  }
  return a.f;
}

/** INTS attribute as numbers. */
export function attrInts(node: NodeProto, name: string, dflt: number[]): number[];
export function attrInts(node: NodeProto, name: string): number[] | undefined;
export function attrInts(node: NodeProto, name: string, dflt?: number[]): number[] | undefined {
  const a = getAttribute(node, name);
  if (!a) return dflt;
  return a.ints.map((v) => Number(v));
}

/** FLOATS attribute. */
export function attrFloats(node: NodeProto, name: string): number[] | undefined {
  const a = getAttribute(node, name);
  return a ? a.floats.slice() : undefined;
}

/** STRING attribute decoded as UTF-8. */
export function attrString(node: NodeProto, name: string, dflt: string): string;
export function attrString(node: NodeProto, name: string): string | undefined;
export function attrString(node: NodeProto, name: string, dflt?: string): string | undefined {
  const a = getAttribute(node, name);
  if (!a) return dflt;
  return a.s ? decodeUtf8(a.s) : '';
}

/** TENSOR attribute. */
export function attrTensor(node: NodeProto, name: string): TensorProto | undefined {
  return getAttribute(node, name)?.t;
}
