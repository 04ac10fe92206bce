/* ctnetlink message parsing: plain C over (buffer, length), no Node headers, so captured
 * kernel bytes replay through the same code in unit tests. */
#ifndef CT_PARSE_H
#define CT_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "ct_record.h"

struct ct_parse_result {
	size_t records; /* records written to out */
	size_t consumed; /* bytes of the buffer consumed (< len only when out filled up) */
	uint32_t malformed; /* messages skipped because they did not validate */
	uint32_t ignored; /* well-formed messages of other types (expectations, NOOP, ...) */
	int done; /* NLMSG_DONE seen */
	int error; /* positive errno from an NLMSG_ERROR, 0 when none (acks are not errors) */
};

/* Parses every netlink message in buf[0..len) into out[0..cap). is_event selects how
 * IPCTNL_MSG_CT_NEW is read (NEW vs UPDATE from the flags) versus a dump reply. */
void ct_parse_buffer(const uint8_t *buf, size_t len, int is_event, struct ct_record *out,
		     size_t cap, struct ct_parse_result *res);

#endif
