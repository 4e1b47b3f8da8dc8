/*
 * fuzz_envd_http.c - libFuzzer harness for envd's HTTP request parser (src/guest/envd/http.c):
 * request heads, chunked body framing fed in random splits, and query-string decoding.
 * Built by mk/envd.mk's own rule (the parser only, not liborch).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guest/envd/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	/* 1. the head, as the server sees it (a private copy: the parser writes into it) */
	char *buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	struct http_request req;
	int status = 0;
	ssize_t hl = http_parse_head(buf, size, &req, &status);
	if (hl > 0) {
		char out[256];
		http_query_get(req.query, "path", out, sizeof(out));
		http_query_get(req.query, "username", out, sizeof(out));
		(void)http_header(&req, "Content-Type");
	}
	free(buf);
	/* 2. chunked framing: the first byte picks the split size and the data budget */
	struct http_chunked ch = { 0 };
	size_t step = (size_t)(data[0] % 17) + 1, max_data = (size_t)(data[0] % 5) + 1;
	size_t off = 1;
	while (off < size && !ch.done) {
		size_t n = size - off < step ? size - off : step, used, doff, dlen;
		if (http_chunked_step(&ch, (const char *)data + off, n, max_data, &used, &doff, &dlen) < 0)
			break;
		if (used > n || doff + dlen > used)
			abort();
		if (used == 0)
			break;
		off += used;
	}
	/* 3. query decoding over the raw bytes */
	char *q = malloc(size + 1);
	memcpy(q, data, size);
	q[size] = '\0';
	char val[64];
	http_query_get(q, "a", val, sizeof(val));
	free(q);
	return 0;
}
