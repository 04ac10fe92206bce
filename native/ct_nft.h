/* nf_tables over netlink: the one table that engages conntrack, and conntrack entry removal.
 * Plain C; errors are returned as negative errno values. */
#ifndef CT_NFT_H
#define CT_NFT_H

#include <stddef.h>
#include <stdint.h>

/* Opens a blocking NETLINK_NETFILTER socket (SOCK_CLOEXEC) for nf_tables requests. */
int ct_nft_open(void);

/* Creates table inet <table> with one base chain (filter, hook output, priority 300, policy
 * accept) holding one rule that loads `ct state` into a register: no verdict change.
 * owner != 0 sets NFT_TABLE_F_OWNER: the table belongs to this socket and the kernel deletes
 * it when the socket closes. Returns 0 or -errno (-EOPNOTSUPP: kernel < 5.12 has no owner flag;
 * -EEXIST: a table of that name exists). */
int ct_nft_engage(int fd, const char *table, int owner);

/* Deletes table inet <table>. Returns 0 or -errno (-ENOENT when it does not exist). */
int ct_nft_delete(int fd, const char *table);

/* Whether table inet <table> exists: 1 yes, 0 no, -errno on error. */
int ct_nft_exists(int fd, const char *table);

/* One conntrack entry by its original tuple (and id when id != 0). */
struct ct_entry_key {
	uint8_t family; /* AF_INET / AF_INET6 */
	uint8_t proto;
	uint8_t src[16], dst[16];
	uint16_t sport, dport; /* host order; for ICMP: unused */
	uint32_t id;
	uint16_t zone;
};

/* Sends IPCTNL_MSG_CT_DELETE for one entry on a NETLINK_NETFILTER socket. 0, or -errno
 * (-ENOENT: already gone). */
int ct_entry_delete(int fd, const struct ct_entry_key *k);

#endif
