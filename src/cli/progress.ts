// Progress bar on stderr for long CLI steps (calibration, evaluation), wrapping `cli-progress`.
// Node-side (CLI only); a no-op object when disabled, so callers never branch.

import cliProgress from 'cli-progress';

/** A running progress display. All methods are safe to call on a disabled one, and after stop(). */
export interface Progress {
  /** True when something is actually drawn. */
  readonly enabled: boolean;
  /** Advance by `n` (default 1). */
  tick(n?: number): void;
  /** Finish: draw the final state and restore the cursor. Idempotent. */
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  total: number;
  /** The caller's decision (false for --json, --quiet); drawing also needs `stream` to be a TTY. */
  enabled: boolean;
  /** Where to draw (default process.stderr); tests pass a fake TTY. */
  stream?: NodeJS.WriteStream;
}

const NOOP: Progress = { enabled: false, tick() {}, stop() {} };

/**
 * Creates a progress bar: `label [=====-----] 42% | 420/1000 | ETA 3s`. Draws only when
 * `enabled` is set and the stream is a TTY (never into pipes, logs or --json output); otherwise
 * returns a no-op. Never throws.
 */
export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  if (!opts.enabled || stream.isTTY !== true || !(opts.total > 0)) return NOOP;
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${opts.label.replace(/[{}]/g, '')} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted}`,
      barsize: 30,
      hideCursor: true,
      clearOnComplete: false,
      // Keeps the line within the terminal instead of wrapping into a mess on narrow screens.
      linewrap: false,
      fps: 10,
    },
    cliProgress.Presets.legacy,
  );
  bar.start(opts.total, 0);
  let stopped = false;
  return {
    enabled: true,
    tick(n = 1) {
      if (!stopped) bar.increment(n);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
