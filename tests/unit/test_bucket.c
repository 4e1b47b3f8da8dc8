/*
 * test_bucket.c - the pure parts of the bucket client (s3_util.c): location URLs, SigV4
 * percent-encoding, the x-amz-meta-crc32c value, the XML scanner and the backoff schedule;
 * plus opening a client from the environment (no network).
 */
#include <errno.h>
#include <string.h>

#include "storage/s3_client.h"
#include "storage/storage.h"
#include "test.h"

static void test_url_parse(void)
{
	char *s, *b, *p;
	CHECK(s3_url_parse("s3://bucket", &s, &b, &p) == 0);
	CHECK_STR(s, "s3");
	CHECK_STR(b, "bucket");
	CHECK_STR(p, "");
	free(s), free(b), free(p);
	CHECK(s3_url_parse("gs://my.bucket-1/some/prefix/", &s, &b, &p) == 0);
	CHECK_STR(s, "gs");
	CHECK_STR(b, "my.bucket-1");
	CHECK_STR(p, "some/prefix");
	free(s), free(b), free(p);
	CHECK(s3_url_parse("s3://b//x", &s, &b, &p) == 0);
	CHECK_STR(p, "x");
	free(s), free(b), free(p);
	CHECK(s3_url_parse("s3://b/", &s, &b, &p) == 0);
	CHECK_STR(p, "");
	free(s), free(b), free(p);
	CHECK(s3_url_parse("s3://", &s, &b, &p) < 0 && errno == EINVAL);
	CHECK(s3_url_parse("s3:///x", &s, &b, &p) < 0);
	CHECK(s3_url_parse("http://b/x", &s, &b, &p) < 0);
	CHECK(s3_url_parse("s3://bad bucket", &s, &b, &p) < 0);
	CHECK(s3_url_parse("s3://b/a//c", &s, &b, &p) < 0);
	CHECK(strstr(err_msg(), "empty path component") != NULL);
}

static void test_uri_encode(void)
{
	char *e = s3_uri_encode("a b/c~d_e-f.g+h=i&j%", true);
	CHECK_STR(e, "a%20b/c~d_e-f.g%2Bh%3Di%26j%25");
	free(e);
	e = s3_uri_encode("p/q", false);
	CHECK_STR(e, "p%2Fq");
	free(e);
	e = s3_uri_encode("\xc3\xa9", false);
	CHECK_STR(e, "%C3%A9");
	free(e);
}

static void test_crc_b64(void)
{
	char b[9];
	uint32_t v;
	/* CRC32C("123456789") = 0xe3069283, big-endian bytes e3 06 92 83 -> "4waSgw==" */
	CHECK_EQ_U64(crc32c("123456789", 9), 0xe3069283u);
	s3_crc_b64(0xe3069283u, b);
	CHECK_STR(b, "4waSgw==");
	s3_crc_b64(0, b);
	CHECK_STR(b, "AAAAAA==");
	CHECK(s3_crc_from_b64("4waSgw==", &v) == 0);
	CHECK_EQ_U64(v, 0xe3069283u);
	CHECK(s3_crc_from_b64(" 4waSgw==\r\n", &v) == 0);
	CHECK_EQ_U64(v, 0xe3069283u);
	for (uint32_t x = 1; x; x = x * 2654435761u + 7) {
		s3_crc_b64(x, b);
		CHECK(s3_crc_from_b64(b, &v) == 0 && v == x);
		if (x == 0xffffffffu || x % 1000 == 999)
			break;
	}
	s3_crc_b64(0xffffffffu, b);
	CHECK_STR(b, "/////w==");
	CHECK(s3_crc_from_b64("4waSgw=", &v) < 0);
	CHECK(s3_crc_from_b64("4waSg===", &v) < 0);
	CHECK(s3_crc_from_b64("4wa!gw==", &v) < 0);
	CHECK(s3_crc_from_b64("4waSgx==", &v) < 0); /* non-zero padding bits */
	CHECK(s3_crc_from_b64("", &v) < 0);
}

