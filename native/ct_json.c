/* See ct_json.h. Every piece mirrors src/views/flowjson.ts writeFlowJson; a unit test holds the two
 * (and JSON.stringify(toFlowView(…))) equal on recorded and random records. */
#include "ct_json.h"

#include <stdio.h>
#include <string.h>

/* The fixed part of one flow stays well under this (four IPv6 tuple addresses, three host:port
 * texts, every number at its widest); owners' texts come on top. */
#define CT_JSON_FIXED_MAX 2048
#define CT_JSON_SAFE_MAX 9007199254740991ull /* 2^53 - 1: above it JavaScript's number text differs */

static const char *const ct_proto_names[256] = {
	[1] = "icmp", [6] = "tcp", [17] = "udp", [33] = "dccp", [47] = "gre", [58] = "icmpv6", [132] = "sctp", [136] = "udplite",
};
static const char *const ct_tcp_states[] = { "NONE",	  "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
					     "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE",	     "SYN_SENT2" };
static const char *const ct_dirs[] = { "outbound", "inbound", "local", "forwarded" };

struct ct_w {
	char *p;
};

static void w_str(struct ct_w *w, const char *s)
{
	size_t n = strlen(s);
	memcpy(w->p, s, n);
	w->p += n;
}

static void w_mem(struct ct_w *w, const char *s, size_t n)
{
	memcpy(w->p, s, n);
	w->p += n;
}

static void w_u64(struct ct_w *w, uint64_t v)
{
	char tmp[24];
	int i = 0;
	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*w->p++ = tmp[--i];
}

static void w_null(struct ct_w *w)
{
	w_mem(w, "null", 4);
}

static void w_ipv4(struct ct_w *w, const uint8_t *a)
{
	for (int i = 0; i < 4; i++) {
		if (i)
			*w->p++ = '.';
		w_u64(w, a[i]);
	}
}

size_t ct_json_ipv6(const uint8_t *a, char *out)
{
	struct ct_w w = { out };
	unsigned words[8];
	for (int i = 0; i < 8; i++)
		words[i] = ((unsigned)a[2 * i] << 8) | a[2 * i + 1];
	int best = -1, best_len = 0;
	for (int i = 0; i < 8;) {
		if (words[i]) {
			i++;
			continue;
		}
		int j = i;
		while (j < 8 && !words[j])
			j++;
		if (j - i > best_len && j - i >= 2) {
			best = i;
			best_len = j - i;
		}
		i = j;
	}
	if (best == 0 && best_len == 5 && words[5] == 0xffff) {
		w_str(&w, "::ffff:");
		w_ipv4(&w, a + 12);
		return (size_t)(w.p - out);
	}
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i == best) {
			w_mem(&w, "::", 2);
			i += best_len - 1;
			continue;
		}
		if (i > 0 && !(best >= 0 && i == best + best_len))
			*w.p++ = ':';
		w.p += sprintf(w.p, "%x", words[i]);
	}
	return (size_t)(w.p - out);
}

static void w_addr(struct ct_w *w, const uint8_t *a, int v6)
{
	if (v6)
		w->p += ct_json_ipv6(a, w->p);
	else
		w_ipv4(w, a);
}

/* One tuple's side object (FlowSide). */
static void w_side(struct ct_w *w, const struct ct_record *r, int reply)
{
	int v6 = r->family == 10;
	uint32_t ports = reply ? CT_HAS_REPLY_PORTS : CT_HAS_ORIG_PORTS;
	uint32_t icmp = reply ? CT_HAS_REPLY_ICMP : CT_HAS_ORIG_ICMP;
	uint32_t counters = reply ? CT_HAS_COUNTERS_REPLY : CT_HAS_COUNTERS_ORIG;
	w_str(w, "{\"src\":\"");
	w_addr(w, reply ? r->reply_src : r->orig_src, v6);
	w_str(w, "\",\"dst\":\"");
	w_addr(w, reply ? r->reply_dst : r->orig_dst, v6);
	w_str(w, "\",\"sport\":");
	if (r->present & ports)
		w_u64(w, reply ? r->reply_sport : r->orig_sport);
	else
		w_null(w);
	w_str(w, ",\"dport\":");
	if (r->present & ports)
		w_u64(w, reply ? r->reply_dport : r->orig_dport);
	else
		w_null(w);
	w_str(w, ",\"packets\":");
	if (r->present & counters)
		w_u64(w, reply ? r->reply_packets : r->orig_packets);
	else
		w_null(w);
	w_str(w, ",\"bytes\":");
	if (r->present & counters)
		w_u64(w, reply ? r->reply_bytes : r->orig_bytes);
	else
		w_null(w);
	if (r->present & icmp) {
		w_str(w, ",\"icmp\":{\"type\":");
		w_u64(w, reply ? r->reply_icmp_type : r->orig_icmp_type);
		w_str(w, ",\"code\":");
		w_u64(w, reply ? r->reply_icmp_code : r->orig_icmp_code);
		w_str(w, ",\"id\":");
		w_u64(w, reply ? r->reply_icmp_id : r->orig_icmp_id);
		*w->p++ = '}';
	}
	*w->p++ = '}';
}

/* "ADDR:PORT" / "[ADDR6]:PORT" of one end: its tuple's source (local) or destination (remote). */
static void w_host_port(struct ct_w *w, const struct ct_record *r, int reply, int remote)
{
	int v6 = r->family == 10;
	const uint8_t *a = reply ? (remote ? r->reply_dst : r->reply_src) : (remote ? r->orig_dst : r->orig_src);
	*w->p++ = '"';
	if (v6)
		*w->p++ = '[';
	w_addr(w, a, v6);
	if (v6)
		*w->p++ = ']';
	if (r->present & (reply ? CT_HAS_REPLY_PORTS : CT_HAS_ORIG_PORTS)) {
		*w->p++ = ':';
		w_u64(w, reply ? (remote ? r->reply_dport : r->reply_sport) : (remote ? r->orig_dport : r->orig_sport));
	}
	*w->p++ = '"';
}

