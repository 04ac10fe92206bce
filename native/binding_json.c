/* Node-API glue for native/ct_json.c: `flows --json` objects written from a batch of records. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <node_api.h>

#include "ct_json.h"

void ct_throw_errno(napi_env env, int err, const char *syscall);

static int ct_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len)
{
	bool is = false;
	napi_typedarray_type t;
	if (napi_is_typedarray(env, v, &is) != napi_ok || !is)
		return -1;
	if (napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) != napi_ok || t != want)
		return -1;
	return 0;
}

static int ct_bytes(napi_env env, napi_value v, void **data, size_t *len)
{
	bool is = false;
	if (napi_is_buffer(env, v, &is) != napi_ok || !is)
		return -1;
	return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

/* formatFlows(records, from, to, dirs: Uint8Array, skip: Uint8Array, endSide: Int8Array,
 *             endOwner: Uint32Array, text: Buffer, textOff: Uint32Array, out: Buffer, outOff, first,
 *             ageText: Buffer, ageOff: Uint32Array)
 * -> [next, outEnd, status]: objects of records from..to-1 (not skipped; comma-separated, a comma
 * first unless `first`) written at out[outOff..]; status 0 all done, 1 record `next` needs the
 * JavaScript writer, 2 out is full. Per record i, ends 2i and 2i+1: side -1/0/1 and owner k, whose
 * texts are text[textOff[4k]..textOff[4k+1]] and text[textOff[4k+2]..textOff[4k+3]]. age_s of
 * record i is ageText[ageOff[i]..ageOff[i+1]] (ageOff empty: records with one need JavaScript). */
static napi_value ct_format_flows(napi_env env, napi_callback_info info)
{
	size_t argc = 14;
	napi_value argv[14];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
		return NULL;
	void *recs, *dirs, *skip, *side, *owner, *text, *toff, *out, *age, *aoff;
	size_t nrecs_b, ndirs, nskip, nside, nowner, ntext, ntoff, nout, nage, naoff;
	uint32_t from = 0, to = 0, out_off = 0;
	bool first = false;
	if (argc < 14 || ct_bytes(env, argv[0], &recs, &nrecs_b) || napi_get_value_uint32(env, argv[1], &from) != napi_ok ||
	    napi_get_value_uint32(env, argv[2], &to) != napi_ok || ct_typed(env, argv[3], napi_uint8_array, &dirs, &ndirs) ||
	    ct_typed(env, argv[4], napi_uint8_array, &skip, &nskip) || ct_typed(env, argv[5], napi_int8_array, &side, &nside) ||
	    ct_typed(env, argv[6], napi_uint32_array, &owner, &nowner) || ct_bytes(env, argv[7], &text, &ntext) ||
	    ct_typed(env, argv[8], napi_uint32_array, &toff, &ntoff) || ct_bytes(env, argv[9], &out, &nout) ||
	    napi_get_value_uint32(env, argv[10], &out_off) != napi_ok || napi_get_value_bool(env, argv[11], &first) != napi_ok ||
	    ct_bytes(env, argv[12], &age, &nage) || ct_typed(env, argv[13], napi_uint32_array, &aoff, &naoff)) {
		napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE",
				      "formatFlows(records, from, to, dirs, skip, endSide, endOwner, text, textOff, out, outOff, first, ageText, ageOff)");
		return NULL;
	}
	if (from > to || (size_t)to * CT_RECORD_SIZE > nrecs_b || to > ndirs || to > nskip || 2 * (size_t)to > nside ||
	    2 * (size_t)to > nowner || ntoff % 4 || out_off > nout) {
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "formatFlows: arrays shorter than the records");
		return NULL;
	}
	const uint32_t *offs = toff;
	for (size_t k = 0; k < ntoff; k++)
		if (offs[k] > ntext || (k % 2 && offs[k] < offs[k - 1])) {
			napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "formatFlows: text offsets out of the text");
			return NULL;
		}
	const uint32_t *aoffs = aoff;
	if (naoff && naoff < (size_t)to + 1) {
		napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "formatFlows: ageOff shorter than the records");
		return NULL;
	}
	for (size_t k = 0; k < naoff; k++)
		if (aoffs[k] > nage || (k && aoffs[k] < aoffs[k - 1])) {
			napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "formatFlows: age offsets out of the text");
			return NULL;
		}
	const uint8_t *d = dirs, *sk = skip;
	const int8_t *sd = side;
	const uint32_t *ow = owner;
	char *o = out;
	size_t pos = out_off;
	uint32_t i = from, status = 0;
	for (; i < to; i++) {
		if (sk[i])
			continue;
		struct ct_json_end ends[2];
		for (int e = 0; e < 2; e++) {
			uint32_t k = ow[2 * (size_t)i + e];
			ends[e].side = sd[2 * (size_t)i + e];
			if (ends[e].side >= 0 && 4 * (size_t)k + 3 >= ntoff) {
				napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "formatFlows: owner index out of textOff");
				return NULL;
			}
			ends[e].who = ends[e].side >= 0 ? (const char *)text + offs[4 * k] : NULL;
			ends[e].who_len = ends[e].side >= 0 ? offs[4 * k + 1] - offs[4 * k] : 0;
			ends[e].more = ends[e].side >= 0 ? (const char *)text + offs[4 * k + 2] : NULL;
			ends[e].more_len = ends[e].side >= 0 ? offs[4 * k + 3] - offs[4 * k + 2] : 0;
		}
		if (nout - pos < 1) {
			status = 2;
			break;
		}
		size_t comma = first ? 0 : 1;
		const char *a = naoff ? (const char *)age + aoffs[i] : NULL;
		size_t alen = naoff ? aoffs[i + 1] - aoffs[i] : 0;
		long n = ct_json_flow((const struct ct_record *)((const uint8_t *)recs + (size_t)i * CT_RECORD_SIZE), d[i], ends, a,
				      alen, o + pos + comma, nout - pos - comma);
		if (n == CT_JSON_NEEDS_JS) {
			status = 1;
			break;
		}
		if (n == CT_JSON_FULL) {
			status = 2;
			break;
		}
		if (comma)
			o[pos] = ',';
		pos += comma + (size_t)n;
		first = false;
	}
	napi_value res, v;
	uint32_t vals[3] = { i, (uint32_t)pos, status };
	if (napi_create_array_with_length(env, 3, &res) != napi_ok)
		return NULL;
	for (uint32_t k = 0; k < 3; k++)
		if (napi_create_uint32(env, vals[k], &v) != napi_ok || napi_set_element(env, res, k, v) != napi_ok)
			return NULL;
	return res;
}

int ct_json_register(napi_env env, napi_value exports)
{
	napi_property_descriptor props[] = {
		{ "formatFlows", NULL, ct_format_flows, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) == napi_ok ? 0 : -1;
}
