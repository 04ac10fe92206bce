/* The owner search: which processes hold a socket inode, read from /proc/PID/fd. One set of rules
 * for the event reader thread (ct_evthread.c) and for JavaScript (binding_owners.c). Plain C, no
 * Node headers; every function takes the proc root, so tests run it on fixture directories.
 *
 * Rules (one place for both callers):
 * - An fd table is read link by link; "socket:[N]" names socket inode N. A process or fd that
 *   vanished mid-read (ENOENT, ESRCH; EINVAL/ENOTDIR: not a link, not a directory) and one we may
 *   not read (EACCES, EPERM) are skipped silently and counted; any other error is skipped and
 *   counted apart, with the first errno kept, so it is never silent to a caller that looks.
 * - Network namespace: a process is left out only when its /proc/PID/ns/net is readable and names
 *   another namespace. An unreadable link (gone, not ours, a proc tree without ns links) does not
 *   rule it out: its fd table, read next, settles it. The test applies to pids taken from the proc
 *   root (every pid, the newest), never to a caller's own list.
 * - Newest first: pids in descending order (a just-started client has one of the highest).
 * - Family: the parent is field 4 of /proc/PID/stat as the kernel prints it (0 for init and
 *   kthreadd); children are the union of /proc/PID/task/TID/children over EVERY thread, because a
 *   child forked by a worker thread is listed under that thread only. Callers do not treat a
 *   parent of 1 (init) as family: its children are every daemon on the host.
 */
#ifndef CT_OWNERS_H
#define CT_OWNERS_H

#include <stddef.h>
#include <stdint.h>

struct ct_own_stats {
	size_t pids; /* fd tables opened */
	size_t fds; /* links read */
	size_t sockets; /* of which socket:[N] */
	size_t vanished; /* ENOENT, ESRCH, EINVAL, ENOTDIR */
	size_t denied; /* EACCES, EPERM */
	size_t failed; /* anything else */
	int first_errno; /* of the first failure, 0 if none */
};

/* Called for each socket link: inode and the pid whose table holds it. */
typedef void (*ct_own_sock_fn)(void *ctx, uint32_t inode, uint32_t pid);

/* "socket:[N]" -> N (1 when parsed), else 0. Exposed for tests. */
int ct_own_socket_inode(const char *target, size_t len, uint32_t *inode);

/* Reads one fd table, calling fn for every socket link. Returns 0 when the table was opened (even
 * empty), else the errno that prevented it (counted in st as above). */
int ct_own_scan_pid(const char *root, uint32_t pid, ct_own_sock_fn fn, void *ctx, struct ct_own_stats *st);

/* Inode of the network namespace named by the link at path ("net:[N]"), 0 when unreadable. */
uint64_t ct_own_netns_at(const char *path);
/* ... of process pid under root. */
uint64_t ct_own_netns(const char *root, uint32_t pid);
/* 0 only when pid's namespace is known and is not netns; netns 0 means any. */
int ct_own_same_netns(const char *root, uint32_t pid, uint64_t netns);

/* Every numeric entry of root, highest first, in a malloc'ed array (*out, free() it). Returns the
 * count, or -errno. */
long ct_own_pids_desc(const char *root, uint32_t **out);
/* Up to max of the highest pids whose namespace is netns (see ct_own_same_netns), highest first. */
size_t ct_own_newest(const char *root, uint64_t netns, uint32_t *out, size_t max);

/* Parent of pid (*ppid; 0 when unreadable or none: check the return) and its children, up to cap
 * in kids. Returns the number of children found (may exceed cap: then kids holds the first cap),
 * or -errno when the stat file is unreadable and no thread was listed (the process is gone). *has_ppid
 * is 1 when the parent was read. */
long ct_own_family(const char *root, uint32_t pid, uint32_t *ppid, int *has_ppid, uint32_t *kids, size_t cap);

/* A search over fd tables: pids (in that order), or every pid under root newest first in namespace
 * netns (pids NULL), stopping after the table where the last of want (sorted ascending) was first
 * seen, or after the first table read past budget_ns (< 0: no limit; 0: one table). An empty want reads every
 * table. fn gets every socket met; visit (when set) every pid whose table was read. */
struct ct_own_query {
	const char *root;
	const uint32_t *pids;
	size_t npids;
	const uint32_t *want;
	size_t nwant;
	int64_t budget_ns;
	uint64_t netns;
	ct_own_sock_fn fn;
	void (*visit)(void *ctx, uint32_t pid);
	void *ctx;
};

/* Returns 0 with *exhaustive 1 when every pid in the order was visited, or -errno (root unreadable
 * in the every-pid mode, or out of memory). */
int ct_own_search(const struct ct_own_query *q, struct ct_own_stats *st, int *exhaustive);

#endif
