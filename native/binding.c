/* Node-API glue only: arguments in; record Buffers, plain objects and coded errors out.
 * Sockets are polled on libuv's loop; reading is done in bounded slices so a large dump
 * never holds the JavaScript thread for long. */

#include <errno.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#include "ct_evthread.h"
#include "ct_netns.h"
#include "ct_parse.h"
#include "ct_sock.h"

int ct_nft_register(napi_env env, napi_value exports); /* binding_nft.c */
int ct_bpf_register(napi_env env, napi_value exports); /* binding_bpf.c */
int ct_owners_register(napi_env env, napi_value exports); /* binding_owners.c */
int ct_json_register(napi_env env, napi_value exports); /* binding_json.c */

#define CT_BATCH 4096 /* records per Buffer handed to JavaScript */
#define CT_SLICE_RECORDS 32768 /* records read per loop turn before yielding */
#define CT_RECV_BUF (256 * 1024)

/* Checks a Node-API call; on failure throws (if nothing is pending) and returns NULL. */
#define NAPI_CALL(env, call)                                                                    \
	do {                                                                                    \
		napi_status st_ = (call);                                                       \
		if (st_ != napi_ok) {                                                           \
			ct_throw_status(env, st_, #call);                                       \
			return NULL;                                                            \
		}                                                                               \
	} while (0)

static void ct_throw_status(napi_env env, napi_status st, const char *what)
{
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (pending)
		return;
	const napi_extended_error_info *info = NULL;
	napi_get_last_error_info(env, &info);
	char msg[256];
	snprintf(msg, sizeof(msg), "ctacct native: %s failed (%s, status %d)", what,
		 info && info->error_message ? info->error_message : "unknown", (int)st);
	napi_throw_error(env, "ERR_CTACCT_NAPI", msg);
}

/* Builds an Error shaped like Node's system errors: code, errno (negative), syscall. */
napi_value ct_make_errno_error(napi_env env, int err, const char *syscall);
napi_value ct_make_errno_error(napi_env env, int err, const char *syscall)
{
	char msg[256];
	const char *name = uv_err_name(-err);
	snprintf(msg, sizeof(msg), "%s %s (%s)", syscall, name, strerror(err));
	napi_value m, code, e, v;
	if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok ||
	    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok ||
	    napi_create_error(env, code, m, &e) != napi_ok)
		return NULL;
	if (napi_create_int32(env, -err, &v) == napi_ok)
		napi_set_named_property(env, e, "errno", v);
	napi_set_named_property(env, e, "code", code);
	if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok)
		napi_set_named_property(env, e, "syscall", v);
	return e;
}

void ct_throw_errno(napi_env env, int err, const char *syscall);
void ct_throw_errno(napi_env env, int err, const char *syscall)
{
	napi_value e = ct_make_errno_error(env, err, syscall);
	if (e)
		napi_throw(env, e);
	else
		napi_throw_error(env, "ERR_CTACCT_NAPI", syscall);
}

static int ct_set_num(napi_env env, napi_value o, const char *k, double v);

/* ---- option helpers ---- */

static int ct_opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	bool has = false;
	napi_value v;
	napi_valuetype t;
	if (!obj || napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return 0;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok)
		return 0;
	if (t != napi_number)
		return 0;
	return napi_get_value_uint32(env, v, out) == napi_ok;
}

static int ct_opt_bool(napi_env env, napi_value obj, const char *key)
{
	bool has = false, b = false;
	napi_value v;
	if (!obj || napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return 0;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok)
		return 0;
	if (napi_get_value_bool(env, v, &b) != napi_ok)
		return 0;
	return b;
}

/* 1 when the option is present and false (an option that defaults to true). */
static int ct_opt_has_false(napi_env env, napi_value obj, const char *key)
{
	bool has = false, b = true;
	napi_value v;
	if (!obj || napi_has_named_property(env, obj, key, &has) != napi_ok || !has)
		return 0;
	if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_get_value_bool(env, v, &b) != napi_ok)
		return 0;
	return !b;
}

/* ---- dumps: a netlink socket polled on libuv's loop, read in bounded slices ---- */

struct ct_reader {
	uv_poll_t poll;
	napi_env env;
	napi_ref cb;
	napi_async_context actx;
	int fd;
	int closing;
	int uv_closed; /* uv_close finished */
	int finalized; /* the JS handle was garbage-collected */
	struct ct_record *recs;
	size_t nrecs;
	uint8_t *rbuf;
	/* statistics, cumulative */
	double messages, records, malformed, ignored, bytes_read;
};

static void ct_reader_free(struct ct_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->recs);
	free(r->rbuf);
	free(r);
}

/* The reader is freed only when libuv is done with the handle and JS can no longer reach it. */
static void ct_reader_free_cb(uv_handle_t *h)
{
	struct ct_reader *r = h->data;
	r->uv_closed = 1;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->finalized)
		ct_reader_free(r);
}

