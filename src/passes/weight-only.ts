// Weight-only blockwise quantization: MatMul and Gemm weights quantized to 2, 4 or 8 bits in blocks along K,
// activations left float. Three output forms: com.microsoft MatMulNBits (ONNX Runtime's weight-only kernel); the
// standard blocked DequantizeLinear (opset 21) feeding a float MatMul; or the codes unpacked to float by standard
// Cast / Gather / Sub / Mul nodes on constants, which ONNX Runtime folds when the session loads (download size of
// the codes, speed and memory of float32). Pure; used by pipeline/.

import { attrFloat, attrInt, makeAttribute } from '../onnx/attributes.js';
import { MS_DOMAIN, makeNode, type Graph, type Model } from '../onnx/ir.js';
import { DataType, type NodeProto, type TensorProto } from '../onnx/proto.js';
import { dataTypeName, deferTensor, dimsOf, makeTensor, type TensorStorage } from '../onnx/tensor.js';
import { LowbitError } from '../errors.js';
import { checkBlockwiseOptions, kBlocks, packMatMulNBits, quantizeBlockwiseRtn, toBlockedDequantize, type BlockBits, type BlockQuantized } from '../quant/blockwise.js';
import { float32ArrayToFloat16 } from '../quant/float16.js';
import { quantizeBlockwiseHqq } from '../quant/hqq.js';
import { cloneModel } from './preprocess.js';
import { cloneModelDeep, hasBodies } from './qdq-subgraph.js';
import { constantTensor, readFloatConstant, removeIfUnused, tensorFloat32, transpose2d } from './quant-weight.js';
import { upgradeOpset } from './rules/qdq/opset.js';
import { definingGraph, nodePath, touchScopes, weightScopes } from './graph-scopes.js';
import { addUnpackChain, codeDataType, packCodes } from './unpack-on-load.js';


/** Data-free algorithms: round-to-nearest, or HQQ's optimised zero points and scales (src/quant/hqq.ts). */
export const WEIGHT_ONLY_ALGORITHMS = ['rtn', 'hqq'] as const;
export type WeightOnlyAlgorithm = (typeof WEIGHT_ONLY_ALGORITHMS)[number];

/**
 * matmulnbits: com.microsoft MatMulNBits; qdq: DequantizeLinear (blocked, opset 21) -> MatMul; unpack-on-load:
 * (Cast(codes) - zero point) * scale from constants -> MatMul, folded to a float32 weight by ONNX Runtime's constant
 * folding when the session is created. ORT does not fold DequantizeLinear and fuses it with the MatMul into
 * MatMulNBits, which onnxruntime-web's WebAssembly build runs 14-25x slower than float32; the unpacked form runs
 * at float32 speed there (measured: 6-layer d=512 transformer, one token, 1.08x in wasm, 0.96x in onnxruntime-node).
 * Constant folding is a basic graph optimization (ORT's default level); with optimizations disabled the chain would
 * run on every inference.
 */
export const WEIGHT_ONLY_FORMATS = ['matmulnbits', 'qdq', 'unpack-on-load'] as const;
export type WeightOnlyFormat = (typeof WEIGHT_ONLY_FORMATS)[number];

/** MatMulNBits' accuracy_level values: 0 unset (the kernel's default), 1 fp32, 2 fp16, 3 bf16, 4 int8 compute of A. */
export const ACCURACY_LEVELS = [0, 1, 2, 3, 4] as const;

