#include "ct_parse.h"

#include <errno.h>

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>

/* Newer than the system headers (kernel >= 6.14). */
#ifndef CTA_TIMESTAMP_EVENT_NUM
#define CTA_TIMESTAMP_EVENT_NUM 27
#endif

#define CT_NLA_TYPE(a) ((a)->nla_type & NLA_TYPE_MASK)
#define CT_NLA_DATA(a) ((const uint8_t *)(a) + NLA_HDRLEN)
#define CT_NLA_LEN(a) ((size_t)(a)->nla_len - NLA_HDRLEN)

/* Byte order is converted here and nowhere else: ctnetlink sends network order. */
static uint16_t ct_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t ct_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t ct_be64(const uint8_t *p)
{
	return ((uint64_t)ct_be32(p) << 32) | ct_be32(p + 4);
}

/* Calls cb for every attribute in [p, p+len). Returns -1 when an attribute overruns the
 * nest or is shorter than a header: the whole message is then malformed. */
typedef int (*ct_attr_cb)(const struct nlattr *a, void *data);

static int ct_attr_walk(const uint8_t *p, size_t len, ct_attr_cb cb, void *data)
{
	while (len >= NLA_HDRLEN) {
		const struct nlattr *a = (const struct nlattr *)p;
		size_t alen = a->nla_len;
		if (alen < NLA_HDRLEN || alen > len)
			return -1;
		if (cb(a, data) < 0)
			return -1;
		size_t step = NLA_ALIGN(alen);
		if (step >= len)
			return 0;
		p += step;
		len -= step;
	}
	return 0; /* trailing padding shorter than a header is tolerated, as the kernel does */
}

static int ct_attr_nested(const struct nlattr *a, ct_attr_cb cb, void *data)
{
	return ct_attr_walk(CT_NLA_DATA(a), CT_NLA_LEN(a), cb, data);
}

/* Minimum payload length for known scalar attributes; 0 = nested or not checked. Types a
 * newer kernel adds are beyond the table and skipped. */
static const uint8_t ct_top_minlen[CTA_TIMESTAMP_EVENT_NUM + 1] = {
	[CTA_STATUS] = 4, [CTA_TIMEOUT] = 4, [CTA_MARK] = 4, [CTA_USE] = 4,
	[CTA_ID] = 4,     [CTA_ZONE] = 2,    [CTA_TIMESTAMP_EVENT_NUM] = 8,
};

struct ct_tuple_ctx {
	struct ct_record *r;
	int reply; /* 0 = orig tuple, 1 = reply tuple */
};

static int ct_parse_ip_cb(const struct nlattr *a, void *data)
{
	struct ct_tuple_ctx *t = data;
	uint8_t *src = t->reply ? t->r->reply_src : t->r->orig_src;
	uint8_t *dst = t->reply ? t->r->reply_dst : t->r->orig_dst;
	size_t len = CT_NLA_LEN(a);
	switch (CT_NLA_TYPE(a)) {
	case CTA_IP_V4_SRC:
	case CTA_IP_V4_DST:
		if (len < 4)
			return -1;
		memcpy(CT_NLA_TYPE(a) == CTA_IP_V4_SRC ? src : dst, CT_NLA_DATA(a), 4);
		break;
	case CTA_IP_V6_SRC:
	case CTA_IP_V6_DST:
		if (len < 16)
			return -1;
		memcpy(CT_NLA_TYPE(a) == CTA_IP_V6_SRC ? src : dst, CT_NLA_DATA(a), 16);
		break;
	default:
		break;
	}
	return 0;
}

