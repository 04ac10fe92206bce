/* The event reader thread: reads the conntrack event socket as soon as the kernel queues an
 * event, looks up the sockets of NEW flows with sock_diag and their owner pids in candidate
 * processes' fd tables while a short-lived connection still exists, and hands batches of records
 * to a delivery callback. Plain C and pthreads; no Node headers. */
#ifndef CT_EVTHREAD_H
#define CT_EVTHREAD_H

#include <stddef.h>
#include <stdint.h>

#include "ct_record.h"

enum ct_ev_batch_kind { CT_EV_RECORDS = 0, CT_EV_OVERRUN = 1, CT_EV_ERROR = 2 };

struct ct_ev_batch {
	int kind;
	int err; /* errno for CT_EV_OVERRUN (ENOBUFS) and CT_EV_ERROR */
	size_t n;
	struct ct_record recs[]; /* n records */
};

/* Takes ownership of b (free() it, after ct_evthread_consumed). Called on the reader thread.
 * Reading pauses while more than queue_max bytes are delivered and not consumed: the kernel's
 * socket buffer then fills and overflows (ENOBUFS: an overrun, counted, and the consumer
 * resyncs), so a stalled consumer costs kernel buffer, never unbounded process memory. */
typedef void (*ct_ev_deliver)(void *ctx, struct ct_ev_batch *b);

struct ct_evthread_opts {
	unsigned groups; /* CT_GROUP_* */
	int rcvbuf, rcvbuf_max;
	int lookup; /* sock_diag lookups + owner search for NEW records */
	int watch_accepts; /* look again every ms at inbound TCP connections until accept() (see ev_pending_check) */
	const char *proc_root;
	size_t queue_max; /* bytes of batches handed over and not yet consumed before reading pauses; 0 = default */
};

struct ct_ev_stats {
	double messages, records, malformed, ignored, overruns, lookups, lookup_errors, bytes_read;
	double lookups_skipped; /* ends of NEW records not looked up: their address is not local */
	double owner_hits, owner_scans, owner_fds;
	double pauses; /* times reading paused because the consumer was queue_max behind */
	double queued, queued_peak; /* bytes handed over and not yet consumed: now, and the most */
	int rcvbuf;
};

struct ct_evthread;

int ct_evthread_start(const struct ct_evthread_opts *o, ct_ev_deliver deliver, void *ctx, struct ct_evthread **out);
/* Stops and joins the thread, closes its sockets, frees it. */
void ct_evthread_stop(struct ct_evthread *t);
/* Processes to search first for the owner of a new socket (most likely first). */
void ct_evthread_set_candidates(struct ct_evthread *t, const uint32_t *pids, size_t n);
/* Listeners whose accepted sockets belong to one known process (inodes[i] -> pids[i]), so the
 * reader thread gives them that owner without reading fd tables; replaces the previous list. */
void ct_evthread_set_sole(struct ct_evthread *t, const uint32_t *inodes, const uint32_t *pids, size_t n);
/* This namespace's addresses: n entries of 17 bytes (4 or 6, then the address in 16 bytes, an
 * IPv4 one in the first 4), the format of localAddresses(). Ends at other addresses are not
 * looked up from then on; replaces the previous set (more than 65,536: all are looked up). */
void ct_evthread_set_local(struct ct_evthread *t, const uint8_t *entries, size_t n);
void ct_evthread_stats(struct ct_evthread *t, struct ct_ev_stats *out);
/* The consumer is done with a batch delivered earlier (any thread). */
void ct_evthread_consumed(struct ct_evthread *t, const struct ct_ev_batch *b);
/* Bytes a batch occupies, as counted against queue_max. */
size_t ct_ev_batch_size(const struct ct_ev_batch *b);

#endif
