/* Node-API glue for native/ct_owners.c: the owner search and process family, for JavaScript. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "ct_owners.h"

void ct_throw_errno(napi_env env, int err, const char *syscall);

#define OWN_ROOT 4096

/* A growable array of uint32 (pairs of inode, pid; or pids). */
struct own_vec {
	uint32_t *v;
	size_t n, cap;
	int oom;
};

static void own_push(struct own_vec *a, uint32_t x)
{
	if (a->oom)
		return;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 1024;
		uint32_t *more = realloc(a->v, cap * sizeof(*more));
		if (!more) {
			a->oom = 1;
			return;
		}
		a->v = more;
		a->cap = cap;
	}
	a->v[a->n++] = x;
}

struct own_out {
	struct own_vec pairs, scanned;
};

static void own_sock(void *ctx, uint32_t inode, uint32_t pid)
{
	struct own_out *o = ctx;
	own_push(&o->pairs, inode);
	own_push(&o->pairs, pid);
}

static void own_visit(void *ctx, uint32_t pid)
{
	own_push(&((struct own_out *)ctx)->scanned, pid);
}

static int own_root_arg(napi_env env, napi_value v, char *buf, const char *what)
{
	size_t len = 0;
	if (napi_get_value_string_utf8(env, v, buf, OWN_ROOT, &len) != napi_ok || len == 0 || len >= OWN_ROOT - 1) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", what);
		return 0;
	}
	return 1;
}

/* A Uint32Array's elements (no copy), or NULL for null/undefined (*ok 0 on a wrong type). */
static const uint32_t *own_u32_arg(napi_env env, napi_value v, size_t *n, int *ok)
{
	napi_valuetype t;
	*n = 0;
	*ok = 0;
	if (napi_typeof(env, v, &t) != napi_ok)
		return NULL;
	if (t == napi_null || t == napi_undefined) {
		*ok = 1;
		return NULL;
	}
	bool is = false;
	napi_typedarray_type tt;
	void *data = NULL;
	if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
	    napi_get_typedarray_info(env, v, &tt, n, &data, NULL, NULL) != napi_ok || tt != napi_uint32_array)
		return NULL;
	static const uint32_t none[1];
	*ok = 1;
	return data ? data : none; /* an empty array is a list (of no pid), not null */
}

static int own_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static int own_set(napi_env env, napi_value o, const char *k, napi_value v)
{
	return napi_set_named_property(env, o, k, v) == napi_ok;
}

static int own_set_num(napi_env env, napi_value o, const char *k, double x)
{
	napi_value v;
	return napi_create_double(env, x, &v) == napi_ok && own_set(env, o, k, v);
}

/* A Uint32Array holding a copy of vec. */
static napi_value own_u32_array(napi_env env, const struct own_vec *a)
{
	napi_value ab, arr;
	void *data = NULL;
	if (napi_create_arraybuffer(env, a->n * sizeof(uint32_t), &data, &ab) != napi_ok)
		return NULL;
	if (a->n)
		memcpy(data, a->v, a->n * sizeof(uint32_t));
	if (napi_create_typedarray(env, napi_uint32_array, a->n, ab, 0, &arr) != napi_ok)
		return NULL;
	return arr;
}

/* scanOwners(procRoot, pids: Uint32Array | null, want: Uint32Array, budgetMs, netnsInode)
 *   -> { pairs: Uint32Array [inode, pid, ...] in the order met, scanned: Uint32Array of pids read,
 *        fds, vanished, denied, failed, errno, exhaustive } */
