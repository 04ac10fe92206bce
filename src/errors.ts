// Errors a user can act on: main.ts prints their message on one line and exits with their code.

/** Exit codes: 1 runtime failure, 2 usage error, 3 missing privilege, 4 kernel feature missing. */
export const EXIT = { failure: 1, usage: 2, privilege: 3, unsupported: 4 } as const;

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
    readonly code: string = 'ERR_CTACCT',
  ) {
    super(message);
    this.name = 'UserError';
  }
}

interface SysErrorLike {
  code?: unknown;
  syscall?: unknown;
  message?: unknown;
}

/** Turns a coded system error from the addon or fs into a one-line, actionable UserError. */
export function explainSystemError(err: unknown, what: string): UserError {
  const e = (err ?? {}) as SysErrorLike;
  const code = typeof e.code === 'string' ? e.code : 'UNKNOWN';
  switch (code) {
    case 'EPERM':
    case 'EACCES':
      return new UserError(
        `${what}: permission denied (${code}) — run with sudo or grant CAP_NET_ADMIN (e.g. \`sudo setcap cap_net_admin+ep $(readlink -f $(which node))\`)`,
        EXIT.privilege,
        code,
      );
    case 'EPROTONOSUPPORT':
    case 'ENOENT':
    case 'EOPNOTSUPP':
      return new UserError(
        `${what}: conntrack netlink is not available (${code}) — load it with \`modprobe nf_conntrack_netlink\``,
        EXIT.unsupported,
        code,
      );
    case 'ERR_CTACCT_ADDON':
      return new UserError(`${what}: ${String(e.message).split('\n')[0]} — run \`npm run build:native\``, EXIT.failure, code);
    default:
      return new UserError(`${what}: ${typeof e.message === 'string' ? e.message : String(err)}`, EXIT.failure, code);
  }
}
