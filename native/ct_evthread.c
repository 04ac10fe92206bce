#include "ct_evthread.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ct_owners.h"
#include "ct_parse.h"
#include "ct_sock.h"

#define EV_VLEN 64
#define EV_DGRAM 4096
#define EV_BATCH 1024
#define OWNER_CACHE 65536 /* direct-mapped inode → pid cache, a power of two */
#define MAX_CANDIDATES 64
#define MAX_SOLE 64 /* listeners with a sole holder (see ev_sole_holder) */
#define NEWEST 16 /* when candidates miss: the newest processes, where a just-started client is */
#define NEWEST_EVERY_NS 50000000ull /* at most every 50 ms */
#define QUEUE_MAX_DEFAULT (4u << 20) /* ~20k records waiting for JavaScript */
#define PENDING 512 /* inbound connections waiting for accept() */
#define PENDING_MAX_NS 2000000000ull /* looked at for 2 s at most */
#define PENDING_HANDSHAKE_NS 20000000ull /* a listener answer in the first 20 ms: handshake not done */
#define PENDING_PER_TICK 64 /* lookups per millisecond at most (~160 µs) */
#define MAX_LOCAL 65536 /* local addresses kept; beyond that every end is looked up */

/* An inbound TCP connection whose NEW found only its listener: looked up again every
 * millisecond until the accepted socket exists, so a connection that lives a few ms after
 * accept() is still seen with its own socket (TypeScript is too late for those). */
struct ev_pending {
	struct ct_record rec;
	uint64_t since;
	int queued; /* was seen waiting for accept() */
};
struct ct_evthread {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t drained; /* under mu: st.queued fell below queue_max, or stopping */
	int stopping; /* under mu */
	size_t queue_max;
	int fd, wake_fd, diag_fd;
	int rcvbuf, rcvbuf_max;
	int lookup;
	int watch_accepts;
	char proc_root[200];
	ct_ev_deliver deliver;
	void *ctx;
	uint32_t cand[MAX_CANDIDATES];
	size_t ncand;
	uint32_t sole_inode[MAX_SOLE], sole_pid[MAX_SOLE]; /* under mu */
	size_t nsole;
	/* This namespace's addresses, sorted (see ct_evthread_set_local): an end whose address is
	 * not local has no socket here, so it is not looked up. Unknown until set: all are. */
	uint8_t *local4, *local6; /* under mu */
	size_t nlocal4, nlocal6;
	int local_known;
	uint32_t cache_inode[OWNER_CACHE];
	uint32_t cache_pid[OWNER_CACHE];
	struct ct_ev_stats st; /* under mu */
	uint8_t rbuf[EV_VLEN * EV_DGRAM];
	struct mmsghdr msgs[EV_VLEN];
	struct iovec iovs[EV_VLEN];
	struct ct_ev_batch *batch;
	uint64_t last_newest;
	struct ev_pending pend[PENDING];
	struct ev_pending tmp[PENDING_PER_TICK];
	size_t npend;
	uint64_t last_pend;
	uint64_t netns; /* inode of the reader's network namespace, 0 if unknown */
};

static struct ct_ev_batch *ev_batch_new(void)
{
	struct ct_ev_batch *b = malloc(sizeof(*b) + EV_BATCH * sizeof(struct ct_record));
	if (b) {
		b->kind = CT_EV_RECORDS;
		b->err = 0;
		b->n = 0;
	}
	return b;
}

size_t ct_ev_batch_size(const struct ct_ev_batch *b)
{
	return sizeof(*b) + b->n * sizeof(struct ct_record);
}

/* Hands a batch over and waits while the consumer is queue_max behind (or until stop). */
static void ev_deliver(struct ct_evthread *t, struct ct_ev_batch *b)
{
	size_t size = ct_ev_batch_size(b);
	pthread_mutex_lock(&t->mu);
	t->st.queued += (double)size;
	if (t->st.queued > t->st.queued_peak)
		t->st.queued_peak = t->st.queued;
	pthread_mutex_unlock(&t->mu);
	t->deliver(t->ctx, b);
	pthread_mutex_lock(&t->mu);
	if (t->st.queued >= (double)t->queue_max && !t->stopping) {
		t->st.pauses++;
		while (t->st.queued >= (double)t->queue_max && !t->stopping)
			pthread_cond_wait(&t->drained, &t->mu);
	}
	pthread_mutex_unlock(&t->mu);
}

