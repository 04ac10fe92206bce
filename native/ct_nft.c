/* nf_tables netlink requests (the table that engages conntrack) and CT_DELETE by tuple.
 * Message layout: net/netfilter/nf_tables_api.c (nf_tables_newtable/newchain/newrule policies)
 * and nfnetlink batches (NFNL_MSG_BATCH_BEGIN/END with res_id = NFNL_SUBSYS_NFTABLES). */
#include "ct_nft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef NFT_TABLE_F_OWNER
#define NFT_TABLE_F_OWNER 0x2
#endif

#define CT_NFT_CHAIN "track"
#define CT_NFT_PRIORITY 300

struct ct_nbuf {
	uint8_t buf[4096];
	size_t len;
	int overflow;
};

static void *ct_nb_reserve(struct ct_nbuf *b, size_t n)
{
	size_t need = NLMSG_ALIGN(n);
	if (b->len + need > sizeof(b->buf)) {
		b->overflow = 1;
		return NULL;
	}
	void *p = b->buf + b->len;
	memset(p, 0, need);
	b->len += need;
	return p;
}

static struct nlmsghdr *ct_nb_msg(struct ct_nbuf *b, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
				  uint16_t res_id)
{
	struct nlmsghdr *h = ct_nb_reserve(b, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
	if (!h)
		return NULL;
	h->nlmsg_type = type;
	h->nlmsg_flags = flags;
	h->nlmsg_seq = seq;
	struct nfgenmsg *g = NLMSG_DATA(h);
	g->nfgen_family = family;
	g->version = NFNETLINK_V0;
	g->res_id = htons(res_id);
	return h;
}

static struct nlattr *ct_nb_attr(struct ct_nbuf *b, uint16_t type, const void *data, size_t len)
{
	struct nlattr *a = ct_nb_reserve(b, NLA_HDRLEN + len);
	if (!a)
		return NULL;
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	if (len)
		memcpy((uint8_t *)a + NLA_HDRLEN, data, len);
	return a;
}

static void ct_nb_str(struct ct_nbuf *b, uint16_t type, const char *s)
{
	ct_nb_attr(b, type, s, strlen(s) + 1);
}

static void ct_nb_be32(struct ct_nbuf *b, uint16_t type, uint32_t v)
{
	uint32_t be = htonl(v);
	ct_nb_attr(b, type, &be, 4);
}

static void ct_nb_be16(struct ct_nbuf *b, uint16_t type, uint16_t v)
{
	uint16_t be = htons(v);
	ct_nb_attr(b, type, &be, 2);
}

static size_t ct_nb_nest(struct ct_nbuf *b, uint16_t type)
{
	size_t off = b->len;
	ct_nb_attr(b, type | NLA_F_NESTED, NULL, 0);
	return off;
}

static void ct_nb_nest_end(struct ct_nbuf *b, size_t off)
{
	if (b->overflow)
		return;
	struct nlattr *a = (struct nlattr *)(b->buf + off);
	a->nla_len = (uint16_t)(b->len - off);
}

static void ct_nb_msg_end(struct ct_nbuf *b, struct nlmsghdr *h)
{
	if (!b->overflow)
		h->nlmsg_len = (uint32_t)(b->buf + b->len - (uint8_t *)h);
}

int ct_nft_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	/* A request the kernel never answers must not hang ctacct. */
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int one = 1;
	setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	return fd;
}

static int ct_nb_send(int fd, const struct ct_nbuf *b)
{
	if (b->overflow)
		return -EMSGSIZE;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	ssize_t n = sendto(fd, b->buf, b->len, 0, (struct sockaddr *)&sa, sizeof(sa));
	if (n < 0)
		return -errno;
	return (size_t)n == b->len ? 0 : -EIO;
}

/* Reads replies until `want` acks/errors with sequence numbers in [seq0, seq0+want) arrived.
 * Returns the first error (negative errno) or 0. *found counts other messages (GET replies). */