static void ct_reader_close(struct ct_reader *r)
{
	if (r->closing)
		return;
	r->closing = 1;
	uv_poll_stop(&r->poll);
	if (r->cb) {
		napi_delete_reference(r->env, r->cb);
		r->cb = NULL;
	}
	if (r->actx) {
		napi_async_destroy(r->env, r->actx);
		r->actx = NULL;
	}
	uv_close((uv_handle_t *)&r->poll, ct_reader_free_cb);
}

/* Calls cb(err, records, count, done). Returns 0, or -1 if the callback threw. */
static int ct_reader_emit(struct ct_reader *r, napi_value err, int done)
{
	napi_env env = r->env;
	napi_value argv[4], cb, recv, result;
	if (!r->cb || napi_get_reference_value(env, r->cb, &cb) != napi_ok || !cb)
		return -1;
	if (napi_get_global(env, &recv) != napi_ok)
		return -1;
	if (err)
		argv[0] = err;
	else
		napi_get_null(env, &argv[0]);
	if (r->nrecs) {
		void *data;
		if (napi_create_buffer_copy(env, r->nrecs * sizeof(struct ct_record), r->recs, &data,
					    &argv[1]) != napi_ok)
			return -1;
	} else {
		napi_get_null(env, &argv[1]);
	}
	napi_create_uint32(env, (uint32_t)r->nrecs, &argv[2]);
	napi_get_boolean(env, done, &argv[3]);
	r->nrecs = 0;
	napi_status st = napi_make_callback(env, r->actx, recv, cb, 4, argv, &result);
	if (st == napi_pending_exception) {
		napi_value ex;
		napi_get_and_clear_last_exception(env, &ex);
		napi_fatal_exception(env, ex);
		return -1;
	}
	return st == napi_ok ? 0 : -1;
}

static int ct_reader_parse(struct ct_reader *r, const uint8_t *buf, size_t len, int *done,
			   int *kerr)
{
	size_t off = 0;
	while (off < len) {
		struct ct_parse_result res;
		ct_parse_buffer(buf + off, len - off, 0, r->recs + r->nrecs, CT_BATCH - r->nrecs, &res);
		r->nrecs += res.records;
		r->records += (double)res.records;
		r->malformed += res.malformed;
		r->ignored += res.ignored;
		if (res.done)
			*done = 1;
		if (res.error)
			*kerr = res.error;
		off += res.consumed;
		if (r->nrecs == CT_BATCH && ct_reader_emit(r, NULL, 0) < 0)
			return -1;
		if (res.consumed == 0 && r->nrecs < CT_BATCH)
			break;
	}
	return 0;
}

static void ct_on_readable(uv_poll_t *h, int status, int events)
{
	struct ct_reader *r = h->data;
	napi_env env = r->env;
	napi_handle_scope scope;
	(void)events;
	if (r->closing || napi_open_handle_scope(env, &scope) != napi_ok)
		return;
	if (status < 0) {
		ct_reader_emit(r, ct_make_errno_error(env, -status, "poll"), 1);
		ct_reader_close(r);
		goto out;
	}
	int done = 0, kerr = 0, oserr = 0;
	double start_records = r->records;
	while (!r->closing && !done && !kerr && r->records - start_records < CT_SLICE_RECORDS) {
		{
			ssize_t n = recv(r->fd, r->rbuf, CT_RECV_BUF, MSG_DONTWAIT);
			if (n < 0) {
				oserr = errno;
			} else if (n == 0) {
				oserr = EAGAIN;
			} else {
				r->messages++;
				r->bytes_read += (double)n;
				if (ct_reader_parse(r, r->rbuf, (size_t)n, &done, &kerr) < 0)
					goto out_close;
			}
		}
		if (oserr == EINTR) {
			oserr = 0;
			continue;
		}
		if (oserr == EAGAIN || oserr == EWOULDBLOCK) {
			oserr = 0;
			break;
		}
		if (oserr)
			break;
	}
	if (r->closing)
		goto out;
	if (kerr) {
		r->nrecs = 0;
		ct_reader_emit(r, ct_make_errno_error(env, kerr, "ctnetlink dump"), 1);
		ct_reader_close(r);
		goto out;
	}
	if (oserr) {
		if (r->nrecs)
			ct_reader_emit(r, NULL, 0);
		ct_reader_emit(r, ct_make_errno_error(env, oserr, "recvmsg"), 1);
		ct_reader_close(r);
		goto out;
	}
	if (done) {
		ct_reader_emit(r, NULL, 1);
		ct_reader_close(r);
		goto out;
	}
	if (r->nrecs)
		ct_reader_emit(r, NULL, 0);
	goto out;
out_close:
	ct_reader_close(r);
out:
	napi_close_handle_scope(env, scope);
}

