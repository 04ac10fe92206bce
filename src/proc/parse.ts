// Pure parsers for /proc text: socket tables, process files, fd links, /etc/passwd.
// No I/O here: anomalies come back as counts (malformed lines), never as exceptions or logs.
import { endianness } from 'node:os';
import { formatIPv4, formatIPv6 } from '../netlink/record.js';

export type SocketProto = 'tcp' | 'udp';

export interface SocketEntry {
  proto: SocketProto;
  family: 4 | 6;
  /** Same text form as the conntrack records (formatIPv4/formatIPv6): joins are by string equality. */
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  /** netstat name for TCP (see TCP_STATE_NAMES); for UDP `UNCONN` or `ESTABLISHED`, as ss prints. */
  state: string;
  /** The kernel's TCP_* state number, as printed in the `st` column. */
  stateNum: number;
  uid: number;
  /** 0 when no process holds the socket (TIME_WAIT, orphans, request sockets). */
  inode: number;
  txQueue: number;
  rxQueue: number;
}

export interface SocketTable {
  entries: SocketEntry[];
  /** Lines that were neither the header nor a valid socket line. */
  malformed: number;
}

/**
 * Kernel TCP_* numbers (include/net/tcp_states.h) to netstat's names.
 * 12 (TCP_NEW_SYN_RECV) is the kernel's request socket: /proc/net/tcp prints those as 03, and ss as
 * SYN-RECV, so we name it SYN_RECV too — a user counting half-open connections wants them together.
 */
export const TCP_STATE_NAMES: Readonly<Record<number, string>> = {
  1: 'ESTABLISHED',
  2: 'SYN_SENT',
  3: 'SYN_RECV',
  4: 'FIN_WAIT1',
  5: 'FIN_WAIT2',
  6: 'TIME_WAIT',
  7: 'CLOSE',
  8: 'CLOSE_WAIT',
  9: 'LAST_ACK',
  10: 'LISTEN',
  11: 'CLOSING',
  12: 'SYN_RECV',
};

/** The netstat order, used wherever states are listed in a fixed order. */
export const TCP_STATE_ORDER: readonly string[] = [
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
];

export function tcpStateName(n: number): string {
  return TCP_STATE_NAMES[n] ?? `STATE_${n}`;
}

/** UDP sockets reuse TCP_ESTABLISHED (connected) and TCP_CLOSE (unconnected); name them as ss does. */
export function udpStateName(n: number): string {
  if (n === 1) return 'ESTABLISHED';
  if (n === 7) return 'UNCONN';
  return `STATE_${n}`;
}

const HOST_LE = endianness() === 'LE';
const HEX_RE = /^[0-9A-Fa-f]+$/;

/**
 * Decodes a /proc/net address (`0100007F` or 32 hex digits). The kernel prints each 32-bit word of
 * the network-order address as a host-order integer, so on little-endian hosts every 4-byte group
 * comes out reversed. Returns null for anything that is not 8 or 32 hex digits.
 */
export function parseHexAddr(hex: string, littleEndian: boolean = HOST_LE): { family: 4 | 6; addr: string } | null {
  if ((hex.length !== 8 && hex.length !== 32) || !HEX_RE.test(hex)) return null;
  const bytes = new Uint8Array(hex.length / 2);
  for (let w = 0; w < hex.length / 8; w++) {
    for (let i = 0; i < 4; i++) {
      const v = parseInt(hex.substr(w * 8 + i * 2, 2), 16);
      bytes[w * 4 + (littleEndian ? 3 - i : i)] = v;
    }
  }
  return hex.length === 8 ? { family: 4, addr: formatIPv4(bytes, 0) } : { family: 6, addr: formatIPv6(bytes, 0) };
}

function hexInt(s: string | undefined): number {
  if (s === undefined || !HEX_RE.test(s)) return NaN;
  return parseInt(s, 16);
}

/**
 * Parses the text of /proc/net/{tcp,tcp6,udp,udp6}. `family` is the file's family (tcp6 → 6);
 * IPv4-mapped entries in tcp6 keep family 6 and read `::ffff:a.b.c.d`, as in conntrack records.
 */