/** Options of {@link quantizeWeightOnly}. */
export interface WeightOnlyOptions {
  bits: BlockBits;
  /** Rows of B per block: a power of two in 16..256. */
  blockSize: number;
  /** Zero point fixed at 2^(bits-1) (no zero_points input); default false (one zero point per block). rtn only. */
  symmetric?: boolean;
  /** Default 'rtn'. 'hqq' is asymmetric. */
  algorithm?: WeightOnlyAlgorithm;
  /**
   * Overrides `algorithm`: quantizes one weight (B as row-major [K, N] float32) to a BlockQuantized with these bits
   * and block size (GPTQ plugs in here). Called once per distinct weight (with `defer`: when its outputs are first
   * read, i.e. while the model is saved).
   */
  quantizeWeight?: (name: string, w: Float32Array, K: number, N: number) => BlockQuantized;
  /** The algorithm name the report gives `quantizeWeight` results (default 'custom'), e.g. 'gptq'. */
  quantizeWeightName?: string;
  /** Default 'matmulnbits'. */
  format?: WeightOnlyFormat;
  /** MatMulNBits accuracy_level (0..4, default 0: attribute left out). matmulnbits format only. */
  accuracyLevel?: number;
  /** Node names to leave float (a node inside an If/Loop/Scan body: its name or its report path, see nodePath). */
  excludeNodes?: string[];
  /** Op types to leave float ('MatMul', 'Gemm'). */
  excludeOps?: string[];
  /**
   * Make each quantized weight's output tensors (MatMulNBits B, scales, zero_points; or the DequantizeLinear
   * codes, scale, zero point) deferred tensors (src/onnx/deferred.ts): their shapes and types are set now, their
   * bytes produced when read — saveModel writes them one at a time, so with a model loaded with
   * `externalData: 'stream'` no weight, float or quantized, is held beyond the one being written. One quantization
   * of a weight produces all its outputs; they are kept until each has been read once, then dropped (a later read
   * quantizes again: with `quantizeWeight` the hook is then called again). The report is complete at once; errors
   * of the quantization (NON_FINITE for NaN/Infinity weights, BAD_DATA / EXTERNAL_DATA for unreadable ones, the
   * hook's) are thrown when the tensors are read, i.e. by saveModel. A `quantizeWeight` result must have the
   * `symmetric` of the options (the zero-point tensors are laid out before it runs). Default false: bytes written
   * are the same either way.
   */
  defer?: boolean;
  /**
   * Visit If/Loop/Scan bodies too (at every depth; default true): a MatMul / Gemm in a body whose weight is a
   * constant of the body or of an enclosing graph is rewritten in place, its quantized tensors stored once in the
   * graph that owns the float weight (see {@link quantizeWeightOnly}).
   */
  subgraphs?: boolean;
}

export interface WeightOnlyEntry {
  /** The node's name; inside an If/Loop/Scan body prefixed by the path of bodies, see {@link nodePath}. */
  node: string;
  opType: string;
}

/** What was quantized (form, K, N) and what was left float (and why). */
export interface WeightOnlyReport {
  quantized: (WeightOnlyEntry & { form: string; K: number; N: number })[];
  skipped: (WeightOnlyEntry & { reason: string })[];
}

/** Weight-only options checked, with their defaults (the `quantizeWeight` hook aside). */
export type CheckedWeightOnlyOptions = Required<Omit<WeightOnlyOptions, 'quantizeWeight' | 'quantizeWeightName'>>;

function bad(message: string, hint: string): LowbitError {
  return new LowbitError('BAD_OPTION', message, hint);
}

/**
 * Checks weight-only options and fills in defaults (the `quantizeWeight` hook aside).
 * @throws LowbitError BAD_OPTION for bad bits / blockSize / algorithm / format / accuracyLevel, symmetric hqq, 2-bit qdq
 */
