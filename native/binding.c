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

#include "ct_parse.h"
#include "ct_sock.h"

#define CT_BATCH 4096 /* records per Buffer handed to JavaScript */
#define CT_SLICE_RECORDS 32768 /* records read per loop turn before yielding */
#define CT_RECV_BUF (256 * 1024)
#define CT_EV_VLEN 64 /* datagrams per recvmmsg on the event socket */
#define CT_EV_DGRAM 4096

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
static napi_value ct_make_errno_error(napi_env env, int err, const char *syscall)
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

static void ct_throw_errno(napi_env env, int err, const char *syscall)
{
	napi_value e = ct_make_errno_error(env, err, syscall);
	if (e)
		napi_throw(env, e);
	else
		napi_throw_error(env, "ERR_CTACCT_NAPI", syscall);
}

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

/* ---- a polled netlink reader shared by the event and dump paths ---- */

struct ct_reader {
	uv_poll_t poll;
	napi_env env;
	napi_ref cb;
	napi_async_context actx;
	int fd;
	int diag_fd; /* sock_diag socket for lookups at NEW time, or -1 */
	int is_event;
	int closing;
	int uv_closed; /* uv_close finished */
	int finalized; /* the JS handle was garbage-collected */
	int rcvbuf, rcvbuf_max;
	uint32_t seq;
	struct ct_record *recs;
	size_t nrecs;
	uint8_t *rbuf;
	struct mmsghdr *msgs;
	struct iovec *iovs;
	/* statistics, cumulative */
	double messages, records, malformed, ignored, overruns, lookups, lookup_errors, bytes_read;
};

