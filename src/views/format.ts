// Pure formatting for the views: human units, durations, and width-aware text fitting.
// Numbers never lie: a non-zero value never prints as "0", absent counters print as "-".
import stringWidth from 'string-width';
import { setWideWidth } from './text.js';

setWideWidth(stringWidth);
export { sanitize, stripAnsi, charWidth, displayWidth, truncate, truncateMiddle, fit, padEnd, padStart, wrap, alignColumns } from './text.js';

/** Bytes in binary (IEC) units, as `ls -h`, `free -h` and nethogs' KB (1024) count them. */
const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
/** Bit rates in SI units, as network links are sold. */
const BIT_UNITS = ['bit', 'kbit', 'Mbit', 'Gbit', 'Tbit', 'Pbit'];

/** Scales v into units of `base` with 3 significant digits ("1.23", "12.3", "123", "1023"). */
function scaled(v: number, base: number, units: string[]): string {
  if (v === null || v === undefined || !Number.isFinite(v) || v < 0) return '-';
  if (v === 0) return `0 ${units[0]}`;
  let i = 0;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  if (i === 0) {
    // Below the first step: whole units when whole, one decimal for fractional rates,
    // and "<0.1" rather than a lying "0".
    if (Number.isInteger(v) || v >= 10) return `${Math.round(v)} ${units[0]}`;
    if (v < 0.05) return `<0.1 ${units[0]}`;
    const s = v.toFixed(1);
    return `${s === '10.0' ? '10' : s} ${units[0]}`;
  }
  let s = v >= 999.5 ? v.toFixed(0) : v.toPrecision(3);
  if (Number(s) >= base && i < units.length - 1) {
    // 1023.7 KiB rounds to 1024: say 1.00 MiB instead.
    v /= base;
    i++;
    s = v.toPrecision(3);
  }
  return `${s} ${units[i]}`;
}

/** A byte count: "0 B", "400 B", "1.21 KiB", "12.3 MiB", "1023 MiB"; "-" when absent. */
export function formatBytes(n: number | null | undefined): string {
  return scaled(n as number, 1024, BYTE_UNITS);
}

/**
 * A rate given in bytes/s: IEC bytes ("1.21 MiB/s") or, with `bits`, SI bits ("9.68 Mbit/s").
 * `suffix` false drops the "/s" for table cells whose header already says per second.
 */
export function formatRate(bytesPerSecond: number | null | undefined, bits: boolean, suffix = true): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '-';
  const s = bits ? scaled(bytesPerSecond * 8, 1000, BIT_UNITS) : scaled(bytesPerSecond, 1024, BYTE_UNITS);
  return suffix ? `${s}/s` : s;
}

/** Integer with thousands separators, locale-independent ("12,345"). */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const sign = n < 0 ? '-' : '';
  const digits = String(Math.round(Math.abs(n)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A count for a narrow column: exact up to 99,999, then "123k", "1.2M". */
export function formatCompact(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a < 100_000) return String(Math.round(n));
  if (a < 999_500) return `${Math.round(n / 1000)}k`;
  if (a < 9_950_000) return `${(n / 1e6).toFixed(1)}M`;
  if (a < 999_500_000) return `${Math.round(n / 1e6)}M`;
  return `${(n / 1e9).toPrecision(2)}G`;
}

/** CPU share: "0%", "<0.1%", "0.8%", "12%", "250%" (several cores). */
export function formatPercent(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p) || p < 0) return '-';
  if (p === 0) return '0%';
  if (p < 0.05) return '<0.1%';
  if (p < 9.95) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

/** Seconds as "0.5s", "1s", "59s", "1m05s", "2h03m", "3d04h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  if (seconds < 10 && !Number.isInteger(seconds)) {
    const s = seconds.toFixed(1).replace(/\.0$/, '');
    return s === '10' ? '10s' : `${s}s`;
  }
  const t = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${two(t % 60)}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h${two(Math.floor((t % 3600) / 60))}m`;
  return `${Math.floor(t / 86400)}d${two(Math.floor((t % 86400) / 3600))}h`;
}

/** "s"-plural for counts in prose. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : many}`;
}
