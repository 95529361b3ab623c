// The transformers.js dtype suite: the dtype names, the file-name suffix transformers.js looks each one up by, and
// what lowbit writes for each. Pure (the CLI validates --dtypes with it before ONNX Runtime loads).

/** transformers.js dtypes lowbit writes (fp32 is the input itself). */
export const TRANSFORMERS_JS_DTYPES = ['fp16', 'q8', 'int8', 'uint8', 'q4', 'q4f16', 'bnb4', 'q2', 'q2f16'] as const;
export type TransformersJsDtype = (typeof TRANSFORMERS_JS_DTYPES)[number];

/** File-name suffix per dtype: transformers.js' DEFAULT_DTYPE_SUFFIX_MAPPING (q8 keeps its historical `_quantized`). */
export const DTYPE_SUFFIX: Readonly<Record<TransformersJsDtype | 'fp32', string>> = {
  fp32: '',
  fp16: '_fp16',
  q8: '_quantized',
  int8: '_int8',
  uint8: '_uint8',
  q4: '_q4',
  q4f16: '_q4f16',
  bnb4: '_bnb4',
  q2: '_q2',
  q2f16: '_q2f16',
};

/** Block size of the 4- and 2-bit MatMul weights and of the embedding tables (ORT's and transformers.js' default). */
export const BLOCK = 32;
/** bitsandbytes' Linear4bit block size, which transformers.js' bnb4 files use. */
export const BNB4_BLOCK = 64;

/** What each dtype is, for the summary and the docs. */
export const DTYPE_DESCRIPTION: Readonly<Record<TransformersJsDtype, string>> = {
  fp16: 'float16 weights and compute, float32 inputs/outputs (Casts at the edges)',
  q8: 'dynamic int8: MatMul/Gemm int8 weights (DynamicQuantizeMatMul), Conv as ConvInteger with uint8 weights (ORT has no int8-weight ConvInteger)',
  int8: 'dynamic int8: MatMul/Gemm int8 weights, Conv float',
  uint8: 'dynamic uint8: MatMul/Gemm and Conv (ConvInteger) uint8 weights',
  q4: `MatMulNBits 4-bit (block ${BLOCK}, asymmetric RTN, accuracy_level 4); embeddings GatherBlockQuantized 4-bit (tied LM head shares them)`,
  q4f16: 'q4 with everything else in float16',
  bnb4: `MatMulBnb4 NF4 (block ${BNB4_BLOCK}); embeddings float`,
  q2: `MatMulNBits 2-bit (block ${BLOCK}); embeddings 4-bit (a 2-bit table loses too much of every token)`,
  q2f16: 'q2 with everything else in float16',
};

/** The ops each dtype rewrites (for the report when a model has none of them). */
export const DTYPE_HANDLES: Readonly<Record<TransformersJsDtype, string>> = {
  fp16: 'float32 tensors and ops',
  q8: 'MatMul / Gemm / Conv / LSTM with constant weights',
  int8: 'MatMul / Gemm / LSTM with constant weights',
  uint8: 'MatMul / Gemm / Conv / LSTM with constant weights',
  q4: 'MatMul / Gemm with constant weights, Gather on a constant table',
  q4f16: 'MatMul / Gemm with constant weights, Gather on a constant table, float32 tensors',
  bnb4: 'MatMul / Gemm with a constant weight',
  q2: 'MatMul / Gemm with constant weights, Gather on a constant table',
  q2f16: 'MatMul / Gemm with constant weights, Gather on a constant table, float32 tensors',
};

/** Timed runs per model in onnxruntime-web, after the checking run (which warms the wasm code up). */
export const WEB_TIMED_RUNS = 3;
