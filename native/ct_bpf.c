/* Close tracker (see ct_bpf.h): raw bpf(2) and perf_event_open(2), no libbpf. */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ct_bpf.h"

static long ct_bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

/* Instruction encoders (the kernel's uapi encoding, see Documentation/bpf/standardization). */
#define I(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define MOV64_REG(d, s) I(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, v) I(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, v)
#define ADD64_IMM(d, v) I(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, v)
#define RSH64_IMM(d, v) I(BPF_ALU64 | BPF_RSH | BPF_K, d, 0, 0, v)
#define LDX(sz, d, s, o) I(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define STX(sz, d, s, o) I(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define ST_IMM(sz, d, o, v) I(BPF_ST | BPF_MEM | (sz), d, 0, o, v)
#define JEQ_IMM(d, v, o) I(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, v)
#define JNE_IMM(d, v, o) I(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, v)
#define JA(o) I(BPF_JMP | BPF_JA, 0, 0, o, 0)
#define CALL(f) I(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
#define LD_MAP_FD(d, fd) I(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), I(0, 0, 0, 0, 0)

enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };
#define TCP_FIN_WAIT1 4
#define TCP_LAST_ACK 9
#define KEY (-40) /* struct ct_closer_key on the stack: fp-40 .. fp-1 */
#define VAL (-80) /* struct ct_closer_val: fp-80 .. fp-41 */

static int ct_closer_prog(struct bpf_insn *p, int map_fd, const struct ct_tp_offsets *o)
{
	int n = 0;
	p[n++] = MOV64_REG(R6, R1);
	p[n++] = LDX(BPF_W, R2, R6, o->newstate);
	p[n++] = JEQ_IMM(R2, TCP_FIN_WAIT1, 2);
	p[n++] = JEQ_IMM(R2, TCP_LAST_ACK, 1);
	int to_exit1 = n;
	p[n++] = JA(0); /* patched: to exit */
	p[n++] = LDX(BPF_H, R2, R6, o->protocol);
	int to_exit2 = n;
	p[n++] = JNE_IMM(R2, 6 /* IPPROTO_TCP */, 0); /* patched */
	p[n++] = LDX(BPF_H, R2, R6, o->sport);
	p[n++] = STX(BPF_H, R10, R2, KEY + (int)offsetof(struct ct_closer_key, sport));
	p[n++] = LDX(BPF_H, R2, R6, o->dport);
	p[n++] = STX(BPF_H, R10, R2, KEY + (int)offsetof(struct ct_closer_key, dport));
	p[n++] = ST_IMM(BPF_W, R10, KEY + (int)offsetof(struct ct_closer_key, pad), 0);
	for (int i = 0; i < 16; i += 4) {
		p[n++] = LDX(BPF_W, R2, R6, o->saddr_v6 + i);
		p[n++] = STX(BPF_W, R10, R2, KEY + (int)offsetof(struct ct_closer_key, saddr) + i);
		p[n++] = LDX(BPF_W, R2, R6, o->daddr_v6 + i);
		p[n++] = STX(BPF_W, R10, R2, KEY + (int)offsetof(struct ct_closer_key, daddr) + i);
	}
	p[n++] = CALL(BPF_FUNC_get_current_pid_tgid);
	p[n++] = RSH64_IMM(R0, 32);
	p[n++] = STX(BPF_W, R10, R0, VAL + (int)offsetof(struct ct_closer_val, tgid));
	p[n++] = CALL(BPF_FUNC_get_current_uid_gid);
	p[n++] = STX(BPF_W, R10, R0, VAL + (int)offsetof(struct ct_closer_val, uid));
	p[n++] = CALL(BPF_FUNC_ktime_get_boot_ns);
	p[n++] = STX(BPF_DW, R10, R0, VAL + (int)offsetof(struct ct_closer_val, boot_ns));
	p[n++] = MOV64_REG(R1, R10);
	p[n++] = ADD64_IMM(R1, VAL + (int)offsetof(struct ct_closer_val, comm));
	p[n++] = MOV64_IMM(R2, 16);
	p[n++] = CALL(BPF_FUNC_get_current_comm);
	int start = VAL + (int)offsetof(struct ct_closer_val, start_ns);
	if (o->group_leader != CT_NO_OFFSET && o->start_boottime != CT_NO_OFFSET) {
		/* current->group_leader->start_boottime (a failed read leaves zeros). */
		p[n++] = CALL(BPF_FUNC_get_current_task);
		p[n++] = MOV64_REG(R3, R0);
		p[n++] = ADD64_IMM(R3, o->group_leader);
		p[n++] = MOV64_REG(R1, R10);
		p[n++] = ADD64_IMM(R1, start);
		p[n++] = MOV64_IMM(R2, 8);
		p[n++] = CALL(BPF_FUNC_probe_read_kernel);
		p[n++] = LDX(BPF_DW, R3, R10, start);
		p[n++] = ADD64_IMM(R3, o->start_boottime);
		p[n++] = MOV64_REG(R1, R10);
		p[n++] = ADD64_IMM(R1, start);
		p[n++] = MOV64_IMM(R2, 8);
		p[n++] = CALL(BPF_FUNC_probe_read_kernel);
	} else {
		p[n++] = ST_IMM(BPF_DW, R10, start, 0);
	}
	struct bpf_insn ld[2] = { LD_MAP_FD(R1, map_fd) };
	p[n++] = ld[0];
	p[n++] = ld[1];
	p[n++] = MOV64_REG(R2, R10);
	p[n++] = ADD64_IMM(R2, KEY);
	p[n++] = MOV64_REG(R3, R10);
	p[n++] = ADD64_IMM(R3, VAL);
	p[n++] = MOV64_IMM(R4, BPF_ANY);
	p[n++] = CALL(BPF_FUNC_map_update_elem);
	int exit_at = n;
	p[n++] = MOV64_IMM(R0, 0);
	p[n++] = EXIT();
	p[to_exit1].off = (int16_t)(exit_at - to_exit1 - 1);
	p[to_exit2].off = (int16_t)(exit_at - to_exit2 - 1);
	return n;
}