export function checkWeightOnlyOptions(o: WeightOnlyOptions): CheckedWeightOnlyOptions {
  checkBlockwiseOptions(o);
  const algorithm = o.algorithm ?? 'rtn';
  if (!(WEIGHT_ONLY_ALGORITHMS as readonly string[]).includes(algorithm)) throw bad(`algorithm ${JSON.stringify(algorithm)} is not supported`, `use one of: ${WEIGHT_ONLY_ALGORITHMS.join(', ')}`);
  const format = o.format ?? 'matmulnbits';
  if (!(WEIGHT_ONLY_FORMATS as readonly string[]).includes(format)) throw bad(`format ${JSON.stringify(format)} is not a weight-only format`, `use one of: ${WEIGHT_ONLY_FORMATS.join(', ')}`);
  const accuracyLevel = o.accuracyLevel ?? 0;
  if (!(ACCURACY_LEVELS as readonly number[]).includes(accuracyLevel)) throw bad(`accuracyLevel must be 0..4 (got ${JSON.stringify(o.accuracyLevel)})`, '0 leaves it to ONNX Runtime; 4 computes with int8-quantized activations');
  if (o.accuracyLevel !== undefined && format !== 'matmulnbits') throw bad('accuracyLevel applies to the matmulnbits format only', 'drop --accuracy-level, or use --format matmulnbits');
  if (o.symmetric !== undefined && typeof o.symmetric !== 'boolean') throw bad('symmetric must be true or false', 'pass symmetric: true or false');
  if (o.symmetric && algorithm === 'hqq' && !o.quantizeWeight) throw bad('hqq optimises a zero point per block: it has no symmetric form', 'drop --symmetric, or use --algorithm rtn');
  if (format === 'qdq' && o.bits === 2) {
    throw bad('2-bit weights in DequantizeLinear need INT2/UINT2 tensors (opset 25); lowbit writes opset 21 at most', 'use --format matmulnbits for 2 bits (ONNX Runtime runs 2-bit MatMulNBits), or --bits 4');
  }
  if (format === 'unpack-on-load' && o.bits === 2) {
    throw bad('2-bit codes need INT2/UINT2 tensors to Cast from (opset 25); lowbit writes opset 21 at most', 'use --bits 4 or 8 with --format unpack-on-load, or --format matmulnbits for 2 bits');
  }
  if (o.defer !== undefined && typeof o.defer !== 'boolean') throw bad('defer must be true or false', 'pass defer: true to quantize each weight as the model is saved');
  if (o.subgraphs !== undefined && typeof o.subgraphs !== 'boolean') throw bad('subgraphs must be true or false', 'pass subgraphs: false to leave If/Loop/Scan bodies float');
  return { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric ?? false, algorithm, format, accuracyLevel, excludeNodes: o.excludeNodes ?? [], excludeOps: o.excludeOps ?? [], defer: o.defer ?? false, subgraphs: o.subgraphs ?? true };
}

/** A weight prepared for one form: the tensor names the replacement nodes read. */
interface PreparedWeight {
  /** The float weight's name. */
  name: string;
  K: number;
  N: number;
  /** MatMulNBits: B, scales, [zero_points]; qdq: DequantizeLinear's x, x_scale, [x_zero_point]. */
  inputs: string[];
}

/** How the node's weight is read: which constant, transposed (Gemm transB) and scaled (Gemm alpha). */
interface WeightRef {
  name: string;
  transposed: boolean;
  alpha: number;
}

/**
 * Weight-only quantization of the main graph: MatMul and Gemm nodes whose B is a float32 or float16 constant of
 * rank 2 get B quantized blockwise along K (bits, blockSize; RTN, HQQ or the `quantizeWeight` hook) and become
 * com.microsoft MatMulNBits (attributes K, N, bits, block_size, accuracy_level; scales in A's float type; Gemm's C,
 * times beta, as its bias input when C is a constant vector, else an Add), or, with `format: 'qdq'`, a blocked
 * DequantizeLinear (axis 0, block_size; symmetric: int4/int8 without zero point, else uint4/uint8 with one) feeding
 * the float MatMul — the opset raised to 21 for it. Gemm's transB is folded into the weight, alpha too. A weight
 * read by several nodes is quantized once. Float weights nothing reads any more are removed. Left float, with a
 * reason: weights that are graph inputs, computed weights, batched (rank 3+) weights, other element types, Gemm
 * with transA, excluded nodes and op types. The input model is not modified.
 * If/Loop/Scan bodies (at every depth; `subgraphs: false` leaves them alone) are rewritten the same way when the
 * weight is a constant of the body or of an enclosing graph (transformers.js' `decoder_model_merged.onnx`: both
 * branches of an If read the decoder's weights from the main graph): the quantized tensors go into the graph that
 * owns the float weight, so branches reading one weight share one quantized copy; the qdq form adds one
 * DequantizeLinear per weight in the graph owning it too, its output read by the bodies (ORT 1.30 refuses a body's
 * DequantizeLinear of outer-scope codes: it fuses it into MatMulNBits and then misses the codes). Body nodes are
 * reported (and matched by `excludeNodes`, besides their plain name) by their path, see {@link nodePath}:
 * `if_node/then_branch/matmul`. A float weight is
 * removed when no graph reads it any more.
 * With `defer` the quantized tensors are produced as they are read (saved): see WeightOnlyOptions.defer.
 * @throws LowbitError BAD_OPTION for bad options (bits, blockSize, algorithm, format, accuracyLevel, 2-bit qdq,
 *   defer); UNSUPPORTED_MODEL when the qdq form needs opset 21 and the model cannot be raised to it; NON_FINITE for
 *   NaN/Infinity weights and BAD_DATA / EXTERNAL_DATA for weights that cannot be read, naming the weight (with
 *   `defer`: thrown by whatever reads the tensors, saveModel).
 */
