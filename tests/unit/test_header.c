/*
 * test_header.c - the E2B header: byte format, strict validation of every bad input, lookup,
 * every case of MergeMappings (spec §3.7) and NormalizeMappings (§3.8), the worked example
 * (§3.10), mappings from bitmaps, diff headers, JSON, and a randomized property test of
 * merge + lookup against a brute-force per-block model (seed printed; HEADER_TEST_SEED=N
 * reproduces a run, HEADER_TEST_CASES=N changes the count).
 */
#include <endian.h>
#include <string.h>

#include "storage/header.h"
#include "test.h"

#define BS 4096ull
#define MIB2 (2ull << 20)

static uuid_t16 U(int n)
{
	uuid_t16 u = { { 0 } };
	if (n) {
		u.b[0] = 0xa0;
		u.b[15] = (uint8_t)n;
		u.b[14] = (uint8_t)(n >> 8);
	}
	return u;
}
#define NIL U(0)

static struct mapping M(uint64_t off_blocks, uint64_t len_blocks, int id, uint64_t so_blocks,
			uint64_t bs)
{
	return (struct mapping){ off_blocks * bs, len_blocks * bs, U(id), so_blocks * bs };
}

/* ---- raw header bytes ---- */

struct raw {
	uint8_t b[64 + 40 * 64];
	size_t len;
};

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static void raw_meta(struct raw *r, uint64_t version, uint64_t bs, uint64_t size, uint64_t gen)
{
	memset(r, 0, sizeof(*r));
	put64(r->b, version);
	put64(r->b + 8, bs);
	put64(r->b + 16, size);
	put64(r->b + 24, gen);
	r->b[32] = 0x11;
	r->b[48] = 0x22;
	r->len = 64;
}

static void raw_map(struct raw *r, uint64_t off, uint64_t len, int id, uint64_t so)
{
	uint8_t *p = r->b + r->len;
	uuid_t16 u = U(id);
	put64(p, off);
	put64(p + 8, len);
	memcpy(p + 16, u.b, 16);
	put64(p + 32, so);
	r->len += 40;
}

/* Expect header_parse to fail with "[offset N] ...". */
static void expect_bad(const void *buf, size_t len, uint64_t offset, const char *needle)
{
	struct header h;
	char want[64];
	int rc = header_parse(buf, len, &h);
	CHECK(rc == -1);
	if (rc != -1) {
		header_release(&h);
		return;
	}
	snprintf(want, sizeof(want), "[offset %llu] ", (unsigned long long)offset);
	if (strncmp(err_msg(), want, strlen(want)) || (needle && !strstr(err_msg(), needle))) {
		printf("  got '%s', want '%s...%s'\n", err_msg(), want, needle ? needle : "");
		test_cur_failed = 1;
	}
	CHECK(h.maps == NULL && h.nmaps == 0);
}

static void test_parse_roundtrip(void)
{
	struct raw r;
	struct header h, h2;
	size_t len;
	void *out;
	raw_meta(&r, 3, BS, 10 * BS, 2);
	raw_map(&r, 0, 4 * BS, 1, 0);
	raw_map(&r, 4 * BS, 2 * BS, 0, 12345);
	raw_map(&r, 6 * BS, 4 * BS, 2, 8 * BS);
	CHECK(header_parse(r.b, r.len, &h) == 0);
	CHECK_EQ_U64(h.version, 3);
	CHECK_EQ_U64(h.block_size, BS);
	CHECK_EQ_U64(h.size, 10 * BS);
	CHECK_EQ_U64(h.generation, 2);
	CHECK(h.build_id.b[0] == 0x11 && h.base_build_id.b[0] == 0x22);
	CHECK_EQ_U64(h.nmaps, 3);
	CHECK_EQ_U64(h.maps[1].storage_offset, 12345); /* nil: kept as is, never checked */
	{
		uuid_t16 u2 = U(2);
		CHECK(uuid_equal(&h.maps[2].build_id, &u2));
	}
	out = header_serialize(&h, &len);
	CHECK(out && len == r.len && !memcmp(out, r.b, len));
	CHECK(header_copy(&h2, &h) == 0);
	CHECK(h2.maps != h.maps && !memcmp(h2.maps, h.maps, 3 * sizeof(*h.maps)));
	free(out);
	header_release(&h);
	header_release(&h2);
}