static int ct_parse_proto_cb(const struct nlattr *a, void *data)
{
	struct ct_tuple_ctx *t = data;
	struct ct_record *r = t->r;
	const uint8_t *d = CT_NLA_DATA(a);
	size_t len = CT_NLA_LEN(a);
	switch (CT_NLA_TYPE(a)) {
	case CTA_PROTO_NUM:
		if (len < 1)
			return -1;
		r->proto = d[0];
		break;
	case CTA_PROTO_SRC_PORT:
	case CTA_PROTO_DST_PORT: {
		if (len < 2)
			return -1;
		int src = CT_NLA_TYPE(a) == CTA_PROTO_SRC_PORT;
		uint16_t v = ct_be16(d);
		if (t->reply) {
			*(src ? &r->reply_sport : &r->reply_dport) = v;
			r->present |= CT_HAS_REPLY_PORTS;
		} else {
			*(src ? &r->orig_sport : &r->orig_dport) = v;
			r->present |= CT_HAS_ORIG_PORTS;
		}
		break;
	}
	case CTA_PROTO_ICMP_ID:
	case CTA_PROTO_ICMPV6_ID:
		if (len < 2)
			return -1;
		*(t->reply ? &r->reply_icmp_id : &r->orig_icmp_id) = ct_be16(d);
		r->present |= t->reply ? CT_HAS_REPLY_ICMP : CT_HAS_ORIG_ICMP;
		break;
	case CTA_PROTO_ICMP_TYPE:
	case CTA_PROTO_ICMPV6_TYPE:
		if (len < 1)
			return -1;
		*(t->reply ? &r->reply_icmp_type : &r->orig_icmp_type) = d[0];
		r->present |= t->reply ? CT_HAS_REPLY_ICMP : CT_HAS_ORIG_ICMP;
		break;
	case CTA_PROTO_ICMP_CODE:
	case CTA_PROTO_ICMPV6_CODE:
		if (len < 1)
			return -1;
		*(t->reply ? &r->reply_icmp_code : &r->orig_icmp_code) = d[0];
		r->present |= t->reply ? CT_HAS_REPLY_ICMP : CT_HAS_ORIG_ICMP;
		break;
	default:
		break;
	}
	return 0;
}

static int ct_parse_tuple_cb(const struct nlattr *a, void *data)
{
	struct ct_tuple_ctx *t = data;
	switch (CT_NLA_TYPE(a)) {
	case CTA_TUPLE_IP:
		return ct_attr_nested(a, ct_parse_ip_cb, data);
	case CTA_TUPLE_PROTO:
		return ct_attr_nested(a, ct_parse_proto_cb, data);
	case CTA_TUPLE_ZONE:
		if (CT_NLA_LEN(a) < 2)
			return -1;
		if (!(t->r->present & CT_HAS_ZONE)) {
			t->r->zone = ct_be16(CT_NLA_DATA(a));
			t->r->present |= CT_HAS_ZONE;
		}
		return 0;
	default:
		return 0;
	}
}

struct ct_counter_ctx {
	uint64_t packets, bytes;
	int have;
};

static int ct_parse_counters_cb(const struct nlattr *a, void *data)
{
	struct ct_counter_ctx *c = data;
	const uint8_t *d = CT_NLA_DATA(a);
	size_t len = CT_NLA_LEN(a);
	switch (CT_NLA_TYPE(a)) {
	case CTA_COUNTERS_PACKETS:
		if (len < 8)
			return -1;
		c->packets = ct_be64(d);
		c->have |= 1;
		break;
	case CTA_COUNTERS_BYTES:
		if (len < 8)
			return -1;
		c->bytes = ct_be64(d);
		c->have |= 2;
		break;
	case CTA_COUNTERS32_PACKETS:
		if (len < 4)
			return -1;
		c->packets = ct_be32(d);
		c->have |= 1;
		break;
	case CTA_COUNTERS32_BYTES:
		if (len < 4)
			return -1;
		c->bytes = ct_be32(d);
		c->have |= 2;
		break;
	default:
		break;
	}
	return 0;
}

struct ct_ts_ctx {
	struct ct_record *r;
};

static int ct_parse_ts_cb(const struct nlattr *a, void *data)
{
	struct ct_record *r = ((struct ct_ts_ctx *)data)->r;
	if (CT_NLA_TYPE(a) != CTA_TIMESTAMP_START && CT_NLA_TYPE(a) != CTA_TIMESTAMP_STOP)
		return 0;
	if (CT_NLA_LEN(a) < 8)
		return -1;
	uint64_t v = ct_be64(CT_NLA_DATA(a));
	if (CT_NLA_TYPE(a) == CTA_TIMESTAMP_START) {
		r->ts_start = v;
		r->present |= CT_HAS_TS_START;
	} else {
		r->ts_stop = v;
		r->present |= CT_HAS_TS_STOP;
	}
	return 0;
}

