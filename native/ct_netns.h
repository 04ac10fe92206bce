/* Netlink sockets inside other network namespaces (see ct_netns.c). */
#ifndef CT_NETNS_H
#define CT_NETNS_H

#include <stddef.h>
#include <stdint.h>

/* A sock_diag socket (as ct_diag_open) created inside the namespace at path (an nsfs file:
 * /proc/PID/ns/net, /run/netns/NAME). Returns the fd or -errno. */
int ct_netns_diag_open(const char *path);
/* ct_addr_list run inside the namespace at path. */
int ct_netns_addr_list(const char *path, uint8_t *out, size_t cap, size_t *count);
/* Moves the calling thread into the namespace at path (threads it creates later follow). */
int ct_netns_enter(const char *path);

#endif