static void test_parse_versions(void)
{
	for (uint64_t v = 1; v <= 3; v++) {
		struct raw r;
		struct header h;
		raw_meta(&r, v, MIB2, 4 * MIB2, 0);
		raw_map(&r, 0, 4 * MIB2, 1, 0);
		CHECK(header_parse(r.b, r.len, &h) == 0);
		CHECK_EQ_U64(h.version, v);
		header_release(&h);
	}
}

static void test_parse_no_mappings(void)
{
	struct raw r;
	struct header h;
	raw_meta(&r, 3, BS, 8 * BS, 0);
	CHECK(header_parse(r.b, r.len, &h) == 0);
	CHECK_EQ_U64(h.nmaps, 1);
	CHECK_EQ_U64(h.maps[0].offset, 0);
	CHECK_EQ_U64(h.maps[0].length, 8 * BS);
	CHECK(uuid_equal(&h.maps[0].build_id, &h.build_id));
	header_release(&h);
}

static void test_parse_bad(void)
{
	struct raw r;
	uint8_t zero[64] = { 0 };
	expect_bad("", 0, 0, "empty");
	expect_bad(zero, 10, 10, "truncated");
	expect_bad(zero, 63, 63, "truncated");

	raw_meta(&r, 3, BS, 4 * BS, 0);
	raw_map(&r, 0, 4 * BS, 1, 0);
	expect_bad(r.b, r.len + 7, 104, "partial mapping record");
	expect_bad(r.b, r.len - 1, 64, "partial mapping record");

	raw_meta(&r, 3, 0, 4 * BS, 0); /* block size 0 */
	raw_map(&r, 0, 4 * BS, 1, 0);
	expect_bad(r.b, r.len, 8, "block size is 0");
	raw_meta(&r, 3, 3000, 4 * BS, 0);
	expect_bad(r.b, r.len, 8, "power of two");
	raw_meta(&r, 3, 256, 4 * BS, 0);
	expect_bad(r.b, r.len, 8, "outside");
	raw_meta(&r, 3, 2ull << 30, 4ull << 30, 0);
	expect_bad(r.b, r.len, 8, "outside");

	raw_meta(&r, 3, BS, 0, 0);
	expect_bad(r.b, r.len, 16, "size is 0");
	raw_meta(&r, 3, BS, 1ull << 63, 0); /* absurd size */
	raw_map(&r, 0, 1ull << 63, 1, 0);
	expect_bad(r.b, r.len, 16, "2^50");
	raw_meta(&r, 3, BS, (1ull << 50) + BS, 0);
	expect_bad(r.b, r.len, 16, "2^50");
	raw_meta(&r, 3, BS, 4 * BS + 1, 0);
	expect_bad(r.b, r.len, 16, "multiple");

	raw_meta(&r, 0, BS, 4 * BS, 0);
	expect_bad(r.b, r.len, 0, "version");
	raw_meta(&r, 4, BS, 4 * BS, 0);
	expect_bad(r.b, r.len, 0, "version");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* mapping past size */
	raw_map(&r, 0, 5 * BS, 1, 0);
	expect_bad(r.b, r.len, 72, "past the size");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* gap */
	raw_map(&r, 0, 1 * BS, 1, 0);
	raw_map(&r, 2 * BS, 2 * BS, 1, 1 * BS);
	expect_bad(r.b, r.len, 104, "gap");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* overlap */
	raw_map(&r, 0, 2 * BS, 1, 0);
	raw_map(&r, 1 * BS, 3 * BS, 1, 2 * BS);
	expect_bad(r.b, r.len, 104, "overlaps");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* first mapping not at 0 */
	raw_map(&r, BS, 3 * BS, 1, 0);
	expect_bad(r.b, r.len, 64, "not 0");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* unaligned offset */
	raw_map(&r, 0, BS, 1, 0);
	raw_map(&r, BS + 100, 3 * BS - 100, 1, BS);
	expect_bad(r.b, r.len, 104, "not a multiple");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* unaligned length */
	raw_map(&r, 0, BS + 1, 1, 0);
	expect_bad(r.b, r.len, 72, "not a multiple");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* offset + length overflow */
	raw_map(&r, 0, 4 * BS, 1, 0);
	raw_map(&r, 4 * BS, UINT64_MAX - 4095, 1, 0);
	expect_bad(r.b, r.len, 112, "overflows 64 bits");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* storage offset + length overflow */
	raw_map(&r, 0, 4 * BS, 1, UINT64_MAX - 4095);
	expect_bad(r.b, r.len, 96, "overflows 64 bits");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* unaligned storage offset */
	raw_map(&r, 0, 4 * BS, 1, 7);
	expect_bad(r.b, r.len, 96, "storage offset");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* coverage short of size */
	raw_map(&r, 0, 3 * BS, 1, 0);
	expect_bad(r.b, r.len, 104, "before the size");

	raw_meta(&r, 3, BS, 4 * BS, 0); /* zero-length mapping */
	raw_map(&r, 0, 0, 1, 0);
	raw_map(&r, 0, 4 * BS, 1, 0);
	expect_bad(r.b, r.len, 72, "length 0");
}

