// Shared timing for the bench scripts (not a bench itself): medians and block-rotated timing of several
// models on the same input. Blocks, not single interleaved runs: on 2 cores ORT's spinning worker threads
// of one session slow the next run of another, so each model runs a block of consecutive runs.
import { readFileSync } from 'node:fs';
import type { NdArray } from '../src/ndarray.js';
import { Session } from '../src/runtime/session.js';

export const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * Times `models` on feeds `{ [input]: x }`: `rounds` rounds, each a block of `runsPerBlock` timed runs (after
 * 2 untimed) per model, the order rotated every round so no model always runs first. Returns the median ms per
 * model over all runs and the per-round medians.
 */
export async function timeBlocks(
  models: Uint8Array[],
  x: NdArray,
  runsPerBlock: number,
  opts: { rounds: number; threads: number; input?: string },
): Promise<{ median: number[]; rounds: number[][] }> {
  const input = opts.input ?? 'x';
  const sessions: Session[] = [];
  try {
    for (const m of models) sessions.push(await Session.create(m, { threads: opts.threads }));
    const all: number[][] = models.map(() => []);
    const perRound: number[][] = models.map(() => []);
    for (let r = 0; r < opts.rounds; r++) {
      for (let j = 0; j < models.length; j++) {
        const k = (j + r) % models.length;
        const times: number[] = [];
        for (let i = 0; i < runsPerBlock + 2; i++) {
          const t0 = process.hrtime.bigint();
          await sessions[k]!.run({ [input]: x });
          if (i >= 2) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        all[k]!.push(...times);
        perRound[k]!.push(median(times));
      }
    }
    return { median: all.map(median), rounds: perRound };
  } finally {
    for (const s of sessions) await s.release();
  }
}

/**
 * This process's peak RSS in bytes: VmHWM of /proc/self/status (Linux). getrusage's maxRSS is no use in a spawned
 * child: Linux carries the forked copy of the parent's peak across exec into it.
 */
export function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall back to getrusage
  }
  return process.resourceUsage().maxRSS * 1024;
}
