/* Network namespaces: netlink sockets opened inside another namespace, and setns for the whole
 * view. A socket stays bound to the namespace it was created in, so a sock_diag socket made once
 * inside a container's namespace answers exact lookups there for as long as it is kept.
 * The socket is made on a short-lived helper thread that joins the namespace and exits: the
 * calling (JavaScript) thread never changes namespace. Plain C; errors are negative errno. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "ct_netns.h"
#include "ct_sock.h"

struct ct_netns_job {
	int nsfd;
	int (*fn)(void *arg);
	void *arg;
	int rc;
};

static void *ct_netns_thread(void *p)
{
	struct ct_netns_job *j = p;
	if (setns(j->nsfd, CLONE_NEWNET) < 0) {
		j->rc = -errno;
		return NULL;
	}
	j->rc = j->fn(j->arg);
	return NULL;
}

/* Runs fn(arg) on a helper thread inside the network namespace at path; returns fn's result. */
static int ct_netns_run(const char *path, int (*fn)(void *), void *arg)
{
	struct ct_netns_job j = { .fn = fn, .arg = arg, .rc = 0 };
	j.nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (j.nsfd < 0)
		return -errno;
	pthread_t t;
	int e = pthread_create(&t, NULL, ct_netns_thread, &j);
	if (e) {
		close(j.nsfd);
		return -e;
	}
	pthread_join(t, NULL);
	close(j.nsfd);
	return j.rc;
}

static int ct_diag_open_fn(void *arg)
{
	(void)arg;
	return ct_diag_open();
}

int ct_netns_diag_open(const char *path)
{
	return ct_netns_run(path, ct_diag_open_fn, NULL);
}

struct ct_addr_job {
	uint8_t *out;
	size_t cap;
	size_t *count;
};

static int ct_addr_fn(void *arg)
{
	struct ct_addr_job *a = arg;
	return ct_addr_list(a->out, a->cap, a->count);
}

int ct_netns_addr_list(const char *path, uint8_t *out, size_t cap, size_t *count)
{
	struct ct_addr_job a = { out, cap, count };
	return ct_netns_run(path, ct_addr_fn, &a);
}

int ct_netns_enter(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
	close(fd);
	return rc;
}
