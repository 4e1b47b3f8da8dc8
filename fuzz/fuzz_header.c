/*
 * fuzz_header.c - libFuzzer harness for the header parser (header_parse, header_parse_report).
 * Properties checked on every input: both parsers agree on validity; an accepted header
 * re-validates, serializes back to the same bytes (modulo the default mapping installed for a
 * header without mappings) and answers lookups inside its mappings; merging it with itself
 * and normalizing keeps it valid. Seeds: fuzz/seeds/fuzz_header/ (the fixture headers).
 */
#include <stdint.h>
#include <string.h>

#include "storage/header.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct header h, r;
	struct header_problem *probs = NULL;
	size_t nprobs = 0, len, n;
	bool mok;
	int strict = header_parse(data, size, &h);
	int lenient = header_parse_report(data, size, &r, &mok, &probs, &nprobs);

	if (lenient >= 0 && (strict == 0) != (lenient == 0))
		__builtin_trap();
	if (lenient > 0 && nprobs == 0)
		__builtin_trap();
	for (size_t i = 0; i < nprobs; i++)
		if (!memchr(probs[i].msg, 0, sizeof(probs[i].msg)))
			__builtin_trap();
	free(probs);
	if (lenient >= 0)
		header_release(&r);
	if (strict < 0)
		return 0;

	if (header_validate(&h) < 0)
		__builtin_trap();
	{
		void *out = header_serialize(&h, &len);
		if (!out)
			__builtin_trap();
		if (size > HEADER_METADATA_SIZE && (len != size || memcmp(out, data, size)))
			__builtin_trap();
		free(out);
	}
	for (size_t i = 0; i < h.nmaps; i++) {
		uint64_t so, rem, off = h.maps[i].offset + h.maps[i].length - 1;
		const struct mapping *m = header_lookup(&h, off, &so, &rem);
		if (m != &h.maps[i] || rem != 1)
			__builtin_trap();
		m = header_lookup(&h, h.maps[i].offset, &so, &rem);
		if (m != &h.maps[i] || rem != h.maps[i].length)
			__builtin_trap();
	}
	if (header_lookup(&h, h.size, NULL, NULL))
		__builtin_trap();
	{
		struct mapping *m;
		if (mappings_merge(h.maps, h.nmaps, h.maps, h.nmaps, &m, &n) == 0) {
			struct header x = h;
			x.maps = m;
			x.nmaps = mappings_normalize(m, n);
			if (header_validate(&x) < 0)
				__builtin_trap();
			free(m);
		}
	}
	header_release(&h);
	return 0;
}
