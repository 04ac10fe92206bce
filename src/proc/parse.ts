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
  /** From sock_diag only (DIAG_F in netlink/sockets.ts): bound to a device, IPV6_V6ONLY. */
  diagFlags?: number;
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

/** Value of one hex digit char code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Hex number in text[start, end); NaN if empty or not hex. */
function hexAt(text: string, start: number, end: number): number {
  if (end <= start) return NaN;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = hexDigit(text.charCodeAt(i));
    if (d < 0) return NaN;
    v = v * 16 + d;
  }
  return v;
}

/** Decimal integer in text[start, end); NaN if empty or not digits (the kernel prints no sign here). */
function decAt(text: string, start: number, end: number): number {
  if (end <= start) return NaN;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return NaN;
    v = v * 10 + c;
  }
  return v;
}

/**
 * Parses the text of /proc/net/{tcp,tcp6,udp,udp6}. `family` is the file's family (tcp6 → 6);
 * IPv4-mapped entries in tcp6 keep family 6 and read `::ffff:a.b.c.d`, as in conntrack records.
 * Hand-rolled scanning (no split/regex per line): tables of 50k sockets are common on busy hosts.
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
  // Token boundaries of the current line: up to 10 fields (sl local rem st tx:rx tr:when retrnsmt uid timeout inode).
  const ts = new Int32Array(10);
  const te = new Int32Array(10);
  const len = text.length;
  let pos = 0;
  let first = true;
  while (pos < len) {
    let end = text.indexOf('\n', pos);
    if (end < 0) end = len;
    const lineStart = pos;
    pos = end + 1;
    let n = 0;
    for (let i = lineStart; i < end && n < 10; ) {
      while (i < end && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
      if (i >= end) break;
      ts[n] = i;
      while (i < end && text.charCodeAt(i) !== 32 && text.charCodeAt(i) !== 9) i++;
      te[n++] = i;
    }
    if (first) {
      first = false;
      if (n > 0 && text.startsWith('sl', ts[0]!)) continue; // the header
    }
    if (n === 0) continue; // blank line
    if (n < 10 || text.charCodeAt(te[0]! - 1) !== 58 /* ':' */) {
      malformed++;
      continue;
    }
    // addr:port, the colon at a fixed place for the family.
    const lc = ts[1]! + addrLen;
    const rc = ts[2]! + addrLen;
    const qc = text.indexOf(':', ts[4]!);
    if (text.charCodeAt(lc) !== 58 || text.charCodeAt(rc) !== 58 || qc < 0 || qc >= te[4]!) {
      malformed++;
      continue;
    }
    const localAddr = decode(text.slice(ts[1]!, lc));
    const remoteAddr = decode(text.slice(ts[2]!, rc));
    const localPort = hexAt(text, lc + 1, te[1]!);
    const remotePort = hexAt(text, rc + 1, te[2]!);
    const stateNum = hexAt(text, ts[3]!, te[3]!);
    const txQueue = hexAt(text, ts[4]!, qc);
    const rxQueue = hexAt(text, qc + 1, te[4]!);
    const uid = decAt(text, ts[7]!, te[7]!);
    const inode = decAt(text, ts[9]!, te[9]!);
    if (
      localAddr === null ||
      remoteAddr === null ||
      !(localPort <= 0xffff) ||
      !(remotePort <= 0xffff) ||
      !(stateNum >= 0) ||
      Number.isNaN(uid) ||
      Number.isNaN(inode) ||
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