static void ct_reader_free(struct ct_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	if (r->diag_fd >= 0)
		close(r->diag_fd);
	free(r->recs);
	free(r->rbuf);
	free(r->msgs);
	free(r->iovs);
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

/* Socket lookups for a NEW event, made as soon as it is read, while a short-lived socket
 * still exists: the orig-source end and the reply-source end. */
static void ct_reader_lookup(struct ct_reader *r, struct ct_record *rec)
{
	if (r->diag_fd < 0 || rec->kind != CT_KIND_NEW)
		return;
	if (rec->proto != IPPROTO_TCP && rec->proto != IPPROTO_UDP)
		return;
	if (!(rec->present & CT_HAS_REPLY_TUPLE))
		return;
	int rc = ct_diag_lookup(r->diag_fd, rec->family, rec->proto, rec->orig_src, rec->orig_sport,
				rec->orig_dst, rec->orig_dport, &rec->sk_orig);
	r->lookups++;
	if (rc < 0)
		r->lookup_errors++;
	rec->present |= CT_HAS_SK_ORIG;
	rc = ct_diag_lookup(r->diag_fd, rec->family, rec->proto, rec->reply_src, rec->reply_sport,
			    rec->reply_dst, rec->reply_dport, &rec->sk_reply);
	r->lookups++;
	if (rc < 0)
		r->lookup_errors++;
	rec->present |= CT_HAS_SK_REPLY;
}

static int ct_reader_parse(struct ct_reader *r, const uint8_t *buf, size_t len, int *done,
			   int *kerr)
{
	size_t off = 0;
	while (off < len) {
		struct ct_parse_result res;
		ct_parse_buffer(buf + off, len - off, r->is_event, r->recs + r->nrecs, CT_BATCH - r->nrecs, &res);
		for (size_t i = 0; i < res.records; i++)
			ct_reader_lookup(r, &r->recs[r->nrecs + i]);
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

static void ct_grow_rcvbuf(struct ct_reader *r)
{
	if (r->rcvbuf >= r->rcvbuf_max)
		return;
	int want = r->rcvbuf * 2 > r->rcvbuf_max ? r->rcvbuf_max : r->rcvbuf * 2;
	int granted = 0;
	if (ct_sock_set_rcvbuf(r->fd, want, &granted) == 0 && granted > 0)
		r->rcvbuf = granted / 2 > want ? want : granted;
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
		/* libuv reports EPOLLERR as UV_EBADF and stops polling. On a netlink event socket that
		 * is the kernel's ENOBUFS (events dropped): count it like a failed recv and poll on. */
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (r->is_event && getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
		    (soerr == ENOBUFS || soerr == 0) && uv_poll_start(&r->poll, UV_READABLE, ct_on_readable) == 0) {
			if (soerr == ENOBUFS) {
				r->overruns++;
				ct_grow_rcvbuf(r);
				if (ct_reader_emit(r, ct_make_errno_error(env, ENOBUFS, "recvmsg"), 0) < 0)
					goto out_close;
			}
		} else {
			ct_reader_emit(r, ct_make_errno_error(env, soerr ? soerr : -status, "poll"), 1);
			ct_reader_close(r);
			goto out;
		}
	}
	int done = 0, kerr = 0, oserr = 0;
	double start_records = r->records;
	while (!r->closing && !done && !kerr && r->records - start_records < CT_SLICE_RECORDS) {
		if (r->is_event) {
			for (int i = 0; i < CT_EV_VLEN; i++) {
				r->iovs[i].iov_base = r->rbuf + (size_t)i * CT_EV_DGRAM;
				r->iovs[i].iov_len = CT_EV_DGRAM;
				memset(&r->msgs[i].msg_hdr, 0, sizeof(r->msgs[i].msg_hdr));
				r->msgs[i].msg_hdr.msg_iov = &r->iovs[i];
				r->msgs[i].msg_hdr.msg_iovlen = 1;
			}
			int n = recvmmsg(r->fd, r->msgs, CT_EV_VLEN, MSG_DONTWAIT, NULL);
			if (n < 0) {
				oserr = errno;
			} else {
				for (int i = 0; i < n; i++) {
					r->messages++;
					r->bytes_read += r->msgs[i].msg_len;
					if (r->msgs[i].msg_hdr.msg_flags & MSG_TRUNC)
						r->malformed++;
					else if (ct_reader_parse(r, r->rbuf + (size_t)i * CT_EV_DGRAM,
								 r->msgs[i].msg_len, &done, &kerr) < 0)
						goto out_close;
				}
				if (n < CT_EV_VLEN)
					oserr = EAGAIN;
			}
		} else {
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
		if (oserr == ENOBUFS && r->is_event) {
			/* Events were dropped by the kernel: flush what we have, grow the buffer,
			 * tell the caller to resync. The socket stays usable. */
			r->overruns++;
			ct_grow_rcvbuf(r);
			if (r->nrecs && ct_reader_emit(r, NULL, 0) < 0)
				goto out_close;
			if (ct_reader_emit(r, ct_make_errno_error(env, ENOBUFS, "recvmsg"), 0) < 0)
				goto out_close;
			oserr = 0;
			continue;
		}
		if (oserr)
			break;
	}
	if (r->closing)
		goto out;
	if (kerr) {
		r->nrecs = 0;
		ct_reader_emit(r, ct_make_errno_error(env, kerr, r->is_event ? "recvmsg" : "ctnetlink dump"), 1);
		if (!r->is_event)
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
	r->finalized = 1;
	if (r->uv_closed)
		ct_reader_free(r);
	else
		ct_reader_close(r); /* frees itself in uv_close's callback */
}

static struct ct_reader *ct_reader_new(napi_env env, napi_value cb, int fd, int is_event, const char *name)
{
	struct ct_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->env = env;
	r->fd = fd;
	r->diag_fd = -1;
	r->is_event = is_event;
	r->recs = malloc(sizeof(struct ct_record) * CT_BATCH);
	r->rbuf = malloc(is_event ? (size_t)CT_EV_VLEN * CT_EV_DGRAM : CT_RECV_BUF);
	if (is_event) {
		r->msgs = calloc(CT_EV_VLEN, sizeof(*r->msgs));
		r->iovs = calloc(CT_EV_VLEN, sizeof(*r->iovs));
	}
	uv_loop_t *loop = NULL;
	napi_value resname;
	if (!r->recs || !r->rbuf || (is_event && (!r->msgs || !r->iovs)) ||
	    napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_reference(env, cb, 1, &r->cb) != napi_ok ||
	    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resname) != napi_ok ||
	    napi_async_init(env, NULL, resname, &r->actx) != napi_ok || uv_poll_init(loop, &r->poll, fd) != 0) {
		if (r->cb)
			napi_delete_reference(env, r->cb);
		if (r->actx)
			napi_async_destroy(env, r->actx);
		free(r->recs);
		free(r->rbuf);
		free(r->msgs);
		free(r->iovs);
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

static struct ct_reader *ct_reader_unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv)
{
	void *data = NULL;
	if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok || *argc < 1 ||
	    napi_get_value_external(env, argv[0], &data) != napi_ok) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a reader handle");
		return NULL;
	}
	return data;
}

/* openEvents({ new, update, destroy, rcvbuf, rcvbufMax, lookupSockets }, cb) -> handle */
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
	unsigned groups = 0;
	if (ct_opt_bool(env, argv[0], "new"))
		groups |= CT_GROUP_NEW;
	if (ct_opt_bool(env, argv[0], "update"))
		groups |= CT_GROUP_UPDATE;
	if (ct_opt_bool(env, argv[0], "destroy"))
		groups |= CT_GROUP_DESTROY;
	uint32_t rcvbuf = 32u << 20, rcvbuf_max = 256u << 20;
	ct_opt_u32(env, argv[0], "rcvbuf", &rcvbuf);
	ct_opt_u32(env, argv[0], "rcvbufMax", &rcvbuf_max);
	if (rcvbuf > INT32_MAX / 2)
		rcvbuf = INT32_MAX / 2;
	if (rcvbuf_max < rcvbuf)
		rcvbuf_max = rcvbuf;
	if (rcvbuf_max > INT32_MAX / 2)
		rcvbuf_max = INT32_MAX / 2;
	int granted = 0;
	int fd = ct_sock_open(groups, (int)rcvbuf, &granted);
	if (fd < 0) {
		ct_throw_errno(env, -fd, "socket(NETLINK_NETFILTER)");
		return NULL;
	}
	struct ct_reader *r = ct_reader_new(env, argv[1], fd, 1, "ctacct:events");
	if (!r) {
		close(fd);
		ct_throw_errno(env, ENOMEM, "openEvents");
		return NULL;
	}
	r->rcvbuf = granted / 2 > 0 ? granted / 2 : (int)rcvbuf; /* the kernel reports double */
	r->rcvbuf_max = (int)rcvbuf_max;
	if (ct_opt_bool(env, argv[0], "lookupSockets")) {
		int dfd = ct_diag_open();
		if (dfd >= 0)
			r->diag_fd = dfd;
	}
	int rc = uv_poll_start(&r->poll, UV_READABLE, ct_on_readable);
	if (rc != 0) {
		ct_reader_close(r);
		ct_throw_errno(env, -rc, "uv_poll_start");
		return NULL;
	}
	return ct_reader_wrap(env, r);
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
	struct ct_reader *r = ct_reader_new(env, argv[1], fd, 0, "ctacct:dump");
	if (!r) {
		close(fd);
		ct_throw_errno(env, ENOMEM, "dump");
		return NULL;
	}
	r->seq = seq;
	if (ct_opt_bool(env, argv[0], "lookupSockets"))
		r->diag_fd = ct_diag_open(); /* dump records are not NEW: kept for symmetry, unused */
	rc = uv_poll_start(&r->poll, UV_READABLE, ct_on_readable);
	if (rc != 0) {
		ct_reader_close(r);
		ct_throw_errno(env, -rc, "uv_poll_start");
		return NULL;
	}
	return ct_reader_wrap(env, r);
}

/* close(handle): stops a reader (event subscription or an unfinished dump). */
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
	    !ct_set_num(env, o, "overruns", r->overruns) || !ct_set_num(env, o, "rcvbuf", r->rcvbuf) ||
	    !ct_set_num(env, o, "lookups", r->lookups) || !ct_set_num(env, o, "lookupErrors", r->lookup_errors) ||
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
	size_t argc = 6;
	napi_value argv[6], o;
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
	static int fd = -1;
	if (fd < 0) {
		fd = ct_diag_open();
		if (fd < 0) {
			ct_throw_errno(env, -fd, "socket(NETLINK_SOCK_DIAG)");
			fd = -1;
			return NULL;
		}
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

static napi_value ct_init(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "openEvents", NULL, ct_open_events, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "dump", NULL, ct_dump, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "close", NULL, ct_close, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "stats", NULL, ct_stats, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "parse", NULL, ct_parse, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "lookupSocket", NULL, ct_lookup_socket, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	NAPI_CALL(env, napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props));
	napi_value v;
	NAPI_CALL(env, napi_create_uint32(env, CT_RECORD_SIZE, &v));
	NAPI_CALL(env, napi_set_named_property(env, exports, "recordSize", v));
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, ct_init)