static void ct_reader_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct ct_reader *r = data;
	/* The JS handle is gone, but a dump still running finishes (it is bounded) and then frees
	 * itself: a caller that kept only the callback must still get its records. */
	r->finalized = 1;
	if (r->uv_closed)
		ct_reader_free(r);
}

static struct ct_reader *ct_reader_new(napi_env env, napi_value cb, int fd, const char *name)
{
	struct ct_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->env = env;
	r->fd = fd;
	r->recs = malloc(sizeof(struct ct_record) * CT_BATCH);
	r->rbuf = malloc(CT_RECV_BUF);
	uv_loop_t *loop = NULL;
	napi_value resname;
	if (!r->recs || !r->rbuf ||
	    napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, cb, 1, &r->cb) != napi_ok ||
	    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resname) != napi_ok ||
	    napi_async_init(env, NULL, resname, &r->actx) != napi_ok || uv_poll_init(loop, &r->poll, fd) != 0) {
		if (r->cb)
			napi_delete_reference(env, r->cb);
		if (r->actx)
			napi_async_destroy(env, r->actx);
		free(r->recs);
		free(r->rbuf);
		free(r);
		return NULL;
	}
	r->poll.data = r;
	return r;
}

static napi_value ct_reader_wrap(napi_env env, struct ct_reader *r)
{
	napi_value ext;
	NAPI_CALL(env, napi_create_external(env, r, ct_reader_finalize, NULL, &ext));
	return ext;
}

/* The External handle in argv[0] (after reading the arguments), or NULL with a TypeError thrown. */
static void *ct_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, const char *what)
{
	void *data = NULL;
	if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok || *argc < 1 ||
	    napi_get_value_external(env, argv[0], &data) != napi_ok) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
		return NULL;
	}
	return data;
}

static struct ct_reader *ct_reader_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv)
{
	return ct_unwrap(env, info, argc, argv, "expected a reader handle");
}

/* ---- events: a reader thread (native/ct_evthread.c) delivering through a threadsafe function ---- */

struct ct_events {
	struct ct_evthread *thread;
	napi_threadsafe_function tsfn;
	int closed;
};

/* Runs on the JS thread for every batch the reader thread delivered. */
static void ct_events_call_js(napi_env env, napi_value cb, void *context, void *data)
{
	struct ct_events *e = context;
	struct ct_ev_batch *b = data;
	if (!env || !cb) { /* the function is being torn down: just free */
		free(b);
		return;
	}
	/* The records are copied into a JS buffer below: the reader may go on reading. */
	if (e && e->thread)
		ct_evthread_consumed(e->thread, b);
	napi_value argv[4], recv, result;
	if (napi_get_global(env, &recv) != napi_ok)
		goto done;
	if (b->kind == CT_EV_RECORDS) {
		napi_get_null(env, &argv[0]);
	} else {
		argv[0] = ct_make_errno_error(env, b->err, "recvmsg");
		if (!argv[0])
			goto done;
	}
	if (b->n) {
		void *out;
		if (napi_create_buffer_copy(env, b->n * sizeof(struct ct_record), b->recs, &out, &argv[1]) != napi_ok)
			goto done;
	} else {
		napi_get_null(env, &argv[1]);
	}
	napi_create_uint32(env, (uint32_t)b->n, &argv[2]);
	napi_get_boolean(env, b->kind == CT_EV_ERROR, &argv[3]);
	if (napi_call_function(env, recv, cb, 4, argv, &result) == napi_pending_exception) {
		napi_value ex;
		napi_get_and_clear_last_exception(env, &ex);
		napi_fatal_exception(env, ex);
	}
done:
	free(b);
}

static void ct_events_deliver(void *ctx, struct ct_ev_batch *b)
{
	struct ct_events *e = ctx;
	if (napi_call_threadsafe_function(e->tsfn, b, napi_tsfn_nonblocking) != napi_ok)
		free(b); /* closing */
}

static void ct_events_close(struct ct_events *e)
{
	if (e->closed)
		return;
	e->closed = 1;
	ct_evthread_stop(e->thread); /* joins: no delivery after this */
	e->thread = NULL;
	napi_release_threadsafe_function(e->tsfn, napi_tsfn_release);
}

static void ct_events_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct ct_events *e = data;
	ct_events_close(e);
	free(e);
}

/* openEvents({ new, update, destroy, rcvbuf, rcvbufMax, lookupSockets, procRoot }, cb) -> handle
 * cb(err, records, count, fatal): err ENOBUFS with fatal=false is an overrun (resync). */
