// External tensor data, pure part: reading external_data entries, validating their locations
// (relative, no escaping `..`), visiting / replacing every tensor of a model, and laying out side
// files (one, or shards) without reading any tensor.
// Pure; the file-system side is src/io/model-file.ts.

import { LowbitError } from '../errors.js';
import { PROTOBUF_MAX_BYTES, encodedModelSize } from './encode.js';
import { withoutDeferred } from './deferred.js';
import { tensorByteLength, tensorBytes } from './tensor.js';
import { DataLocation, type AttributeProto, type GraphProto, type ModelProto, type SparseTensorProto, type TensorProto } from './proto.js';

/** Where an external tensor's bytes are: `length` undefined means "to the end of the file". */
export interface ExternalDataInfo {
  /** Normalised relative POSIX path (validated by validateLocation). */
  location: string;
  offset: number;
  length?: number;
  checksum?: string;
}

/** True when the tensor's data lives in an external file. */
export function isExternal(t: TensorProto): boolean {
  return t.dataLocation === DataLocation.EXTERNAL;
}

const unsafe = (location: string, why: string): LowbitError =>
  new LowbitError('UNSAFE_PATH', `external data location '${location.replace(/\0/g, '\\0')}' is unsafe: ${why}`, 'external data must be a relative path inside the model folder; the model file may be malicious, or was edited by hand');

/**
 * Checks an external_data location and returns it normalised ('a/./b/../c.bin' -> 'a/c.bin').
 * Accepts '/' and '\' as separators (Windows exporters write the latter).
 * @throws LowbitError UNSAFE_PATH for absolute paths, drive letters, NUL bytes, empty paths and `..` escaping the folder
 */
export function validateLocation(location: string): string {
  if (typeof location !== 'string' || location.length === 0) throw unsafe(String(location), 'it is empty');
  if (location.includes('\0')) throw unsafe(location, 'it contains a NUL byte');
  if (/^[/\\]/.test(location)) throw unsafe(location, 'it is an absolute path');
  if (/^[A-Za-z]:/.test(location)) throw unsafe(location, 'it starts with a drive letter');
  const parts: string[] = [];
  for (const seg of location.split(/[/\\]/)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length === 0) throw unsafe(location, 'it points outside the model folder');
      parts.pop();
    } else parts.push(seg);
  }
  if (parts.length === 0) throw unsafe(location, 'it names the model folder itself, not a file');
  return parts.join('/');
}

function parseCount(t: TensorProto, key: string, value: string): number {
  if (!/^\d+$/.test(value.trim())) {
    throw new LowbitError('EXTERNAL_DATA', `tensor '${t.name ?? ''}' has external_data ${key} '${value}', which is not a non-negative integer`, 'the model file is corrupt');
  }
  const n = Number(value.trim());
  if (!Number.isSafeInteger(n)) throw new LowbitError('EXTERNAL_DATA', `tensor '${t.name ?? ''}' has external_data ${key} ${value}, which is too large`, 'the model file is corrupt');
  return n;
}

/**
 * Reads the external_data entries of a tensor (keys location, offset, length, checksum).
 * @throws LowbitError EXTERNAL_DATA when location is missing or offset/length are not integers, UNSAFE_PATH (see validateLocation)
 */
export function externalDataInfo(t: TensorProto): ExternalDataInfo {
  let location: string | undefined;
  let offset = 0;
  let length: number | undefined;
  let checksum: string | undefined;
  for (const { key, value = '' } of t.externalData ?? []) {
    if (key === 'location') location = value;
    else if (key === 'offset') offset = parseCount(t, key, value);
    else if (key === 'length') length = parseCount(t, key, value);
    else if (key === 'checksum') checksum = value;
  }
  if (location === undefined) {
    throw new LowbitError('EXTERNAL_DATA', `tensor '${t.name ?? ''}' is marked external but has no 'location' in external_data`, 'the model file is corrupt; re-export it');
  }
  const info: ExternalDataInfo = { location: validateLocation(location), offset };
  if (length !== undefined) info.length = length;
  if (checksum !== undefined) info.checksum = checksum;
  return info;
}

/** A copy of `t` whose data is external at `info` (raw_data, typed fields and deferred data dropped). */
export function toExternal(t: TensorProto, info: ExternalDataInfo): TensorProto {
  const { rawData: _r, floatData: _f, int32Data: _i, int64Data: _l, doubleData: _d, uint64Data: _u, ...rest } = withoutDeferred(t);
  const entries = [
    { key: 'location', value: info.location },
    { key: 'offset', value: String(info.offset) },
  ];
  if (info.length !== undefined) entries.push({ key: 'length', value: String(info.length) });
  if (info.checksum !== undefined) entries.push({ key: 'checksum', value: info.checksum });
  return { ...rest, externalData: entries, dataLocation: DataLocation.EXTERNAL };
}