/* sent_bytes / recv_bytes of an end: the orig end sends the orig direction. */
static void w_end_bytes(struct ct_w *w, const struct ct_record *r, int reply, int sent)
{
	if ((r->present & (CT_HAS_COUNTERS_ORIG | CT_HAS_COUNTERS_REPLY)) != (CT_HAS_COUNTERS_ORIG | CT_HAS_COUNTERS_REPLY)) {
		w_null(w);
		return;
	}
	w_u64(w, (!reply) == sent ? r->orig_bytes : r->reply_bytes);
}

long ct_json_flow(const struct ct_record *r, int dir, const struct ct_json_end ends[2], const char *age, size_t age_len, char *out,
		  size_t cap)
{
	const struct ct_json_end *main_end = ends[0].side >= 0 ? &ends[0] : NULL;
	const struct ct_json_end *peer = main_end && ends[1].side >= 0 ? &ends[1] : NULL;
	int has_age = (r->present & CT_HAS_TS_START) != 0;
	if (has_age && (!age || !age_len || age_len > 64))
		return CT_JSON_NEEDS_JS; /* age_s: a float, its text made by JavaScript */
	if (((r->present & CT_HAS_COUNTERS_ORIG) && (r->orig_packets > CT_JSON_SAFE_MAX || r->orig_bytes > CT_JSON_SAFE_MAX)) ||
	    ((r->present & CT_HAS_COUNTERS_REPLY) && (r->reply_packets > CT_JSON_SAFE_MAX || r->reply_bytes > CT_JSON_SAFE_MAX)))
		return CT_JSON_NEEDS_JS;
	if (dir < 0 || dir > 3)
		return CT_JSON_NEEDS_JS;
	size_t need = CT_JSON_FIXED_MAX;
	for (int i = 0; i < 2; i++)
		if (ends[i].side >= 0)
			need += ends[i].who_len + ends[i].more_len;
	if (cap < need)
		return CT_JSON_FULL;
	struct ct_w w = { out };
	int v6 = r->family == 10;
	w_str(&w, "{\"id\":");
	if (r->present & CT_HAS_ID)
		w_u64(&w, r->id);
	else
		w_null(&w);
	w_str(&w, v6 ? ",\"family\":\"ipv6\",\"proto\":\"" : ",\"family\":\"ipv4\",\"proto\":\"");
	if (ct_proto_names[r->proto])
		w_str(&w, ct_proto_names[r->proto]);
	else
		w_u64(&w, r->proto);
	w_str(&w, "\",\"state\":");
	if (r->proto == 6 && (r->present & CT_HAS_TCP_STATE)) {
		*w.p++ = '"';
		if (r->tcp_state < sizeof(ct_tcp_states) / sizeof(ct_tcp_states[0]))
			w_str(&w, ct_tcp_states[r->tcp_state]);
		else {
			w_str(&w, "STATE_");
			w_u64(&w, r->tcp_state);
		}
		*w.p++ = '"';
	} else
		w_null(&w);
	w_str(&w, ",\"direction\":\"");
	w_str(&w, ct_dirs[dir]);
	w_str(&w, "\",\"orig\":");
	w_side(&w, r, 0);
	w_str(&w, ",\"reply\":");
	if (r->present & CT_HAS_REPLY_TUPLE)
		w_side(&w, r, 1);
	else
		w_null(&w);
	w_str(&w, ",\"local\":");
	if (main_end)
		w_host_port(&w, r, main_end->side, 0);
	else
		w_null(&w);
	w_str(&w, ",\"remote\":");
	if (main_end)
		w_host_port(&w, r, main_end->side, 1);
	else
		w_null(&w);
	w_str(&w, ",\"sent_bytes\":");
	if (main_end)
		w_end_bytes(&w, r, main_end->side, 1);
	else
		w_null(&w);
	w_str(&w, ",\"recv_bytes\":");
	if (main_end)
		w_end_bytes(&w, r, main_end->side, 0);
	else
		w_null(&w);
	*w.p++ = ',';
	if (main_end)
		w_mem(&w, main_end->who, main_end->who_len);
	else
		w_str(&w, "\"pid\":null,\"comm\":null,\"uid\":null");
	w_str(&w, ",\"mark\":");
	if (r->present & CT_HAS_MARK)
		w_u64(&w, r->mark);
	else
		w_null(&w);
	w_str(&w, ",\"zone\":");
	if (r->present & CT_HAS_ZONE)
		w_u64(&w, r->zone);
	else
		w_null(&w);
	w_str(&w, ",\"age_s\":");
	if (has_age)
		w_mem(&w, age, age_len);
	else
		w_null(&w);
	w_str(&w, ",\"timeout_s\":");
	if (r->present & CT_HAS_TIMEOUT)
		w_u64(&w, r->timeout);
	else
		w_null(&w);
	if (main_end)
		w_mem(&w, main_end->more, main_end->more_len);
	if (peer) {
		w_str(&w, ",\"peer\":{");
		w_mem(&w, peer->who, peer->who_len);
		w_str(&w, ",\"local\":");
		w_host_port(&w, r, peer->side, 0);
		w_str(&w, ",\"sent_bytes\":");
		w_end_bytes(&w, r, peer->side, 1);
		w_str(&w, ",\"recv_bytes\":");
		w_end_bytes(&w, r, peer->side, 0);
		*w.p++ = '}';
	}
	*w.p++ = '}';
	return (long)(w.p - out);
}