static int ct_parse_tcp_cb(const struct nlattr *a, void *data)
{
	struct ct_record *r = data;
	if (CT_NLA_TYPE(a) != CTA_PROTOINFO_TCP_STATE)
		return 0;
	if (CT_NLA_LEN(a) < 1)
		return -1;
	r->tcp_state = CT_NLA_DATA(a)[0];
	r->present |= CT_HAS_TCP_STATE;
	return 0;
}

static int ct_parse_protoinfo_cb(const struct nlattr *a, void *data)
{
	if (CT_NLA_TYPE(a) == CTA_PROTOINFO_TCP)
		return ct_attr_nested(a, ct_parse_tcp_cb, data);
	return 0;
}

static int ct_parse_top_cb(const struct nlattr *a, void *data)
{
	struct ct_record *r = data;
	unsigned type = CT_NLA_TYPE(a);
	const uint8_t *d = CT_NLA_DATA(a);
	if (type < sizeof(ct_top_minlen) && CT_NLA_LEN(a) < ct_top_minlen[type])
		return -1;
	switch (type) {
	case CTA_TUPLE_ORIG:
	case CTA_TUPLE_REPLY: {
		struct ct_tuple_ctx t = { r, type == CTA_TUPLE_REPLY };
		r->present |= type == CTA_TUPLE_REPLY ? CT_HAS_REPLY_TUPLE : CT_HAS_ORIG_TUPLE;
		return ct_attr_nested(a, ct_parse_tuple_cb, &t);
	}
	case CTA_STATUS:
		r->status = ct_be32(d);
		r->present |= CT_HAS_STATUS;
		break;
	case CTA_PROTOINFO:
		return ct_attr_nested(a, ct_parse_protoinfo_cb, r);
	case CTA_TIMEOUT:
		r->timeout = ct_be32(d);
		r->present |= CT_HAS_TIMEOUT;
		break;
	case CTA_MARK:
		r->mark = ct_be32(d);
		r->present |= CT_HAS_MARK;
		break;
	case CTA_COUNTERS_ORIG:
	case CTA_COUNTERS_REPLY: {
		struct ct_counter_ctx c = { 0, 0, 0 };
		if (ct_attr_nested(a, ct_parse_counters_cb, &c) < 0)
			return -1;
		if (c.have != 3)
			break; /* half a counter is no counter */
		if (type == CTA_COUNTERS_ORIG) {
			r->orig_packets = c.packets;
			r->orig_bytes = c.bytes;
			r->present |= CT_HAS_COUNTERS_ORIG;
		} else {
			r->reply_packets = c.packets;
			r->reply_bytes = c.bytes;
			r->present |= CT_HAS_COUNTERS_REPLY;
		}
		break;
	}
	case CTA_USE:
		r->use = ct_be32(d);
		r->present |= CT_HAS_USE;
		break;
	case CTA_ID:
		r->id = ct_be32(d);
		r->present |= CT_HAS_ID;
		break;
	case CTA_ZONE: /* the top-level zone wins over the tuple zone */
		r->zone = ct_be16(d);
		r->present |= CT_HAS_ZONE;
		break;
	case CTA_TIMESTAMP: {
		struct ct_ts_ctx t = { r };
		return ct_attr_nested(a, ct_parse_ts_cb, &t);
	}
	case CTA_TIMESTAMP_EVENT_NUM:
		r->ts_event = ct_be64(d);
		r->present |= CT_HAS_TS_EVENT;
		break;
	default:
		break; /* unknown or uninteresting: skipped */
	}
	return 0;
}