static void test_parse_random_bytes(void)
{
	uint64_t s = 0x9e3779b97f4a7c15ull;
	uint8_t buf[64 + 40 * 8 + 7];
	int accepted = 0;
	for (int iter = 0; iter < 20000; iter++) {
		struct header h;
		size_t len = (size_t)(s % sizeof(buf));
		for (size_t i = 0; i < sizeof(buf); i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			buf[i] = (uint8_t)s;
		}
		if (iter % 2 && len >= 64) { /* plausible metadata, random mappings */
			put64(buf, 3);
			put64(buf + 8, BS);
			put64(buf + 16, (s % 64 + 1) * BS);
		}
		if (header_parse(buf, len, &h) == 0) {
			accepted++;
			CHECK(header_validate(&h) == 0);
			header_release(&h);
		} else {
			CHECK(!strncmp(err_msg(), "[offset ", 8));
		}
	}
	printf("  random headers accepted: %d of 20000\n", accepted);
}

static void test_parse_report(void)
{
	struct raw r;
	struct header h;
	struct header_problem *p;
	size_t n;
	bool mok;
	raw_meta(&r, 3, 0, 4 * BS, 0);
	raw_map(&r, 0, 1 * BS, 1, 0);
	raw_map(&r, 2 * BS, 1 * BS, 1, 0);
	CHECK(header_parse_report(r.b, r.len + 3, &h, &mok, &p, &n) == 1);
	CHECK(mok);
	CHECK_EQ_U64(h.nmaps, 2);
	CHECK(n >= 3); /* block size, partial record, gap */
	if (n >= 3) {
		CHECK_EQ_U64(p[0].offset, 8);
		CHECK_EQ_U64(p[1].offset, 144);
		CHECK_EQ_U64(p[2].offset, 104);
	}
	free(p);
	header_release(&h);
	CHECK(header_parse_report("abc", 3, &h, &mok, &p, &n) == 1);
	CHECK(!mok && n == 1 && h.nmaps == 0);
	free(p);
	header_release(&h);
	raw_meta(&r, 3, BS, 4 * BS, 0);
	raw_map(&r, 0, 4 * BS, 1, 0);
	CHECK(header_parse_report(r.b, r.len, &h, &mok, &p, &n) == 0);
	CHECK(mok && n == 0);
	free(p);
	header_release(&h);
	{ /* thousands of problems: capped, the last one says how many were left out */
		size_t len = 64 + 40 * 3000;
		uint8_t *big = calloc(1, len);
		put64(big, 3);
		put64(big + 8, BS);
		put64(big + 16, BS);
		CHECK(header_parse_report(big, len, &h, &mok, &p, &n) == 1);
		CHECK_EQ_U64(n, 1000);
		if (n == 1000)
			CHECK(strstr(p[999].msg, "more problems not shown") != NULL);
		free(p);
		header_release(&h);
		free(big);
	}
}