static napi_value ct_open_events(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_valuetype t;
	if (argc < 2 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "openEvents(options, callback)");
		return NULL;
	}
	struct ct_evthread_opts o;
	memset(&o, 0, sizeof(o));
	if (ct_opt_bool(env, argv[0], "new"))
		o.groups |= CT_GROUP_NEW;
	if (ct_opt_bool(env, argv[0], "update"))
		o.groups |= CT_GROUP_UPDATE;
	if (ct_opt_bool(env, argv[0], "destroy"))
		o.groups |= CT_GROUP_DESTROY;
	uint32_t rcvbuf = 32u << 20, rcvbuf_max = 256u << 20;
	ct_opt_u32(env, argv[0], "rcvbuf", &rcvbuf);
	ct_opt_u32(env, argv[0], "rcvbufMax", &rcvbuf_max);
	if (rcvbuf > INT32_MAX / 2)
		rcvbuf = INT32_MAX / 2;
	if (rcvbuf_max < rcvbuf)
		rcvbuf_max = rcvbuf;
	if (rcvbuf_max > INT32_MAX / 2)
		rcvbuf_max = INT32_MAX / 2;
	o.rcvbuf = (int)rcvbuf;
	o.rcvbuf_max = (int)rcvbuf_max;
	o.lookup = ct_opt_bool(env, argv[0], "lookupSockets");
	o.watch_accepts = !ct_opt_has_false(env, argv[0], "watchAccepts");
	uint32_t queue_max = 0;
	ct_opt_u32(env, argv[0], "queueMax", &queue_max);
	o.queue_max = queue_max;
	char root[200] = "/proc";
	bool has = false;
	napi_value v;
	if (napi_has_named_property(env, argv[0], "procRoot", &has) == napi_ok && has &&
	    napi_get_named_property(env, argv[0], "procRoot", &v) == napi_ok) {
		size_t len = 0;
		if (napi_get_value_string_utf8(env, v, root, sizeof(root), &len) != napi_ok)
			snprintf(root, sizeof(root), "/proc");
	}
	o.proc_root = root;

	struct ct_events *e = calloc(1, sizeof(*e));
	if (!e) {
		ct_throw_errno(env, ENOMEM, "openEvents");
		return NULL;
	}
	napi_value name;
	if (napi_create_string_utf8(env, "ctacct:events", NAPI_AUTO_LENGTH, &name) != napi_ok ||
	    napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, e, ct_events_call_js,
					    &e->tsfn) != napi_ok) {
		free(e);
		ct_throw_status(env, napi_generic_failure, "napi_create_threadsafe_function");
		return NULL;
	}
	int rc = ct_evthread_start(&o, ct_events_deliver, e, &e->thread);
	if (rc < 0) {
		napi_release_threadsafe_function(e->tsfn, napi_tsfn_abort);
		free(e);
		ct_throw_errno(env, -rc, "socket(NETLINK_NETFILTER)");
		return NULL;
	}
	napi_value ext;
	if (napi_create_external(env, e, ct_events_finalize, NULL, &ext) != napi_ok) {
		ct_events_close(e);
		free(e);
		ct_throw_status(env, napi_generic_failure, "napi_create_external");
		return NULL;
	}
	return ext;
}

static struct ct_events *ct_events_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv)
{
	return ct_unwrap(env, info, argc, argv, "expected an events handle");
}

/* The open events handle of a setter called as (handle, value), with the value in *arg (NULL when
 * missing); NULL when the handle is closed (the call does nothing) or not one (a TypeError). */
static struct ct_events *ct_events_setter(napi_env env, napi_callback_info info, napi_value *arg)
{
	size_t argc = 2;
	napi_value argv[2];
	struct ct_events *e = ct_events_unwrap(env, info, &argc, argv);
	*arg = argc >= 2 ? argv[1] : NULL;
	return e && !e->closed ? e : NULL;
}

static napi_value ct_events_close_js(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	struct ct_events *e = ct_events_unwrap(env, info, &argc, argv);
	if (e)
		ct_events_close(e);
	return NULL;
}

/* Reads a JS array of numbers into out[] (at most cap; non-numbers and zeros become 0). Returns
 * the count, or -1 (a TypeError thrown, naming `usage`) when v is not an array. */
static long ct_u32_array(napi_env env, napi_value v, uint32_t *out, uint32_t cap, const char *usage)
{
	uint32_t len = 0;
	bool is_array = false;
	if (!v || napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &len) != napi_ok) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return -1;
	}
	uint32_t n = len < cap ? len : cap;
	for (uint32_t i = 0; i < n; i++) {
		napi_value x;
		out[i] = 0;
		if (napi_get_element(env, v, i, &x) == napi_ok)
			napi_get_value_uint32(env, x, &out[i]);
	}
	return (long)n;
}

/* setCandidates(handle, pids[]): processes the reader thread searches first for new sockets. */
static napi_value ct_events_candidates_js(napi_env env, napi_callback_info info)
{
	napi_value arg;
	struct ct_events *e = ct_events_setter(env, info, &arg);
	if (!e)
		return NULL;
	uint32_t raw[64], pids[64];
	long len = ct_u32_array(env, arg, raw, 64, "setCandidates(handle, pids)");
	if (len < 0)
		return NULL;
	size_t n = 0;
	for (long i = 0; i < len; i++)
		if (raw[i])
			pids[n++] = raw[i];
	ct_evthread_set_candidates(e->thread, pids, n);
	return NULL;
}

