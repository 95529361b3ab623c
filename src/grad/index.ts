// The training-graph builder's public surface: buildTrainingGraph, the rule table and its contract. Pure.

export { buildTrainingGraph, type TrainingGraph, type TrainingGraphOptions } from './engine.js';
export { GRAD_RULES } from './rules/index.js';
export { mergeGradTables, type Dim, type Dims, type GradContext, type GradOptions, type GradRule, type GradTable, type ShapeLike } from './types.js';
export { inferDims } from './shapes.js';