static void test_lookup(void)
{
	struct mapping maps[] = { M(0, 2, 1, 0, BS), M(2, 3, 0, 0, BS), M(5, 1, 2, 7, BS) };
	struct header h = { 3, BS, 6 * BS, 0, U(2), U(1), maps, 3 };
	uint64_t so, rem;
	const struct mapping *m;
	CHECK(header_validate(&h) == 0);
	m = header_lookup(&h, 0, &so, &rem);
	CHECK(m == &maps[0] && so == 0 && rem == 2 * BS);
	m = header_lookup(&h, BS + 5, &so, &rem);
	CHECK(m == &maps[0] && so == BS + 5 && rem == BS - 5);
	m = header_lookup(&h, 2 * BS, &so, &rem);
	CHECK(m == &maps[1] && rem == 3 * BS);
	m = header_lookup(&h, 6 * BS - 1, &so, &rem);
	CHECK(m == &maps[2] && so == 8 * BS - 1 && rem == 1);
	CHECK(header_lookup(&h, 6 * BS, &so, &rem) == NULL);
	CHECK(header_lookup(&h, UINT64_MAX, &so, &rem) == NULL);
}

/* ---- merge / normalize ---- */

static bool maps_equal(const struct mapping *a, size_t na, const struct mapping *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].offset != b[i].offset || a[i].length != b[i].length ||
		    !uuid_equal(&a[i].build_id, &b[i].build_id) ||
		    (!uuid_is_nil(&a[i].build_id) && a[i].storage_offset != b[i].storage_offset))
			return false;
	return true;
}

static void dump(const char *what, const struct mapping *m, size_t n)
{
	printf("  %s:", what);
	for (size_t i = 0; i < n; i++)
		printf(" [%llu+%llu id%d so%llu]", (unsigned long long)(m[i].offset / BS),
		       (unsigned long long)(m[i].length / BS), m[i].build_id.b[15],
		       (unsigned long long)(m[i].storage_offset / BS));
	printf("\n");
}

static void merge_case(const char *name, const struct mapping *base, size_t nb,
		       const struct mapping *diff, size_t nd, const struct mapping *want, size_t nw)
{
	struct mapping *out;
	size_t n;
	CHECK(mappings_merge(base, nb, diff, nd, &out, &n) == 0);
	if (!maps_equal(out, n, want, nw)) {
		printf("  merge case '%s' differs\n", name);
		dump("got ", out, n);
		dump("want", want, nw);
		test_cur_failed = 1;
	}
	free(out);
}

#define MC(name, base, diff, want)                                                                 \
	merge_case(name, base, ARRAY_SIZE(base), diff, ARRAY_SIZE(diff), want, ARRAY_SIZE(want))

