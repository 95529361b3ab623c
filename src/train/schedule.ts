// Learning-rate schedules by optimizer step: constant, cosine annealing and step decay, each with an
// optional linear warmup. Pure; the trainer asks for the rate before every step.

import { LowbitError } from '../errors.js';

export const SCHEDULES = ['constant', 'cosine', 'step'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

export interface ScheduleOptions {
  kind: ScheduleKind;
  /** Steps of linear warmup from baseLr / warmupSteps up to baseLr (default 0). */
  warmupSteps?: number;
  /** 'cosine': the rate at the last step (default 0). */
  minLr?: number;
  /** 'step': multiply the rate by `gamma` every `stepSize` steps (required for 'step'). */
  stepSize?: number;
  /** 'step': decay factor (default 0.1). */
  gamma?: number;
}

/** Learning rate of step `step` (0-based) of `totalSteps`. */
export type Schedule = (step: number) => number;

const bad = (msg: string, hint: string): LowbitError => new LowbitError('BAD_OPTION', msg, hint);

/**
 * Builds a schedule. Cosine: after warmup, lr = minLr + (baseLr - minLr) * (1 + cos(pi * t)) / 2 with t
 * going from 0 at the first step after warmup to 1 at the last step. Step: lr = baseLr * gamma^floor(step /
 * stepSize). Warmup (any kind): lr = baseLr * (step + 1) / warmupSteps for the first warmupSteps steps.
 * @throws LowbitError BAD_OPTION for an unknown kind or invalid numbers
 */
export function makeSchedule(opts: ScheduleOptions, baseLr: number, totalSteps: number): Schedule {
  if (!(SCHEDULES as readonly string[]).includes(opts.kind)) throw bad(`unknown schedule '${String(opts.kind)}'`, `use one of ${SCHEDULES.join(', ')}`);
  if (!(Number.isFinite(baseLr) && baseLr > 0)) throw bad(`the learning rate must be a positive number, got ${baseLr}`, 'use e.g. 0.01');
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) throw bad(`a schedule needs at least one step, got ${totalSteps}`, 'train on at least one batch');
  const warmup = opts.warmupSteps ?? 0;
  if (!Number.isSafeInteger(warmup) || warmup < 0) throw bad(`warmupSteps must be a non-negative integer, got ${warmup}`, 'use e.g. 100');
  const minLr = opts.minLr ?? 0;
  if (!(minLr >= 0 && minLr <= baseLr)) throw bad(`minLr must be in [0, lr], got ${minLr}`, 'use a floor below the base learning rate');
  const gamma = opts.gamma ?? 0.1;
  if (!(gamma > 0 && gamma <= 1)) throw bad(`gamma must be in (0, 1], got ${gamma}`, 'use e.g. 0.1');
  const stepSize = opts.stepSize;
  if (opts.kind === 'step' && (stepSize === undefined || !Number.isSafeInteger(stepSize) || stepSize < 1)) {
    throw bad(`the step schedule needs a positive integer stepSize, got ${String(stepSize)}`, 'e.g. a third of the total steps');
  }
  const after: Schedule =
    opts.kind === 'constant'
      ? () => baseLr
      : opts.kind === 'step'
        ? (s) => baseLr * gamma ** Math.floor(s / stepSize!)
        : (s) => {
            const span = totalSteps - warmup - 1;
            const t = span <= 0 ? 0 : Math.min(1, Math.max(0, (s - warmup) / span));
            return minLr + ((baseLr - minLr) * (1 + Math.cos(Math.PI * t))) / 2;
          };
  return (step) => (step < warmup ? (baseLr * (step + 1)) / warmup : after(step));
}