export function quantizeWeightOnly(model: Model, opts: WeightOnlyOptions): { model: Model; report: WeightOnlyReport } {
  const o = checkWeightOnlyOptions(opts);
  const bodies = o.subgraphs && hasBodies(model.graph);
  // Body nodes are shared with the input model by a shallow clone: copy them before editing.
  const out = bodies ? cloneModelDeep(model) : cloneModel(model);
  const scopes = weightScopes(out.graph, bodies);
  const report: WeightOnlyReport = { quantized: [], skipped: [] };
  const excludeNodes = new Set(o.excludeNodes);
  const excludeOps = new Set(o.excludeOps);
  const irVersion = out.rest.irVersion ?? 8n;

  // Pass 1: which nodes can be rewritten, and the weight each reads (and which graph owns it).
  const todo: { node: NodeProto; entry: WeightOnlyEntry; ref: WeightRef; floatType: number; g: Graph; owner: Graph }[] = [];
  for (const scope of scopes) {
    const { graph: g, types } = scope;
    g.nodes.forEach((node, index) => {
      const op = node.opType ?? '';
      if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') return;
      if (op !== 'MatMul' && op !== 'Gemm') return;
      const entry = { node: nodePath(scope, node, index), opType: op };
      const skip = (reason: string): void => void report.skipped.push({ ...entry, reason });
      if ((node.name && excludeNodes.has(node.name)) || excludeNodes.has(entry.node)) return skip('excluded by node name');
      if (excludeOps.has(op)) return skip('excluded by op type');
      const b = node.input[1] ?? '';
      const owner = definingGraph(g, b) ?? g;
      if (owner.isGraphInput(b)) return skip(`weight '${b}' is a graph input (fed at run time), not a constant`);
      if (irVersion >= 4n && owner.initializers.has(b) && owner.inputs.some((v) => v.name === b)) return skip(`weight '${b}' is also a graph input (a caller may override it): left float`);
      const t = g.constant(b);
      if (!t) return skip(`weight '${b}' is computed at run time (not a constant): activation x activation products stay float`);
      if (t.dataType !== DataType.FLOAT && t.dataType !== DataType.FLOAT16) return skip(`weight '${b}' is ${dataTypeName(t.dataType)}: only FLOAT and FLOAT16 weights are quantized`);
      const dims = dimsOf(t);
      if (dims.length !== 2) return skip(`weight '${b}' has rank ${dims.length} (shape [${dims.join(', ')}]): only 2-D weights [K, N] are blockwise-quantized`);
      let ref: WeightRef = { name: b, transposed: false, alpha: 1 };
      if (op === 'Gemm') {
        if (attrInt(node, 'transA', 0) !== 0) return skip('Gemm with transA = 1: A is not [M, K]');
        const beta = attrFloat(node, 'beta', 1);
        const c = node.input[2];
        if (c && beta !== 1 && !g.constant(c)) return skip('Gemm with beta != 1 and a computed C');
        ref = { name: b, transposed: attrInt(node, 'transB', 0) !== 0, alpha: attrFloat(node, 'alpha', 1) };
      }
      const aType = types.get(node.input[0] ?? '');
      const floatType = aType === DataType.FLOAT16 || (aType === undefined && t.dataType === DataType.FLOAT16) ? DataType.FLOAT16 : DataType.FLOAT;
      if (aType !== undefined && aType !== DataType.FLOAT && aType !== DataType.FLOAT16) return skip(`input A is ${dataTypeName(aType)}: MatMulNBits takes FLOAT or FLOAT16 activations`);
      todo.push({ node, entry, ref, floatType, g, owner });
    });
  }

  const g = out.graph;
  // qdq: blocked DequantizeLinear needs opset 21; unpack-on-load: Cast from INT4 / UINT4 too (8-bit codes Cast at any opset).
  if (todo.length && (o.format === 'qdq' || (o.format === 'unpack-on-load' && o.bits === 4))) {
    const from = out.opset('') ?? 1;
    if (from < 21) {
      const up = upgradeOpset(g, from, 21);
      if (!up.upgraded) {
        const why = o.format === 'qdq' ? 'blocked DequantizeLinear' : 'Cast from INT4 / UINT4';
        throw new LowbitError('UNSUPPORTED_MODEL', `the ${o.format} form needs opset 21 (${why}), and this opset-${from} model cannot be raised to it: ${up.blockers.slice(0, 3).join('; ')}`, `use --format matmulnbits (com.microsoft MatMulNBits works at any opset)${o.format === 'unpack-on-load' ? ', or --bits 8' : ''}`);
      }
      out.setOpset('', up.to);
    }
    if (irVersion < 10n) out.rest.irVersion = 10n; // INT4 / UINT4 tensors and opset 21 need IR version 10
  }

  // Pass 2: quantize each distinct weight once (its tensors in the graph owning it), rewrite the nodes.
  const cache = new Map<Graph, Map<string, PreparedWeight>>();
  const released = new Map<Graph, Set<string>>();
  const release = (owner: Graph, name: string): void => {
    let set = released.get(owner);
    if (!set) released.set(owner, (set = new Set()));
    set.add(name);
  };
  const prepare = (ref: WeightRef, floatType: number, owner: Graph): PreparedWeight => {
    const key = `${ref.name}\u0000${ref.transposed}\u0000${ref.alpha}\u0000${floatType}`;
    let byKey = cache.get(owner);
    if (!byKey) cache.set(owner, (byKey = new Map()));
    const hit = byKey.get(key);
    if (hit) return hit;
    // The source tensor itself is kept (not its name: the float initializer is removed below), read when quantized.
    const src = constantTensor(owner, ref.name)!;
    const [r, c] = dimsOf(src) as [number, number];
    const job: WeightJob = { ref, src, K: ref.transposed ? c : r, N: ref.transposed ? r : c, floatType };
    const quantize = (): BlockQuantized => quantizeJob(o, opts.quantizeWeight, job);
    const p = o.format === 'matmulnbits' ? addMatMulNBitsTensors(owner, o, job, quantize) : addDequantizeTensors(owner, o, job, quantize);
    byKey.set(key, p);
    release(owner, ref.name);
    return p;
  };
  // qdq / unpack-on-load: one DequantizeLinear (or unpacking chain) per weight, in the graph owning it. Not in each body reading an outer weight: ORT 1.30
  // fuses a body's DequantizeLinear -> MatMul into MatMulNBits, then fails to find the outer-scope codes ("Missing
  // required weight" from TransposeDQWeightsForMatMulNBits) and refuses the model at the default optimization level.
  const dequantized = new Map<Graph, Map<PreparedWeight, string>>();
  const weightInputs = (p: PreparedWeight, at: Graph): string[] => {
    if (o.format === 'matmulnbits') return p.inputs;
    let byWeight = dequantized.get(at);
    if (!byWeight) dequantized.set(at, (byWeight = new Map()));
    let y = byWeight.get(p);
    if (y === undefined) byWeight.set(p, (y = o.format === 'qdq' ? addDequantizeNode(at, o, p) : addUnpackNodes(at, o, p)));
    return [y];
  };

  const edited = new Set<Graph>();
  for (const { node, entry, ref, floatType, g, owner } of todo) {
    const p = prepare(ref, floatType, owner);
    const bIn = weightInputs(p, owner);
    edited.add(g).add(owner);
    const nodes: NodeProto[] = [];
    const y = node.output[0]!;
    const name = node.name || g.freshName(node.opType!);
    let bias: string | undefined;
    let addC: string | undefined;
    if (node.opType === 'Gemm' && node.input[2]) {
      const c = node.input[2];
      const beta = attrFloat(node, 'beta', 1);
      const ct = g.constant(c);
      const cDims = ct ? dimsOf(ct) : undefined;
      const vector = ct && (ct.dataType === DataType.FLOAT || ct.dataType === DataType.FLOAT16) && cDims!.reduce((a, d) => a * d, 1) === p.N && cDims![cDims!.length - 1] === p.N;
      if (vector) {
        const data = readFloatConstant(g, c).data.map((v) => v * beta);
        bias = addFloatTensor(g, `${c}_bias`, [p.N], data, floatType);
        release(definingGraph(g, c) ?? g, c);
      } else if (ct && beta !== 1) {
        const dims = dimsOf(ct);
        addC = addFloatTensor(g, `${c}_scaled`, dims, readFloatConstant(g, c).data.map((v) => v * beta), ct.dataType === DataType.FLOAT16 ? DataType.FLOAT16 : DataType.FLOAT);
        release(definingGraph(g, c) ?? g, c);
      } else addC = c;
    }
    const mmOut = addC !== undefined || (bias !== undefined && o.format !== 'matmulnbits') ? g.freshName(`${y}_matmul`) : y;
    if (o.format === 'matmulnbits') {
      const attrs = [
        makeAttribute('K', p.K),
        makeAttribute('N', p.N),
        makeAttribute('bits', o.bits),
        makeAttribute('block_size', o.blockSize),
        ...(o.accuracyLevel ? [makeAttribute('accuracy_level', o.accuracyLevel)] : []),
      ];
      const inputs = [node.input[0]!, ...bIn];
      if (bias !== undefined) {
        while (inputs.length < 5) inputs.push('');
        inputs.push(bias);
      }
      nodes.push(makeNode('MatMulNBits', inputs, [bias !== undefined && addC === undefined ? y : mmOut], { name, domain: MS_DOMAIN, attribute: attrs }));
    } else {
      nodes.push(makeNode('MatMul', [node.input[0]!, bIn[0]!], [mmOut], { name }));
      if (bias !== undefined) nodes.push(makeNode('Add', [mmOut, bias], [y], { name: g.freshName(`${name}_bias`) }));
    }
    if (addC !== undefined) nodes.push(makeNode('Add', [mmOut, addC], [y], { name: g.freshName(`${name}_c`) }));
    g.replaceNode(node, nodes);
    report.quantized.push({ ...entry, form: formLabel(o, opts.quantizeWeight ? (opts.quantizeWeightName ?? 'custom') : undefined), K: p.K, N: p.N });
  }
  // Bodies now read other outer values: every index is stale. A float weight still read anywhere (a body, a node
  // left float) is kept.
  if (bodies) touchScopes(scopes);
  for (const [owner, names] of released) for (const name of names) removeIfUnused(owner, name);
  if (todo.length && o.format === 'matmulnbits' && out.opset(MS_DOMAIN) === undefined) out.setOpset(MS_DOMAIN, 1);
  for (const s of scopes) if (edited.has(s.graph)) s.graph.sortInPlace();
  return { model: out, report };
}