static void test_merge_cases(void)
{
	{ /* empty diff: base unchanged */
		struct mapping b[] = { M(0, 4, 1, 0, BS) };
		struct mapping *out;
		size_t n;
		CHECK(mappings_merge(b, 1, NULL, 0, &out, &n) == 0);
		CHECK(maps_equal(out, n, b, 1));
		free(out);
	}
	{ /* base entirely before diff, diff entirely before base */
		struct mapping b[] = { M(0, 2, 1, 0, BS), M(6, 2, 1, 2, BS) };
		struct mapping d[] = { M(3, 2, 5, 0, BS) };
		struct mapping w[] = { M(0, 2, 1, 0, BS), M(3, 2, 5, 0, BS), M(6, 2, 1, 2, BS) };
		MC("disjoint", b, d, w);
	}
	{ /* base covered by diff (exactly equal: dropped) */
		struct mapping b[] = { M(0, 2, 1, 0, BS), M(2, 2, 2, 0, BS), M(4, 2, 1, 2, BS) };
		struct mapping d[] = { M(2, 2, 5, 0, BS) };
		struct mapping w[] = { M(0, 2, 1, 0, BS), M(2, 2, 5, 0, BS), M(4, 2, 1, 2, BS) };
		MC("equal", b, d, w);
	}
	{ /* diff covers several bases */
		struct mapping b[] = { M(0, 2, 1, 0, BS), M(2, 2, 2, 0, BS), M(4, 2, 3, 0, BS) };
		struct mapping d[] = { M(0, 6, 5, 0, BS) };
		struct mapping w[] = { M(0, 6, 5, 0, BS) };
		MC("covers all", b, d, w);
	}
	{ /* diff inside base: split with left and right pieces */
		struct mapping b[] = { M(0, 8, 1, 10, BS) };
		struct mapping d[] = { M(3, 2, 5, 0, BS) };
		struct mapping w[] = { M(0, 3, 1, 10, BS), M(3, 2, 5, 0, BS), M(5, 3, 1, 15, BS) };
		MC("inside", b, d, w);
	}
	{ /* diff at the start of base (L = 0) */
		struct mapping b[] = { M(0, 8, 1, 10, BS) };
		struct mapping d[] = { M(0, 2, 5, 0, BS) };
		struct mapping w[] = { M(0, 2, 5, 0, BS), M(2, 6, 1, 12, BS) };
		MC("inside start", b, d, w);
	}
	{ /* diff at the end of base (R = 0) */
		struct mapping b[] = { M(0, 8, 1, 10, BS), M(8, 2, 2, 0, BS) };
		struct mapping d[] = { M(6, 2, 5, 0, BS) };
		struct mapping w[] = { M(0, 6, 1, 10, BS), M(6, 2, 5, 0, BS), M(8, 2, 2, 0, BS) };
		MC("inside end", b, d, w);
	}
	{ /* two diffs inside one base */
		struct mapping b[] = { M(0, 10, 1, 0, BS) };
		struct mapping d[] = { M(1, 1, 5, 0, BS), M(4, 2, 6, 0, BS) };
		struct mapping w[] = { M(0, 1, 1, 0, BS), M(1, 1, 5, 0, BS), M(2, 2, 1, 2, BS),
				       M(4, 2, 6, 0, BS), M(6, 4, 1, 6, BS) };
		MC("two inside", b, d, w);
	}
	{ /* diff overlaps the start of base */
		struct mapping b[] = { M(0, 4, 1, 0, BS), M(4, 4, 2, 20, BS) };
		struct mapping d[] = { M(2, 4, 5, 0, BS) };
		struct mapping w[] = { M(0, 2, 1, 0, BS), M(2, 4, 5, 0, BS), M(6, 2, 2, 22, BS) };
		MC("overlap both", b, d, w);
	}
	{ /* diff overlaps the end of base, then covers the next one, then the start of a third */
		struct mapping b[] = { M(0, 4, 1, 0, BS), M(4, 2, 2, 0, BS), M(6, 4, 3, 30, BS) };
		struct mapping d[] = { M(3, 5, 5, 0, BS) };
		struct mapping w[] = { M(0, 3, 1, 0, BS), M(3, 5, 5, 0, BS), M(8, 2, 3, 32, BS) };
		MC("overlap chain", b, d, w);
	}
	{ /* zero-length entries are skipped */
		struct mapping b[] = { M(0, 0, 9, 0, BS), M(0, 4, 1, 0, BS) };
		struct mapping d[] = { M(1, 0, 8, 0, BS), M(1, 1, 5, 0, BS) };
		struct mapping w[] = { M(0, 1, 1, 0, BS), M(1, 1, 5, 0, BS), M(2, 2, 1, 2, BS) };
		MC("zero length", b, d, w);
	}
	{ /* diff past the end of base is appended */
		struct mapping b[] = { M(0, 4, 1, 0, BS) };
		struct mapping d[] = { M(4, 2, 5, 0, BS), M(6, 2, 6, 0, BS) };
		struct mapping w[] = { M(0, 4, 1, 0, BS), M(4, 2, 5, 0, BS), M(6, 2, 6, 0, BS) };
		MC("tail", b, d, w);
	}
	{ /* overflowing input is refused, not wrapped */
		struct mapping b[] = { { 0, UINT64_MAX, U(1), 0 } };
		struct mapping d[] = { { 4096, UINT64_MAX, U(2), 0 } };
		struct mapping *out;
		size_t n;
		CHECK(mappings_merge(b, 1, d, 1, &out, &n) == -1);
	}
}

