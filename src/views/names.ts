// Reverse DNS for the live view (--resolve): asynchronous, cached, bounded. The screen never waits
// for a name: a frame shows the address until its name arrives, then the next frame shows the name.
// Numeric stays the default. The lookup is injected (dns.promises.reverse in the command, a fake in
// tests); PTR records are chosen by whoever controls the address, so names are sanitised on display.

export type ReverseLookup = (addr: string) => Promise<string[]>;

export interface NameCacheOptions {
  /** Names remembered (oldest dropped first). */
  max?: number;
  /** Lookups in flight at once; further addresses wait in a bounded queue. */
  concurrency?: number;
  queueMax?: number;
  /** How long an answer (or a failure) is kept. */
  ttlMs?: number;
  now?: () => number;
}

interface Entry {
  name: string | null;
  at: number;
}

export class NameCache {
  private readonly cache = new Map<string, Entry>();
  private readonly pending = new Set<string>();
  private readonly queue: string[] = [];
  private inFlight = 0;
  private readonly listeners = new Set<() => void>();
  private readonly max: number;
  private readonly concurrency: number;
  private readonly queueMax: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  lookups = 0;
  failures = 0;

  constructor(
    private readonly lookup: ReverseLookup,
    o: NameCacheOptions = {},
  ) {
    this.max = o.max ?? 4096;
    this.concurrency = o.concurrency ?? 4;
    this.queueMax = o.queueMax ?? 256;
    this.ttlMs = o.ttlMs ?? 10 * 60_000;
    this.now = o.now ?? Date.now;
  }

  /** The name of `addr` if known; otherwise null, and a lookup is started (or queued) once. */
  nameOf(addr: string): string | null {
    const hit = this.cache.get(addr);
    if (hit && this.now() - hit.at <= this.ttlMs) return hit.name;
    if (!this.pending.has(addr) && this.queue.length < this.queueMax) {
      this.pending.add(addr);
      this.queue.push(addr);
      this.pump();
    }
    return hit?.name ?? null;
  }

  /** Called whenever a name arrives (the runner redraws); returns the unsubscribe. */
  onName(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  private pump(): void {
    while (this.inFlight < this.concurrency && this.queue.length > 0) {
      const addr = this.queue.shift()!;
      this.inFlight++;
      this.lookups++;
      this.lookup(addr).then(
        (names) => this.settle(addr, names[0] ?? null),
        () => {
          this.failures++;
          this.settle(addr, null);
        },
      );
    }
  }

  private settle(addr: string, name: string | null): void {
    this.inFlight--;
    this.pending.delete(addr);
    if (this.cache.size >= this.max && !this.cache.has(addr)) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(addr, { name: name ? name.replace(/\.$/, '') : null, at: this.now() });
    if (name) for (const cb of this.listeners) cb();
    this.pump();
  }
}