/** A copy of `t` holding `bytes` in raw_data, no longer external (nor deferred). */
export function toInline(t: TensorProto, bytes: Uint8Array): TensorProto {
  const { dataLocation: _loc, ...rest } = withoutDeferred(t);
  return { ...rest, rawData: bytes, externalData: [] };
}

/** What a visited tensor is: a graph initializer (the only kind exporters move to external files by default) or another tensor. */
export type TensorRole = 'initializer' | 'sparse-initializer' | 'attribute';

/** Replaces a tensor (return it unchanged to keep it). */
export type TensorMapper = (t: TensorProto, role: TensorRole) => TensorProto;

function mapList<T>(list: T[] | undefined, f: (x: T) => T): T[] | undefined {
  if (!list) return list;
  let out: T[] | undefined;
  for (let i = 0; i < list.length; i++) {
    const y = f(list[i]);
    if (y !== list[i]) (out ??= list.slice())[i] = y;
  }
  return out ?? list;
}

/** Shallow copy of `obj` with `changes` applied, or `obj` itself when nothing changed. */
function patch<T extends object>(obj: T, changes: Partial<T>): T {
  let out: T | undefined;
  for (const k of Object.keys(changes) as (keyof T)[]) if (changes[k] !== obj[k]) (out ??= { ...obj })[k] = changes[k] as T[keyof T];
  return out ?? obj;
}

function mapSparse(s: SparseTensorProto, role: TensorRole, f: TensorMapper): SparseTensorProto {
  return patch(s, { values: s.values && f(s.values, role), indices: s.indices && f(s.indices, role) });
}

function mapAttribute(a: AttributeProto, f: TensorMapper): AttributeProto {
  return patch(a, {
    t: a.t && f(a.t, 'attribute'),
    g: a.g && mapGraph(a.g, f),
    sparseTensor: a.sparseTensor && mapSparse(a.sparseTensor, 'attribute', f),
    tensors: mapList(a.tensors, (t) => f(t, 'attribute')),
    graphs: mapList(a.graphs, (g) => mapGraph(g, f)),
    sparseTensors: mapList(a.sparseTensors, (s) => mapSparse(s, 'attribute', f)),
  });
}

function mapGraph(g: GraphProto, f: TensorMapper): GraphProto {
  return patch(g, {
    initializer: mapList(g.initializer, (t) => f(t, 'initializer')),
    sparseInitializer: mapList(g.sparseInitializer, (s) => mapSparse(s, 'sparse-initializer', f)),
    node: mapList(g.node, (n) => patch(n, { attribute: mapList(n.attribute, (a) => mapAttribute(a, f)) })),
  });
}

/**
 * Applies `f` to every tensor of the model: initializers and sparse initializers of the main
 * graph, of every subgraph (If/Loop/Scan bodies, at any depth) and of training-info graphs, and
 * tensor attributes of nodes and functions. Copy-on-write: the input is never mutated; objects
 * on the path to a replaced tensor are shallow-copied, everything else is shared.
 */
export function mapTensors(model: ModelProto, f: TensorMapper): ModelProto {
  return patch(model, {
    graph: model.graph && mapGraph(model.graph, f),
    trainingInfo: mapList(model.trainingInfo, (ti) => patch(ti, { initialization: ti.initialization && mapGraph(ti.initialization, f), algorithm: ti.algorithm && mapGraph(ti.algorithm, f) })),
    functions: mapList(model.functions, (fn) =>
      patch(fn, {
        node: mapList(fn.node, (n) => patch(n, { attribute: mapList(n.attribute, (a) => mapAttribute(a, f)) })),
        attributeProto: mapList(fn.attributeProto, (a) => mapAttribute(a, f)),
      }),
    ),
  });
}

/** Calls `fn` on every tensor of the model (same coverage as mapTensors). */
export function forEachTensor(model: ModelProto, fn: (t: TensorProto, role: TensorRole) => void): void {
  mapTensors(model, (t, role) => {
    fn(t, role);
    return t;
  });
}

/** Raw-data size of a tensor that may move to external data, or undefined (strings, unknown types, already external). */
function movableBytes(t: TensorProto): number | undefined {
  if (isExternal(t) && !t.rawData) return undefined;
  return tensorByteLength(t);
}

export interface ExternalPlanOptions {
  /** Side-file location relative to the model folder (validated). With shards, the first shard's. */
  location: string;
  /** Initializers of at least this many bytes move out. */
  threshold: number;
  /** Offsets are multiples of this. */
  alignment: number;
  /** Move them out even when the model fits under `limit`. */
  force?: boolean;
  /** Serialized-size limit; default protobuf's 2 GiB. */
  limit?: number;
  /**
   * Largest side file in bytes: tensors go to `location`, `location_1`, `location_2`, ... (shardLocation), a new
   * shard starting when the next tensor would not fit. A tensor larger than this gets a shard of its own. Default:
   * one file.
   */
  shardSize?: number;
}

