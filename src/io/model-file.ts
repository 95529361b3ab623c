// Node-side model files: load an .onnx (one read; tensors are views of it) with its external
// data resolved safely (read, left external, or streamed: read on each use), and save
// atomically, writing big initializers tensor by tensor to a side file (or shards) when the
// model would pass protobuf's 2 GiB limit. Imported by pipeline/ and cli/.

import { closeSync, openSync, readFileSync, readSync, realpathSync, statSync, type Stats } from 'node:fs';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { LowbitError } from '../errors.js';
import { decodeModel } from '../onnx/decode.js';
import { encodeModelChunks } from '../onnx/encode.js';
import { deferredData, setDeferred } from '../onnx/deferred.js';
import { externalDataInfo, forEachTensor, isExternal, planExternalShards } from '../onnx/external-data.js';
import type { ModelProto, TensorProto } from '../onnx/proto.js';

export interface LoadOptions {
  /**
   * 'load' (default): read external tensors into rawData. 'lazy': leave them external (unreadable
   * until read with readExternalData()). 'stream': leave the bytes on disk; every read of a tensor's
   * values (tensorStorage, tensorBytes, encoding, saveModel) reads it from the file at that moment
   * and keeps nothing, so a model larger than memory can be converted tensor by tensor. The
   * tensors become deferred (src/onnx/deferred.ts): no longer marked external, their sources are
   * in `externalSources`. Do not replace the data files while the model is in use.
   */
  externalData?: 'load' | 'lazy' | 'stream';
}

/** Where an external tensor's bytes came from. */
export interface ExternalSource {
  tensorName: string;
  /** Absolute (real) path of the data file. */
  file: string;
  /** The location as written in the model. */
  location: string;
  offset: number;
  length: number;
}

export interface LoadedModel {
  model: ModelProto;
  /** Absolute path of the model file. */
  path: string;
  /** Its folder: external locations are relative to it. */
  dir: string;
  /** The file contents; the model's raw_data fields are views of it. */
  bytes: Uint8Array;
  /** External tensors, with where their data is (and was read from, unless lazy). */
  externalSources: ExternalSource[];
}

function ioError(e: unknown, path: string, doing: string): LowbitError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (e instanceof LowbitError) return e;
  if (code === 'ENOENT') return new LowbitError('FILE_NOT_FOUND', `${doing}: '${path}' does not exist`, 'check the path', { cause: e });
  return new LowbitError('BAD_OPTION', `${doing} '${path}' failed: ${(e as Error)?.message ?? String(e)}`, 'check the path and its permissions', { cause: e });
}

function statModel(path: string): Stats {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw ioError(e, path, 'cannot open the model');
  }
  if (st.isDirectory()) {
    throw new LowbitError('FILE_NOT_FOUND', `'${path}' is a folder, not an ONNX model file`, `pass the .onnx file inside it, e.g. '${join(path, 'model.onnx')}'`);
  }
  return st;
}

/** Resolves an external tensor to a real file inside `realDir`, checking bounds. */
function resolveExternal(dir: string, realDir: string, t: TensorProto): ExternalSource {
  const info = externalDataInfo(t);
  const name = t.name ?? '';
  const joined = join(dir, info.location);
  let file: string;
  let size: number;
  try {
    file = realpathSync(joined);
    size = statSync(file).size;
  } catch (e) {
    throw new LowbitError('EXTERNAL_DATA', `external data file '${info.location}' of tensor '${name}' cannot be read: ${(e as Error).message}`, `put the data file next to the model (expected at '${joined}')`, { cause: e });
  }
  // realpath resolves symlinks: a link inside the folder pointing outside it is refused too.
  if (!file.startsWith(realDir.endsWith(sep) ? realDir : realDir + sep)) {
    throw new LowbitError('UNSAFE_PATH', `external data location '${info.location}' of tensor '${name}' resolves to '${file}', outside the model folder '${realDir}'`, 'external data must live inside the model folder (symlinks out of it are refused)');
  }
  const length = info.length ?? size - info.offset;
  if (info.offset + length > size || length < 0) {
    throw new LowbitError('EXTERNAL_DATA', `external data file '${info.location}' has ${size} bytes, but tensor '${name}' needs bytes ${info.offset}..${info.offset + length}`, 'the data file is truncated or belongs to another model');
  }
  return { tensorName: name, file, location: info.location, offset: info.offset, length };
}

