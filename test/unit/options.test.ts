// Bad input is told in ctacct's words (exit 2): pids, users (through NSS), numbers, yargs' wording.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkFamilies, checkPositive, ownWords, parsePids, resolveUser, type UserLookup } from '../../src/commands/options.js';
import { EXIT, UserError } from '../../src/errors.js';
import { findTool, type ToolEnv } from '../../src/system/tools.js';

const usage = (re: RegExp) => (e: unknown) => e instanceof UserError && e.exitCode === EXIT.usage && re.test(e.message);

test('parsePids: numbers of running processes only', () => {
  const running = (p: string) => p === '/proc/1' || p === '/proc/42';
  assert.deepEqual(parsePids(['1', '42'], '/proc', running), [1, 42]);
  assert.deepEqual(parsePids(['1,42'], '/proc', running), [1, 42]);
  assert.throws(() => parsePids(['abc'], '/proc', running), usage(/^--pid: 'abc' is not a process id$/));
  assert.throws(() => parsePids(['-3'], '/proc', running), usage(/is not a process id/));
  assert.throws(() => parsePids(['999999'], '/proc', running), usage(/^--pid: no process 999999 is running$/));
  assert.throws(() => parsePids([''], '/proc', running), usage(/^--pid needs a value/));
});

test('resolveUser: uids as they are; names through NSS (getent), else /etc/passwd; unknown names refused', () => {
  const ldap: UserLookup = { getent: (n) => (n === 'alice' ? 'alice:*:15001:15001:Alice:/home/alice:/bin/bash\n' : ''), passwd: () => 'root:x:0:0::/root:/bin/sh\n' };
  assert.equal(resolveUser('1234', ldap), 1234);
  assert.equal(resolveUser('alice', ldap), 15001); // a directory user, not in /etc/passwd
  assert.throws(() => resolveUser('nobodyhere', ldap), usage(/^--user: no user named 'nobodyhere'$/));
  const noGetent: UserLookup = { getent: () => null, passwd: () => 'root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n' };
  assert.equal(resolveUser('www-data', noGetent), 33);
  assert.throws(() => resolveUser('ro', noGetent), usage(/no user named 'ro'/));
  assert.throws(() => resolveUser('a b', noGetent), usage(/is not a user name or uid/));
});

test('checkPositive, checkFamilies and yargs wording in ours', () => {
  assert.throws(() => checkPositive('rcvbuf', Number.NaN), usage(/^--rcvbuf: not a number$/));
  assert.throws(() => checkPositive('rcvbuf', -1), usage(/^--rcvbuf: '-1' is not a positive number$/));
  checkPositive('rcvbuf', 8);
  checkPositive('rcvbuf', undefined);
  assert.throws(() => checkFamilies({ 4: true, 6: true }), usage(/^-4 and -6 exclude each other/));
  checkFamilies({ 4: true });
  assert.equal(ownWords('Invalid values:  Argument: proto, Given: "xyz", Choices: "tcp", "udp", "icmp"'), "--proto: 'xyz' is not one of tcp, udp, icmp");
  assert.equal(ownWords('Not enough arguments following: interval'), '--interval needs a value');
  assert.equal(ownWords('Unknown argument: frob'), 'Unknown argument: frob');
});

test('findTool: as root only root-owned, not group/world-writable files in system directories; PATH ignored', () => {
  const files: Record<string, { uid: number; mode: number }> = {
    '/usr/sbin/nft': { uid: 0, mode: 0o100755 },
    '/home/eve/bin/conntrack': { uid: 1000, mode: 0o100755 },
    '/usr/bin/getent': { uid: 0, mode: 0o100777 },
    '/bin/getent': { uid: 0, mode: 0o100755 },
  };
  const env = (euid: number): ToolEnv => ({
    euid,
    path: '/home/eve/bin:/usr/bin',
    stat: (p) => {
      const f = files[p];
      if (!f) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return { ...f, isFile: true };
    },
    executable: (p) => p in files,
  });
  assert.equal(findTool('nft', env(0)), '/usr/sbin/nft');
  assert.equal(findTool('conntrack', env(0)), null); // only in a user's PATH directory
  assert.equal(findTool('getent', env(0)), '/bin/getent'); // /usr/bin/getent is world-writable
  assert.equal(findTool('/home/eve/bin/conntrack', env(0)), null);
  assert.equal(findTool('conntrack', env(1000)), '/home/eve/bin/conntrack'); // a user may run their own tools
});