/** The report's form, e.g. "MatMulNBits 4-bit, block 32, asym, rtn". */
function formLabel(o: CheckedWeightOnlyOptions, hook: string | undefined): string {
  const what = o.format === 'matmulnbits' ? 'MatMulNBits' : o.format === 'qdq' ? 'DequantizeLinear (blocked) + MatMul' : 'codes unpacked on load + MatMul';
  const algo = hook ?? o.algorithm;
  return `${what} ${o.bits}-bit, block ${o.blockSize}, ${o.symmetric ? 'sym' : 'asym'}, ${algo}${o.accuracyLevel ? `, accuracy_level ${o.accuracyLevel}` : ''}`;
}

/** One weight to quantize: the source constant, how it is read, its [K, N] and the float type of its scales. */
interface WeightJob {
  ref: WeightRef;
  src: TensorProto;
  K: number;
  N: number;
  floatType: number;
}

/**
 * Reads the weight now (FLOAT or FLOAT16; transposed, scaled by alpha) and quantizes it. LowbitErrors are re-thrown
 * naming the weight (with `defer` they surface while the model is saved, far from the weight's node).
 */
function quantizeJob(o: CheckedWeightOnlyOptions, hook: WeightOnlyOptions['quantizeWeight'], job: WeightJob): BlockQuantized {
  const { ref, src, K, N } = job;
  try {
    let w = tensorFloat32(src, ref.name);
    if (ref.transposed) w = transpose2d(w, N, K); // Gemm transB: B is stored [N, K]
    if (ref.alpha !== 1) w = w.map((v) => v * ref.alpha);
    return quantizeOne(o, hook, ref.name, w, K, N);
  } catch (e) {
    if (e instanceof LowbitError && !e.message.includes(`'${ref.name}'`)) {
      throw new LowbitError(e.code, `weight '${ref.name}' cannot be quantized: ${e.message}`, e.hint, { cause: e });
    }
    throw e;
  }
}