export function parseSocketTable(
  text: string,
  proto: SocketProto,
  family: 4 | 6,
  littleEndian: boolean = HOST_LE,
): SocketTable {
  const entries: SocketEntry[] = [];
  let malformed = 0;
  // Tables repeat few addresses (127.0.0.1, the host's own): decode each hex form once.
  const addrCache = new Map<string, string | null>();
  const addrLen = family === 4 ? 8 : 32;
  const decode = (hex: string): string | null => {
    let a = addrCache.get(hex);
    if (a === undefined) {
      a = hex.length === addrLen ? (parseHexAddr(hex, littleEndian)?.addr ?? null) : null;
      addrCache.set(hex, a);
    }
    return a;
  };
  const nameOf = proto === 'tcp' ? tcpStateName : udpStateName;
  let start = 0;
  let first = true;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const line = text.slice(start, end);
    start = end + 1;
    if (first) {
      first = false;
      if (line.trimStart().startsWith('sl')) continue; // the header
    }
    if (line.trim() === '') continue;
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !f[0]!.endsWith(':')) {
      malformed++;
      continue;
    }
    const local = f[1]!.split(':');
    const remote = f[2]!.split(':');
    const queues = f[4]!.split(':');
    const localAddr = local.length === 2 ? decode(local[0]!) : null;
    const remoteAddr = remote.length === 2 ? decode(remote[0]!) : null;
    const localPort = hexInt(local[1]);
    const remotePort = hexInt(remote[1]);
    const stateNum = hexInt(f[3]);
    const txQueue = hexInt(queues[0]);
    const rxQueue = hexInt(queues[1]);
    const uid = Number(f[7]);
    const inode = Number(f[9]);
    if (
      localAddr === null ||
      remoteAddr === null ||
      !(localPort <= 0xffff) ||
      !(remotePort <= 0xffff) ||
      !(stateNum >= 0) ||
      !Number.isInteger(uid) ||
      !Number.isInteger(inode) ||
      Number.isNaN(txQueue) ||
      Number.isNaN(rxQueue)
    ) {
      malformed++;
      continue;
    }
    entries.push({
      proto,
      family,
      localAddr,
      localPort,
      remoteAddr,
      remotePort,
      state: nameOf(stateNum),
      stateNum,
      uid,
      inode,
      txQueue,
      rxQueue,
    });
  }
  return { entries, malformed };
}

/** Real uid from /proc/PID/status (`Uid:\treal\teffective\tsaved\tfs`); null if absent. */
export function parseStatusUid(text: string): number | null {
  const m = /^Uid:\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** /proc/PID/comm: the name without its trailing newline. */
export function parseComm(text: string): string {
  return text.endsWith('\n') ? text.slice(0, -1) : text;
}

/**
 * /proc/PID/cmdline: NUL-separated arguments, usually NUL-terminated. Processes may rewrite it
 * (nginx: "nginx: worker process" with spaces and no NULs) — that comes back as one argument.
 * Empty for kernel threads and zombies.
 */
export function parseCmdline(text: string): string[] {
  if (text === '') return [];
  const body = text.endsWith('\0') ? text.slice(0, -1) : text;
  return body.split('\0');
}

/** `socket:[12345]` (a /proc/PID/fd link target) → 12345; null for any other kind of fd. */
export function socketInode(linkTarget: string): number | null {
  if (!linkTarget.startsWith('socket:[') || !linkTarget.endsWith(']')) return null;
  const n = Number(linkTarget.slice(8, -1));
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** /etc/passwd → uid → name; comments, NIS `+` lines and short lines are skipped. First entry wins. */
export function parsePasswd(text: string): Map<number, string> {
  const users = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    if (f.length < 4 || f[0] === '' || f[2] === '' || !/^\d+$/.test(f[2]!)) continue;
    const uid = Number(f[2]);
    if (!users.has(uid)) users.set(uid, f[0]!);
  }
  return users;
}