/* setSoleListeners(handle, [inode, pid, inode, pid, ...]): listeners whose accepted sockets
 * belong to that one process (see ct_evthread_set_sole). */
static napi_value ct_events_sole_js(napi_env env, napi_callback_info info)
{
	napi_value arg;
	struct ct_events *e = ct_events_setter(env, info, &arg);
	if (!e)
		return NULL;
	uint32_t raw[128], inodes[64], pids[64];
	long len = ct_u32_array(env, arg, raw, 128, "setSoleListeners(handle, [inode, pid, ...])");
	if (len < 0)
		return NULL;
	size_t n = 0;
	for (long i = 0; i + 1 < len; i += 2)
		if (raw[i] && raw[i + 1]) {
			inodes[n] = raw[i];
			pids[n++] = raw[i + 1];
		}
	ct_evthread_set_sole(e->thread, inodes, pids, n);
	return NULL;
}

/* setLocalAddresses(handle, buf): this namespace's addresses in localAddresses()'s format (17
 * bytes each); the reader thread looks up only ends at those addresses (see ct_evthread_set_local). */
static napi_value ct_events_local_js(napi_env env, napi_callback_info info)
{
	napi_value arg;
	struct ct_events *e = ct_events_setter(env, info, &arg);
	if (!e)
		return NULL;
	bool is_buf = false;
	void *data = NULL;
	size_t len = 0;
	if (!arg || napi_is_buffer(env, arg, &is_buf) != napi_ok || !is_buf ||
	    napi_get_buffer_info(env, arg, &data, &len) != napi_ok || len % 17) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setLocalAddresses(handle, buffer of 17-byte entries)");
		return NULL;
	}
	ct_evthread_set_local(e->thread, data, len / 17);
	return NULL;
}

static napi_value ct_events_stats_js(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], o;
	struct ct_events *e = ct_events_unwrap(env, info, &argc, argv);
	if (!e)
		return NULL;
	struct ct_ev_stats st;
	memset(&st, 0, sizeof(st));
	if (!e->closed)
		ct_evthread_stats(e->thread, &st);
	NAPI_CALL(env, napi_create_object(env, &o));
	if (!ct_set_num(env, o, "messages", st.messages) || !ct_set_num(env, o, "records", st.records) ||
	    !ct_set_num(env, o, "malformed", st.malformed) || !ct_set_num(env, o, "ignored", st.ignored) ||
	    !ct_set_num(env, o, "overruns", st.overruns) || !ct_set_num(env, o, "rcvbuf", st.rcvbuf) ||
	    !ct_set_num(env, o, "lookups", st.lookups) || !ct_set_num(env, o, "lookupErrors", st.lookup_errors) ||
	    !ct_set_num(env, o, "lookupsSkipped", st.lookups_skipped) ||
	    !ct_set_num(env, o, "bytesRead", st.bytes_read) || !ct_set_num(env, o, "ownerHits", st.owner_hits) ||
	    !ct_set_num(env, o, "ownerScans", st.owner_scans) || !ct_set_num(env, o, "ownerFds", st.owner_fds) ||
	    !ct_set_num(env, o, "pauses", st.pauses) || !ct_set_num(env, o, "queuedBytes", st.queued) ||
	    !ct_set_num(env, o, "queuedPeakBytes", st.queued_peak)) {
		ct_throw_status(env, napi_generic_failure, "eventsStats");
		return NULL;
	}
	return o;
}

static struct ct_dump_filter ct_read_filter(napi_env env, napi_value o)
{
	struct ct_dump_filter f;
	memset(&f, 0, sizeof(f));
	uint32_t v;
	if (ct_opt_u32(env, o, "family", &v))
		f.family = (uint8_t)v;
	if (ct_opt_u32(env, o, "mark", &v)) {
		f.has_mark = 1;
		f.mark = v;
		f.mark_mask = 0xffffffffu;
		if (ct_opt_u32(env, o, "markMask", &v))
			f.mark_mask = v;
	}
	if (ct_opt_u32(env, o, "status", &v)) {
		f.has_status = 1;
		f.status = v;
		f.status_mask = v;
		if (ct_opt_u32(env, o, "statusMask", &v))
			f.status_mask = v;
	}
	if (ct_opt_u32(env, o, "zone", &v)) {
		f.has_zone = 1;
		f.zone = (uint16_t)v;
	}
	if (ct_opt_u32(env, o, "proto", &v))
		f.proto = (uint8_t)v;
	if (ct_opt_u32(env, o, "dport", &v)) {
		f.has_port = 1;
		f.port = (uint16_t)v;
	} else if (ct_opt_u32(env, o, "sport", &v)) {
		f.has_port = 1;
		f.port_src = 1;
		f.port = (uint16_t)v;
	}
	return f;
}

