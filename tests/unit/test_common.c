/* Unit tests of src/common: UUIDs, build ids, CRC32C, size/duration parsing, errors. */
#include <errno.h>

#include "common/common.h"
#include "common/flags.h"
#include "test.h"

static void uuid_roundtrip(void)
{
	uuid_t16 u;
	char s[UUID_STR_LEN + 1];
	CHECK(uuid_parse("0B0A61CA-34e8-442b-9362-4d53747bbcf2", &u) == 0);
	CHECK_STR(uuid_format(&u, s), "0b0a61ca-34e8-442b-9362-4d53747bbcf2");
	CHECK(u.b[0] == 0x0b && u.b[15] == 0xf2);
	CHECK(!uuid_is_nil(&u));
	memset(&u, 0, sizeof(u));
	CHECK(uuid_is_nil(&u));
}

static void build_id_rejects_paths(void)
{
	char out[UUID_STR_LEN + 1];
	const char *bad[] = { "../etc", "", "0b0a61ca-34e8-442b-9362-4d53747bbcf", "0b0a61ca-34e8-442b-9362-4d53747bbcf2/",
			      "0b0a61ca/34e8-442b-9362-4d53747bbcf2", "0b0a61cax34e8-442b-9362-4d53747bbcf2",
			      "zb0a61ca-34e8-442b-9362-4d53747bbcf2" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(build_id_canonical(bad[i], out) < 0);
	CHECK(strstr(err_msg(), "must be a UUID") != NULL);
	CHECK(build_id_canonical("AAAAAAAA-bbbb-cccc-dddd-eeeeeeeeeeee", out) == 0);
	CHECK_STR(out, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
}

static void uuid_generate_v4(void)
{
	uuid_t16 a, b;
	uuid_generate(&a);
	uuid_generate(&b);
	CHECK(!uuid_equal(&a, &b));
	CHECK((a.b[6] >> 4) == 4);
	CHECK((a.b[8] & 0xc0) == 0x80);
}

static void crc32c_known_values(void)
{
	/* RFC 3720 test vectors */
	unsigned char zeros[32] = { 0 }, ones[32];
	memset(ones, 0xff, sizeof(ones));
	CHECK_EQ_U64(crc32c("123456789", 9), 0xe3069283u);
	CHECK_EQ_U64(crc32c(zeros, 32), 0x8a9136aau);
	CHECK_EQ_U64(crc32c(ones, 32), 0x62a8ab43u);
	/* incremental == one-shot */
	CHECK_EQ_U64(crc32c_update(crc32c("1234", 4), "56789", 5), 0xe3069283u);
}

static void size_and_duration_parsing(void)
{
	uint64_t v;
	CHECK(parse_u64_size("4096", &v) == 0 && v == 4096);
	CHECK(parse_u64_size("1G", &v) == 0 && v == (1ull << 30));
	CHECK(parse_u64_size("2MiB", &v) == 0 && v == (2ull << 20));
	CHECK(parse_u64_size("-1", &v) < 0);
	CHECK(parse_u64_size("12x", &v) < 0);
	CHECK(parse_u64_size("99999999999999999999", &v) < 0);
	CHECK(parse_u64_size("20000000T", &v) < 0);
	CHECK(parse_duration_ns("1m30s", &v) == 0 && v == 90000000000ull);
	CHECK(parse_duration_ns("500ms", &v) == 0 && v == 500000000ull);
	CHECK(parse_duration_ns("2", &v) == 0 && v == 2000000000ull);
	CHECK(parse_duration_ns("abc", &v) < 0);
}

static void errors_compose(void)
{
	err_set_errno(ENOENT, "cannot open '%s'", "x");
	CHECK_STR(err_msg(), "cannot open 'x': No such file or directory");
	CHECK(errno == ENOENT);
	err_prefix("loading build %s", "b");
	CHECK_STR(err_msg(), "loading build b: cannot open 'x': No such file or directory");
	CHECK(errno == ENOENT);
}

static void flags_go_style(void)
{
	const char *build = "", *kind = "memfile";
	bool json = false;
	int64_t n = 0;
	struct flag fl[] = {
		FLAG_REQ("build", FLAG_STRING, &build, "build id"),
		FLAG_DEF("kind", FLAG_STRING, &kind, "kind"),
		FLAG_DEF("json", FLAG_BOOL, &json, "json"),
		FLAG_DEF("n", FLAG_INT, &n, "n"),
	};
	struct flagset fs = { .prog = "t", .flags = fl, .nflags = 4 };
	char *argv[] = { "t", "--build", "abc", "-kind=rootfs", "-json", "-n", "7", "rest", NULL };
	int i = flags_parse(&fs, 8, argv);
	CHECK(i == 7);
	CHECK_STR(build, "abc");
	CHECK_STR(kind, "rootfs");
	CHECK(json);
	CHECK(n == 7);
	CHECK(flags_seen(&fs, "kind"));
}

int main(void)
{
	RUN(uuid_roundtrip);
	RUN(build_id_rejects_paths);
	RUN(uuid_generate_v4);
	RUN(crc32c_known_values);
	RUN(size_and_duration_parsing);
	RUN(errors_compose);
	RUN(flags_go_style);
	TEST_EXIT();
}