static void test_worked_example(void)
{
	/* spec §3.10: bs 2 MiB, 8 blocks; base [Nil 0-2][A 2-6][Nil 6-8] */
	struct mapping base[] = { M(0, 2, 0, 0, MIB2), M(2, 4, 1, 0, MIB2), M(6, 2, 0, 0, MIB2) };
	struct mapping d1[] = { M(7, 1, 4, 0, MIB2) };
	struct mapping w1[] = { M(0, 2, 0, 0, MIB2), M(2, 4, 1, 0, MIB2), M(6, 1, 0, 0, MIB2),
				M(7, 1, 4, 0, MIB2) };
	struct mapping d2[] = { M(0, 1, 4, 0, MIB2) };
	struct mapping w2[] = { M(0, 1, 4, 0, MIB2), M(1, 1, 0, 0, MIB2), M(2, 4, 1, 0, MIB2),
				M(6, 2, 0, 0, MIB2) };
	struct mapping *out;
	size_t n;
	CHECK(mappings_merge(base, 3, d1, 1, &out, &n) == 0);
	CHECK(maps_equal(out, n, w1, 4));
	free(out);
	CHECK(mappings_merge(base, 3, d2, 1, &out, &n) == 0);
	CHECK(maps_equal(out, n, w2, 4));
	free(out);
}

static void test_normalize(void)
{
	struct mapping m[] = { M(0, 1, 0, 0, BS), M(1, 2, 0, 9, BS), M(3, 1, 1, 0, BS),
			       M(4, 2, 1, 1, BS), M(6, 0, 1, 3, BS), M(6, 1, 0, 0, BS),
			       M(7, 1, 2, 0, BS) };
	struct mapping w[] = { M(0, 3, 0, 0, BS), M(3, 3, 1, 0, BS), M(6, 1, 0, 0, BS),
			       M(7, 1, 2, 0, BS) };
	size_t n = mappings_normalize(m, ARRAY_SIZE(m));
	CHECK(maps_equal(m, n, w, ARRAY_SIZE(w)));
	CHECK_EQ_U64(m[0].storage_offset, 0); /* first entry's storage offset kept */
	CHECK_EQ_U64(mappings_normalize(m, 0), 0);
	CHECK_EQ_U64(mappings_normalize(m, 1), 1);
}

static void test_from_bitmap(void)
{
	uint64_t bits[3] = { 0 };
	struct mapping *out;
	size_t n;
	uuid_t16 id = U(7);
	/* runs: [1,3), [63,66), [100,101), [128+..: last bit 191) */
	bits[0] = (1ull << 1) | (1ull << 2) | (1ull << 63);
	bits[1] = (1ull << 0) | (1ull << 1) | (1ull << (100 - 64));
	bits[2] = 1ull << 63;
	CHECK(mappings_from_bitmap(bits, 192, BS, &id, &out, &n) == 0);
	CHECK_EQ_U64(n, 4);
	if (n == 4) {
		struct mapping w[] = { M(1, 2, 7, 0, BS), M(63, 3, 7, 2, BS), M(100, 1, 7, 5, BS),
				       M(191, 1, 7, 6, BS) };
		CHECK(maps_equal(out, n, w, 4));
	}
	free(out);
	/* nblocks cuts the bitmap */
	CHECK(mappings_from_bitmap(bits, 64, BS, &id, &out, &n) == 0);
	CHECK_EQ_U64(n, 2);
	CHECK_EQ_U64(out[1].length, BS);
	free(out);
	CHECK(mappings_from_bitmap(NULL, 100, BS, &id, &out, &n) == 0);
	CHECK_EQ_U64(n, 0);
	free(out);
	CHECK(mappings_from_bitmap(bits, UINT64_MAX / 2, BS, &id, &out, &n) == -1);
}

static void test_diff_header(void)
{
	struct mapping maps[] = { M(0, 8, 1, 0, BS) };
	struct header base = { 3, BS, 8 * BS, 0, U(1), U(1), maps, 1 };
	uint64_t dirty = (1u << 2) | (1u << 3) | (1u << 6), empty = 1u << 0;
	struct header d;
	uuid_t16 nb = U(2);
	struct mapping w[] = { M(0, 1, 0, 0, BS), M(1, 1, 1, 1, BS), M(2, 2, 2, 0, BS),
			       M(4, 2, 1, 4, BS), M(6, 1, 2, 2, BS), M(7, 1, 1, 7, BS) };
	CHECK(header_diff(&base, &nb, &dirty, &empty, &d) == 0);
	CHECK_EQ_U64(d.generation, 1);
	CHECK(uuid_equal(&d.build_id, &nb) && uuid_equal(&d.base_build_id, &base.base_build_id));
	CHECK(maps_equal(d.maps, d.nmaps, w, ARRAY_SIZE(w)));
	header_release(&d);
}