/** One tensor's place in a side file; `read` gives its bytes at write time (read from disk or produced, for deferred tensors). */
export interface ExternalItem {
  tensorName: string;
  offset: number;
  length: number;
  read: () => Uint8Array;
}

/** One side file: its location (relative to the model folder), its tensors in offset order, and its size. */
export interface ExternalShard {
  location: string;
  items: ExternalItem[];
  bytes: number;
}

/** The model to serialize (external tensors point into the shards) and the side files to write. */
export interface ExternalShardPlan {
  model: ModelProto;
  shards: ExternalShard[];
  /** Total bytes of all shards. */
  dataBytes: number;
}

/** The name of shard `index`: the location itself for 0, then `location_1`, `location_2`, ... (transformers.js's `model.onnx_data`, `model.onnx_data_1`, ...). */
export function shardLocation(location: string, index: number): string {
  return index === 0 ? location : `${location}_${index}`;
}

/**
 * Lays out external data without reading any tensor: none when the model fits under the limit (and `force` is
 * off), else every initializer (at any graph depth) of `threshold`+ bytes, at aligned offsets, in one side file or
 * in shards of at most `shardSize` bytes. Deferred tensors (src/onnx/deferred.ts) are sized from their source and
 * read only by the items' `read`. The input model is not mutated.
 * @throws LowbitError UNSAFE_PATH for a bad location, BAD_OPTION for a bad shardSize, UNSUPPORTED_MODEL when the
 *   model is still too big
 */
export function planExternalShards(model: ModelProto, opts: ExternalPlanOptions): ExternalShardPlan | undefined {
  const limit = opts.limit ?? PROTOBUF_MAX_BYTES;
  if (opts.shardSize !== undefined && (!Number.isSafeInteger(opts.shardSize) || opts.shardSize < 1)) {
    throw new LowbitError('BAD_OPTION', `shardSize must be a positive integer number of bytes, got ${opts.shardSize}`, 'pass e.g. 536870912 (512 MiB)');
  }
  if (!opts.force && encodedModelSize(model) <= limit) return undefined;
  const base = validateLocation(opts.location);
  const shards: ExternalShard[] = [];
  let shard: ExternalShard | undefined;
  let dataBytes = 0;
  const out = mapTensors(model, (t, role) => {
    const length = role === 'initializer' ? movableBytes(t) : undefined;
    if (!length || length < opts.threshold) return t;
    let offset = shard ? Math.ceil(shard.bytes / opts.alignment) * opts.alignment : 0;
    if (!shard || (opts.shardSize !== undefined && shard.items.length > 0 && offset + length > opts.shardSize)) {
      shard = { location: validateLocation(shardLocation(base, shards.length)), items: [], bytes: 0 };
      shards.push(shard);
      offset = 0;
    }
    shard.items.push({ tensorName: t.name ?? '', offset, length, read: () => tensorBytes(t) });
    dataBytes += offset + length - shard.bytes;
    shard.bytes = offset + length;
    return toExternal(t, { location: shard.location, offset, length });
  });
  const size = encodedModelSize(out);
  if (size > limit) {
    throw new LowbitError('UNSUPPORTED_MODEL', `the model is still ${size} bytes with initializers of ${opts.threshold}+ bytes moved to external data, over the ${limit}-byte limit`, 'lower externalDataThreshold');
  }
  return { model: out, shards, dataBytes };
}

/** The model to serialize, and the byte ranges of the side file. */
export interface ExternalPlan {
  model: ModelProto;
  location: string;
  chunks: { offset: number; bytes: Uint8Array }[];
  /** Side-file size in bytes. */
  dataBytes: number;
}

/**
 * Decides which initializers go to a side file: none when the model fits under the limit (and
 * `force` is off), else every initializer (at any graph depth) of `threshold`+ bytes, at
 * aligned offsets. The input model is not mutated. Holds every moved tensor's bytes (deferred
 * ones are read): for big models use planExternalShards, which reads nothing.
 * @throws LowbitError UNSAFE_PATH for a bad location, UNSUPPORTED_MODEL when the model is still too big
 */
export function planExternalData(model: ModelProto, opts: Omit<ExternalPlanOptions, 'shardSize'>): ExternalPlan | undefined {
  const plan = planExternalShards(model, { ...opts, shardSize: undefined });
  if (!plan) return undefined;
  const chunks = (plan.shards[0]?.items ?? []).map((it) => ({ offset: it.offset, bytes: it.read() }));
  return { model: plan.model, location: validateLocation(opts.location), chunks, dataBytes: plan.dataBytes };
}
