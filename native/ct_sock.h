/* Netlink socket I/O for ctnetlink and sock_diag: open, subscribe, request, receive.
 * Plain C; errors are returned as negative errno values. */
#ifndef CT_SOCK_H
#define CT_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "ct_record.h"

#define CT_GROUP_NEW 1u
#define CT_GROUP_UPDATE 2u
#define CT_GROUP_DESTROY 4u

struct ct_dump_filter {
	uint8_t family; /* AF_UNSPEC for all */
	int has_mark;
	uint32_t mark, mark_mask;
	int has_zone;
	uint16_t zone;
	int has_status;
	uint32_t status, status_mask;
	uint8_t proto; /* 0 = any; needs family != AF_UNSPEC for the kernel filter */
	int has_port; /* filter on orig dport (or sport when port_src) */
	uint16_t port;
	int port_src;
};

/* Opens a non-blocking NETLINK_NETFILTER socket. groups: CT_GROUP_* bits (0 for a dump
 * socket). rcvbuf > 0 sets the receive buffer (SO_RCVBUFFORCE, falling back to SO_RCVBUF);
 * *rcvbuf_out receives the size the kernel granted. */
int ct_sock_open(unsigned groups, int rcvbuf, int *rcvbuf_out);
int ct_sock_set_rcvbuf(int fd, int bytes, int *granted);
/* Sends a conntrack table dump request. Returns 0 or -errno. */
int ct_dump_request(int fd, uint32_t seq, const struct ct_dump_filter *f);

/* sock_diag: one blocking socket used for exact lookups. */
int ct_diag_open(void);
/* Looks up the socket whose local end is local:lport and remote end remote:rport.
 * Returns 1 found (hit filled), 0 not found, -errno on error. */
int ct_diag_lookup(int fd, uint8_t family, uint8_t proto, const uint8_t *local, uint16_t lport,
		   const uint8_t *remote, uint16_t rport, struct ct_sock_hit *hit);

/* ct_diag_sock.flags: what decides whether a kernel lookup can pick this socket, beyond its
 * addresses (a listener bound to a device is not found by a lookup without one; an IPv6 socket
 * with IPV6_V6ONLY takes no IPv4 traffic). V6ONLY_KNOWN: the kernel said (listening and unbound
 * IPv6 sockets only). */
#define CT_DIAG_F_BOUND_DEV 1u
#define CT_DIAG_F_V6ONLY 2u
#define CT_DIAG_F_V6ONLY_KNOWN 4u

/* One socket of a sock_diag dump, as /proc/net/{tcp,udp}[6] would list it. 56 bytes. */
struct ct_diag_sock {
	uint8_t family; /* AF_INET / AF_INET6 */
	uint8_t proto; /* IPPROTO_TCP / IPPROTO_UDP */
	uint8_t state; /* TCP_* (request sockets as SYN_RECV) */
	uint8_t flags; /* CT_DIAG_F_* */
	uint16_t lport, rport; /* host order */
	uint32_t uid, inode, rqueue, wqueue;
	uint8_t local[16], remote[16]; /* network order; IPv4 in the first 4 bytes */
};

_Static_assert(sizeof(struct ct_diag_sock) == 56, "ct_diag_sock size (src/netlink/sockets.ts)");

struct ct_diag_socks {
	struct ct_diag_sock *v;
	size_t n, cap;
};

/* Dumps every socket of one family and protocol whose state bit is in `states` (no privileges
 * needed), appending to *out (grown with realloc; free out->v). Returns 0 or -errno. */
int ct_diag_dump(uint8_t family, uint8_t proto, uint32_t states, struct ct_diag_socks *out);

/* State numbers counted by ct_diag_count (idiag_states is a 32-bit mask); a larger state, which
 * the kernel does not report, would be counted in the last slot. */
#define CT_DIAG_STATES 32

/* The same dump, counted by state only (counts[state] += 1 per socket; the caller zeroes counts):
 * nothing per socket is kept. Returns 0 or -errno. */
int ct_diag_count(uint8_t family, uint8_t proto, uint32_t states, uint32_t counts[CT_DIAG_STATES]);

/* Addresses of this network namespace: entries of 17 bytes (4 or 6, then 16 address bytes). */
int ct_addr_list(uint8_t *out, size_t cap, size_t *count);

#endif