/* Parses one ctnetlink conntrack message body. Returns 0 on success, -1 when malformed. */
static int ct_parse_conntrack(const struct nlmsghdr *nlh, int is_event, struct ct_record *r)
{
	size_t hdr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
	if (nlh->nlmsg_len < hdr)
		return -1;
	const struct nfgenmsg *nfg = (const struct nfgenmsg *)((const uint8_t *)nlh + NLMSG_HDRLEN);
	memset(r, 0, sizeof(*r));
	r->family = nfg->nfgen_family;
	uint8_t msg = NFNL_MSG_TYPE(nlh->nlmsg_type);
	if (msg == IPCTNL_MSG_CT_DELETE)
		r->kind = CT_KIND_DESTROY;
	else if (!is_event)
		r->kind = CT_KIND_DUMP;
	else if ((nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL)) == (NLM_F_CREATE | NLM_F_EXCL))
		r->kind = CT_KIND_NEW;
	else
		r->kind = CT_KIND_UPDATE;
	if (ct_attr_walk((const uint8_t *)nlh + hdr, nlh->nlmsg_len - hdr, ct_parse_top_cb, r) < 0)
		return -1;
	/* A flow without its original tuple cannot be keyed or attributed. */
	if (!(r->present & CT_HAS_ORIG_TUPLE) || (r->family != AF_INET && r->family != AF_INET6))
		return -1;
	return 0;
}

void ct_parse_buffer(const uint8_t *buf, size_t len, int is_event, struct ct_record *out,
		     size_t cap, struct ct_parse_result *res)
{
	size_t off = 0;
	memset(res, 0, sizeof(*res));
	while (len - off >= NLMSG_HDRLEN) {
		const struct nlmsghdr *nlh = (const struct nlmsghdr *)(buf + off);
		size_t mlen = nlh->nlmsg_len;
		if (mlen < NLMSG_HDRLEN || mlen > len - off) {
			/* A broken length makes the rest of the buffer unreadable. */
			res->malformed++;
			off = len;
			break;
		}
		size_t step = NLMSG_ALIGN(mlen);
		if (nlh->nlmsg_type == NLMSG_DONE) {
			res->done = 1;
			/* A dump that failed in the kernel ends with its errno in NLMSG_DONE's payload. */
			if (mlen >= NLMSG_HDRLEN + sizeof(int)) {
				int err;
				memcpy(&err, buf + off + NLMSG_HDRLEN, sizeof(err));
				if (err < 0)
					res->error = -err;
			}
		} else if (nlh->nlmsg_type == NLMSG_ERROR) {
			if (mlen >= NLMSG_HDRLEN + sizeof(int)) {
				int err;
				memcpy(&err, buf + off + NLMSG_HDRLEN, sizeof(err));
				if (err < 0)
					res->error = -err;
			} else {
				res->malformed++;
			}
		}
		if (!is_event && (nlh->nlmsg_flags & NLM_F_DUMP_INTR)) {
			/* The table changed under the dump (some entries may be missing): an error. */
			if (!res->error)
				res->error = EINTR;
		}
		if (nlh->nlmsg_type == NLMSG_DONE || nlh->nlmsg_type == NLMSG_ERROR) {
			/* handled above */
		} else if (NFNL_SUBSYS_ID(nlh->nlmsg_type) == NFNL_SUBSYS_CTNETLINK &&
			   (NFNL_MSG_TYPE(nlh->nlmsg_type) == IPCTNL_MSG_CT_NEW ||
			    NFNL_MSG_TYPE(nlh->nlmsg_type) == IPCTNL_MSG_CT_DELETE)) {
			if (res->records == cap)
				break; /* caller drains out[] and calls again from res->consumed */
			if (ct_parse_conntrack(nlh, is_event, &out[res->records]) == 0)
				res->records++;
			else
				res->malformed++;
		} else {
			res->ignored++;
		}
		off = step > len - off ? len : off + step;
	}
	res->consumed = off > len ? len : off;
	if (len - res->consumed < NLMSG_HDRLEN && res->consumed < len && res->records < cap) {
		/* trailing bytes too short for a header */
		res->malformed++;
		res->consumed = len;
	}
}
