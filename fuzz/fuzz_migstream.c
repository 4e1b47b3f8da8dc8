/*
 * fuzz_migstream.c - libFuzzer harness for the QEMU 7.2 migration-stream filter
 * (migstream_filter_buf). Properties on every input: no crash or sanitizer report; an
 * accepted stream filters again to exactly the same bytes with nothing more dropped
 * (idempotence), and the keep-everything pass accepts what the dropping pass accepted.
 * Seeds: fuzz/seeds/fuzz_migstream/ (a real state stream from QEMU 7.2 + truncations).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/migstream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *out = NULL, *again = NULL, *keep = NULL;
	size_t olen, alen, klen;
	struct migstream_stats st;

	if (migstream_filter_buf(data, size, "ram0", &out, &olen, &st) < 0)
		return 0;
	if (migstream_filter_buf(out, olen, "ram0", &again, &alen, &st) < 0)
		__builtin_trap();
	if (alen != olen || memcmp(out, again, olen) || st.dropped_pages || st.dropped_zero)
		__builtin_trap();
	if (migstream_filter_buf(data, size, NULL, &keep, &klen, NULL) < 0)
		__builtin_trap();
	free(out);
	free(again);
	free(keep);
	return 0;
}