static void test_legacy(void)
{
	struct header h;
	uuid_t16 id = U(3);
	CHECK(header_legacy(&h, &id, MIB2, 8 * MIB2) == 0);
	CHECK(h.version == 1 && h.generation == 1 && h.nmaps == 1 && h.maps[0].length == 8 * MIB2);
	CHECK(uuid_equal(&h.base_build_id, &id));
	header_release(&h);
	CHECK(header_legacy(&h, &id, MIB2, MIB2 + 4096) == -1);
}

static void test_json(void)
{
	struct mapping maps[] = { M(0, 1, 0, 0, BS), M(1, 1, 2, 3, BS) };
	struct header h = { 3, BS, 2 * BS, 1, U(2), U(1), maps, 2 };
	char *j = header_to_json(&h);
	CHECK_STR(j, "{\"version\":3,\"block_size\":4096,\"size\":8192,\"generation\":1,"
		     "\"build_id\":\"a0000000-0000-0000-0000-000000000002\","
		     "\"base_build_id\":\"a0000000-0000-0000-0000-000000000001\",\"mappings\":["
		     "{\"offset\":0,\"length\":4096,\"build_id\":\"00000000-0000-0000-0000-000000000000\",\"build_storage_offset\":0},"
		     "{\"offset\":4096,\"length\":4096,\"build_id\":\"a0000000-0000-0000-0000-000000000002\",\"build_storage_offset\":12288}]}");
	free(j);
	j = mappings_to_json(maps, 0);
	CHECK_STR(j, "[]");
	free(j);
}

/* ---- property test ---- */

static uint64_t rng;
static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? rng % n : 0;
}

struct model {
	int owner[512];
	uint64_t so[512];
};

static bool check_against_model(const struct mapping *m, size_t n, uint64_t nblocks, uint64_t bs,
				const struct model *md, bool check_so)
{
	struct header h = { 3, bs, nblocks * bs, 0, U(1), U(1), (struct mapping *)m, n };
	if (header_validate(&h) < 0) {
		printf("  merged mappings invalid: %s\n", err_msg());
		return false;
	}
	for (uint64_t b = 0; b < nblocks; b++) {
		uint64_t off = b * bs + rnd(bs), so, rem;
		const struct mapping *x = header_lookup(&h, off, &so, &rem);
		if (!x || x->build_id.b[15] != md->owner[b] ||
		    (md->owner[b] && check_so && so != md->so[b] + off % bs) ||
		    rem == 0 || (rem + off % bs) % bs != 0) {
			printf("  block %llu: got id %d so %llu, model id %d so %llu\n",
			       (unsigned long long)b, x ? x->build_id.b[15] : -1,
			       (unsigned long long)so, md->owner[b],
			       (unsigned long long)(md->so[b] + off % bs));
			return false;
		}
	}
	return true;
}

/* Random base covering [0, nblocks), random sorted non-overlapping diff; compare the merge
 * (and its normalization) with a per-block model. */
static bool property_merge_case(void)
{
	static const uint64_t bss[] = { 512, 4096, 2ull << 20 };
	uint64_t bs = bss[rnd(3)], nblocks = 1 + rnd(300);
	struct mapping base[600], diff[600], *out = NULL;
	size_t nb = 0, nd = 0, n;
	struct model md;
	bool ok;
	for (uint64_t b = 0; b < nblocks;) {
		uint64_t len = 1 + rnd(rnd(4) ? 8 : 60);
		int id = (int)rnd(5); /* 0 = nil */
		uint64_t so = rnd(1000);
		if (len > nblocks - b)
			len = nblocks - b;
		base[nb++] = (struct mapping){ b * bs, len * bs, U(id), so * bs };
		for (uint64_t k = 0; k < len; k++) {
			md.owner[b + k] = id;
			md.so[b + k] = (so + k) * bs;
		}
		b += len;
	}
	for (uint64_t b = rnd(4); b < nblocks;) {
		uint64_t len = 1 + rnd(rnd(3) ? 4 : 40);
		int id = rnd(3) ? 10 + (int)rnd(2) : 0;
		uint64_t so = rnd(1000);
		if (len > nblocks - b)
			len = nblocks - b;
		diff[nd++] = (struct mapping){ b * bs, len * bs, U(id), so * bs };
		for (uint64_t k = 0; k < len; k++) {
			md.owner[b + k] = id;
			md.so[b + k] = (so + k) * bs;
		}
		b += len + (rnd(2) ? 0 : rnd(6));
	}
	if (mappings_merge(base, nb, diff, nd, &out, &n) < 0) {
		printf("  merge failed: %s\n", err_msg());
		return false;
	}
	ok = check_against_model(out, n, nblocks, bs, &md, true);
	if (ok) {
		n = mappings_normalize(out, n);
		for (size_t i = 1; i < n; i++)
			if (uuid_equal(&out[i].build_id, &out[i - 1].build_id))
				ok = false;
		/* storage offsets of joined entries are not contiguous in random data (§3.8 quirk) */
		ok = ok && check_against_model(out, n, nblocks, bs, &md, false);
	}
	if (!ok) {
		dump("base", base, nb);
		dump("diff", diff, nd);
	}
	free(out);
	return ok;
}

