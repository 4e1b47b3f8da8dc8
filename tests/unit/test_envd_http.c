/*
 * test_envd_http - envd's HTTP parser (src/guest/envd/http.c, compiled in here because guest
 * sources are not part of liborch): request heads, limits, chunked framing split at every
 * byte, query decoding, plus the SHA-256 used for signed file URLs.
 */
#include "guest/envd/http.c"
#include "guest/envd/sha256.c"

#include "test.h"

static void test_head_basic(void)
{
	char buf[] = "POST /files?path=%2Ftmp%2Fa+b&username=u HTTP/1.1\r\nHost: x\r\n"
		     "Content-Length: 12\r\nX-Access-Token:  tok \r\n\r\nBODY";
	struct http_request r;
	int st = 0;
	size_t len = strlen(buf);
	ssize_t n = http_parse_head(buf, len, &r, &st);
	CHECK(n > 0 && (size_t)n == len - 4);
	CHECK_STR(r.method, "POST");
	CHECK_STR(r.path, "/files");
	CHECK_EQ_U64(r.content_length, 12);
	CHECK(r.keep_alive && !r.chunked);
	CHECK_STR(http_header(&r, "x-access-token"), "tok");
	char v[64];
	CHECK(http_query_get(r.query, "path", v, sizeof(v)) == 8);
	CHECK_STR(v, "/tmp/a b");
	CHECK(http_query_get(r.query, "username", v, sizeof(v)) == 1);
	CHECK(http_query_get(r.query, "user", v, sizeof(v)) == -1);
	CHECK(http_query_get("a=%4", "a", v, sizeof(v)) == -2 && v[0] == '\0');
	CHECK(http_query_get("a=%00", "a", v, sizeof(v)) == -2);
	CHECK(http_query_get("a=toolong", "a", v, 4) == -2 && v[0] == '\0');
}

static void test_head_incomplete_and_errors(void)
{
	struct http_request r;
	int st = 0;
	char a[] = "GET /health HTTP/1.1\r\nHost: x\r\n";
	CHECK(http_parse_head(a, strlen(a), &r, &st) == 0);
	static const struct {
		const char *in;
		int status;
	} bad[] = {
		{ "GET /x HTTP/2.0\r\n\r\n", 505 },
		{ "GET /x FOO/1.1\r\n\r\n", 400 },
		{ "GET x HTTP/1.1\r\n\r\n", 400 },
		{ "G(T /x HTTP/1.1\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\nNoColon\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\n folded: x\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
		{ "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400 },
		{ "GET /%zz HTTP/1.1\r\n\r\n", 400 },
		{ "GET /%00 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /x HTTP/1.1\r\nExpect: magic\r\n\r\n", 417 },
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char b[256];
		snprintf(b, sizeof(b), "%s", bad[i].in);
		st = 0;
		ssize_t n = http_parse_head(b, strlen(b), &r, &st);
		if (n != -1 || st != bad[i].status) {
			printf("  case %zu: n=%zd status=%d want %d\n", i, n, st, bad[i].status);
			test_cur_failed = 1;
		}
	}
	/* a head that never ends: 431 once the limit is reached */
	size_t big = HTTP_MAX_HEAD + 10;
	char *h = malloc(big);
	memcpy(h, "GET / HTTP/1.1\r\nX: ", 19);
	memset(h + 19, 'a', big - 19);
	CHECK(http_parse_head(h, big, &r, &st) == -1 && st == 431);
	free(h);
	/* too many headers */
	char many[8192] = "GET / HTTP/1.1\r\n";
	for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
		strcat(many, "A: b\r\n");
	strcat(many, "\r\n");
	CHECK(http_parse_head(many, strlen(many), &r, &st) == -1 && st == 431);
	/* HTTP/1.0 defaults to close; keep-alive token keeps it */
	char c10[] = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
	CHECK(http_parse_head(c10, strlen(c10), &r, &st) > 0 && r.keep_alive);
	char c11[] = "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n";
	CHECK(http_parse_head(c11, strlen(c11), &r, &st) > 0 && !r.keep_alive);
}

/* Decode a chunked body fed in pieces of `step` bytes; returns decoded length or -1. */
static ssize_t dechunk(const char *in, size_t len, size_t step, size_t max_data, char *out, bool *done)
{
	struct http_chunked c = { 0 };
	size_t off = 0, o = 0;
	/* the server keeps unconsumed bytes and appends new ones: emulate with a growing window */
	size_t avail_end = 0;
	while (!c.done) {
		if (off == avail_end) {
			if (avail_end == len)
				break;
			avail_end = MIN(len, avail_end + step);
		}
		size_t used, doff, dlen;
		if (http_chunked_step(&c, in + off, avail_end - off, max_data, &used, &doff, &dlen) < 0)
			return -1;
		memcpy(out + o, in + off + doff, dlen);
		o += dlen;
		off += used;
		if (!used && avail_end < len)
			avail_end = MIN(len, avail_end + step);
	}
	*done = c.done;
	return (ssize_t)o;
}

static void test_chunked(void)
{
	const char body[] = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
	for (size_t step = 1; step <= sizeof(body); step++)
		for (size_t md = 1; md <= 40; md += 13) {
			char out[64];
			bool done = false;
			ssize_t n = dechunk(body, sizeof(body) - 1, step, md, out, &done);
			if (n != 31 || !done || memcmp(out, "helloabcdefghijklmnopqrstuvwxyz", 31)) {
				printf("  step %zu max %zu: n=%zd done=%d\n", step, md, n, done);
				test_cur_failed = 1;
			}
		}
	bool done;
	char out[64];
	CHECK(dechunk("zz\r\n", 4, 4, 10, out, &done) == -1);
	CHECK(dechunk("\r\n", 2, 2, 10, out, &done) == -1);
	CHECK(dechunk("3\r\nabcX\r\n", 9, 9, 10, out, &done) == -1);
	CHECK(dechunk("fffffffffffffffff\r\n", 19, 19, 10, out, &done) == -1);
	/* bare LF line endings are tolerated */
	CHECK(dechunk("2\nab\n0\n\n", 8, 8, 10, out, &done) == 2 && done);
}

static void test_sha256(void)
{
	static const char *const in[] = { "", "abc",
					  "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" };
	static const char *const want[] = {
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
	};
	for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
		unsigned char d[32];
		char hex[65];
		sha256(in[i], strlen(in[i]), d);
		for (int k = 0; k < 32; k++)
			snprintf(hex + 2 * k, 3, "%02x", d[k]);
		CHECK_STR(hex, want[i]);
	}
}

int main(void)
{
	RUN(test_head_basic);
	RUN(test_head_incomplete_and_errors);
	RUN(test_chunked);
	RUN(test_sha256);
	TEST_EXIT();
}
