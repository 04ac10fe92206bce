/* `ctacct flows --json`: one flow as the JSON object src/views/flowjson.ts writes (the README
 * contract), from its record, in C. Values whose text JavaScript decides come from JavaScript
 * (age_s, a float) or are left to the JavaScript writer (counters past 2^53): the caller is told
 * so and writes that flow there. */
#ifndef CT_JSON_H
#define CT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "ct_record.h"

/* Directions, in the order of src/commands/flows.ts DIRS. */
enum { CT_DIR_OUTBOUND = 0, CT_DIR_INBOUND = 1, CT_DIR_LOCAL = 2, CT_DIR_FORWARDED = 3 };

/* One end of the flow: which tuple's source it is (0 orig, 1 reply; -1 no end) and its owner's
 * text, made by JavaScript: `who` is `"pid":…,"comm":…,"uid":…`, `more` what follows the main
 * end's timeout_s (`,"shared":true`, `,"netns":…`), possibly empty. */
struct ct_json_end {
	int side;
	const char *who;
	size_t who_len;
	const char *more;
	size_t more_len;
};

#define CT_JSON_NEEDS_JS (-1) /* a value only JavaScript formats as it must */
#define CT_JSON_FULL (-2) /* not enough room in out */

/* Writes the object of `r` (no separator) to out; returns its length, CT_JSON_NEEDS_JS or
 * CT_JSON_FULL. ends[0] is the main end, ends[1] the peer. `age` is the text of age_s as
 * JavaScript writes it (a float: made there), for a record with a start timestamp; NULL: such a
 * record needs the JavaScript writer. */
long ct_json_flow(const struct ct_record *r, int dir, const struct ct_json_end ends[2], const char *age, size_t age_len, char *out,
		  size_t cap);

/* RFC 5952 text of a 16-byte IPv6 address as src/netlink/record.ts formatIPv6 makes it (IPv4-mapped
 * with a dotted tail); returns its length (at most 45). */
size_t ct_json_ipv6(const uint8_t *a, char *out);

#endif