function quantizeOne(o: CheckedWeightOnlyOptions, hook: WeightOnlyOptions['quantizeWeight'], name: string, w: Float32Array, K: number, N: number): BlockQuantized {
  if (hook) {
    const q = hook(name, w, K, N);
    if (q.K !== K || q.N !== N || q.bits !== o.bits || q.blockSize !== o.blockSize || q.q.length !== N * kBlocks(K, o.blockSize) * o.blockSize) {
      throw new LowbitError('BAD_DATA', `quantizeWeight returned a ${q.bits}-bit [${q.K}, ${q.N}] block-${q.blockSize} weight for '${name}', expected ${o.bits}-bit [${K}, ${N}] block ${o.blockSize}`, 'return quantizeWeight results with the pass\'s bits and blockSize and the weight\'s shape');
    }
    return q;
  }
  if (o.algorithm === 'hqq') return quantizeBlockwiseHqq(w, K, N, { bits: o.bits, blockSize: o.blockSize });
  return quantizeBlockwiseRtn(w, K, N, { bits: o.bits, blockSize: o.blockSize, symmetric: o.symmetric });
}

/** A float initializer in `floatType` (FLOAT or FLOAT16); returns its name. */
function addFloatTensor(g: Graph, base: string, dims: number[], data: Float32Array, floatType: number): string {
  const name = g.freshName(base);
  g.setInitializer(makeTensor(name, floatType, dims, toFloatType(data, floatType)));
  return name;
}