/* dump(filter, cb) -> handle; cb(err, records, count, done) until done. */
static napi_value ct_dump(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	napi_valuetype t;
	if (argc < 2 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "dump(filter, callback)");
		return NULL;
	}
	struct ct_dump_filter f = ct_read_filter(env, argv[0]);
	int fd = ct_sock_open(0, 0, NULL);
	if (fd < 0) {
		ct_throw_errno(env, -fd, "socket(NETLINK_NETFILTER)");
		return NULL;
	}
	uint32_t seq = (uint32_t)time(NULL);
	int rc = ct_dump_request(fd, seq, &f);
	if (rc < 0) {
		close(fd);
		ct_throw_errno(env, -rc, "sendto");
		return NULL;
	}
	struct ct_reader *r = ct_reader_new(env, argv[1], fd, "ctacct:dump");
	if (!r) {
		close(fd);
		ct_throw_errno(env, ENOMEM, "dump");
		return NULL;
	}
	rc = uv_poll_start(&r->poll, UV_READABLE, ct_on_readable);
	if (rc != 0) {
		ct_reader_close(r);
		ct_throw_errno(env, -rc, "uv_poll_start");
		return NULL;
	}
	return ct_reader_wrap(env, r);
}

/* close(handle): stops an unfinished dump (event subscriptions have eventsClose). */
static napi_value ct_close(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	struct ct_reader *r = ct_reader_unwrap(env, info, &argc, argv);
	if (r)
		ct_reader_close(r);
	return NULL;
}

static int ct_set_num(napi_env env, napi_value o, const char *k, double v)
{
	napi_value n;
	return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, o, k, n) == napi_ok;
}

/* stats(handle) -> { messages, records, malformed, ignored, overruns, rcvbuf, lookups, ... } */
static napi_value ct_stats(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], o;
	struct ct_reader *r = ct_reader_unwrap(env, info, &argc, argv);
	if (!r)
		return NULL;
	NAPI_CALL(env, napi_create_object(env, &o));
	if (!ct_set_num(env, o, "messages", r->messages) || !ct_set_num(env, o, "records", r->records) ||
	    !ct_set_num(env, o, "malformed", r->malformed) || !ct_set_num(env, o, "ignored", r->ignored) ||
	    !ct_set_num(env, o, "bytesRead", r->bytes_read)) {
		ct_throw_status(env, napi_generic_failure, "stats");
		return NULL;
	}
	return o;
}

/* parse(buffer, isEvent) -> { records: Buffer, count, malformed, ignored, done, error }
 * The pure entry point: captured kernel bytes replay through the same parser. */
static napi_value ct_parse(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], o, v;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	bool is_buf = false;
	if (argc < 1 || napi_is_buffer(env, argv[0], &is_buf) != napi_ok || !is_buf) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "parse(buffer, isEvent)");
		return NULL;
	}
	void *data;
	size_t len;
	NAPI_CALL(env, napi_get_buffer_info(env, argv[0], &data, &len));
	bool is_event = false;
	if (argc > 1)
		napi_get_value_bool(env, argv[1], &is_event);
	size_t cap = len / (NLMSG_HDRLEN + 4) + 1;
	struct ct_record *recs = calloc(cap, sizeof(*recs));
	if (!recs) {
		ct_throw_errno(env, ENOMEM, "parse");
		return NULL;
	}
	struct ct_parse_result res;
	ct_parse_buffer(data, len, is_event, recs, cap, &res);
	void *out;
	napi_status st = napi_create_buffer_copy(env, res.records * sizeof(*recs), recs, &out, &v);
	free(recs);
	if (st != napi_ok) {
		ct_throw_status(env, st, "napi_create_buffer_copy");
		return NULL;
	}
	NAPI_CALL(env, napi_create_object(env, &o));
	NAPI_CALL(env, napi_set_named_property(env, o, "records", v));
	if (!ct_set_num(env, o, "count", (double)res.records) || !ct_set_num(env, o, "malformed", res.malformed) ||
	    !ct_set_num(env, o, "ignored", res.ignored) || !ct_set_num(env, o, "consumed", (double)res.consumed) ||
	    !ct_set_num(env, o, "error", res.error)) {
		ct_throw_status(env, napi_generic_failure, "parse");
		return NULL;
	}
	NAPI_CALL(env, napi_get_boolean(env, res.done, &v));
	NAPI_CALL(env, napi_set_named_property(env, o, "done", v));
	return o;
}

/* lookupSocket(family, proto, local: Buffer, lport, remote: Buffer, rport)
 *   -> { inode, uid, state } | null */
