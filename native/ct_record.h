/* Fixed-layout flow record handed to JavaScript in batches (one Buffer per batch).
 * The layout is mirrored in src/netlink/record.ts; the offsets are checked at compile time. */
#ifndef CT_RECORD_H
#define CT_RECORD_H

#include <stddef.h>
#include <stdint.h>

enum ct_msg_kind {
	CT_KIND_DUMP = 0,
	CT_KIND_NEW = 1,
	CT_KIND_UPDATE = 2,
	CT_KIND_DESTROY = 3,
};

/* Which optional fields the kernel sent: absent is not zero. */
enum ct_present {
	CT_HAS_ID = 1u << 0,
	CT_HAS_COUNTERS_ORIG = 1u << 1,
	CT_HAS_COUNTERS_REPLY = 1u << 2,
	CT_HAS_MARK = 1u << 3,
	CT_HAS_ZONE = 1u << 4,
	CT_HAS_TIMEOUT = 1u << 5,
	CT_HAS_TS_START = 1u << 6,
	CT_HAS_TS_STOP = 1u << 7,
	CT_HAS_TS_EVENT = 1u << 8,
	CT_HAS_TCP_STATE = 1u << 9,
	CT_HAS_STATUS = 1u << 10,
	CT_HAS_USE = 1u << 11,
	CT_HAS_ORIG_PORTS = 1u << 12,
	CT_HAS_REPLY_PORTS = 1u << 13,
	CT_HAS_ORIG_ICMP = 1u << 14,
	CT_HAS_REPLY_ICMP = 1u << 15,
	CT_HAS_ORIG_TUPLE = 1u << 16,
	CT_HAS_REPLY_TUPLE = 1u << 17,
	CT_HAS_SK_ORIG = 1u << 18,  /* a socket lookup was made for the orig-source side */
	CT_HAS_SK_REPLY = 1u << 19, /* ... and for the reply-source side */
};

struct ct_sock_hit {
	uint32_t inode;
	uint32_t uid;
	uint32_t pid; /* owner found by the reader thread's fd scan of candidate pids, 0 if not */
	uint8_t found; /* 1 when the kernel returned a socket */
	uint8_t state; /* TCP_* state of the socket found (10 = LISTEN), 7 (CLOSE) for UDP */
	uint8_t pad[2];
};

struct ct_record {
	uint8_t kind; /* enum ct_msg_kind */
	uint8_t family; /* AF_INET / AF_INET6 */
	uint8_t proto; /* L4 protocol number */
	uint8_t tcp_state; /* TCP_CONNTRACK_* */
	uint32_t present; /* enum ct_present bits */
	uint32_t id;
	uint32_t status;
	uint32_t mark;
	uint32_t timeout;
	uint16_t zone;
	uint16_t orig_sport;
	uint16_t orig_dport;
	uint16_t reply_sport;
	uint16_t reply_dport;
	uint8_t orig_icmp_type;
	uint8_t orig_icmp_code;
	uint16_t orig_icmp_id;
	uint8_t reply_icmp_type;
	uint8_t reply_icmp_code;
	uint16_t reply_icmp_id;
	uint16_t pad0;
	uint32_t use;
	uint64_t orig_packets;
	uint64_t orig_bytes;
	uint64_t reply_packets;
	uint64_t reply_bytes;
	uint64_t ts_start; /* ns, CLOCK_REALTIME */
	uint64_t ts_stop;
	uint64_t ts_event;
	uint8_t orig_src[16];
	uint8_t orig_dst[16];
	uint8_t reply_src[16];
	uint8_t reply_dst[16];
	struct ct_sock_hit sk_orig; /* socket whose local end is orig.src:sport */
	struct ct_sock_hit sk_reply; /* socket whose local end is reply.src:sport */
};

#define CT_RECORD_SIZE 200

_Static_assert(sizeof(struct ct_record) == CT_RECORD_SIZE, "ct_record size");
_Static_assert(offsetof(struct ct_record, orig_packets) == 48, "ct_record layout");
_Static_assert(offsetof(struct ct_record, orig_src) == 104, "ct_record layout");
_Static_assert(offsetof(struct ct_record, sk_orig) == 168, "ct_record layout");
_Static_assert(offsetof(struct ct_record, sk_reply) == 184, "ct_record layout");

#endif
