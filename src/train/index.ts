// The pure training pieces: loss subgraphs, optimizers, learning-rate schedules, augmentation and the
// trainable (training + eval graphs) of an inference model. The loop that runs them is pipeline/train.ts.

export { LOSS_KINDS, attachLoss, checkLossSpec, needsLabels, oneHotTargets, type LossGraph, type LossKind, type LossSpec } from './loss.js';
export { OPTIMIZERS, createOptimizer, decayWeightsOnly, type Optimizer, type OptimizerKind, type OptimizerOptions, type ParamTensor } from './optim.js';
export { SCHEDULES, makeSchedule, type Schedule, type ScheduleKind, type ScheduleOptions } from './schedule.js';
export { randomShift, type Augment } from './augment.js';
export { buildTrainable, withValues, type ModelInputInfo, type StateTensor, type Trainable, type TrainableOptions } from './trainable.js';
export { CONV_GEMM_GRAD, MAX_COLUMNS_PER_SAMPLE, TRAIN_RULES } from './rules.js';
