/* Node-API glue for native/ct_nft.c: arguments in, coded errors out. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <node_api.h>

#include "ct_nft.h"

void ct_throw_errno(napi_env env, int err, const char *syscall);

struct ct_nft_handle {
	int fd;
};

static void ct_nft_finalize(napi_env env, void *data, void *hint)
{
	struct ct_nft_handle *h = data;
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

static struct ct_nft_handle *ct_nft_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv)
{
	void *data = NULL;
	if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok || *argc < 1 ||
	    napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected an nft handle");
		return NULL;
	}
	struct ct_nft_handle *h = data;
	if (h->fd < 0) {
		ct_throw_errno(env, EBADF, "nft");
		return NULL;
	}
	return h;
}

static int ct_nft_name(napi_env env, napi_value v, char *out, size_t cap)
{
	size_t n = 0;
	if (napi_get_value_string_utf8(env, v, out, cap, &n) != napi_ok || n == 0 || n >= cap - 1) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "expected a table name (1-255 bytes)");
		return -1;
	}
	return 0;
}

static napi_value ct_bool(napi_env env, bool b)
{
	napi_value v = NULL;
	napi_get_boolean(env, b, &v);
	return v;
}

/* nftOpen() -> handle: a NETLINK_NETFILTER socket kept open by the caller. */
static napi_value ct_nft_open_js(napi_env env, napi_callback_info info)
{
	int fd = ct_nft_open();
	if (fd < 0) {
		ct_throw_errno(env, -fd, "socket(NETLINK_NETFILTER)");
		return NULL;
	}
	struct ct_nft_handle *h = malloc(sizeof(*h));
	napi_value ext;
	if (!h) {
		close(fd);
		ct_throw_errno(env, ENOMEM, "nftOpen");
		return NULL;
	}
	h->fd = fd;
	if (napi_create_external(env, h, ct_nft_finalize, NULL, &ext) != napi_ok) {
		close(fd);
		free(h);
		ct_throw_errno(env, ENOMEM, "nftOpen");
		return NULL;
	}
	return ext;
}

/* nftEngage(handle, table, owner) -> undefined; throws a coded error. */
static napi_value ct_nft_engage_js(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3];
	struct ct_nft_handle *h = ct_nft_args(env, info, &argc, argv);
	if (!h)
		return NULL;
	char name[256];
	bool owner = false;
	if (argc < 3 || ct_nft_name(env, argv[1], name, sizeof(name)) < 0)
		return NULL;
	napi_get_value_bool(env, argv[2], &owner);
	int rc = ct_nft_engage(h->fd, name, owner);
	if (rc < 0)
		ct_throw_errno(env, -rc, "nft newtable");
	return NULL;
}

/* nftDelete(handle, table) -> true deleted, false it did not exist. */
static napi_value ct_nft_delete_js(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	struct ct_nft_handle *h = ct_nft_args(env, info, &argc, argv);
	char name[256];
	if (!h || argc < 2 || ct_nft_name(env, argv[1], name, sizeof(name)) < 0)
		return NULL;
	int rc = ct_nft_delete(h->fd, name);
	if (rc == -ENOENT)
		return ct_bool(env, false);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "nft deltable");
		return NULL;
	}
	return ct_bool(env, true);
}

/* nftExists(handle, table) -> boolean. */
static napi_value ct_nft_exists_js(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	struct ct_nft_handle *h = ct_nft_args(env, info, &argc, argv);
	char name[256];
	if (!h || argc < 2 || ct_nft_name(env, argv[1], name, sizeof(name)) < 0)
		return NULL;
	int rc = ct_nft_exists(h->fd, name);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "nft gettable");
		return NULL;
	}
	return ct_bool(env, rc == 1);
}

/* nftClose(handle): closes the socket; the kernel then deletes the tables it owns. */
static napi_value ct_nft_close_js(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1];
	void *data = NULL;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL)
		return NULL;
	struct ct_nft_handle *h = data;
	if (h->fd >= 0) {
		close(h->fd);
		h->fd = -1;
	}
	return NULL;
}

