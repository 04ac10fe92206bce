
#include "ct_sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Newer than some system headers. */
#ifndef CTA_FILTER_F_CTA_PROTO_NUM
#define CTA_FILTER_F_CTA_IP_SRC (1 << 0)
#define CTA_FILTER_F_CTA_IP_DST (1 << 1)
#define CTA_FILTER_F_CTA_TUPLE_ZONE (1 << 2)
#define CTA_FILTER_F_CTA_PROTO_NUM (1 << 3)
#define CTA_FILTER_F_CTA_PROTO_SRC_PORT (1 << 4)
#define CTA_FILTER_F_CTA_PROTO_DST_PORT (1 << 5)
#endif

struct ct_msgbuf {
	uint8_t *buf;
	size_t cap, len;
};

static struct nlattr *ct_put(struct ct_msgbuf *m, uint16_t type, const void *data, size_t len)
{
	size_t need = NLA_ALIGN(NLA_HDRLEN + len);
	if (m->len + need > m->cap)
		return NULL;
	struct nlattr *a = (struct nlattr *)(m->buf + m->len);
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	if (len)
		memcpy(m->buf + m->len + NLA_HDRLEN, data, len);
	memset(m->buf + m->len + NLA_HDRLEN + len, 0, need - NLA_HDRLEN - len);
	m->len += need;
	return a;
}

static struct nlattr *ct_nest_start(struct ct_msgbuf *m, uint16_t type)
{
	return ct_put(m, type | NLA_F_NESTED, NULL, 0);
}

static void ct_nest_end(struct ct_msgbuf *m, struct nlattr *a)
{
	a->nla_len = (uint16_t)(m->buf + m->len - (uint8_t *)a);
}

static void ct_put_be32(struct ct_msgbuf *m, uint16_t type, uint32_t v)
{
	uint32_t be = htonl(v);
	ct_put(m, type, &be, 4);
}

static void ct_put_be16(struct ct_msgbuf *m, uint16_t type, uint16_t v)
{
	uint16_t be = htons(v);
	ct_put(m, type, &be, 2);
}

int ct_sock_set_rcvbuf(int fd, int bytes, int *granted)
{
	if (bytes > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) < 0) {
		/* Without CAP_NET_ADMIN the kernel caps at net.core.rmem_max. */
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) < 0)
			return -errno;
	}
	if (granted) {
		socklen_t sl = sizeof(*granted);
		if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, granted, &sl) < 0)
			return -errno;
	}
	return 0;
}

int ct_sock_open(unsigned groups, int rcvbuf, int *rcvbuf_out)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail;
	static const unsigned map[][2] = {
		{ CT_GROUP_NEW, NFNLGRP_CONNTRACK_NEW },
		{ CT_GROUP_UPDATE, NFNLGRP_CONNTRACK_UPDATE },
		{ CT_GROUP_DESTROY, NFNLGRP_CONNTRACK_DESTROY },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (!(groups & map[i][0]))
			continue;
		int g = (int)map[i][1];
		if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)) < 0)
			goto fail;
	}
	int rc = ct_sock_set_rcvbuf(fd, rcvbuf, rcvbuf_out);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
fail:;
	int e = errno;
	close(fd);
	return -e;
}

static int ct_send(int fd, struct ct_msgbuf *m)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)m->buf;
	nlh->nlmsg_len = (uint32_t)m->len;
	struct sockaddr_nl sa;
	memset(&sa, 0, sizeof(sa));
	sa.nl_family = AF_NETLINK;
	ssize_t n;
	do
		n = sendto(fd, m->buf, m->len, 0, (struct sockaddr *)&sa, sizeof(sa));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return 0;
}

static void ct_msg_init(struct ct_msgbuf *m, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family)
{
	memset(m->buf, 0, m->cap);
	struct nlmsghdr *nlh = (struct nlmsghdr *)m->buf;
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = flags;
	nlh->nlmsg_seq = seq;
	struct nfgenmsg *nfg = (struct nfgenmsg *)(m->buf + NLMSG_HDRLEN);
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = 0;
	m->len = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
}