/* A chain of diff headers as the producers make them (fresh build per generation, packed
 * storage), checked block by block, storage offsets included, after normalization. */
static bool property_chain_case(void)
{
	uint64_t bs = rnd(2) ? 4096 : 2ull << 20, nblocks = 1 + rnd(250);
	struct mapping nilmap = { 0, nblocks * bs, NIL, 0 };
	struct header h = { 3, bs, nblocks * bs, 0, U(1), U(1), &nilmap, 1 }, next;
	struct model md;
	bool owned = false, ok = true;
	for (uint64_t b = 0; b < nblocks; b++)
		md.owner[b] = 0;
	for (int gen = 1; gen <= 4 && ok; gen++) {
		uint64_t dirty[4] = { 0 }, empty[4] = { 0 }, packed = 0;
		uuid_t16 id = U(20 + gen);
		for (uint64_t b = 0; b < nblocks; b++) {
			uint64_t r = rnd(10);
			if (r < 3) {
				dirty[b / 64] |= 1ull << (b % 64);
				md.owner[b] = 20 + gen;
				md.so[b] = packed;
				packed += bs;
			} else if (r == 3) {
				empty[b / 64] |= 1ull << (b % 64);
				md.owner[b] = 0;
			}
		}
		if (header_diff(&h, &id, dirty, empty, &next) < 0) {
			printf("  header_diff failed: %s\n", err_msg());
			ok = false;
			break;
		}
		if (owned)
			header_release(&h);
		h = next;
		owned = true;
		ok = check_against_model(h.maps, h.nmaps, nblocks, bs, &md, true) &&
		     h.generation == (uint64_t)gen;
	}
	if (owned)
		header_release(&h);
	return ok;
}

static void test_property(void)
{
	const char *s = getenv("HEADER_TEST_SEED"), *c = getenv("HEADER_TEST_CASES");
	uint64_t seed = s ? strtoull(s, NULL, 0) : 0x5eed1234abcdull;
	int cases = c ? atoi(c) : 3000;
	rng = seed ? seed : 1;
	printf("  property seed %llu, %d merge cases + %d chains (HEADER_TEST_SEED to repeat)\n",
	       (unsigned long long)seed, cases, cases / 4);
	for (int i = 0; i < cases; i++)
		if (!property_merge_case()) {
			printf("  merge case %d failed (seed %llu)\n", i, (unsigned long long)seed);
			test_cur_failed = 1;
			return;
		}
	for (int i = 0; i < cases / 4; i++)
		if (!property_chain_case()) {
			printf("  chain case %d failed (seed %llu)\n", i, (unsigned long long)seed);
			test_cur_failed = 1;
			return;
		}
}

int main(void)
{
	RUN(test_parse_roundtrip);
	RUN(test_parse_versions);
	RUN(test_parse_no_mappings);
	RUN(test_parse_bad);
	RUN(test_parse_random_bytes);
	RUN(test_parse_report);
	RUN(test_lookup);
	RUN(test_merge_cases);
	RUN(test_worked_example);
	RUN(test_normalize);
	RUN(test_from_bitmap);
	RUN(test_diff_header);
	RUN(test_legacy);
	RUN(test_json);
	RUN(test_property);
	TEST_EXIT();
}
