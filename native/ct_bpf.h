/* Close tracker: a BPF program on the sock:inet_sock_set_state tracepoint that remembers, per TCP
 * 4-tuple, which process closed the socket (the ESTABLISHED -> FIN_WAIT1 and CLOSE_WAIT ->
 * LAST_ACK transitions, which only close()/shutdown() make, in the caller's context). A
 * connection whose socket is gone before anyone could look it up still names its last holder.
 * Plain C, no Node headers. */
#ifndef CT_BPF_H
#define CT_BPF_H
#include <stdint.h>

/* Offsets of the tracepoint's fields in its record (from its tracefs "format" file). */
struct ct_tp_offsets {
	uint16_t newstate, protocol, sport, dport, saddr_v6, daddr_v6;
	/* In struct task_struct (from BTF); CT_NO_OFFSET when unknown: start_ns stays 0. */
	uint16_t group_leader, start_boottime;
};
#define CT_NO_OFFSET 0xffff

/* Map key: local port, remote port (host order), then local and remote address (IPv6 or
 * v4-mapped IPv6), as the tracepoint names them (s = the socket's own end). */
struct ct_closer_key {
	uint16_t sport, dport;
	uint32_t pad;
	uint8_t saddr[16], daddr[16];
};

struct ct_closer_val {
	uint32_t tgid, uid;
	uint64_t boot_ns; /* CLOCK_BOOTTIME of the close */
	uint64_t start_ns; /* the thread group leader's start_boottime: /proc/PID/stat starttime * 1e9/USER_HZ */
	char comm[16];
};

struct ct_closer {
	int map_fd, prog_fd, perf_fd;
};

/* Creates the map (max_entries, LRU), loads the program and attaches it to tracepoint tp_id.
 * Returns 0, or -errno (log, when given, gets the verifier's message on a load failure). */
int ct_closer_open(struct ct_closer *c, uint32_t tp_id, const struct ct_tp_offsets *off, uint32_t max_entries,
		   char *log, uint32_t log_size);
/* 1 found, 0 not, -errno. */
int ct_closer_lookup(const struct ct_closer *c, const struct ct_closer_key *k, struct ct_closer_val *v);
void ct_closer_close(struct ct_closer *c);

#endif
