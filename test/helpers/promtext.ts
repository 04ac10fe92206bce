// A small parser of the Prometheus text exposition format (0.0.4), strict enough to catch what
// Prometheus would reject: one HELP and TYPE per family before its samples, valid names, label
// escapes (\\ \" \n), numeric values. Used by the exporter's tests and its benchmark.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string | null;
  type: string | null;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function unescapeHelp(s: string): string {
  return s.replace(/\\(\\|n)/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
}

function parseLabels(s: string, line: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 0;
  for (;;) {
    while (s[i] === ' ' || s[i] === ',') i++;
    if (s[i] === '}') return { labels, rest: s.slice(i + 1) };
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels: ${line}`);
    const name = s.slice(i, eq).trim();
    if (!LABEL.test(name)) throw new Error(`bad label name '${name}': ${line}`);
    if (s[eq + 1] !== '"') throw new Error(`unquoted label value: ${line}`);
    let v = '';
    let j = eq + 2;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const c = s[++j];
        if (c === 'n') v += '\n';
        else if (c === '\\' || c === '"') v += c;
        else throw new Error(`bad escape \\${c}: ${line}`);
      } else v += s[j];
    }
    if (j >= s.length) throw new Error(`unterminated label value: ${line}`);
    if (name in labels) throw new Error(`duplicate label ${name}: ${line}`);
    labels[name] = v;
    i = j + 1;
  }
}

function parseValue(v: string, line: string): number {
  if (v === '+Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  // Prometheus parses floats with Go's ParseFloat, case-insensitive for NaN; prom-client writes
  // "Nan" for its event-loop lag before the first sample.
  if (v.toLowerCase() === 'nan') return NaN;
  const n = Number(v);
  if (v === '' || Number.isNaN(n)) throw new Error(`bad value '${v}': ${line}`);
  return n;
}

/** Families in the order they appear; throws on anything malformed. */
export function parsePromText(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const fam = (name: string) => {
    let f = out.get(name);
    if (!f) out.set(name, (f = { name, help: null, type: null, samples: [] }));
    return f;
  };
  const seenSeries = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a plain comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name!)) throw new Error(`bad metric name: ${line}`);
      const f = fam(name!);
      if (kind === 'HELP') {
        if (f.help !== null) throw new Error(`second HELP for ${name}`);
        f.help = unescapeHelp(rest!);
      } else {
        if (f.type !== null || f.samples.length) throw new Error(`TYPE for ${name} after samples or twice`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest!)) throw new Error(`bad type: ${line}`);
        f.type = rest!;
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const name = m[1]!;
    let rest = m[2]!;
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest.slice(1), line));
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2) throw new Error(`bad sample line: ${line}`);
    const value = parseValue(parts[0]!, line);
    const base = out.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const f = fam(base);
    const id = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seenSeries.has(id)) throw new Error(`duplicate series: ${line}`);
    seenSeries.add(id);
    f.samples.push({ name, labels, value });
  }
  return out;
}

/** The value of the one sample of `name` whose labels include `match`, or undefined. */
export function sampleValue(fams: Map<string, Family>, name: string, match: Record<string, string> = {}): number | undefined {
  const f = fams.get(name);
  const s = f?.samples.filter((x) => Object.entries(match).every(([k, v]) => x.labels[k] === v));
  if (!s || s.length === 0) return undefined;
  if (s.length > 1) throw new Error(`${s.length} samples of ${name} match ${JSON.stringify(match)}`);
  return s[0]!.value;
}
