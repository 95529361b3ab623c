// Number formatting for reports and CLI output: bytes (SI: 1 MB = 10^6 B), durations, ratios,
// percentages, decibels, counts. Pure (no node: imports); anyone above pipeline/ may import it.

const SI_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'] as const;

/** Non-finite inputs print as-is ('NaN', 'Infinity') rather than as misleading digits. */
const odd = (x: number): string | undefined => (Number.isFinite(x) ? undefined : String(x));

/**
 * Bytes in SI units (kB = 1000 B, MB = 10^6 B, ...): '512 B', '4.2 MB', '42.0 MB', '420 MB'.
 * One decimal below 100 of a unit, none above; a value that would print as 1000 moves up a unit.
 */
export function formatBytes(bytes: number): string {
  const o = odd(bytes);
  if (o !== undefined) return o;
  const sign = bytes < 0 ? '-' : '';
  let v = Math.abs(bytes);
  if (v < 999.5) return `${sign}${Math.round(v)} B`;
  let u = 0;
  // Move up while the value would print as 1000 or more of the current unit.
  while (u < SI_UNITS.length - 1 && v >= 999.5) {
    v /= 1000;
    u++;
  }
  return `${sign}${v < 99.95 ? v.toFixed(1) : v.toFixed(0)} ${SI_UNITS[u]}`;
}

/** Three significant digits for values in [1, 1000): '4.21', '42.1', '421'. */
function sig3(v: number): string {
  return v < 9.995 ? v.toFixed(2) : v < 99.95 ? v.toFixed(1) : v.toFixed(0);
}

/**
 * Durations: '420 µs', '4.21 ms', '42.1 ms', '421 ms', '4.21 s', '42.1 s', '2m 05s', '1h 02m'.
 * Three significant digits up to a minute.
 */
export function formatMs(ms: number): string {
  const o = odd(ms);
  if (o !== undefined) return o;
  if (ms < 0) return `-${formatMs(-ms)}`;
  if (ms === 0) return '0 ms';
  if (ms < 0.9995) return `${sig3(ms * 1000)} µs`;
  if (ms < 999.5) return `${sig3(ms)} ms`;
  if (ms < 59_950) return `${sig3(ms / 1000)} s`;
  const totalS = Math.round(ms / 1000);
  if (totalS < 3600) return `${Math.floor(totalS / 60)}m ${String(totalS % 60).padStart(2, '0')}s`;
  const totalM = Math.round(ms / 60_000);
  return `${Math.floor(totalM / 60)}h ${String(totalM % 60).padStart(2, '0')}m`;
}

/** A ratio such as a compression factor or speed-up: 3.9213 -> '3.92x'. */
export function formatRatio(ratio: number, digits = 2): string {
  return odd(ratio) ?? `${ratio.toFixed(digits)}x`;
}

/**
 * A fraction as a percentage: 0.1234 -> '12.3%'. With `signed`, positive values get '+' (deltas:
 * '+0.4%', '-1.2%').
 */
export function formatPct(fraction: number, opts: { digits?: number; signed?: boolean } = {}): string {
  const o = odd(fraction);
  if (o !== undefined) return o;
  const text = (fraction * 100).toFixed(opts.digits ?? 1);
  const sign = opts.signed && fraction > 0 && Number(text) !== 0 ? '+' : '';
  return `${sign}${text === '-0' || /^-0\.0*$/.test(text) ? text.slice(1) : text}%`;
}

/** Decibels (e.g. SQNR): 42.137 -> '42.1 dB'; +Infinity (exact match) -> 'inf dB'. */
export function formatDb(db: number, digits = 1): string {
  if (db === Infinity) return 'inf dB';
  if (db === -Infinity) return '-inf dB';
  return odd(db) ?? `${db.toFixed(digits)} dB`;
}

/** Integers with thousands separators: 1234567 -> '1,234,567' (locale independent). */
export function formatCount(n: number): string {
  const o = odd(n);
  if (o !== undefined) return o;
  const sign = n < 0 ? '-' : '';
  return sign + String(Math.round(Math.abs(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