int ct_dump_request(int fd, uint32_t seq, const struct ct_dump_filter *f)
{
	uint8_t buf[512];
	struct ct_msgbuf m = { buf, sizeof(buf), 0 };
	ct_msg_init(&m, (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP,
		    seq, f ? f->family : AF_UNSPEC);
	if (f && f->has_mark) {
		ct_put_be32(&m, CTA_MARK, f->mark);
		ct_put_be32(&m, CTA_MARK_MASK, f->mark_mask);
	}
	if (f && f->has_status) {
		ct_put_be32(&m, CTA_STATUS, f->status);
		ct_put_be32(&m, CTA_STATUS_MASK, f->status_mask);
	}
	if (f && f->has_zone)
		ct_put_be16(&m, CTA_ZONE, f->zone);
	if (f && (f->proto || f->has_zone) && f->family != AF_UNSPEC) {
		/* The kernel's tuple filter: which orig-tuple fields must match. */
		uint32_t flags = 0;
		struct nlattr *t = ct_nest_start(&m, CTA_TUPLE_ORIG);
		if (f->proto) {
			struct nlattr *p = ct_nest_start(&m, CTA_TUPLE_PROTO);
			ct_put(&m, CTA_PROTO_NUM, &f->proto, 1);
			flags |= CTA_FILTER_F_CTA_PROTO_NUM;
			if (f->has_port) {
				ct_put_be16(&m, f->port_src ? CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT, f->port);
				flags |= f->port_src ? CTA_FILTER_F_CTA_PROTO_SRC_PORT : CTA_FILTER_F_CTA_PROTO_DST_PORT;
			}
			ct_nest_end(&m, p);
		}
		if (f->has_zone) {
			ct_put_be16(&m, CTA_TUPLE_ZONE, f->zone);
			flags |= CTA_FILTER_F_CTA_TUPLE_ZONE;
		}
		ct_nest_end(&m, t);
		/* The filter flags are NLA_U32 in host byte order (cta_filter_nla_policy), unlike
		 * ctnetlink's other integers. */
		uint32_t none = 0;
		struct nlattr *fl = ct_nest_start(&m, CTA_FILTER);
		ct_put(&m, CTA_FILTER_ORIG_FLAGS, &flags, sizeof(flags));
		ct_put(&m, CTA_FILTER_REPLY_FLAGS, &none, sizeof(none));
		ct_nest_end(&m, fl);
	}
	return ct_send(fd, &m);
}

int ct_diag_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	/* A lookup must never hang the event loop: bound the wait for the kernel's answer. */
	struct timeval tv = { 0, 200000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

int ct_diag_lookup(int fd, uint8_t family, uint8_t proto, const uint8_t *local, uint16_t lport,
		   const uint8_t *remote, uint16_t rport, struct ct_sock_hit *hit)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} q;
	static __thread uint32_t seq; /* per thread: the reader thread and the JS thread each have a socket */
	memset(&q, 0, sizeof(q));
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST;
	q.nlh.nlmsg_seq = ++seq;
	q.req.sdiag_family = family;
	q.req.sdiag_protocol = proto;
	q.req.idiag_states = ~0u;
	size_t alen = family == AF_INET ? 4 : 16;
	/* TCP's lookup takes src = local end; UDP's takes src = the remote end (the packet's
	 * source), as udp_dump_one passes it to __udp4_lib_lookup. */
	const uint8_t *s = proto == IPPROTO_UDP ? remote : local;
	const uint8_t *d = proto == IPPROTO_UDP ? local : remote;
	q.req.id.idiag_sport = htons(proto == IPPROTO_UDP ? rport : lport);
	q.req.id.idiag_dport = htons(proto == IPPROTO_UDP ? lport : rport);
	memcpy(q.req.id.idiag_src, s, alen);
	memcpy(q.req.id.idiag_dst, d, alen);
	q.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	q.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	ssize_t n;
	do
		n = send(fd, &q, sizeof(q), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	uint8_t buf[8192];
	for (;;) {
		do
			n = recv(fd, buf, sizeof(buf), 0);
		while (n < 0 && errno == EINTR);
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue; /* a late answer to an earlier, timed-out request */
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					return -EBADMSG;
				return e->error == -ENOENT ? 0 : (e->error ? e->error : 0);
			}
			if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
					return -EBADMSG;
				const struct inet_diag_msg *msg = NLMSG_DATA(h);
				hit->found = 1;
				hit->inode = msg->idiag_inode;
				hit->uid = msg->idiag_uid;
				hit->state = msg->idiag_state;
				return 1;
			}
		}
	}
}

static int ct_diag_push(void *ctx, uint8_t proto, const struct nlmsghdr *h)
{
	struct ct_diag_socks *out = ctx;
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 1024;
		struct ct_diag_sock *v = realloc(out->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		out->v = v;
		out->cap = cap;
	}
	struct ct_diag_sock *s = &out->v[out->n++];
	memset(s, 0, sizeof(*s));
	s->family = m->idiag_family;
	s->proto = proto;
	s->state = m->idiag_state;
	s->lport = ntohs(m->id.idiag_sport);
	s->rport = ntohs(m->id.idiag_dport);
	s->uid = m->idiag_uid;
	s->inode = m->idiag_inode;
	s->rqueue = m->idiag_rqueue;
	s->wqueue = m->idiag_wqueue;
	size_t alen = m->idiag_family == AF_INET ? 4 : 16;
	memcpy(s->local, m->id.idiag_src, alen);
	memcpy(s->remote, m->id.idiag_dst, alen);
	if (m->id.idiag_if)
		s->flags |= CT_DIAG_F_BOUND_DEV;
	/* The attributes after the message: INET_DIAG_SKV6ONLY (IPv6 sockets in LISTEN or CLOSE). */
	int alen_left = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));
	for (const struct rtattr *a = (const struct rtattr *)((const uint8_t *)m + NLMSG_ALIGN(sizeof(*m)));
	     RTA_OK(a, alen_left); a = RTA_NEXT(a, alen_left)) {
		if (a->rta_type == INET_DIAG_SKV6ONLY && RTA_PAYLOAD(a) >= 1) {
			s->flags |= CT_DIAG_F_V6ONLY_KNOWN;
			if (*(const uint8_t *)RTA_DATA(a))
				s->flags |= CT_DIAG_F_V6ONLY;
		}
	}
	return 0;
}

