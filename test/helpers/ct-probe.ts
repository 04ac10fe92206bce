// Runs the conntrack source inside a test namespace (`ip netns exec NS node --import tsx ct-probe.ts …`)
// and prints what it saw as JSON lines, so integration tests can check the real kernel path.
//   dump [--filter JSON]            → one line: {"flows":[…],"stats":{…}} (stats.records: what crossed from the kernel)
//   events [--rcvbuf B] [--update] [--lookup] [--local ADDR,ADDR…]   (--local: the addresses pushed to the reader thread)
//          prints {"ready":true}; then {"records":[…]} / {"overrun":{code,errno}} lines; on SIGTERM or
//          stdin EOF prints {"stats":{…}} and exits
import { KernelConntrackSource, dumpAll } from '../../src/netlink/source.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const source = new KernelConntrackSource();

if (args[0] === 'dump') {
  const f = opt('filter');
  const r = await dumpAll(source, f ? JSON.parse(f) : {});
  print(r);
} else if (args[0] === 'events') {
  const rcvbuf = opt('rcvbuf');
  const sub = source.subscribe(
    {
      new: true,
      destroy: true,
      update: args.includes('--update'),
      lookupSockets: args.includes('--lookup'),
      ...(rcvbuf ? { rcvbuf: Number(rcvbuf) } : {}),
    },
    {
      records: (batch) => print({ records: batch }),
      overrun: (err) => print({ overrun: { code: err.code, errno: err.errno } }),
      error: (err) => {
        print({ error: { code: err.code, message: err.message } });
        process.exit(1);
      },
    },
  );
  const local = opt('local');
  if (local !== undefined) sub.setLocalAddresses?.(local.split(',').filter(Boolean));
  const finish = () => {
    print({ stats: sub.stats() });
    sub.close();
    process.exit(0);
  };
  process.on('SIGTERM', finish);
  process.stdin.on('end', finish);
  process.stdin.resume();
  print({ ready: true });
} else {
  process.stderr.write('usage: ct-probe dump | events [...]\n');
  process.exit(2);
}