function externals(model: ModelProto, dir: string): [TensorProto, ExternalSource][] {
  const out: [TensorProto, ExternalSource][] = [];
  let realDir: string | undefined;
  forEachTensor(model, (t) => {
    if (!isExternal(t)) return;
    realDir ??= realpathSync(dir);
    out.push([t, resolveExternal(dir, realDir, t)]);
  });
  return out;
}

/** The model now owns the bytes: inline them (the decoded model is ours to change). */
function inline(t: TensorProto, bytes: Uint8Array): void {
  t.rawData = bytes;
  t.externalData = [];
  delete t.dataLocation;
}

/** The tensor's bytes stay in the file (already resolved and bounds-checked): read on each use, never kept. */
function stream(t: TensorProto, src: ExternalSource): void {
  setDeferred(t, { byteLength: src.length, file: src.file, read: () => readRangeSync(src) });
}

function plain(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function readRangeSync(src: ExternalSource): Uint8Array {
  const out = new Uint8Array(src.length);
  let fd: number;
  try {
    fd = openSync(src.file, 'r');
  } catch (e) {
    throw new LowbitError('EXTERNAL_DATA', `external data file '${src.location}' of tensor '${src.tensorName}' cannot be read: ${(e as Error).message}`, 'keep the data files next to the model while it is in use', { cause: e });
  }
  try {
    for (let done = 0; done < src.length; ) {
      const n = readSync(fd, out, done, src.length - done, src.offset + done);
      if (n === 0) throw new LowbitError('EXTERNAL_DATA', `external data file '${src.location}' ended early while reading tensor '${src.tensorName}'`, 'the data file is truncated');
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** Reads an external tensor's bytes (for models loaded with externalData: 'lazy'). @throws LowbitError EXTERNAL_DATA, UNSAFE_PATH */
export async function readExternalData(src: ExternalSource): Promise<Uint8Array> {
  const out = new Uint8Array(src.length);
  const fh = await open(src.file, 'r');
  try {
    for (let done = 0; done < src.length; ) {
      const { bytesRead } = await fh.read(out, done, src.length - done, src.offset + done);
      if (bytesRead === 0) throw new LowbitError('EXTERNAL_DATA', `external data file '${src.location}' ended early while reading tensor '${src.tensorName}'`, 'the data file is truncated');
      done += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return out;
}

/**
 * Loads a model file; external data is resolved relative to its folder and read into rawData.
 * @throws LowbitError FILE_NOT_FOUND (missing file, or a folder), NOT_ONNX, TRUNCATED,
 *   EXTERNAL_DATA (missing/short data file), UNSAFE_PATH (location escaping the folder)
 */
export async function loadModel(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const abs = resolve(path);
  statModel(abs);
  let bytes: Uint8Array;
  try {
    bytes = plain(await readFile(abs));
  } catch (e) {
    throw ioError(e, abs, 'cannot read the model');
  }
  const [loaded, found] = decodeLoaded(abs, bytes);
  if (opts.externalData === 'stream') for (const [t, src] of found) stream(t, src);
  else if (opts.externalData !== 'lazy') for (const [t, src] of found) inline(t, await readExternalData(src));
  return loaded;
}

/** Synchronous loadModel. @throws LowbitError as loadModel */
export function loadModelSync(path: string, opts: LoadOptions = {}): LoadedModel {
  const abs = resolve(path);
  statModel(abs);
  let bytes: Uint8Array;
  try {
    bytes = plain(readFileSync(abs));
  } catch (e) {
    throw ioError(e, abs, 'cannot read the model');
  }
  const [loaded, found] = decodeLoaded(abs, bytes);
  if (opts.externalData === 'stream') for (const [t, src] of found) stream(t, src);
  else if (opts.externalData !== 'lazy') for (const [t, src] of found) inline(t, readRangeSync(src));
  return loaded;
}

/** Decodes and resolves (but does not read) external data, so 'lazy' callers get the sources too. */
function decodeLoaded(abs: string, bytes: Uint8Array): [LoadedModel, [TensorProto, ExternalSource][]] {
  const model = decodeModel(bytes);
  const dir = dirname(abs);
  const found = externals(model, dir);
  return [{ model, path: abs, dir, bytes, externalSources: found.map(([, src]) => src) }, found];
}

export interface SaveOptions {
  /** Initializers of at least this many bytes go to the side file when one is needed. Default 1 MiB. */
  externalDataThreshold?: number;
  /** Side file name, relative to the model's folder. Default `<model file name>.data`. */
  externalDataName?: string;
  /**
   * true: write external data even when the model would fit in 2 GiB. false: only past 2 GiB. Default: external
   * data when tensors are streamed from an input's data file, when deferred tensors total over 256 MiB (writing them
   * inline would hold them all), or with `shardSize`; else only past 2 GiB.
   */
  forceExternal?: boolean;
  /** The file the model was loaded from: saving over it is refused. */
  inputPath?: string;
  /** Offsets in the side file are multiples of this (mmap-friendly, as ONNX Runtime expects). Default 4096. */
  alignment?: number;
  /**
   * Split the side data into files of at most this many bytes: `<name>`, `<name>_1`, `<name>_2`, ... with `<name>`
   * defaulting to `<model file name>_data` (transformers.js's `model.onnx_data`, `model.onnx_data_1`, ..., loaded
   * with `use_external_data_format: <shard count>`). A tensor larger than this gets a file of its own. Browsers
   * need each file under 2 GiB. Does not by itself move data out of a model that fits (see forceExternal).
   */
  shardSize?: number;
  /** Called after each external tensor is written, with bytes written so far and the total. */
  onProgress?: (doneBytes: number, totalBytes: number) => void;
}

export interface SaveResult {
  path: string;
  bytes: number;
  /** Set when a side file was written: the first one. */
  dataPath?: string;
  /** Bytes of all side files together. */
  dataBytes?: number;
  /** Every side file written, in order (one unless shardSize split them). */
  dataPaths?: string[];
  externalTensors: number;
}

function sameFile(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** Writes through a temp file in the target's folder, fsyncs, then renames over the target. */
async function writeAtomic(target: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, target);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await rm(tmp, { force: true }).catch(() => undefined);
    if ((e as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw new LowbitError('FILE_NOT_FOUND', `cannot write '${target}': folder '${dirname(target)}' does not exist`, 'create the output folder first', { cause: e });
    }
    throw ioError(e, target, 'cannot write');
  }
  // Persist the rename itself (best effort: not every platform can fsync a folder).
  try {
    const dh = await open(dirname(target), 'r');
    await dh.sync().catch(() => undefined);
    await dh.close();
  } catch {
    /* ignore */
  }
}

type FileHandle = Awaited<ReturnType<typeof open>>;

async function writeChunks(fh: FileHandle, chunks: { offset: number; bytes: Uint8Array }[]): Promise<void> {
  for (const { offset, bytes } of chunks) {
    for (let done = 0; done < bytes.length; ) done += (await fh.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
  }
}

/**
 * Saves a model atomically. Initializers of at least `externalDataThreshold` bytes go to external
 * data when the model would pass protobuf's 2 GiB limit, when it holds tensors streamed from a
 * data file or over 256 MiB of deferred tensors (src/onnx/deferred.ts; `forceExternal: false` keeps
 * them inline), with `shardSize`, or always with `forceExternal`. External data goes to `<name>.data`, or to shards of at
 * most `shardSize` bytes (`<name>_data`, `<name>_data_1`, ...), offsets aligned. Tensors are
 * written one at a time (read or produced, written, dropped), each side file through a temp file
 * and rename, before the model file, so a model on disk never points at missing data: peak memory
 * is the largest tensor plus the model without its data. Side files left by an earlier save with
 * more shards are not removed. The caller's model is not mutated.
 * @throws LowbitError SAME_INPUT_OUTPUT (the model, or a data file a streamed tensor is read
 *   from), BAD_OPTION, UNSAFE_PATH (externalDataName), EXTERNAL_DATA (tensors still external, from
 *   a lazy load, or a streamed file that can no longer be read), UNSUPPORTED_MODEL (too big even so)
 */
/** Deferred tensors of at most this many bytes in all may be read into an inline model (see saveModel). */
const DEFERRED_INLINE_MAX_BYTES = 256 * 1024 * 1024;

export async function saveModel(model: ModelProto, path: string, opts: SaveOptions = {}): Promise<SaveResult> {
  const out = resolve(path);
  const threshold = opts.externalDataThreshold ?? 1024 * 1024;
  const alignment = opts.alignment ?? 4096;
  if (!Number.isSafeInteger(threshold) || threshold < 0) throw new LowbitError('BAD_OPTION', `externalDataThreshold must be a non-negative integer, got ${threshold}`, 'pass a size in bytes, e.g. 1048576');
  if (!Number.isSafeInteger(alignment) || alignment < 1) throw new LowbitError('BAD_OPTION', `alignment must be a positive integer, got ${alignment}`, 'use 4096 (the page size)');
  if (opts.shardSize !== undefined && (!Number.isSafeInteger(opts.shardSize) || opts.shardSize < 1)) {
    throw new LowbitError('BAD_OPTION', `shardSize must be a positive integer number of bytes, got ${opts.shardSize}`, 'pass e.g. 536870912 (512 MiB); browsers need files under 2 GiB');
  }
  if (!statSync(dirname(out), { throwIfNoEntry: false })?.isDirectory()) {
    throw new LowbitError('FILE_NOT_FOUND', `cannot write '${out}': folder '${dirname(out)}' does not exist`, 'create the output folder first');
  }
  if (opts.inputPath !== undefined && sameFile(resolve(opts.inputPath), out)) {
    throw new LowbitError('SAME_INPUT_OUTPUT', `refusing to overwrite the input model '${out}'`, 'choose a different output path');
  }
  const sources = new Set<string>();
  let deferredBytes = 0;
  forEachTensor(model, (t) => {
    if (isExternal(t) && !t.rawData) throw new LowbitError('EXTERNAL_DATA', `tensor '${t.name ?? ''}' still refers to external data that was not loaded`, "load the model with loadModel() (not externalData: 'lazy') before saving it");
    const d = deferredData(t);
    if (d) {
      deferredBytes += d.byteLength;
      if (d.file) sources.add(d.file);
    }
  });

  const location = opts.externalDataName ?? (opts.shardSize !== undefined ? `${basename(out)}_data` : `${basename(out)}.data`);
  // External data by default when tensors are streamed from an input's data file (external in, external out), when
  // deferred tensors are too many bytes to read into one encoded model, or when shards were asked for; a small model
  // whose deferred tensors a pass produced is written inline.
  const force = opts.forceExternal ?? (sources.size > 0 || deferredBytes > DEFERRED_INLINE_MAX_BYTES || opts.shardSize !== undefined);
  const plan = planExternalShards(model, { location, threshold, alignment, force, shardSize: opts.shardSize });
  const dataPaths: string[] = [];
  if (plan) {
    const total = plan.dataBytes;
    let done = 0;
    for (const shard of plan.shards) {
      const dataPath = join(dirname(out), shard.location);
      if (dataPath === out) throw new LowbitError('BAD_OPTION', `externalDataName '${shard.location}' is the model file itself`, 'use e.g. model.onnx.data');
      for (const src of sources) {
        if (sameFile(src, dataPath)) {
          throw new LowbitError('SAME_INPUT_OUTPUT', `refusing to overwrite '${dataPath}': tensors of the model are still read from it`, 'save next to another model name, or to another folder');
        }
      }
      if (shard.location.includes('/')) await mkdir(dirname(dataPath), { recursive: true });
      // Side files go first, so a model on disk never points at missing data.
      await writeAtomic(dataPath, async (fh) => {
        for (const item of shard.items) {
          await writeChunks(fh, [{ offset: item.offset, bytes: item.read() }]);
          done += item.length;
          opts.onProgress?.(done, total);
        }
      });
      dataPaths.push(dataPath);
    }
  }
  // The model without its external data; small deferred tensors are read into it here.
  const parts = encodeModelChunks(plan?.model ?? model);
  let size = 0;
  const chunks = parts.map((bytes) => ({ offset: (size += bytes.length) - bytes.length, bytes }));
  await writeAtomic(out, (fh) => writeChunks(fh, chunks));
  const externalTensors = plan?.shards.reduce((n, s) => n + s.items.length, 0) ?? 0;
  const result: SaveResult = { path: out, bytes: size, externalTensors };
  if (dataPaths.length > 0) {
    result.dataPath = dataPaths[0];
    result.dataBytes = plan?.dataBytes;
    result.dataPaths = dataPaths;
  }
  return result;
}
