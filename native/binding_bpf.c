/* Node-API glue for native/ct_bpf.c (the close tracker): arguments in, coded errors out. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <node_api.h>

#include "ct_bpf.h"

void ct_throw_errno(napi_env env, int err, const char *syscall);
napi_value ct_make_errno_error(napi_env env, int err, const char *syscall);

static void ct_closer_finalize(napi_env env, void *data, void *hint)
{
	ct_closer_close(data);
	free(data);
}

static int ct_get_u32(napi_env env, napi_value o, const char *k, uint32_t *out)
{
	napi_value v;
	return napi_get_named_property(env, o, k, &v) == napi_ok && napi_get_value_uint32(env, v, out) == napi_ok;
}

/* closerOpen(tracepointId, {newstate, protocol, sport, dport, saddr_v6, daddr_v6}, maxEntries)
 * -> handle. A failed load throws with the verifier's log in `log`. */
static napi_value ct_closer_open_js(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	uint32_t tp = 0, max = 0, v[8];
	static const char *const names[8] = { "newstate", "protocol", "sport", "dport", "saddr_v6", "daddr_v6", "group_leader", "start_boottime" };
	bool ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 3 &&
		  napi_get_value_uint32(env, argv[0], &tp) == napi_ok && napi_get_value_uint32(env, argv[2], &max) == napi_ok;
	for (int i = 0; ok && i < 8; i++) {
		/* Task offsets are optional (no BTF): absent means unknown. */
		v[i] = CT_NO_OFFSET;
		bool has = false;
		if (i >= 6 && (napi_has_named_property(env, argv[1], names[i], &has) != napi_ok || !has))
			continue;
		ok = ct_get_u32(env, argv[1], names[i], &v[i]) && v[i] < (i >= 6 ? 32768u : 4096u);
	}
	if (!ok || max == 0) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closerOpen(tracepointId, offsets, maxEntries)");
		return NULL;
	}
	struct ct_tp_offsets off = { (uint16_t)v[0], (uint16_t)v[1], (uint16_t)v[2], (uint16_t)v[3],
				     (uint16_t)v[4], (uint16_t)v[5], (uint16_t)v[6], (uint16_t)v[7] };
	struct ct_closer *c = malloc(sizeof(*c));
	char *log = malloc(16384);
	if (!c || !log) {
		free(c);
		free(log);
		ct_throw_errno(env, ENOMEM, "closerOpen");
		return NULL;
	}
	int rc = ct_closer_open(c, tp, &off, max, log, 16384);
	if (rc < 0) {
		napi_value e = ct_make_errno_error(env, -rc, "bpf");
		napi_value s;
		if (e && log[0] && napi_create_string_utf8(env, log, NAPI_AUTO_LENGTH, &s) == napi_ok)
			napi_set_named_property(env, e, "log", s);
		free(c);
		free(log);
		if (e)
			napi_throw(env, e);
		else
			napi_throw_error(env, "ERR_CTACCT_NAPI", "bpf");
		return NULL;
	}
	free(log);
	napi_value ext;
	if (napi_create_external(env, c, ct_closer_finalize, NULL, &ext) != napi_ok) {
		ct_closer_close(c);
		free(c);
		ct_throw_errno(env, ENOMEM, "closerOpen");
		return NULL;
	}
	return ext;
}

static struct ct_closer *ct_closer_arg(napi_env env, napi_value v)
{
	void *data = NULL;
	if (napi_get_value_external(env, v, &data) != napi_ok || !data) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a closer handle");
		return NULL;
	}
	struct ct_closer *c = data;
	if (c->map_fd < 0) {
		ct_throw_errno(env, EBADF, "bpf");
		return NULL;
	}
	return c;
}

/* Copies an address buffer (4 bytes IPv4 at its start when family is 4, else 16) as IPv6. */
static void ct_v6(uint32_t family, const uint8_t *a, uint8_t out[16])
{
	if (family == 4) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, a, 4);
	} else {
		memcpy(out, a, 16);
	}
}

/* closerLookup(handle, family, local16, lport, remote16, rport) -> null | {pid, uid, bootNs, startNs, agoNs, comm} */
static napi_value ct_closer_lookup_js(napi_env env, napi_callback_info info)
{
	size_t argc = 6;
	napi_value argv[6], o;
	uint32_t family = 0, lport = 0, rport = 0;
	void *l = NULL, *r = NULL;
	size_t ll = 0, rl = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closerLookup(handle, family, local16, lport, remote16, rport)");
		return NULL;
	}
	struct ct_closer *c = ct_closer_arg(env, argv[0]);
	if (!c)
		return NULL;
	if (napi_get_value_uint32(env, argv[1], &family) != napi_ok || napi_get_buffer_info(env, argv[2], &l, &ll) != napi_ok ||
	    napi_get_value_uint32(env, argv[3], &lport) != napi_ok || napi_get_buffer_info(env, argv[4], &r, &rl) != napi_ok ||
	    napi_get_value_uint32(env, argv[5], &rport) != napi_ok || ll < 16 || rl < 16) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "closerLookup(handle, family, local16, lport, remote16, rport)");
		return NULL;
	}
	struct ct_closer_key k;
	struct ct_closer_val val;
	memset(&k, 0, sizeof(k));
	k.sport = (uint16_t)lport;
	k.dport = (uint16_t)rport;
	ct_v6(family, l, k.saddr);
	ct_v6(family, r, k.daddr);
	int rc = ct_closer_lookup(c, &k, &val);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "bpf");
		return NULL;
	}
	if (rc == 0) {
		napi_get_null(env, &o);
		return o;
	}
	napi_value pid, uid, ns, start, ago, comm;
	struct timespec now;
	clock_gettime(CLOCK_BOOTTIME, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	val.comm[15] = 0;
	if (napi_create_object(env, &o) != napi_ok || napi_create_uint32(env, val.tgid, &pid) != napi_ok ||
	    napi_create_uint32(env, val.uid, &uid) != napi_ok || napi_create_double(env, (double)val.boot_ns, &ns) != napi_ok ||
	    napi_create_double(env, (double)val.start_ns, &start) != napi_ok ||
	    napi_set_named_property(env, o, "startNs", start) != napi_ok ||
	    napi_create_double(env, now_ns > val.boot_ns ? (double)(now_ns - val.boot_ns) : 0, &ago) != napi_ok ||
	    napi_set_named_property(env, o, "agoNs", ago) != napi_ok ||
	    napi_create_string_latin1(env, val.comm, strnlen(val.comm, 16), &comm) != napi_ok ||
	    napi_set_named_property(env, o, "pid", pid) != napi_ok || napi_set_named_property(env, o, "uid", uid) != napi_ok ||
	    napi_set_named_property(env, o, "bootNs", ns) != napi_ok || napi_set_named_property(env, o, "comm", comm) != napi_ok) {
		ct_throw_errno(env, ENOMEM, "closerLookup");
		return NULL;
	}
	return o;
}

/* closerClose(handle): detaches the program and frees the map now (the finalizer would later). */
static napi_value ct_closer_close_js(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	void *data = NULL;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1 &&
	    napi_get_value_external(env, argv[0], &data) == napi_ok && data)
		ct_closer_close(data);
	return NULL;
}

int ct_bpf_register(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "closerOpen", NULL, ct_closer_open_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "closerLookup", NULL, ct_closer_lookup_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "closerClose", NULL, ct_closer_close_js, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok ? 0 : -1;
}
