// Public API of the quantization math: types, parameters, (de)quantization, float16/bfloat16, metrics.
// Pure; what calib/, passes/ and the package entry points import from quant/.

export {
  QUANT_TYPES,
  allocQuantArray,
  isQuantTypeName,
  quantRange,
  quantType,
  type QuantArray,
  type QuantTypeInfo,
  type QuantTypeName,
  type RangeOptions,
} from './dtypes.js';
export {
  computeQParams,
  computeQParamsBlocked,
  computeQParamsFromData,
  computeQParamsPerAxis,
  minMax,
  type QParams,
  type QParamsArray,
  type QParamsOptions,
} from './qparams.js';
export {
  dequantizeLinear,
  dynamicQuantizeLinear,
  quantizeLinear,
  type DequantizeOptions,
  type QuantizeOptions,
  type ScaleArg,
  type ZeroPointArg,
} from './quantize.js';
export {
  bfloat16ArrayToFloat32,
  bfloat16ToFloat32,
  float16ArrayToFloat32,
  float16BitsToFloat32Bits,
  float16ToFloat32,
  float32ArrayToBfloat16,
  float32ArrayToFloat16,
  float32BitsToBfloat16Bits,
  float32BitsToFloat16Bits,
  float32ToBfloat16,
  float32ToFloat16,
} from './float16.js';
export {
  ErrorStats,
  cosineSimilarity,
  errorSummary,
  maxAbsError,
  mse,
  sqnrDb,
  type ErrorSummary,
  type Numeric,
} from './metrics.js';
export { roundHalfEven } from './util.js';