static napi_value ct_lookup_socket(napi_env env, napi_callback_info info)
{
	size_t argc = 7;
	napi_value argv[7], o;
	NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
	uint32_t family = 0, proto = 0, lport = 0, rport = 0;
	void *local = NULL, *remote = NULL;
	size_t llen = 0, rlen = 0;
	if (argc < 6 || napi_get_value_uint32(env, argv[0], &family) != napi_ok ||
	    napi_get_value_uint32(env, argv[1], &proto) != napi_ok ||
	    napi_get_buffer_info(env, argv[2], &local, &llen) != napi_ok ||
	    napi_get_value_uint32(env, argv[3], &lport) != napi_ok ||
	    napi_get_buffer_info(env, argv[4], &remote, &rlen) != napi_ok ||
	    napi_get_value_uint32(env, argv[5], &rport) != napi_ok || llen < 16 || rlen < 16) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
				      "lookupSocket(family, proto, local16, lport, remote16, rport)");
		return NULL;
	}
	static int own_fd = -1;
	int fd = own_fd;
	/* Optional 7th argument: a sock_diag fd opened in another namespace (netnsDiagOpen). */
	int32_t ns_fd = -1;
	if (argc >= 7 && napi_get_value_int32(env, argv[6], &ns_fd) == napi_ok && ns_fd >= 0)
		fd = ns_fd;
	if (fd < 0) {
		fd = ct_diag_open();
		if (fd < 0) {
			ct_throw_errno(env, -fd, "socket(NETLINK_SOCK_DIAG)");
			return NULL;
		}
		own_fd = fd;
	}
	struct ct_sock_hit hit;
	memset(&hit, 0, sizeof(hit));
	int rc = ct_diag_lookup(fd, (uint8_t)family, (uint8_t)proto, local, (uint16_t)lport, remote,
				(uint16_t)rport, &hit);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "sock_diag");
		return NULL;
	}
	if (rc == 0) {
		NAPI_CALL(env, napi_get_null(env, &o));
		return o;
	}
	NAPI_CALL(env, napi_create_object(env, &o));
	if (!ct_set_num(env, o, "inode", hit.inode) || !ct_set_num(env, o, "uid", hit.uid) ||
	    !ct_set_num(env, o, "state", hit.state)) {
		ct_throw_status(env, napi_generic_failure, "lookupSocket");
		return NULL;
	}
	return o;
}

/* The (family, proto, states) arguments of dumpSockets and countSockets; 0 (a TypeError thrown,
 * naming `usage`) when they are not three numbers. */
static int ct_socket_query_args(napi_env env, napi_callback_info info, const char *usage, uint32_t *family,
				uint32_t *proto, uint32_t *states)
{
	size_t argc = 3;
	napi_value argv[3];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
	    napi_get_value_uint32(env, argv[0], family) != napi_ok || napi_get_value_uint32(env, argv[1], proto) != napi_ok ||
	    napi_get_value_uint32(env, argv[2], states) != napi_ok) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return 0;
	}
	return 1;
}

/* dumpSockets(family, proto, states) -> Buffer of 56-byte struct ct_diag_sock entries */
static napi_value ct_dump_sockets(napi_env env, napi_callback_info info)
{
	uint32_t family = 0, proto = 0, states = 0;
	if (!ct_socket_query_args(env, info, "dumpSockets(family, proto, states)", &family, &proto, &states))
		return NULL;
	struct ct_diag_socks socks = { NULL, 0, 0 };
	int rc = ct_diag_dump((uint8_t)family, (uint8_t)proto, states, &socks);
	if (rc < 0) {
		free(socks.v);
		ct_throw_errno(env, -rc, "sock_diag");
		return NULL;
	}
	napi_value out;
	void *data;
	napi_status st = napi_create_buffer_copy(env, socks.n * sizeof(struct ct_diag_sock), socks.v ? (void *)socks.v : (void *)"", &data, &out);
	free(socks.v);
	if (st != napi_ok) {
		ct_throw_status(env, st, "napi_create_buffer_copy");
		return NULL;
	}
	return out;
}

/* countSockets(family, proto, states) -> Uint32Array of CT_DIAG_STATES counts, by TCP/UDP state
 * number: the dump of dumpSockets without keeping any socket (`ctacct states`, serve's gauge). */
static napi_value ct_count_sockets(napi_env env, napi_callback_info info)
{
	uint32_t family = 0, proto = 0, states = 0;
	if (!ct_socket_query_args(env, info, "countSockets(family, proto, states)", &family, &proto, &states))
		return NULL;
	uint32_t counts[CT_DIAG_STATES] = { 0 };
	int rc = ct_diag_count((uint8_t)family, (uint8_t)proto, states, counts);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "sock_diag");
		return NULL;
	}
	napi_value ab, out;
	void *data;
	napi_status st = napi_create_arraybuffer(env, sizeof(counts), &data, &ab);
	if (st == napi_ok) {
		memcpy(data, counts, sizeof(counts));
		st = napi_create_typedarray(env, napi_uint32_array, CT_DIAG_STATES, ab, 0, &out);
	}
	if (st != napi_ok) {
		ct_throw_status(env, st, "countSockets");
		return NULL;
	}
	return out;
}

