#include "ct_owners.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define OWN_PATH 4096

static void own_count(struct ct_own_stats *st, int err)
{
	switch (err) {
	case ENOENT:
	case ESRCH:
	case EINVAL: /* not a link: a fixture's plain file, or a reused slot */
	case ENOTDIR: /* a pid entry that is no longer a directory */
		st->vanished++;
		break;
	case EACCES:
	case EPERM:
		st->denied++;
		break;
	default:
		st->failed++;
		if (!st->first_errno)
			st->first_errno = err;
	}
}

int ct_own_socket_inode(const char *target, size_t len, uint32_t *inode)
{
	if (len < 10 || memcmp(target, "socket:[", 8) != 0 || target[len - 1] != ']')
		return 0;
	uint64_t v = 0;
	for (size_t i = 8; i < len - 1; i++) {
		if (target[i] < '0' || target[i] > '9' || v > UINT32_MAX)
			return 0;
		v = v * 10 + (uint64_t)(target[i] - '0');
	}
	if (v == 0 || v > UINT32_MAX)
		return 0;
	*inode = (uint32_t)v;
	return 1;
}

int ct_own_scan_pid(const char *root, uint32_t pid, ct_own_sock_fn fn, void *ctx, struct ct_own_stats *st)
{
	char path[OWN_PATH];
	if ((size_t)snprintf(path, sizeof(path), "%s/%u/fd", root, pid) >= sizeof(path)) {
		own_count(st, ENAMETOOLONG);
		return ENAMETOOLONG;
	}
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		int e = errno;
		own_count(st, e);
		return e;
	}
	DIR *d = fdopendir(dfd);
	if (!d) {
		int e = errno;
		close(dfd);
		own_count(st, e);
		return e;
	}
	st->pids++;
	struct dirent *de;
	char target[64]; /* "socket:[4294967295]" is 19; longer targets are never sockets */
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		ssize_t len = readlinkat(dirfd(d), de->d_name, target, sizeof(target) - 1);
		if (len < 0) {
			own_count(st, errno);
			continue;
		}
		st->fds++;
		uint32_t inode;
		if (ct_own_socket_inode(target, (size_t)len, &inode)) {
			st->sockets++;
			fn(ctx, inode, pid);
		}
	}
	closedir(d);
	return 0;
}

uint64_t ct_own_netns_at(const char *path)
{
	char target[64];
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 5 || memcmp(target, "net:[", 5) != 0)
		return 0;
	target[n] = 0;
	char *end;
	unsigned long long v = strtoull(target + 5, &end, 10);
	return *end == ']' ? (uint64_t)v : 0;
}

uint64_t ct_own_netns(const char *root, uint32_t pid)
{
	char path[OWN_PATH];
	if ((size_t)snprintf(path, sizeof(path), "%s/%u/ns/net", root, pid) >= sizeof(path))
		return 0;
	return ct_own_netns_at(path);
}

int ct_own_same_netns(const char *root, uint32_t pid, uint64_t netns)
{
	if (!netns)
		return 1;
	uint64_t ns = ct_own_netns(root, pid);
	return !ns || ns == netns;
}