static napi_value ct_scan_owners_js(napi_env env, napi_callback_info info)
{
	size_t argc = 5;
	napi_value argv[5];
	char root[OWN_ROOT];
	const char *usage = "scanOwners(procRoot, pids: Uint32Array | null, want: Uint32Array, budgetMs, netnsInode)";
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return NULL;
	}
	if (!own_root_arg(env, argv[0], root, usage))
		return NULL;
	size_t npids = 0, nwant = 0;
	int ok1, ok2;
	const uint32_t *pids = own_u32_arg(env, argv[1], &npids, &ok1);
	const uint32_t *want_in = own_u32_arg(env, argv[2], &nwant, &ok2);
	double budget = 0, netns = 0;
	if (!ok1 || !ok2 || napi_get_value_double(env, argv[3], &budget) != napi_ok ||
	    napi_get_value_double(env, argv[4], &netns) != napi_ok || isnan(budget) || !(netns >= 0)) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return NULL;
	}
	uint32_t *want = NULL;
	if (nwant) {
		want = malloc(nwant * sizeof(*want));
		if (!want) {
			ct_throw_errno(env, ENOMEM, "scanOwners");
			return NULL;
		}
		memcpy(want, want_in, nwant * sizeof(*want));
		qsort(want, nwant, sizeof(*want), own_cmp_u32);
	}
	struct own_out out;
	memset(&out, 0, sizeof(out));
	struct ct_own_query q = {
		.root = root,
		.pids = pids,
		.npids = npids,
		.want = want,
		.nwant = nwant,
		/* Infinity (or a budget beyond a day): no limit; a negative one reads one table, as 0. */
		.budget_ns = isinf(budget) || budget > 864e5 ? -1 : budget <= 0 ? 0 : (int64_t)(budget * 1e6),
		.netns = (uint64_t)netns,
		.fn = own_sock,
		.visit = own_visit,
		.ctx = &out,
	};
	struct ct_own_stats st;
	memset(&st, 0, sizeof(st));
	int exhaustive = 0;
	int rc = ct_own_search(&q, &st, &exhaustive);
	free(want);
	napi_value o = NULL, pairs = NULL, scanned = NULL, ex;
	if (rc < 0 || out.pairs.oom || out.scanned.oom) {
		free(out.pairs.v);
		free(out.scanned.v);
		ct_throw_errno(env, rc < 0 ? -rc : ENOMEM, rc < 0 ? "opendir" : "scanOwners");
		return NULL;
	}
	pairs = own_u32_array(env, &out.pairs);
	scanned = pairs ? own_u32_array(env, &out.scanned) : NULL;
	free(out.pairs.v);
	free(out.scanned.v);
	if (!scanned || napi_create_object(env, &o) != napi_ok || napi_get_boolean(env, exhaustive, &ex) != napi_ok ||
	    !own_set(env, o, "pairs", pairs) || !own_set(env, o, "scanned", scanned) || !own_set(env, o, "exhaustive", ex) ||
	    !own_set_num(env, o, "fds", (double)st.fds) || !own_set_num(env, o, "vanished", (double)st.vanished) ||
	    !own_set_num(env, o, "denied", (double)st.denied) || !own_set_num(env, o, "failed", (double)st.failed) ||
	    !own_set_num(env, o, "errno", st.first_errno)) {
		napi_throw_error(env, "ERR_CTACCT_NAPI", "scanOwners: building the result failed");
		return NULL;
	}
	return o;
}

/* processFamily(procRoot, pid) -> { ppid: number | null, children: number[] } (empty when gone) */
static napi_value ct_process_family_js(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	char root[OWN_ROOT];
	uint32_t pid = 0;
	const char *usage = "processFamily(procRoot, pid)";
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return NULL;
	}
	if (!own_root_arg(env, argv[0], root, usage))
		return NULL;
	if (napi_get_value_uint32(env, argv[1], &pid) != napi_ok) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", usage);
		return NULL;
	}
	uint32_t small[256], *kids = small, ppid = 0;
	size_t cap = 256;
	int has_ppid = 0;
	long n = ct_own_family(root, pid, &ppid, &has_ppid, kids, cap);
	if (n > (long)cap) {
		/* More children than fit: read again with room for them all (and some born since). */
		cap = (size_t)n * 2;
		kids = malloc(cap * sizeof(*kids));
		if (!kids) {
			ct_throw_errno(env, ENOMEM, "processFamily");
			return NULL;
		}
		n = ct_own_family(root, pid, &ppid, &has_ppid, kids, cap);
		if (n > (long)cap)
			n = (long)cap;
	}
	napi_value o = NULL, arr = NULL, pv = NULL;
	int good = napi_create_object(env, &o) == napi_ok && napi_create_array_with_length(env, n > 0 ? (size_t)n : 0, &arr) == napi_ok;
	for (long i = 0; good && i < n; i++) {
		napi_value v;
		good = napi_create_uint32(env, kids[i], &v) == napi_ok && napi_set_element(env, arr, (uint32_t)i, v) == napi_ok;
	}
	if (kids != small)
		free(kids);
	if (good)
		good = (has_ppid ? napi_create_uint32(env, ppid, &pv) : napi_get_null(env, &pv)) == napi_ok;
	if (!good || !own_set(env, o, "ppid", pv) || !own_set(env, o, "children", arr)) {
		napi_throw_error(env, "ERR_CTACCT_NAPI", "processFamily: building the result failed");
		return NULL;
	}
	return o;
}

int ct_owners_register(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "scanOwners", NULL, ct_scan_owners_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "processFamily", NULL, ct_process_family_js, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok ? 0 : -1;
}