static int ct_get_u32(napi_env env, napi_value o, const char *k, uint32_t *out)
{
	napi_value v;
	bool has = false;
	if (napi_has_named_property(env, o, k, &has) != napi_ok || !has)
		return 0;
	if (napi_get_named_property(env, o, k, &v) != napi_ok || napi_get_value_uint32(env, v, out) != napi_ok)
		return -1;
	return 0;
}

static int ct_get_addr(napi_env env, napi_value o, const char *k, uint8_t *out, size_t want)
{
	napi_value v;
	void *data = NULL;
	size_t len = 0;
	if (napi_get_named_property(env, o, k, &v) != napi_ok || napi_get_buffer_info(env, v, &data, &len) != napi_ok ||
	    len != want)
		return -1;
	memcpy(out, data, want);
	return 0;
}

/* ctDelete(handle, {family, proto, src, dst, sport, dport, id?, zone?}) -> true deleted, false gone. */
static napi_value ct_entry_delete_js(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2];
	struct ct_nft_handle *h = ct_nft_args(env, info, &argc, argv);
	if (!h)
		return NULL;
	struct ct_entry_key k;
	memset(&k, 0, sizeof(k));
	uint32_t family = 0, proto = 0, sport = 0, dport = 0, id = 0, zone = 0;
	if (argc < 2 || ct_get_u32(env, argv[1], "family", &family) < 0 || ct_get_u32(env, argv[1], "proto", &proto) < 0 ||
	    ct_get_u32(env, argv[1], "sport", &sport) < 0 || ct_get_u32(env, argv[1], "dport", &dport) < 0 ||
	    ct_get_u32(env, argv[1], "id", &id) < 0 || ct_get_u32(env, argv[1], "zone", &zone) < 0 ||
	    (family != AF_INET && family != AF_INET6) || proto > 255 || sport > 65535 || dport > 65535 ||
	    zone > 65535) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "ctDelete(handle, {family, proto, src, dst, sport, dport, id, zone})");
		return NULL;
	}
	size_t alen = family == AF_INET ? 4 : 16;
	if (ct_get_addr(env, argv[1], "src", k.src, alen) < 0 || ct_get_addr(env, argv[1], "dst", k.dst, alen) < 0) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "ctDelete: src/dst must be Buffers of 4 or 16 bytes");
		return NULL;
	}
	k.family = (uint8_t)family;
	k.proto = (uint8_t)proto;
	k.sport = (uint16_t)sport;
	k.dport = (uint16_t)dport;
	k.id = id;
	k.zone = (uint16_t)zone;
	int rc = ct_entry_delete(h->fd, &k);
	if (rc == -ENOENT)
		return ct_bool(env, false);
	if (rc < 0) {
		ct_throw_errno(env, -rc, "conntrack delete");
		return NULL;
	}
	return ct_bool(env, true);
}

/* lockFile(path) -> fd: opens (O_NOFOLLOW, 0600) and takes an exclusive flock, waiting up to 10 s.
 * The lock goes with the fd (fs.closeSync) or the process, even on kill -9. */
static napi_value ct_lock_file_js(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out;
	char path[4096];
	size_t n = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &n) != napi_ok || n == 0 || n >= sizeof(path) - 1) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "lockFile(path)");
		return NULL;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ct_throw_errno(env, errno, "open");
		return NULL;
	}
	for (int i = 0;; i++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if ((errno != EWOULDBLOCK && errno != EINTR) || i >= 1000) {
			int e = errno == EWOULDBLOCK ? ETIMEDOUT : errno;
			close(fd);
			ct_throw_errno(env, e, "flock");
			return NULL;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	if (napi_create_int32(env, fd, &out) != napi_ok) {
		close(fd);
		return NULL;
	}
	return out;
}

int ct_nft_register(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "nftOpen", NULL, ct_nft_open_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "nftEngage", NULL, ct_nft_engage_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "nftDelete", NULL, ct_nft_delete_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "nftExists", NULL, ct_nft_exists_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "nftClose", NULL, ct_nft_close_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "ctDelete", NULL, ct_entry_delete_js, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "lockFile", NULL, ct_lock_file_js, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok ? 0 : -1;
}
