// The gradient rule table, merged from the per-family tables. Pure.

import { mergeGradTables, type GradTable } from '../types.js';
import { ACTIVATION_GRADS } from './activation.js';
import { CONV_GRADS } from './conv.js';
import { ELEMENTWISE_GRADS } from './elementwise.js';
import { MATMUL_GRADS } from './matmul.js';
import { NORM_GRADS } from './norm.js';
import { POOL_GRADS } from './pool.js';
import { QUANT_GRADS } from './quant.js';
import { REDUCE_GRADS } from './reduce.js';
import { SHAPE_GRADS } from './shape.js';

/** Every op type with a gradient rule (default ONNX domain). */
export const GRAD_RULES: GradTable = mergeGradTables(
  ELEMENTWISE_GRADS,
  ACTIVATION_GRADS,
  MATMUL_GRADS,
  CONV_GRADS,
  POOL_GRADS,
  REDUCE_GRADS,
  SHAPE_GRADS,
  NORM_GRADS,
  QUANT_GRADS,
);