const toFloatType = (data: Float32Array, floatType: number): TensorStorage => (floatType === DataType.FLOAT16 ? float32ArrayToFloat16(data) : data);

/** An output tensor of a quantized weight: its name base, type and shape, known before the weight is quantized. */
interface OutputSpec {
  base: string;
  dataType: number;
  dims: number[];
}

/**
 * Adds a weight's output initializers (fresh names from `specs`, in order): eager, from one quantization now; or
 * (defer) deferred tensors sharing one quantization, made on the first read of any of them and kept until each has
 * been read once (a read after that quantizes again and keeps nothing). Returns their names.
 */
function addOutputs(g: Graph, defer: boolean, specs: OutputSpec[], produce: () => TensorStorage[]): string[] {
  const names = specs.map((s) => g.freshName(s.base));
  if (!defer) {
    const data = produce();
    specs.forEach((s, i) => g.setInitializer(makeTensor(names[i]!, s.dataType, s.dims, data[i]!)));
    return names;
  }
  let held: (TensorStorage | undefined)[] | undefined;
  const unread = new Set(specs.keys());
  specs.forEach((s, i) =>
    g.setInitializer(
      deferTensor(names[i]!, s.dataType, s.dims, () => {
        if (!unread.has(i)) return produce()[i]!;
        held ??= produce();
        const out = held[i]!;
        held[i] = undefined;
        unread.delete(i);
        if (unread.size === 0) held = undefined;
        return out;
      }),
    ),
  );
  return names;
}

/** Checks that a deferred quantization fits the zero-point layout set up front. @throws LowbitError BAD_DATA */
function checkSymmetric(o: CheckedWeightOnlyOptions, job: WeightJob, q: BlockQuantized): void {
  if (q.symmetric !== o.symmetric) {
    throw new LowbitError(
      'BAD_DATA',
      `quantizeWeight returned a ${q.symmetric ? 'symmetric' : 'asymmetric'} weight for '${job.ref.name}', but the options say symmetric: ${o.symmetric}`,
      "with defer, return quantizeWeight results with the pass's symmetric setting (the zero-point tensors are laid out before the hook runs)",
    );
  }
}