void ct_evthread_consumed(struct ct_evthread *t, const struct ct_ev_batch *b)
{
	pthread_mutex_lock(&t->mu);
	t->st.queued -= (double)ct_ev_batch_size(b);
	if (t->st.queued < (double)t->queue_max)
		pthread_cond_signal(&t->drained);
	pthread_mutex_unlock(&t->mu);
}

/* Delivers the working batch copied to its exact size (a delivery usually holds a record or
 * two; the 200 KB working batch is reused). */
static void ev_flush(struct ct_evthread *t)
{
	if (!t->batch || t->batch->n == 0)
		return;
	size_t size = ct_ev_batch_size(t->batch);
	struct ct_ev_batch *b = malloc(size);
	if (!b) {
		free(t->batch); /* ev_drain reports ENOMEM */
		t->batch = NULL;
		return;
	}
	memcpy(b, t->batch, size);
	t->batch->n = 0;
	ev_deliver(t, b);
}

static void ev_signal(struct ct_evthread *t, int kind, int err)
{
	ev_flush(t);
	struct ct_ev_batch *b = malloc(sizeof(*b));
	if (!b)
		return;
	b->kind = kind;
	b->err = err;
	b->n = 0;
	ev_deliver(t, b);
}

static size_t ev_slot(uint32_t inode)
{
	return (inode * 2654435761u) & (OWNER_CACHE - 1);
}

static uint32_t ev_cache_get(struct ct_evthread *t, uint32_t inode)
{
	size_t i = ev_slot(inode);
	return t->cache_inode[i] == inode ? t->cache_pid[i] : 0;
}

static void ev_cache_put(struct ct_evthread *t, uint32_t inode, uint32_t pid)
{
	size_t i = ev_slot(inode);
	t->cache_inode[i] = inode;
	t->cache_pid[i] = pid;
}

static void ev_cache_sock(void *ctx, uint32_t inode, uint32_t pid)
{
	ev_cache_put(ctx, inode, pid);
}

/* Reads one process's fd table (ct_owners.c rules), caching every socket inode met. Returns fds read. */
static size_t ev_scan_pid(struct ct_evthread *t, uint32_t pid)
{
	struct ct_own_stats st;
	memset(&st, 0, sizeof(st));
	ct_own_scan_pid(t->proc_root, pid, ev_cache_sock, t, &st);
	return st.fds;
}

/* The NEWEST highest pids under proc_root in this network namespace, highest first: pids are
 * global, and on a host with containers the newest processes are often someone else's. */
static size_t ev_newest_pids(struct ct_evthread *t, uint32_t *top)
{
	return ct_own_newest(t->proc_root, t->netns, top, NEWEST);
}

static uint64_t ev_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ev_cmp4(const void *a, const void *b)
{
	return memcmp(a, b, 4);
}

static int ev_cmp16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* Under mu: whether an address (4 or 16 bytes by family) may hold a socket of this namespace:
 * loopback, one of its addresses, or any address while they are not known. TypeScript calls an
 * end local by the same set, so no end it accounts misses its look-up. */
