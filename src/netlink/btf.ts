// Member offsets of kernel structs from BTF (/sys/kernel/btf/vmlinux), for the close tracker's
// reads of the closing task (its thread group leader's start time: with the pid, a process's
// identity). Pure: bytes in, offsets out. Format: the kernel's Documentation/bpf/btf.rst.

const BTF_MAGIC = 0xeb9f;
const KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** Bytes that follow a type's 12-byte header, by kind (vlen: the count in its info word). */
function trailer(kind: number, vlen: number): number {
  switch (kind) {
    case KIND.INT:
    case KIND.VAR:
    case KIND.DECL_TAG:
      return 4;
    case KIND.ARRAY:
      return 12;
    case KIND.STRUCT:
    case KIND.UNION:
    case KIND.DATASEC:
    case KIND.ENUM64:
      return 12 * vlen;
    case KIND.ENUM:
    case KIND.FUNC_PROTO:
      return 8 * vlen;
    default:
      return 0;
  }
}

/**
 * Byte offsets of `members` in struct `name` (members of anonymous structs/unions inside it
 * included), or null when BTF is malformed, the struct is missing, or a member is a bitfield or
 * not found. Only little- or big-endian BTF of this machine's byte order is read.
 */
export function structOffsets(btf: Uint8Array, name: string, members: string[]): Record<string, number> | null {
  if (btf.length < 24) return null;
  const dv = new DataView(btf.buffer, btf.byteOffset, btf.byteLength);
  if (dv.getUint16(0, true) !== BTF_MAGIC) return null;
  const hdrLen = dv.getUint32(4, true);
  const typeOff = hdrLen + dv.getUint32(8, true);
  const typeLen = dv.getUint32(12, true);
  const strOff = hdrLen + dv.getUint32(16, true);
  const strLen = dv.getUint32(20, true);
  if (typeOff + typeLen > btf.length || strOff + strLen > btf.length) return null;
  const dec = new TextDecoder();
  const str = (off: number): string => {
    if (off >= strLen) return '';
    let end = strOff + off;
    while (end < strOff + strLen && btf[end] !== 0) end++;
    return dec.decode(btf.subarray(strOff + off, end));
  };
  // Type ids start at 1; keep each type's header position.
  const at: number[] = [0];
  const want = new TextEncoder().encode(name);
  let target = -1;
  for (let p = typeOff; p + 12 <= typeOff + typeLen; ) {
    const nameOff = dv.getUint32(p, true);
    const info = dv.getUint32(p + 4, true);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    at.push(p);
    if (target < 0 && kind === KIND.STRUCT && nameOff < strLen && btf[strOff + nameOff + want.length] === 0) {
      let same = true;
      for (let i = 0; i < want.length && same; i++) same = btf[strOff + nameOff + i] === want[i];
      if (same) target = at.length - 1;
    }
    p += 12 + trailer(kind, vlen);
  }
  if (target < 0) return null;
  const found: Record<string, number> = {};
  // Walks a struct/union's members; anonymous struct/union members are entered (through typedefs
  // and qualifiers) with their offset added.
  const walk = (id: number, base: number, depth: number): void => {
    if (depth > 8) return;
    const p = at[id];
    if (p === undefined) return;
    const info = dv.getUint32(p + 4, true);
    const kflag = info >>> 31;
    const vlen = info & 0xffff;
    for (let i = 0; i < vlen; i++) {
      const m = p + 12 + 12 * i;
      const mName = dv.getUint32(m, true);
      const mType = dv.getUint32(m + 4, true);
      const raw = dv.getUint32(m + 8, true);
      const bitSize = kflag ? raw >>> 24 : 0;
      const bitOff = kflag ? raw & 0xffffff : raw;
      if (mName === 0) {
        let t = mType;
        for (let hops = 0; hops < 8; hops++) {
          const tp = at[t];
          if (tp === undefined) break;
          const k = (dv.getUint32(tp + 4, true) >>> 24) & 0x1f;
          if (k === KIND.STRUCT || k === KIND.UNION) {
            walk(t, base + bitOff / 8, depth + 1);
            break;
          }
          if (k !== KIND.TYPEDEF && k !== KIND.CONST && k !== KIND.VOLATILE && k !== KIND.RESTRICT && k !== KIND.TYPE_TAG) break;
          t = dv.getUint32(tp + 8, true);
        }
        continue;
      }
      const n = str(mName);
      if (members.includes(n) && !(n in found) && bitSize === 0 && bitOff % 8 === 0) found[n] = base + bitOff / 8;
    }
  };
  walk(target, 0, 0);
  for (const m of members) if (!(m in found)) return null;
  return found;
}