static int own_cmp_desc(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

long ct_own_pids_desc(const char *root, uint32_t **out)
{
	*out = NULL;
	DIR *d = opendir(root);
	if (!d)
		return -errno;
	size_t n = 0, cap = 1024;
	uint32_t *all = malloc(cap * sizeof(*all));
	if (!all) {
		closedir(d);
		return -ENOMEM;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *s = de->d_name;
		if (*s < '1' || *s > '9')
			continue;
		unsigned long long v = 0;
		for (; *s >= '0' && *s <= '9' && v <= UINT32_MAX; s++)
			v = v * 10 + (unsigned long long)(*s - '0');
		if (*s || v > UINT32_MAX)
			continue; /* not a pid ("1abc", or out of range) */
		if (n == cap) {
			uint32_t *more = realloc(all, 2 * cap * sizeof(*all));
			if (!more) {
				free(all);
				closedir(d);
				return -ENOMEM;
			}
			all = more;
			cap *= 2;
		}
		all[n++] = (uint32_t)v;
	}
	closedir(d);
	qsort(all, n, sizeof(*all), own_cmp_desc);
	*out = all;
	return (long)n;
}

size_t ct_own_newest(const char *root, uint64_t netns, uint32_t *out, size_t max)
{
	uint32_t *all;
	long n = ct_own_pids_desc(root, &all);
	if (n <= 0)
		return 0;
	size_t k = 0;
	for (long i = 0; i < n && k < max; i++)
		if (ct_own_same_netns(root, all[i], netns))
			out[k++] = all[i];
	free(all);
	return k;
}

/* Reads a whole small proc file into buf (NUL-terminated); returns its length or -errno. */
static long own_read(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t n = 0;
	while (n < cap - 1) {
		ssize_t k = read(fd, buf + n, cap - 1 - n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	buf[n] = 0;
	return (long)n;
}

/* Appends the pids listed in one children file to kids; returns how many it listed. The file is
 * read in pieces, so a process with thousands of children is listed in full. */
static size_t own_children_file(const char *path, uint32_t *kids, size_t cap, size_t have)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char buf[4096];
	size_t keep = 0, n = 0;
	for (;;) {
		ssize_t k = read(fd, buf + keep, sizeof(buf) - 1 - keep);
		if (k < 0 && errno == EINTR)
			continue;
		int last = k <= 0;
		size_t len = keep + (k > 0 ? (size_t)k : 0);
		buf[len] = 0;
		/* A number cut at the end of the piece waits for the next read. */
		size_t upto = len;
		if (!last)
			while (upto > 0 && buf[upto - 1] >= '0' && buf[upto - 1] <= '9')
				upto--;
		for (size_t i = 0; i < upto;) {
			if (buf[i] < '0' || buf[i] > '9') {
				i++;
				continue;
			}
			uint64_t v = 0;
			for (; i < upto && buf[i] >= '0' && buf[i] <= '9'; i++)
				v = v * 10 + (uint64_t)(buf[i] - '0');
			if (v && v <= UINT32_MAX) {
				if (have + n < cap)
					kids[have + n] = (uint32_t)v;
				n++;
			}
		}
		if (last)
			break;
		keep = len - upto;
		if (keep >= sizeof(buf) - 1)
			keep = 0; /* a "number" of 4 KB: not a children file */
		memmove(buf, buf + upto, keep);
	}
	close(fd);
	return n;
}

long ct_own_family(const char *root, uint32_t pid, uint32_t *ppid, int *has_ppid, uint32_t *kids, size_t cap)
{
	char path[OWN_PATH], buf[1024];
	*ppid = 0;
	*has_ppid = 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/%u/stat", root, pid) >= sizeof(path))
		return -ENAMETOOLONG;
	long len = own_read(path, buf, sizeof(buf));
	int stat_err = len < 0 ? (int)-len : 0;
	if (len > 0) {
		/* comm may hold spaces and ')': the fields start after the last ')'. */
		char *rp = strrchr(buf, ')');
		unsigned p;
		if (rp && sscanf(rp + 1, " %*c %u", &p) == 1) {
			*ppid = p;
			*has_ppid = 1;
		}
	}
	snprintf(path, sizeof(path), "%s/%u/task", root, pid);
	DIR *d = opendir(path);
	if (!d)
		return stat_err ? -stat_err : 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		/* A thread gone, or a kernel without CONFIG_PROC_CHILDREN: the parent still counts. */
		if ((size_t)snprintf(path, sizeof(path), "%s/%u/task/%s/children", root, pid, de->d_name) < sizeof(path))
			n += own_children_file(path, kids, cap, n);
	}
	closedir(d);
	return (long)n;
}

static uint64_t own_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct own_search {
	const struct ct_own_query *q;
	uint8_t *found; /* per want */
	size_t left;
};

static void own_search_sock(void *ctx, uint32_t inode, uint32_t pid)
{
	struct own_search *s = ctx;
	const struct ct_own_query *q = s->q;
	if (s->left) {
		size_t lo = 0, hi = q->nwant;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (q->want[mid] < inode)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < q->nwant && q->want[lo] == inode && !s->found[lo]) {
			s->found[lo] = 1;
			s->left--;
		}
	}
	q->fn(q->ctx, inode, pid);
}

int ct_own_search(const struct ct_own_query *q, struct ct_own_stats *st, int *exhaustive)
{
	*exhaustive = 0;
	uint32_t *all = NULL;
	const uint32_t *order = q->pids;
	size_t n = q->npids;
	if (!order) {
		long k = ct_own_pids_desc(q->root, &all);
		if (k < 0)
			return (int)k;
		order = all;
		n = (size_t)k;
	}
	struct own_search s = { q, NULL, 0 };
	if (q->nwant) {
		s.found = calloc(q->nwant, 1);
		if (!s.found) {
			free(all);
			return -ENOMEM;
		}
		/* Duplicates in want count once. */
		s.left = q->nwant;
		for (size_t i = 1; i < q->nwant; i++)
			s.left -= q->want[i] == q->want[i - 1];
		for (size_t i = 1; i < q->nwant; i++)
			if (q->want[i] == q->want[i - 1])
				s.found[i] = 1;
	}
	uint64_t deadline = q->budget_ns >= 0 ? own_now() + (uint64_t)q->budget_ns : 0;
	size_t i = 0;
	for (; i < n; i++) {
		uint32_t pid = order[i];
		/* A search of every process skips other namespaces' (containers, test hosts): their
		 * sockets are not in our conntrack table, and their fd tables can be huge. */
		if (!all || ct_own_same_netns(q->root, pid, q->netns)) {
			/* A table that cannot be read (gone, not ours) is skipped, and counted in st. */
			if (ct_own_scan_pid(q->root, pid, own_search_sock, &s, st) == 0 && q->visit)
				q->visit(q->ctx, pid);
		}
		/* The current table is read in full; the next one is not started. The clock is read
		 * after unreadable tables too: thousands of them (not root) still end on time. */
		if (q->nwant && !s.left)
			break;
		if (deadline && own_now() > deadline)
			break;
	}
	*exhaustive = i + 1 >= n; /* also when the last pid was the one the search stopped at */
	free(s.found);
	free(all);
	return 0;
}