function addMatMulNBitsTensors(g: Graph, o: CheckedWeightOnlyOptions, job: WeightJob, quantize: () => BlockQuantized): PreparedWeight {
  const { ref, K, N, floatType } = job;
  const nb = kBlocks(K, o.blockSize);
  // Eager: zero points follow the quantized weight (a hook may return a symmetric one); deferred: the options.
  const eager = o.defer ? undefined : quantize();
  const symmetric = eager ? eager.symmetric : o.symmetric;
  const specs: OutputSpec[] = [
    { base: `${ref.name}_Q${o.bits}`, dataType: DataType.UINT8, dims: [N, nb, (o.blockSize * o.bits) / 8] },
    { base: `${ref.name}_scales`, dataType: floatType, dims: [N * nb] },
  ];
  if (!symmetric) specs.push({ base: `${ref.name}_zp`, dataType: DataType.UINT8, dims: [N * Math.ceil((nb * o.bits) / 8)] });
  const inputs = addOutputs(g, o.defer, specs, () => {
    const q = eager ?? quantize();
    if (!eager) checkSymmetric(o, job, q);
    const p = packMatMulNBits(q);
    return [p.B, toFloatType(p.scales, floatType), ...(p.zeroPoints ? [p.zeroPoints] : [])];
  });
  return { name: ref.name, K, N, inputs };
}

function addDequantizeTensors(g: Graph, o: CheckedWeightOnlyOptions, job: WeightJob, quantize: () => BlockQuantized): PreparedWeight {
  const { ref, K, N, floatType } = job;
  const nb = kBlocks(K, o.blockSize);
  const eager = o.defer ? undefined : quantize();
  const signed = eager ? eager.symmetric : o.symmetric; // toBlockedDequantize: symmetric -> signed codes, no zero point
  const dataType = codeDataType(o.bits, signed);
  const pack = (v: Int8Array | Uint8Array): TensorStorage => packCodes(v, o.bits);
  const specs: OutputSpec[] = [
    { base: `${ref.name}_q${o.bits}`, dataType, dims: [K, N] },
    { base: `${ref.name}_scale`, dataType: floatType, dims: [nb, N] },
  ];
  if (!signed) specs.push({ base: `${ref.name}_zero_point`, dataType, dims: [nb, N] });
  const inputs = addOutputs(g, o.defer, specs, () => {
    const q = eager ?? quantize();
    if (!eager) checkSymmetric(o, job, q);
    const t = toBlockedDequantize(q);
    return [pack(t.x), toFloatType(t.scale, floatType), ...(t.zeroPoint ? [pack(t.zeroPoint)] : [])];
  });
  return { name: ref.name, K, N, inputs };
}

/**
 * Adds to `g` the unpacking of a prepared weight (the qdq form's codes [K, N], scale [nb, N], zero point [nb, N]):
 * (Cast(codes) - Gather(Cast(zero point), block)) * Gather(scale, block), block = [floor(k / blockSize)] for k < K.
 * Every input is a constant, so ONNX Runtime folds the chain into a float [K, N] initializer when the session loads.
 * Returns the float weight's name.
 */
function addUnpackNodes(g: Graph, o: CheckedWeightOnlyOptions, p: PreparedWeight): string {
  const [codes, scale, zeroPoint] = p.inputs as [string, string, string | undefined];
  return addUnpackChain(g, { name: p.name, K: p.K, blockSize: o.blockSize, codes, scale, ...(zeroPoint !== undefined ? { zeroPoint } : {}) });
}

/** Adds to `g` the blocked DequantizeLinear of a prepared qdq weight (whose tensors `g` sees); returns its output. */
function addDequantizeNode(g: Graph, o: CheckedWeightOnlyOptions, p: PreparedWeight): string {
  const y = g.freshName(`${p.name}_dequantized`);
  const dq = makeNode('DequantizeLinear', p.inputs, [y], {
    name: g.freshName(`${p.name}_DequantizeLinear`),
    attribute: [makeAttribute('axis', 0), makeAttribute('block_size', o.blockSize)],
  });
  g.addNodes([dq], 0);
  return y;
}