/* localAddresses() -> Buffer of 17-byte entries (family 4|6, 16 address bytes) */
static napi_value ct_local_addresses(napi_env env, napi_callback_info info)
{
	(void)info;
	size_t cap = 4096, count = 0;
	uint8_t *buf = malloc(cap * 17);
	if (!buf) {
		ct_throw_errno(env, ENOMEM, "localAddresses");
		return NULL;
	}
	int rc = ct_addr_list(buf, cap, &count);
	if (rc < 0) {
		free(buf);
		ct_throw_errno(env, -rc, "RTM_GETADDR");
		return NULL;
	}
	napi_value out;
	void *data;
	napi_status st = napi_create_buffer_copy(env, count * 17, buf, &data, &out);
	free(buf);
	if (st != napi_ok) {
		ct_throw_status(env, st, "napi_create_buffer_copy");
		return NULL;
	}
	return out;
}

/* ---- network namespaces (ct_netns.c) ---- */

/* Reads argv[0] as a path string into buf; throws and returns 0 when it is not one. */
static int ct_path_arg(napi_env env, napi_callback_info info, char *buf, size_t cap, const char *what)
{
	size_t argc = 1, len = 0;
	napi_value argv[1];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_string_utf8(env, argv[0], buf, cap, &len) != napi_ok || len == 0 || len >= cap - 1) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
		return 0;
	}
	return 1;
}

/* netnsDiagOpen(path) -> fd of a sock_diag socket inside that namespace (close with fs.closeSync) */
static napi_value ct_netns_diag_open_js(napi_env env, napi_callback_info info)
{
	char path[4096];
	if (!ct_path_arg(env, info, path, sizeof(path), "netnsDiagOpen(path)"))
		return NULL;
	int fd = ct_netns_diag_open(path);
	if (fd < 0) {
		ct_throw_errno(env, -fd, "setns");
		return NULL;
	}
	napi_value v;
	NAPI_CALL(env, napi_create_int32(env, fd, &v));
	return v;
}

/* netnsAddresses(path) -> Buffer of 17-byte entries, as localAddresses() inside that namespace */
static napi_value ct_netns_addresses_js(napi_env env, napi_callback_info info)
{
	char path[4096];
	if (!ct_path_arg(env, info, path, sizeof(path), "netnsAddresses(path)"))
		return NULL;
	size_t cap = 4096, count = 0;
	uint8_t *buf = malloc(cap * 17);
	if (!buf) {
		ct_throw_errno(env, ENOMEM, "netnsAddresses");
		return NULL;
	}
	int rc = ct_netns_addr_list(path, buf, cap, &count);
	if (rc < 0) {
		free(buf);
		ct_throw_errno(env, -rc, "setns");
		return NULL;
	}
	napi_value out;
	void *data;
	napi_status st = napi_create_buffer_copy(env, count * 17, buf, &data, &out);
	free(buf);
	if (st != napi_ok) {
		ct_throw_status(env, st, "napi_create_buffer_copy");
		return NULL;
	}
	return out;
}

/* netnsEnter(path): the calling thread (and threads it starts later) joins that namespace */
static napi_value ct_netns_enter_js(napi_env env, napi_callback_info info)
{
	char path[4096];
	if (!ct_path_arg(env, info, path, sizeof(path), "netnsEnter(path)"))
		return NULL;
	int rc = ct_netns_enter(path);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "setns");
		return NULL;
	}
	return NULL;
}

static napi_value ct_init(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "openEvents", NULL, ct_open_events, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "eventsClose", NULL, ct_events_close_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "eventsStats", NULL, ct_events_stats_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "setCandidates", NULL, ct_events_candidates_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "setSoleListeners", NULL, ct_events_sole_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "setLocalAddresses", NULL, ct_events_local_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "dump", NULL, ct_dump, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "close", NULL, ct_close, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "stats", NULL, ct_stats, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "parse", NULL, ct_parse, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "lookupSocket", NULL, ct_lookup_socket, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "localAddresses", NULL, ct_local_addresses, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "netnsDiagOpen", NULL, ct_netns_diag_open_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "netnsAddresses", NULL, ct_netns_addresses_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "netnsEnter", NULL, ct_netns_enter_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "dumpSockets", NULL, ct_dump_sockets, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "countSockets", NULL, ct_count_sockets, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	NAPI_CALL(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
	if (ct_nft_register(env, exports) < 0 || ct_bpf_register(env, exports) < 0 || ct_owners_register(env, exports) < 0 ||
	    ct_json_register(env, exports) < 0)
		return NULL;
	napi_value v;
	NAPI_CALL(env, napi_create_uint32(env, CT_RECORD_SIZE, &v));
	NAPI_CALL(env, napi_set_named_property(env, exports, "recordSize", v));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, ct_init)