static int ev_local(const struct ct_evthread *t, uint8_t family, const uint8_t *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t one[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
	if (!t->local_known)
		return 1;
	if (family == AF_INET6 && memcmp(a, mapped, 12) == 0) {
		family = AF_INET;
		a += 12;
	}
	if (family == AF_INET)
		return a[0] == 127 || (t->nlocal4 && bsearch(a, t->local4, t->nlocal4, 4, ev_cmp4));
	return memcmp(a, one, 16) == 0 || (t->nlocal6 && bsearch(a, t->local6, t->nlocal6, 16, ev_cmp16));
}

static void ev_lookup(struct ct_evthread *t, struct ct_record *rec)
{
	if (rec->kind != CT_KIND_NEW || (rec->proto != IPPROTO_TCP && rec->proto != IPPROTO_UDP) ||
	    !(rec->present & CT_HAS_REPLY_TUPLE))
		return;
	pthread_mutex_lock(&t->mu);
	int orig_local = ev_local(t, rec->family, rec->orig_src);
	int reply_local = ev_local(t, rec->family, rec->reply_src);
	pthread_mutex_unlock(&t->mu);
	/* An end that is not local has no socket here: its look-up (an inbound connection's client
	 * end, an outbound one's server end) would only say so. */
	int rc = 0, rc2 = -1, n = 0;
	if (orig_local) {
		rc = ct_diag_lookup(t->diag_fd, rec->family, rec->proto, rec->orig_src, rec->orig_sport, rec->orig_dst,
				    rec->orig_dport, &rec->sk_orig);
		n++;
	}
	if (reply_local) {
		rc2 = ct_diag_lookup(t->diag_fd, rec->family, rec->proto, rec->reply_src, rec->reply_sport,
				     rec->reply_dst, rec->reply_dport, &rec->sk_reply);
		n++;
	}
	/* An inbound connection not accept()ed yet (or already closed) has no inode: its listener, or
	 * the bound UDP socket, owns the service provisionally (TypeScript moves the flow to the
	 * accepted socket's holder later). A socket with an inode is the flow's own: never swapped. */
	if (rc2 >= 0 && (!rec->sk_reply.found || !rec->sk_reply.inode)) {
		static const uint8_t zero[16];
		struct ct_sock_hit l;
		memset(&l, 0, sizeof(l));
		n++;
		if (ct_diag_lookup(t->diag_fd, rec->family, rec->proto, rec->reply_src, rec->reply_sport, zero, 0, &l) > 0 &&
		    l.inode && (rec->proto != IPPROTO_TCP || l.state == 10 /* TCP_LISTEN */)) {
			rec->sk_reply = l;
			if (rec->proto == IPPROTO_TCP && t->watch_accepts && t->npend < PENDING) {
				t->pend[t->npend].rec = *rec;
				t->pend[t->npend].since = ev_now();
				t->pend[t->npend].queued = 0;
				t->npend++;
			}
		}
	}
	rec->present |= CT_HAS_SK_ORIG | CT_HAS_SK_REPLY;
	pthread_mutex_lock(&t->mu);
	t->st.lookups += n;
	t->st.lookups_skipped += 2 - (orig_local + reply_local);
	t->st.lookup_errors += (rc < 0) + (reply_local && rc2 < 0);
	pthread_mutex_unlock(&t->mu);
}

/* Fills the owner pid of every found socket in records [from, to) that the cache now knows;
 * returns how many it filled. */
static size_t ev_fill_pids(struct ct_evthread *t, size_t from, size_t to)
{
	struct ct_record *r = t->batch->recs;
	size_t n = 0;
	for (size_t i = from; i < to; i++) {
		struct ct_sock_hit *h[2] = { &r[i].sk_orig, &r[i].sk_reply };
		for (int k = 0; k < 2; k++) {
			if (!h[k]->found || !h[k]->inode || h[k]->pid)
				continue;
			h[k]->pid = ev_cache_get(t, h[k]->inode);
			n += h[k]->pid != 0;
		}
	}
	return n;
}

/* Finds owner pids for the new sockets of records [from, to): cache first, then one pass over the
 * candidate processes, stopping when every socket has an owner. */
static void ev_owners(struct ct_evthread *t, size_t from, size_t to)
{
	size_t missing = 0;
	for (size_t i = from; i < to; i++) {
		const struct ct_record *r = &t->batch->recs[i];
		/* Sockets whose holder is not known yet (ev_owners_accepted may have named it). Counting
		 * those with a pid too kept this search going over every candidate's fd table for
		 * sockets found already: a full search per batch, for nothing. */
		missing += (r->sk_orig.found && r->sk_orig.inode && !r->sk_orig.pid) +
			   (r->sk_reply.found && r->sk_reply.inode && !r->sk_reply.pid);
	}
	missing -= ev_fill_pids(t, from, to); /* the cache knows these already */
	if (!missing)
		return;
	uint32_t cand[MAX_CANDIDATES];
	pthread_mutex_lock(&t->mu);
	size_t nc = t->ncand;
	memcpy(cand, t->cand, nc * sizeof(cand[0]));
	pthread_mutex_unlock(&t->mu);
	size_t scans = 0, fds = 0, hits = 0;
	for (size_t c = 0; c < nc && missing; c++) {
		fds += ev_scan_pid(t, cand[c]);
		scans++;
		size_t found = ev_fill_pids(t, from, to);
		missing -= found;
		hits += found;
	}
	if (missing) {
		/* A process started just now is not a candidate yet; its pid is most likely among the
		 * highest. Bounded: NEWEST fd tables, at most every NEWEST_EVERY_NS. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		if (now - t->last_newest >= NEWEST_EVERY_NS) {
			t->last_newest = now;
			uint32_t top[NEWEST];
			size_t ntop = ev_newest_pids(t, top);
			for (size_t c = 0; c < ntop && missing; c++) {
				int seen = 0;
				for (size_t k = 0; k < nc; k++)
					seen |= cand[k] == top[c];
				if (seen)
					continue;
				fds += ev_scan_pid(t, top[c]);
				scans++;
				size_t found = ev_fill_pids(t, from, to);
				missing -= found;
				hits += found;
			}
		}
	}
	pthread_mutex_lock(&t->mu);
	t->st.owner_scans += (double)scans;
	t->st.owner_fds += (double)fds;
	t->st.owner_hits += (double)hits;
	pthread_mutex_unlock(&t->mu);
}

/* Appends the children of pid (of every thread, ct_owners.c) to out[*n], up to cap, leaving out
 * `skip`. Returns pid's parent (0 when unknown). */
static uint32_t ev_children(struct ct_evthread *t, uint32_t pid, uint32_t skip, uint32_t *out, size_t *n, size_t cap)
{
	uint32_t kids[MAX_CANDIDATES], ppid = 0;
	int has_ppid = 0;
	long k = ct_own_family(t->proc_root, pid, &ppid, &has_ppid, kids, MAX_CANDIDATES);
	for (long i = 0; i < k && i < MAX_CANDIDATES && *n < cap; i++)
		if (kids[i] != skip)
			out[(*n)++] = kids[i];
	return has_ppid ? ppid : 0;
}

/* Appends pid's children, parent and siblings to out[*n], up to cap. The family is where a
 * server's accepted sockets are: a fork-after-accept child is the listener holder's child,
 * pre-fork workers share the listener with their parent, and the members of an SO_REUSEPORT
 * group (each with a listener of its own) are siblings (same rule as TypeScript's search). */
static void ev_family(struct ct_evthread *t, uint32_t pid, uint32_t *out, size_t *n, size_t cap)
{
	uint32_t ppid = ev_children(t, pid, 0, out, n, cap);
	/* init (1) is nobody's family: its children are every daemon. */
	if (ppid > 1) {
		if (*n < cap)
			out[(*n)++] = ppid;
		ev_children(t, ppid, pid, out, n, cap);
	}
}

/* Owners of accepted sockets in records [from, to): the family of the listener's holder
 * (listener[i] is the listener inode of record from + i) first. */
static void ev_owners_family(struct ct_evthread *t, size_t from, size_t to, const uint32_t *listener)
{
	uint32_t look[MAX_CANDIDATES];
	size_t n = 0, scans = 0, fds = 0;
	for (size_t i = from; i < to && n < MAX_CANDIDATES / 2; i++) {
		uint32_t l = listener[i - from] ? ev_cache_get(t, listener[i - from]) : 0;
		if (!l)
			continue;
		int seen = 0;
		for (size_t k = 0; k < n; k++)
			seen |= look[k] == l;
		if (seen)
			continue;
		/* Children first: a fork-after-accept child holds the socket its parent accepted. */
		ev_family(t, l, look, &n, MAX_CANDIDATES);
		if (n < MAX_CANDIDATES)
			look[n++] = l;
	}
	for (size_t i = 0; i < n; i++) {
		/* Only the accepted sockets this search is for (those with a listener) can be missing:
		 * other records (DESTROYs, outbound NEWs) have no such socket to find. */
		size_t missing = 0;
		for (size_t j = from; j < to; j++)
			missing += listener[j - from] && !t->batch->recs[j].sk_reply.pid;
		if (!missing)
			break;
		fds += ev_scan_pid(t, look[i]);
		scans++;
		ev_fill_pids(t, from, to);
	}
	/* ev_fill_pids takes the cache as it is; a socket seen before its holder's fd was read
	 * keeps pid 0 and TypeScript searches for it. */
	pthread_mutex_lock(&t->mu);
	t->st.owner_scans += (double)scans;
	t->st.owner_fds += (double)fds;
	pthread_mutex_unlock(&t->mu);
}

/* The holder of a listener that TypeScript found held by one process without children, alone on
 * its port (OwnerResolver.soleHolder), or 0. That process accepts every connection the listener
 * queues (fd passing aside; the close tracker settles those), so an accepted socket behind it
 * needs no fd table search: the per-connection search was half of this thread's time under churn. */
static uint32_t ev_sole_holder(struct ct_evthread *t, uint32_t listener)
{
	uint32_t pid = 0;
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->nsole && !pid; i++)
		if (t->sole_inode[i] == listener)
			pid = t->sole_pid[i];
	pthread_mutex_unlock(&t->mu);
	return pid;
}

/* Records [from, to) whose NEW already found an accepted socket (the event was read after
 * accept()): its holder is searched in the listener holder's family first, as for pending ones. */
static void ev_owners_accepted(struct ct_evthread *t, size_t from, size_t to)
{
	static const uint8_t zero[16];
	uint32_t listener[EV_BATCH];
	int any = 0;
	for (size_t i = from; i < to; i++) {
		struct ct_record *r = &t->batch->recs[i];
		listener[i - from] = 0;
		if (r->kind != CT_KIND_NEW || r->proto != IPPROTO_TCP || !r->sk_reply.found || !r->sk_reply.inode ||
		    r->sk_reply.state == 10 || ev_cache_get(t, r->sk_reply.inode))
			continue;
		struct ct_sock_hit l;
		memset(&l, 0, sizeof(l));
		if (ct_diag_lookup(t->diag_fd, r->family, r->proto, r->reply_src, r->reply_sport, zero, 0, &l) > 0 &&
		    l.inode && l.state == 10) {
			uint32_t sole = ev_sole_holder(t, l.inode);
			if (sole) {
				/* Handed over as the listener with its holder, the way TypeScript itself treats a
				 * sole holder's connections: nothing per accepted socket to learn or search. */
				r->sk_reply = l;
				r->sk_reply.pid = sole;
				continue;
			}
			listener[i - from] = l.inode;
			any = 1;
		}
	}
	if (any)
		ev_owners_family(t, from, to, listener);
}

/* Looks up the pending inbound connections again. One whose accepted socket exists now goes to
 * TypeScript as an UPDATE record carrying that socket (and its holder, when found); one that is
 * gone, or waited too long, leaves the list. */
static void ev_pending_check(struct ct_evthread *t)
{
	uint64_t now = ev_now();
	if (now - t->last_pend < 1000000ull)
		return; /* at most every millisecond, however many events arrive */
	t->last_pend = now;
	size_t first = t->batch->n, keep = 0, lookups = 0;
	uint32_t listener[PENDING];
	size_t n = t->npend < PENDING_PER_TICK ? t->npend : PENDING_PER_TICK;
	for (size_t i = 0; i < n; i++) {
		struct ev_pending *p = &t->pend[i];
		struct ct_record *r = &p->rec;
		struct ct_sock_hit h;
		memset(&h, 0, sizeof(h));
		lookups++;
		int rc = ct_diag_lookup(t->diag_fd, r->family, r->proto, r->reply_src, r->reply_sport, r->reply_dst,
					r->reply_dport, &h);
		if (rc > 0 && h.inode && h.state != 10) {
			if (t->batch->n == EV_BATCH || t->batch->n - first == PENDING) {
				ev_owners_family(t, first, t->batch->n, listener);
				ev_owners(t, first, t->batch->n);
				ev_flush(t);
				first = 0;
				if (!t->batch)
					return;
			}
			listener[t->batch->n - first] = r->sk_reply.inode;
			struct ct_record *out = &t->batch->recs[t->batch->n++];
			*out = *r;
			out->kind = CT_KIND_UPDATE;
			out->sk_reply = h;
			continue;
		}
		/* Not accepted yet: a request or in the accept queue (ESTABLISHED, CLOSE_WAIT; inode 0).
		 * The kernel answers with the listener when the tuple has no socket: before the
		 * handshake (briefly), or gone. Anything else: gone. */
		int queued = rc > 0 && !h.inode && (h.state == 1 || h.state == 3 || h.state == 8 || h.state == 12);
		p->queued |= queued;
		int waiting = queued || (rc > 0 && h.state == 10 && !p->queued && now - p->since < PENDING_HANDSHAKE_NS);
		if (waiting && now - p->since < PENDING_MAX_NS)
			t->pend[keep++] = *p;
	}
	/* Round robin: the ones not looked at this tick go first next time. */
	memcpy(t->tmp, t->pend, keep * sizeof(t->pend[0]));
	memmove(t->pend, t->pend + n, (t->npend - n) * sizeof(t->pend[0]));
	memcpy(t->pend + (t->npend - n), t->tmp, keep * sizeof(t->pend[0]));
	t->npend = t->npend - n + keep;
	if (t->batch->n > first) {
		ev_owners_family(t, first, t->batch->n, listener);
		ev_owners(t, first, t->batch->n);
	}
	pthread_mutex_lock(&t->mu);
	t->st.lookups += (double)lookups;
	pthread_mutex_unlock(&t->mu);
	ev_flush(t);
}

static void ev_overrun(struct ct_evthread *t)
{
	int want = t->rcvbuf * 2 > t->rcvbuf_max ? t->rcvbuf_max : t->rcvbuf * 2;
	int granted = 0;
	if (want > t->rcvbuf && ct_sock_set_rcvbuf(t->fd, want, &granted) == 0 && granted > 0)
		t->rcvbuf = granted / 2 > want ? want : granted / 2;
	pthread_mutex_lock(&t->mu);
	t->st.overruns++;
	t->st.rcvbuf = t->rcvbuf;
	pthread_mutex_unlock(&t->mu);
	ev_signal(t, CT_EV_OVERRUN, ENOBUFS);
}

/* Drains the socket. Returns 0, or an errno that ends the thread. */
static int ev_drain(struct ct_evthread *t)
{
	for (;;) {
		for (int i = 0; i < EV_VLEN; i++) {
			t->iovs[i].iov_base = t->rbuf + (size_t)i * EV_DGRAM;
			t->iovs[i].iov_len = EV_DGRAM;
			memset(&t->msgs[i].msg_hdr, 0, sizeof(t->msgs[i].msg_hdr));
			t->msgs[i].msg_hdr.msg_iov = &t->iovs[i];
			t->msgs[i].msg_hdr.msg_iovlen = 1;
		}
		int n = recvmmsg(t->fd, t->msgs, EV_VLEN, MSG_DONTWAIT, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == ENOBUFS) {
				ev_overrun(t);
				continue;
			}
			return errno;
		}
		double malformed = 0, ignored = 0, records = 0, bytes = 0;
		size_t first = t->batch->n;
		for (int i = 0; i < n; i++) {
			bytes += t->msgs[i].msg_len;
			if (t->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
				malformed++;
				continue;
			}
			const uint8_t *p = t->rbuf + (size_t)i * EV_DGRAM;
			size_t len = t->msgs[i].msg_len, off = 0;
			while (off < len) {
				if (t->batch->n == EV_BATCH) {
					if (t->lookup) {
						ev_owners_accepted(t, first, t->batch->n);
						ev_owners(t, first, t->batch->n);
					}
					ev_flush(t);
					first = 0;
					if (!t->batch)
						return ENOMEM;
				}
				struct ct_parse_result res;
				ct_parse_buffer(p + off, len - off, 1, t->batch->recs + t->batch->n, EV_BATCH - t->batch->n, &res);
				if (t->lookup)
					for (size_t k = 0; k < res.records; k++)
						ev_lookup(t, &t->batch->recs[t->batch->n + k]);
				t->batch->n += res.records;
				records += (double)res.records;
				malformed += res.malformed;
				ignored += res.ignored;
				if (res.consumed == 0)
					break;
				off += res.consumed;
			}
		}
		if (t->lookup) {
			ev_owners_accepted(t, first, t->batch->n);
			ev_owners(t, first, t->batch->n);
		}
		pthread_mutex_lock(&t->mu);
		t->st.messages += n;
		t->st.records += records;
		t->st.malformed += malformed;
		t->st.ignored += ignored;
		t->st.bytes_read += bytes;
		pthread_mutex_unlock(&t->mu);
		ev_flush(t);
		if (!t->batch)
			return ENOMEM;
		pthread_mutex_lock(&t->mu);
		int stopping = t->stopping;
		pthread_mutex_unlock(&t->mu);
		if (stopping)
			return 0;
		if (n < EV_VLEN)
			return 0;
	}
}

static void *ev_main(void *arg)
{
	struct ct_evthread *t = arg;
	struct pollfd pfd[2] = { { t->fd, POLLIN, 0 }, { t->wake_fd, POLLIN, 0 } };
	for (;;) {
		/* While accepts are pending the thread looks every millisecond. It stays a normal
		 * thread: SCHED_FIFO made it look on time on a loaded host, but it then took CPU from
		 * the servers it watches (see docs/decisions.md). */
		int rc = poll(pfd, 2, t->npend ? 1 : -1);
		if (rc < 0) {
			if (errno == EINTR)
				continue;
			ev_signal(t, CT_EV_ERROR, errno);
			break;
		}
		if (pfd[1].revents)
			break;
		if (t->npend) {
			ev_pending_check(t);
			if (!t->batch) {
				ev_signal(t, CT_EV_ERROR, ENOMEM);
				break;
			}
		}
		if (rc == 0)
			continue;
		if (pfd[0].revents & POLLERR) {
			/* The kernel dropped events (sk_err = ENOBUFS); reading SO_ERROR clears it. */
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (soerr == ENOBUFS)
				ev_overrun(t);
			else if (soerr) {
				ev_signal(t, CT_EV_ERROR, soerr);
				break;
			}
		}
		int err = ev_drain(t);
		if (err) {
			ev_signal(t, CT_EV_ERROR, err);
			break;
		}
	}
	return NULL;
}

static void ev_free(struct ct_evthread *t)
{
	close(t->fd);
	if (t->wake_fd >= 0)
		close(t->wake_fd);
	if (t->diag_fd >= 0)
		close(t->diag_fd);
	free(t->batch);
	free(t->local4);
	free(t->local6);
	pthread_cond_destroy(&t->drained);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int ct_evthread_start(const struct ct_evthread_opts *o, ct_ev_deliver deliver, void *ctx, struct ct_evthread **out)
{
	struct ct_evthread *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->diag_fd = -1;
	t->wake_fd = -1;
	t->deliver = deliver;
	t->ctx = ctx;
	t->lookup = o->lookup;
	t->watch_accepts = o->watch_accepts;
	t->rcvbuf_max = o->rcvbuf_max;
	snprintf(t->proc_root, sizeof(t->proc_root), "%s", o->proc_root ? o->proc_root : "/proc");
	t->netns = ct_own_netns_at("/proc/self/ns/net");
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->drained, NULL);
	t->queue_max = o->queue_max ? o->queue_max : QUEUE_MAX_DEFAULT;
	int granted = 0;
	t->fd = ct_sock_open(o->groups, o->rcvbuf, &granted);
	if (t->fd < 0) {
		int e = t->fd;
		pthread_cond_destroy(&t->drained);
		pthread_mutex_destroy(&t->mu);
		free(t);
		return e;
	}
	t->rcvbuf = granted / 2 > 0 ? granted / 2 : o->rcvbuf; /* the kernel reports double */
	t->st.rcvbuf = t->rcvbuf;
	int e = 0;
	t->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (t->wake_fd < 0)
		e = -errno;
	if (!e && o->lookup) {
		t->diag_fd = ct_diag_open();
		if (t->diag_fd < 0) {
			t->diag_fd = -1;
			t->lookup = 0; /* attribution falls back to TypeScript */
		}
	}
	if (!e && !(t->batch = ev_batch_new()))
		e = -ENOMEM;
	if (!e) {
		int rc = pthread_create(&t->thread, NULL, ev_main, t);
		if (rc)
			e = -rc;
	}
	if (e) {
		ev_free(t);
		return e;
	}
	*out = t;
	return 0;
}

void ct_evthread_stop(struct ct_evthread *t)
{
	uint64_t one = 1;
	ssize_t w;
	pthread_mutex_lock(&t->mu);
	t->stopping = 1; /* a reader paused on a full queue stops waiting */
	pthread_cond_signal(&t->drained);
	pthread_mutex_unlock(&t->mu);
	do
		w = write(t->wake_fd, &one, sizeof(one));
	while (w < 0 && errno == EINTR);
	pthread_join(t->thread, NULL);
	ev_free(t);
}

void ct_evthread_set_candidates(struct ct_evthread *t, const uint32_t *pids, size_t n)
{
	if (n > MAX_CANDIDATES)
		n = MAX_CANDIDATES;
	pthread_mutex_lock(&t->mu);
	memcpy(t->cand, pids, n * sizeof(pids[0]));
	t->ncand = n;
	pthread_mutex_unlock(&t->mu);
}

void ct_evthread_set_sole(struct ct_evthread *t, const uint32_t *inodes, const uint32_t *pids, size_t n)
{
	if (n > MAX_SOLE)
		n = MAX_SOLE;
	pthread_mutex_lock(&t->mu);
	memcpy(t->sole_inode, inodes, n * sizeof(inodes[0]));
	memcpy(t->sole_pid, pids, n * sizeof(pids[0]));
	t->nsole = n;
	pthread_mutex_unlock(&t->mu);
}

void ct_evthread_set_local(struct ct_evthread *t, const uint8_t *entries, size_t n)
{
	uint8_t *v4 = NULL, *v6 = NULL;
	size_t n4 = 0, n6 = 0;
	int known = n <= MAX_LOCAL;
	if (known && n) {
		v4 = malloc(n * 4);
		v6 = malloc(n * 16);
		if (!v4 || !v6)
			known = 0;
	}
	for (size_t i = 0; known && i < n; i++) {
		const uint8_t *e = entries + i * 17;
		if (e[0] == 4)
			memcpy(v4 + 4 * n4++, e + 1, 4);
		else if (e[0] == 6)
			memcpy(v6 + 16 * n6++, e + 1, 16);
	}
	if (known) {
		qsort(v4, n4, 4, ev_cmp4);
		qsort(v6, n6, 16, ev_cmp16);
	} else {
		free(v4);
		free(v6);
		v4 = v6 = NULL;
		n4 = n6 = 0;
	}
	pthread_mutex_lock(&t->mu);
	uint8_t *old4 = t->local4, *old6 = t->local6;
	t->local4 = v4;
	t->local6 = v6;
	t->nlocal4 = n4;
	t->nlocal6 = n6;
	t->local_known = known;
	pthread_mutex_unlock(&t->mu);
	free(old4);
	free(old6);
}

void ct_evthread_stats(struct ct_evthread *t, struct ct_ev_stats *out)
{
	pthread_mutex_lock(&t->mu);
	*out = t->st;
	pthread_mutex_unlock(&t->mu);
}
