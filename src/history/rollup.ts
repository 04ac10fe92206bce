// Per-minute roll-ups of usage (pure): increments in, one row per series and minute out, with the
// remote top-N cap. The storage and the engine adapter sit on either side of this module.

/** Who used the network: the identity a row of history is kept under (pids do not survive). */
export interface Identity {
  exe: string | null;
  comm: string | null;
  uid: number | null;
  user: string | null;
  /** systemd unit (or cgroup path) when known. */
  unit: string | null;
  /** Container id/name when known (filled by container support; null until then). */
  container: string | null;
}

/** `out`: the local end opened the flow; `in`: it answered; `fwd`: no local end (forwarded). */
export type Dir = 'out' | 'in' | 'fwd';

/** One series: identity × remote × service port × direction. */
export interface SeriesKey {
  ident: Identity;
  /** Remote address, or OTHER once over the per-minute cap. */
  remote: string;
  proto: string;
  /** Service port: the flow's original destination port (the server's), null for ICMP etc. */
  port: number | null;
  dir: Dir;
}

export interface Increment extends SeriesKey {
  sent: number;
  recv: number;
  /** Flows that began while collecting (counted once, when first seen). */
  flows: number;
}

export interface RollupRow extends SeriesKey {
  sent: number;
  recv: number;
  flows: number;
}

/** The remote bucket that takes remotes beyond the per-minute cap. */
export const OTHER = 'other';

export const EMPTY_IDENT: Identity = { exe: null, comm: null, uid: null, user: null, unit: null, container: null };

/** A stable text key for an identity (NULLs distinct from empty strings). */
export function identKey(i: Identity): string {
  return JSON.stringify([i.exe, i.comm, i.uid, i.user, i.unit, i.container]);
}

export function seriesKey(s: SeriesKey): string {
  return JSON.stringify([identKey(s.ident), s.remote, s.proto, s.port, s.dir]);
}

/** Start of the bucket of `size` seconds holding time t (unix seconds). */
export function bucketStart(t: number, size: number): number {
  return Math.floor(t / size) * size;
}

/**
 * The minute being filled, as a map of series. Adding is exact integer arithmetic on numbers
 * (bytes stay exact up to 2^53 = 8 PiB per series and minute).
 */
export class MinuteRollup {
  private readonly rows = new Map<string, RollupRow>();

  add(inc: Increment): void {
    if (inc.sent === 0 && inc.recv === 0 && inc.flows === 0) return;
    const k = seriesKey(inc);
    const row = this.rows.get(k);
    if (row) {
      row.sent += inc.sent;
      row.recv += inc.recv;
      row.flows += inc.flows;
    } else {
      this.rows.set(k, { ident: inc.ident, remote: inc.remote, proto: inc.proto, port: inc.port, dir: inc.dir, sent: inc.sent, recv: inc.recv, flows: inc.flows });
    }
  }

  get size(): number {
    return this.rows.size;
  }

  /** The rows so far, emptying the roll-up. */
  take(): RollupRow[] {
    const out = [...this.rows.values()];
    this.rows.clear();
    return out;
  }
}

/**
 * Keeps the `topN` remotes with most bytes in the minute (ties: address order) and folds every
 * other remote into OTHER, per series otherwise unchanged. Totals are unchanged. topN 0: no cap.
 */
export function capRemotes(rows: RollupRow[], topN: number): { rows: RollupRow[]; folded: number } {
  if (topN <= 0) return { rows, folded: 0 };
  const byRemote = new Map<string, number>();
  for (const r of rows) byRemote.set(r.remote, (byRemote.get(r.remote) ?? 0) + r.sent + r.recv);
  if (byRemote.size <= topN) return { rows, folded: 0 };
  const keep = new Set(
    [...byRemote.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, topN)
      .map(([k]) => k),
  );
  const folded = new MinuteRollup();
  for (const r of rows) folded.add(keep.has(r.remote) ? r : { ...r, remote: OTHER });
  return { rows: folded.take(), folded: byRemote.size - keep.size };
}

/** Retention and bucket sizes, in seconds, derived from the minute length (tests use short minutes). */
export interface Retention {
  minuteS: number;
  keepMinutes: number;
  keepHours: number;
  keepDays: number;
}

export function sizes(minuteS: number): { minute: number; hour: number; day: number } {
  return { minute: minuteS, hour: minuteS * 60, day: minuteS * 60 * 24 };
}

/**
 * What folding does at time `now`: minute buckets that start before `minutesBefore` go into their
 * hour, hour buckets before `hoursBefore` into their day, day buckets before `daysBefore` are
 * deleted. Only whole buckets move: the cut is rounded down to the coarser bucket, so an hour is
 * folded once, from all its minutes.
 */
export function foldCuts(now: number, r: Retention): { minutesBefore: number; hoursBefore: number; daysBefore: number } {
  const s = sizes(r.minuteS);
  return {
    minutesBefore: bucketStart(now - r.keepMinutes * s.minute, s.hour),
    hoursBefore: bucketStart(now - r.keepHours * s.hour, s.day),
    daysBefore: bucketStart(now - r.keepDays * s.day, s.day),
  };
}