/* One sock_diag dump of a family and protocol, each socket handed to `each`. */
static int ct_diag_walk(uint8_t family, uint8_t proto, uint32_t states,
			int (*each)(void *ctx, uint8_t proto, const struct nlmsghdr *h), void *ctx)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	/* A dump is answered at once; bound the wait anyway so a stuck kernel cannot hang the CLI. */
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} q;
	memset(&q, 0, sizeof(q));
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	q.nlh.nlmsg_seq = 1;
	q.req.sdiag_family = family;
	q.req.sdiag_protocol = proto;
	q.req.idiag_states = states;
	ssize_t n;
	do
		n = send(fd, &q, sizeof(q), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	/* The kernel fills each reply up to the reader's buffer size (up to 32 KiB per message). */
	size_t bufsz = 64 * 1024;
	uint8_t *buf = malloc(bufsz);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	int rc = 0, done = 0;
	while (!done && rc == 0) {
		do
			n = recv(fd, buf, bufsz, 0);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					rc = -EBADMSG;
				else if (e->error)
					rc = e->error;
				else
					done = 1;
				break;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
				continue;
			rc = each(ctx, proto, h);
			if (rc)
				break;
		}
	}
	free(buf);
	close(fd);
	return rc;
}

int ct_diag_dump(uint8_t family, uint8_t proto, uint32_t states, struct ct_diag_socks *out)
{
	return ct_diag_walk(family, proto, states, ct_diag_push, out);
}

static int ct_diag_bump(void *ctx, uint8_t proto, const struct nlmsghdr *h)
{
	(void)proto;
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	uint32_t *counts = ctx;
	counts[m->idiag_state < CT_DIAG_STATES ? m->idiag_state : CT_DIAG_STATES - 1]++;
	return 0;
}

int ct_diag_count(uint8_t family, uint8_t proto, uint32_t states, uint32_t counts[CT_DIAG_STATES])
{
	return ct_diag_walk(family, proto, states, ct_diag_bump, counts);
}

/* Lists every IPv4/IPv6 address configured in this network namespace (RTM_GETADDR dump), whatever
 * the link state: getifaddrs-based lists skip links without carrier, but the kernel still treats
 * their addresses as local. Writes up to cap entries of 17 bytes (family byte + 16 address bytes). */
int ct_addr_list(uint8_t *out, size_t cap, size_t *count)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct {
		struct nlmsghdr nlh;
		struct ifaddrmsg ifa;
	} q;
	memset(&q, 0, sizeof(q));
	q.nlh.nlmsg_len = sizeof(q);
	q.nlh.nlmsg_type = RTM_GETADDR;
	q.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	q.nlh.nlmsg_seq = 1;
	q.ifa.ifa_family = AF_UNSPEC;
	struct timeval tv = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, &q, sizeof(q), 0) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	size_t n = 0;
	uint8_t buf[32768];
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			return -e;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				close(fd);
				*count = n;
				return 0;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				close(fd);
				return e->error ? e->error : -EIO;
			}
			if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg)))
				continue;
			const struct ifaddrmsg *ifa = NLMSG_DATA(h);
			size_t alen = ifa->ifa_family == AF_INET ? 4 : ifa->ifa_family == AF_INET6 ? 16 : 0;
			if (!alen)
				continue;
			int rlen = (int)IFA_PAYLOAD(h);
			/* IFA_LOCAL is the local address on point-to-point links; IFA_ADDRESS otherwise. */
			const uint8_t *addr = NULL, *local = NULL;
			for (const struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, rlen); a = RTA_NEXT(a, rlen)) {
				if (RTA_PAYLOAD(a) < alen)
					continue;
				if (a->rta_type == IFA_ADDRESS)
					addr = RTA_DATA(a);
				else if (a->rta_type == IFA_LOCAL)
					local = RTA_DATA(a);
			}
			const uint8_t *use = local ? local : addr;
			if (!use || n >= cap)
				continue;
			uint8_t *o = out + n * 17;
			memset(o, 0, 17);
			o[0] = ifa->ifa_family == AF_INET ? 4 : 6;
			memcpy(o + 1, use, alen);
			n++;
		}
	}
}
