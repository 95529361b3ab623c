// Seeded pseudo-random numbers (same seed -> same values on every platform): data shuffles,
// synthetic inputs and the realistic test-data builders. Pure; anyone may import.

/** A deterministic random source: every method advances the same stream. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number;
  /** Uniform integer in [lo, hi] (both ends included). */
  int(lo: number, hi: number): number;
  /** Standard normal (mean 0, std 1), Box–Muller. */
  normal(): number;
  /** True with probability p. */
  chance(p: number): boolean;
}

/**
 * mulberry32: a 32-bit-state generator (Tommy Ettinger's constants). Not cryptographic; chosen because
 * it is tiny, fast and uses only 32-bit integer ops (`Math.imul`), so results are bit-identical everywhere.
 * @param seed any number; only its low 32 bits are used.
 */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let spare: number | undefined;
  return {
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    normal: () => {
      if (spare !== undefined) {
        const s = spare;
        spare = undefined;
        return s;
      }
      // 1 - next() is in (0, 1], so log never sees 0.
      const r = Math.sqrt(-2 * Math.log(1 - next()));
      const phi = 2 * Math.PI * next();
      spare = r * Math.sin(phi);
      return r * Math.cos(phi);
    },
    chance: (p) => next() < p,
  };
}