static int ct_nb_wait(int fd, uint32_t seq0, unsigned want, unsigned *found)
{
	static __thread uint8_t rx[16384];
	int first = 0;
	unsigned got = 0;
	while (got < want) {
		ssize_t n = recv(fd, rx, sizeof(rx), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -(errno == EAGAIN ? ETIMEDOUT : errno);
		}
		size_t left = (size_t)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)rx; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
			if (h->nlmsg_seq < seq0 || h->nlmsg_seq >= seq0 + want)
				continue; /* a late reply to an earlier request */
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*e)))
					return -EBADMSG;
				if (e->error < 0 && first == 0)
					first = e->error;
				got++;
			} else if (h->nlmsg_type == NLMSG_DONE) {
				got++;
			} else if (found) {
				(*found)++;
			}
		}
	}
	return first;
}

static uint32_t ct_nft_seq = 0;

static uint32_t ct_nb_seq(unsigned n)
{
	if (ct_nft_seq == 0)
		ct_nft_seq = (uint32_t)time(NULL);
	uint32_t s = ct_nft_seq;
	ct_nft_seq += n;
	return s;
}

#define CT_NFT_TYPE(m) ((uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | (m)))

int ct_nft_engage(int fd, const char *table, int owner)
{
	struct ct_nbuf b = { .len = 0 };
	uint32_t seq = ct_nb_seq(5);
	struct nlmsghdr *h;

	h = ct_nb_msg(&b, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
	if (h)
		ct_nb_msg_end(&b, h);

	h = ct_nb_msg(&b, CT_NFT_TYPE(NFT_MSG_NEWTABLE), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, seq + 1,
		      NFPROTO_INET, 0);
	ct_nb_str(&b, NFTA_TABLE_NAME, table);
	ct_nb_be32(&b, NFTA_TABLE_FLAGS, owner ? NFT_TABLE_F_OWNER : 0);
	if (h)
		ct_nb_msg_end(&b, h);

	h = ct_nb_msg(&b, CT_NFT_TYPE(NFT_MSG_NEWCHAIN), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK, seq + 2, NFPROTO_INET, 0);
	ct_nb_str(&b, NFTA_CHAIN_TABLE, table);
	ct_nb_str(&b, NFTA_CHAIN_NAME, CT_NFT_CHAIN);
	size_t hook = ct_nb_nest(&b, NFTA_CHAIN_HOOK);
	ct_nb_be32(&b, NFTA_HOOK_HOOKNUM, NF_INET_LOCAL_OUT);
	ct_nb_be32(&b, NFTA_HOOK_PRIORITY, (uint32_t)CT_NFT_PRIORITY);
	ct_nb_nest_end(&b, hook);
	ct_nb_be32(&b, NFTA_CHAIN_POLICY, NF_ACCEPT);
	ct_nb_str(&b, NFTA_CHAIN_TYPE, "filter");
	if (h)
		ct_nb_msg_end(&b, h);

	/* One expression: ct state → register 1. Loading it is what makes the kernel register
	 * conntrack's hooks in this namespace (nft_ct_get_init → nf_ct_netns_get); nothing reads
	 * the register, so no packet's verdict changes. */
	h = ct_nb_msg(&b, CT_NFT_TYPE(NFT_MSG_NEWRULE), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, seq + 3,
		      NFPROTO_INET, 0);
	ct_nb_str(&b, NFTA_RULE_TABLE, table);
	ct_nb_str(&b, NFTA_RULE_CHAIN, CT_NFT_CHAIN);
	size_t exprs = ct_nb_nest(&b, NFTA_RULE_EXPRESSIONS);
	size_t elem = ct_nb_nest(&b, NFTA_LIST_ELEM);
	ct_nb_str(&b, NFTA_EXPR_NAME, "ct");
	size_t data = ct_nb_nest(&b, NFTA_EXPR_DATA);
	ct_nb_be32(&b, NFTA_CT_DREG, NFT_REG_1);
	ct_nb_be32(&b, NFTA_CT_KEY, NFT_CT_STATE);
	ct_nb_nest_end(&b, data);
	ct_nb_nest_end(&b, elem);
	ct_nb_nest_end(&b, exprs);
	if (h)
		ct_nb_msg_end(&b, h);

	h = ct_nb_msg(&b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 4, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
	if (h)
		ct_nb_msg_end(&b, h);

	int rc = ct_nb_send(fd, &b);
	if (rc < 0)
		return rc;
	return ct_nb_wait(fd, seq + 1, 3, NULL);
}

int ct_nft_delete(int fd, const char *table)
{
	struct ct_nbuf b = { .len = 0 };
	uint32_t seq = ct_nb_seq(3);
	struct nlmsghdr *h = ct_nb_msg(&b, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
	if (h)
		ct_nb_msg_end(&b, h);
	h = ct_nb_msg(&b, CT_NFT_TYPE(NFT_MSG_DELTABLE), NLM_F_REQUEST | NLM_F_ACK, seq + 1, NFPROTO_INET, 0);
	ct_nb_str(&b, NFTA_TABLE_NAME, table);
	if (h)
		ct_nb_msg_end(&b, h);
	h = ct_nb_msg(&b, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 2, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
	if (h)
		ct_nb_msg_end(&b, h);
	int rc = ct_nb_send(fd, &b);
	if (rc < 0)
		return rc;
	return ct_nb_wait(fd, seq + 1, 1, NULL);
}

int ct_nft_exists(int fd, const char *table)
{
	struct ct_nbuf b = { .len = 0 };
	uint32_t seq = ct_nb_seq(1);
	struct nlmsghdr *h = ct_nb_msg(&b, CT_NFT_TYPE(NFT_MSG_GETTABLE), NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_INET, 0);
	ct_nb_str(&b, NFTA_TABLE_NAME, table);
	if (h)
		ct_nb_msg_end(&b, h);
	int rc = ct_nb_send(fd, &b);
	if (rc < 0)
		return rc;
	unsigned found = 0;
	rc = ct_nb_wait(fd, seq, 1, &found);
	if (rc == -ENOENT)
		return 0;
	return rc < 0 ? rc : found > 0;
}

int ct_entry_delete(int fd, const struct ct_entry_key *k)
{
	struct ct_nbuf b = { .len = 0 };
	uint32_t seq = ct_nb_seq(1);
	if (k->family != AF_INET && k->family != AF_INET6)
		return -EAFNOSUPPORT;
	if (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP)
		return -EPROTONOSUPPORT;
	struct nlmsghdr *h = ct_nb_msg(&b, (uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE),
				       NLM_F_REQUEST | NLM_F_ACK, seq, k->family, 0);
	size_t tuple = ct_nb_nest(&b, CTA_TUPLE_ORIG);
	size_t ip = ct_nb_nest(&b, CTA_TUPLE_IP);
	if (k->family == AF_INET) {
		ct_nb_attr(&b, CTA_IP_V4_SRC, k->src, 4);
		ct_nb_attr(&b, CTA_IP_V4_DST, k->dst, 4);
	} else {
		ct_nb_attr(&b, CTA_IP_V6_SRC, k->src, 16);
		ct_nb_attr(&b, CTA_IP_V6_DST, k->dst, 16);
	}
	ct_nb_nest_end(&b, ip);
	size_t proto = ct_nb_nest(&b, CTA_TUPLE_PROTO);
	ct_nb_attr(&b, CTA_PROTO_NUM, &k->proto, 1);
	ct_nb_be16(&b, CTA_PROTO_SRC_PORT, k->sport);
	ct_nb_be16(&b, CTA_PROTO_DST_PORT, k->dport);
	ct_nb_nest_end(&b, proto);
	ct_nb_nest_end(&b, tuple);
	if (k->id)
		ct_nb_be32(&b, CTA_ID, k->id);
	if (k->zone)
		ct_nb_be16(&b, CTA_ZONE, k->zone);
	if (h)
		ct_nb_msg_end(&b, h);
	int rc = ct_nb_send(fd, &b);
	if (rc < 0)
		return rc;
	return ct_nb_wait(fd, seq, 1, NULL);
}