static const char list_page1[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>"
	"<Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
	"<Contents><Key>p/a&amp;b</Key><Size>3</Size></Contents>"
	"<Contents><Key>p/c&#x20;d&lt;</Key><Size>0</Size></Contents>"
	"<NextContinuationToken>tok/en+1=</NextContinuationToken></ListBucketResult>";
static const char list_page2[] =
	"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>p/z</Key></Contents>"
	"</ListBucketResult>";

static void test_xml_list(void)
{
	char **keys = NULL, *tok = NULL;
	size_t n = 0, cap = 0;
	bool trunc = false;
	CHECK(s3_list_parse(list_page1, strlen(list_page1), &keys, &n, &cap, &trunc, &tok) == 0);
	CHECK_EQ_U64(n, 2);
	CHECK(trunc);
	CHECK_STR(tok, "tok/en+1=");
	if (n == 2) {
		CHECK_STR(keys[0], "p/a&b");
		CHECK_STR(keys[1], "p/c d<");
	}
	free(tok);
	tok = NULL;
	CHECK(s3_list_parse(list_page2, strlen(list_page2), &keys, &n, &cap, &trunc, &tok) == 0);
	CHECK_EQ_U64(n, 3);
	CHECK(!trunc);
	CHECK(tok == NULL);
	if (n == 3)
		CHECK_STR(keys[2], "p/z");
	storage_list_free(keys, n);

	/* refusals */
	keys = NULL, n = cap = 0;
	CHECK(s3_list_parse("<Error><Code>x</Code></Error>", 29, &keys, &n, &cap, &trunc, &tok) < 0);
	{
		static const char bad[] = "<ListBucketResult><Contents><Key>p/a</Contents></ListBucketResult>";
		CHECK(s3_list_parse(bad, strlen(bad), &keys, &n, &cap, &trunc, &tok) < 0);
		CHECK(strstr(err_msg(), "not closed") != NULL);
	}
	{
		static const char notok[] = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
		CHECK(s3_list_parse(notok, strlen(notok), &keys, &n, &cap, &trunc, &tok) < 0);
	}
	storage_list_free(keys, n);
}

static void test_xml_misc(void)
{
	static const char err[] = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>"
				  "<Message>The specified key does not exist.</Message><Key>a</Key></Error>";
	static const char init[] = "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
				   "<UploadId>VXBsb2FkSWQ-x_y</UploadId></InitiateMultipartUploadResult>";
	char *v = s3_xml_first(err, strlen(err), "Code");
	CHECK_STR(v, "NoSuchKey");
	free(v);
	v = s3_xml_first(err, strlen(err), "Message");
	CHECK_STR(v, "The specified key does not exist.");
	free(v);
	CHECK(s3_xml_first(err, strlen(err), "UploadId") == NULL);
	v = s3_xml_first(init, strlen(init), "UploadId");
	CHECK_STR(v, "VXBsb2FkSWQ-x_y");
	free(v);
	v = s3_xml_first("<a><Prefix/></a>", 16, "Prefix");
	CHECK_STR(v, "");
	free(v);
	/* a tag that is a prefix of another is not confused with it */
	v = s3_xml_first("<KeyCount>1</KeyCount><Key>k</Key>", 34, "Key");
	CHECK_STR(v, "k");
	free(v);
	/* never reads past len */
	v = s3_xml_first("<Code>abc</Code>", 10, "Code");
	CHECK(v == NULL);
	free(v);
}

/* Random and mutated inputs: the scanner must never read out of bounds (run under ASan) and
 * either parse or refuse. */
static void test_xml_robust(void)
{
	static const char seeds[][160] = {
		"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key></Contents>"
		"<NextContinuationToken>t</NextContinuationToken></ListBucketResult>",
		"<ListBucketResult><Key>&#x41;&#65;&#;&#x;&#99999999999;&lt</Key></ListBucketResult>",
		"<Error><Code>InternalError</Code><Message>m</Message></Error>",
	};
	uint64_t x = 0x9e3779b97f4a7c15ull;
	char buf[192];
	for (int iter = 0; iter < 20000; iter++) {
		const char *seed = seeds[iter % ARRAY_SIZE(seeds)];
		size_t len = strlen(seed), pos = 0;
		char **keys = NULL, *tok = NULL, *v = NULL;
		size_t n = 0, cap = 0;
		bool trunc;
		memcpy(buf, seed, len);
		for (int k = 0; k < 1 + iter % 4; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t at = (size_t)(x % len);
			switch ((x >> 32) % 3) {
			case 0: buf[at] = (char)(x >> 40); break;            /* flip a byte */
			case 1: len = at; break;                              /* truncate */
			default: buf[at] = "<>/&;#"[(x >> 40) % 6]; break;  /* markup */
			}
			if (len == 0)
				len = 1;
		}
		/* an exact-size heap copy, so ASan sees any read past len */
		char *in = malloc(len);
		memcpy(in, buf, len);
		if (s3_list_parse(in, len, &keys, &n, &cap, &trunc, &tok) == 0)
			free(tok);
		storage_list_free(keys, n);
		while (s3_xml_next(in, len, "Key", &pos, &v) == 1)
			free(v);
		free(in);
	}
	CHECK(1);
}

static void test_backoff(void)
{
	uint64_t expect[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000 };
	for (unsigned i = 0; i < ARRAY_SIZE(expect); i++)
		CHECK_EQ_U64(s3_backoff_ceiling_ms(i, 100, 5000), expect[i]);
	CHECK_EQ_U64(s3_backoff_ceiling_ms(200, 100, 5000), 5000); /* no overflow */
	CHECK_EQ_U64(s3_backoff_ceiling_ms(70, 1, UINT64_MAX / 2), UINT64_MAX / 2);
	CHECK_EQ_U64(s3_backoff_ceiling_ms(70, 3, UINT64_MAX), UINT64_MAX);
	CHECK_EQ_U64(s3_backoff_ceiling_ms(0, 100, 50), 50);
	/* full jitter: uniform in [0, ceiling] */
	CHECK_EQ_U64(s3_backoff_ms(3, 100, 5000, 0.0), 0);
	CHECK_EQ_U64(s3_backoff_ms(3, 100, 5000, 0.5), 400);
	CHECK(s3_backoff_ms(3, 100, 5000, 0.9999999) <= 800);
	CHECK(s3_backoff_ms(3, 100, 5000, 0.9999999) >= 799);
	CHECK(s3_backoff_ms(3, 100, 5000, 7.0) <= 800);
	CHECK_EQ_U64(s3_backoff_ms(3, 100, 5000, -1.0), 0);
}

static void test_retryable(void)
{
	CHECK(s3_status_retryable(0));
	CHECK(s3_status_retryable(500));
	CHECK(s3_status_retryable(503));
	CHECK(s3_status_retryable(429));
	CHECK(s3_status_retryable(408));
	CHECK(!s3_status_retryable(400));
	CHECK(!s3_status_retryable(403));
	CHECK(!s3_status_retryable(404));
	CHECK(!s3_status_retryable(409));
}

static void test_client_env(void)
{
	struct s3_client *c;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	c = s3_client_new("s3://b/p");
	CHECK(c == NULL && errno == EACCES);
	CHECK(strstr(err_msg(), "AWS_ACCESS_KEY_ID") != NULL);
	setenv("AWS_ACCESS_KEY_ID", "k", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "s", 1);
	setenv("AWS_ENDPOINT_URL", "ftp://x", 1);
	c = s3_client_new("s3://b/p");
	CHECK(c == NULL && strstr(err_msg(), "http://") != NULL);
	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1/", 1);
	setenv("ORCH_S3_PART_SIZE", "1K", 1);
	c = s3_client_new("s3://b/p");
	CHECK(c == NULL && strstr(err_msg(), "ORCH_S3_PART_SIZE") != NULL);
	unsetenv("ORCH_S3_PART_SIZE");
	c = s3_client_new("s3://b/p/");
	CHECK(c != NULL);
	if (c) {
		CHECK_STR(s3_client_describe(c), "s3://b/p");
		s3_client_free(c);
	}
	/* gs:// takes its own variables */
	unsetenv("GCS_ACCESS_KEY_ID");
	c = s3_client_new("gs://b");
	CHECK(c == NULL && strstr(err_msg(), "GCS_ACCESS_KEY_ID") != NULL);
	/* nothing listens on port 1: a transport error, retried, then reported */
	{
		struct storage *st;
		uint64_t size;
		setenv("ORCH_S3_MAX_ATTEMPTS", "2", 1);
		setenv("ORCH_S3_RETRY_BASE_MS", "1", 1);
		st = storage_open("s3://b/p", false);
		CHECK(st != NULL);
		if (st) {
			CHECK(storage_size(st, "x/y", &size) < 0);
			CHECK(strstr(err_msg(), "'x/y'") != NULL);
			CHECK(strstr(err_msg(), "gave up after 2 attempts") != NULL);
			storage_free(st);
		}
	}
}

int main(void)
{
	RUN(test_url_parse);
	RUN(test_uri_encode);
	RUN(test_crc_b64);
	RUN(test_xml_list);
	RUN(test_xml_misc);
	RUN(test_xml_robust);
	RUN(test_backoff);
	RUN(test_retryable);
	RUN(test_client_env);
	TEST_EXIT();
}
