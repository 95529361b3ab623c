// Command-action helpers for heavy or optional work: lazy imports of modules that may be absent
// from a build (e.g. the demo), and progress bars fed by pipeline ProgressEvents. CLI only.
import { fileURLToPath } from 'node:url';
import { LowbitError } from '../errors.js';
import type { ProgressEvent } from '../pipeline/options.js';
import { createProgress, type Progress } from './progress.js';

/**
 * Imports `specifier` (relative to the src/ folder, `.js` spelling) when a command runs.
 * @throws LowbitError INTERNAL naming `feature` when that module is not part of this build; other
 *   load failures (a missing dependency inside it) propagate unchanged
 */
export async function importLazily<T>(specifier: string, feature: string): Promise<T> {
  const url = new URL(`../${specifier}`, import.meta.url);
  try {
    return (await import(url.href)) as T;
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    const message = e instanceof Error ? e.message : '';
    // Only the module itself missing means "not in this build"; a missing import inside it is a bug.
    if (code === 'ERR_MODULE_NOT_FOUND' && message.includes(`'${fileURLToPath(url)}'`)) {
      throw new LowbitError('INTERNAL', `${feature} is not available in this build of lowbit (${specifier} is missing)`, 'update lowbit, or rebuild it with `npm run build`', { cause: e });
    }
    throw e;
  }
}

/**
 * Progress bars fed by pipeline ProgressEvents: one bar per stage, drawn on stderr only when
 * `enabled` and stderr is a TTY.
 */
export function stageProgress(enabled: boolean): { onProgress: (e: ProgressEvent) => void; stop: () => void } {
  let stage: string | undefined;
  let bar: Progress | undefined;
  let done = 0;
  return {
    onProgress(e) {
      if (!enabled) return;
      if (e.stage !== stage) {
        bar?.stop();
        stage = e.stage;
        bar = createProgress({ label: e.stage, total: e.total, enabled });
        done = 0;
      }
      // A stage whose bar has finished ignores late events.
      if (!bar) return;
      if (e.done > done) {
        bar.tick(e.done - done);
        done = e.done;
      }
      if (e.done >= e.total) {
        bar.stop();
        bar = undefined;
      }
    },
    stop() {
      bar?.stop();
      bar = undefined;
    },
  };
}