void ct_closer_close(struct ct_closer *c)
{
	if (c->perf_fd >= 0)
		close(c->perf_fd);
	if (c->prog_fd >= 0)
		close(c->prog_fd);
	if (c->map_fd >= 0)
		close(c->map_fd);
	c->perf_fd = c->prog_fd = c->map_fd = -1;
}

int ct_closer_open(struct ct_closer *c, uint32_t tp_id, const struct ct_tp_offsets *off, uint32_t max_entries,
		   char *log, uint32_t log_size)
{
	c->map_fd = c->prog_fd = c->perf_fd = -1;
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_LRU_HASH;
	a.key_size = sizeof(struct ct_closer_key);
	a.value_size = sizeof(struct ct_closer_val);
	a.max_entries = max_entries;
	strncpy(a.map_name, "ctacct_closers", sizeof(a.map_name) - 1);
	long fd = ct_bpf(BPF_MAP_CREATE, &a);
	if (fd < 0)
		return -errno;
	c->map_fd = (int)fd;

	struct bpf_insn prog[96];
	int n = ct_closer_prog(prog, c->map_fd, off);
	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_TRACEPOINT;
	a.insns = (uint64_t)(uintptr_t)prog;
	a.insn_cnt = (uint32_t)n;
	a.license = (uint64_t)(uintptr_t) "Dual MIT/GPL";
	strncpy(a.prog_name, "ctacct_closer", sizeof(a.prog_name) - 1);
	if (log && log_size) {
		log[0] = 0;
		a.log_buf = (uint64_t)(uintptr_t)log;
		a.log_size = log_size;
		a.log_level = 1;
	}
	fd = ct_bpf(BPF_PROG_LOAD, &a);
	if (fd < 0 && log && errno == ENOSPC) {
		/* The verifier's log did not fit: load again without it, the failure is what matters. */
		a.log_buf = 0;
		a.log_size = 0;
		a.log_level = 0;
		fd = ct_bpf(BPF_PROG_LOAD, &a);
	}
	if (fd < 0) {
		int e = errno;
		ct_closer_close(c);
		return -e;
	}
	c->prog_fd = (int)fd;

	/* A BPF program on a tracepoint runs on every CPU; one perf event (cpu 0) attaches it. */
	struct perf_event_attr pa;
	memset(&pa, 0, sizeof(pa));
	pa.type = PERF_TYPE_TRACEPOINT;
	pa.size = sizeof(pa);
	pa.config = tp_id;
	pa.sample_period = 1;
	pa.wakeup_events = 1;
	fd = syscall(__NR_perf_event_open, &pa, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		ct_closer_close(c);
		return -e;
	}
	c->perf_fd = (int)fd;
	if (ioctl(c->perf_fd, PERF_EVENT_IOC_SET_BPF, c->prog_fd) < 0 || ioctl(c->perf_fd, PERF_EVENT_IOC_ENABLE, 0) < 0) {
		int e = errno;
		ct_closer_close(c);
		return -e;
	}
	return 0;
}

int ct_closer_lookup(const struct ct_closer *c, const struct ct_closer_key *k, struct ct_closer_val *v)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = (uint32_t)c->map_fd;
	a.key = (uint64_t)(uintptr_t)k;
	a.value = (uint64_t)(uintptr_t)v;
	if (ct_bpf(BPF_MAP_LOOKUP_ELEM, &a) == 0)
		return 1;
	return errno == ENOENT ? 0 : -errno;
}
