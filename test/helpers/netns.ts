// Throwaway network namespaces for integration tests: unique names, cleanup even on failure.
// Traffic only ever flows inside namespaces made here (loopback or a veth pair between two).
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Reason string for `test(..., { skip })`: loud, and only when not root. CI runs as root. */
export const rootSkip: string | false = isRoot ? false : 'SKIPPED: needs root (CI runs as root) — run `sudo npm test`';

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const live = new Set<Netns>();
let hooked = false;
function hookExit() {
  if (hooked) return;
  hooked = true;
  const cleanAll = () => {
    for (const ns of live) ns.destroySync();
  };
  process.on('exit', cleanAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanAll();
      process.exit(130);
    });
  }
}

export class Netns {
  readonly children: ChildProcess[] = [];
  private destroyed = false;

  private constructor(readonly name: string) {}

  /** Creates a namespace named `ctt-<tag>-<random>` with `lo` up. */
  static async create(tag: string): Promise<Netns> {
    hookExit();
    const name = `ctt-${tag}-${randomBytes(3).toString('hex')}`;
    await execFileP('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    live.add(ns);
    await ns.exec('ip', ['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Runs a command inside the namespace and returns stdout. */
  async exec(cmd: string, args: string[] = [], input?: string): Promise<string> {
    const child = execFile('ip', ['netns', 'exec', this.name, cmd, ...args], { maxBuffer: 64 << 20 });
    const out = new Promise<string>((res, rej) => {
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d) => (stdout += d));
      child.stderr?.on('data', (d) => (stderr += d));
      child.on('error', rej);
      child.on('close', (code) =>
        code === 0 ? res(stdout) : rej(new Error(`${cmd} ${args.join(' ')} in ${this.name}: exit ${code}: ${stderr.trim()}`)),
      );
    });
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
    return out;
  }

  sh(script: string): Promise<string> {
    return this.exec('sh', ['-c', script]);
  }

  /** Starts a long-running process inside the namespace; killed on destroy. */
  spawn(cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, cmd, ...args], { stdio: 'pipe', ...opts });
    this.children.push(child);
    return child;
  }

  async sysctl(key: string, value?: string): Promise<string> {
    if (value === undefined) return (await this.exec('sysctl', ['-n', key])).trim();
    await this.exec('sysctl', ['-qw', `${key}=${value}`]);
    return value;
  }

  /** Loads an nft ruleset (text) into the namespace. */
  async nft(ruleset: string): Promise<void> {
    await this.exec('nft', ['-f', '-'], ruleset);
  }

  async nftRuleset(): Promise<string> {
    return this.exec('nft', ['list', 'ruleset']);
  }

  /** A stateful rule that makes conntrack track this namespace, as a firewall would. */
  async engageConntrack(table = 'ctt_fw'): Promise<void> {
    await this.nft(`table inet ${table} {
  chain c_in { type filter hook input priority 0; ct state invalid counter; }
  chain c_out { type filter hook output priority 0; ct state invalid counter; }
  chain c_fwd { type filter hook forward priority 0; ct state invalid counter; }
}
`);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    try {
      await execFileP('ip', ['netns', 'pids', this.name]).then(({ stdout }) => {
        for (const pid of stdout.split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            /* already gone */
          }
        }
      });
    } catch {
      /* namespace already gone */
    }
    await execFileP('ip', ['netns', 'del', this.name]).catch(() => undefined);
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const c of this.children) if (c.exitCode === null) c.kill('SIGKILL');
    try {
      execFileSync('sh', ['-c', `for p in $(ip netns pids ${this.name}); do kill -9 $p; done; ip netns del ${this.name}`], {
        stdio: 'ignore',
      });
    } catch {
      /* best effort */
    }
  }
}

/** Two namespaces joined by a veth pair: a = 10.231.0.1 / fd00:231::1, b = 10.231.0.2 / fd00:231::2. */
export async function createPair(tag: string): Promise<{ a: Netns; b: Netns; destroy(): Promise<void> }> {
  const a = await Netns.create(`${tag}a`);
  let b: Netns | null = null;
  try {
    b = await Netns.create(`${tag}b`);
    const va = `va${randomBytes(3).toString('hex')}`;
    const vb = `vb${randomBytes(3).toString('hex')}`;
    await a.exec('ip', ['link', 'add', va, 'type', 'veth', 'peer', 'name', vb, 'netns', b.name]);
    await a.exec('ip', ['addr', 'add', '10.231.0.1/24', 'dev', va]);
    await a.exec('ip', ['-6', 'addr', 'add', 'fd00:231::1/64', 'dev', va, 'nodad']);
    await a.exec('ip', ['link', 'set', va, 'up']);
    await b.exec('ip', ['addr', 'add', '10.231.0.2/24', 'dev', vb]);
    await b.exec('ip', ['-6', 'addr', 'add', 'fd00:231::2/64', 'dev', vb, 'nodad']);
    await b.exec('ip', ['link', 'set', vb, 'up']);
  } catch (e) {
    await a.destroy();
    await b?.destroy();
    throw e;
  }
  const bb = b;
  return {
    a,
    b: bb,
    async destroy() {
      await a.destroy();
      await bb.destroy();
    },
  };
}
