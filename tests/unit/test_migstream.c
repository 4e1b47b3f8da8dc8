/*
 * test_migstream.c - the QEMU 7.2 migration-stream filter on synthetic streams built here
 * (expected output built alongside), every truncation, unknown records; on a real state
 * stream of QEMU 7.2 (fuzz/seeds/fuzz_migstream/state-7.2, or MIGSTREAM_REAL), and on a real
 * full stream when tests/shell/vmm_restore.sh passes MIGSTREAM_FULL.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "test.h"
#include "vmm/migstream.h"

struct sb {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct sb *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}
static void put_be(struct sb *b, uint64_t v, int n)
{
	uint8_t x[8];
	for (int i = 0; i < n; i++)
		x[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	put(b, x, (size_t)n);
}
static void put_u8(struct sb *b, uint8_t v)
{
	put(b, &v, 1);
}
static void put_name(struct sb *b, const char *s)
{
	put_u8(b, (uint8_t)strlen(s));
	put(b, s, strlen(s));
}

#define ROM "/rom@etc/acpi/tables"
#define NPAGES_RAM 16
#define NPAGES_ROM 2

static void header(struct sb *b, const char *cap)
{
	put_be(b, MIG_MAGIC, 4);
	put_be(b, MIG_VERSION, 4);
	put_u8(b, MIG_CONFIGURATION);
	put_be(b, 7, 4);
	put(b, "microvm", 7);
	put_u8(b, MIG_SUBSECTION);
	put_name(b, "configuration/capabilities");
	put_be(b, 1, 4);
	put_be(b, 1, 4);
	put_name(b, cap);
}

static void section(struct sb *b, uint8_t type)
{
	put_u8(b, type);
	put_be(b, 2, 4);
	if (type == MIG_SECTION_START) {
		put_name(b, "ram");
		put_be(b, 0, 4);
		put_be(b, 4, 4);
	}
}
static void footer(struct sb *b)
{
	put_be(b, MIG_RAM_EOS, 8);
	put_u8(b, MIG_SECTION_FOOTER);
	put_be(b, 2, 4);
}
static void setup(struct sb *b)
{
	put_be(b, ((uint64_t)(NPAGES_RAM + NPAGES_ROM) * 4096) | MIG_RAM_MEM_SIZE, 8);
	put_name(b, "ram0");
	put_be(b, NPAGES_RAM * 4096, 8);
	put_be(b, 0, 8);
	put_name(b, ROM);
	put_be(b, NPAGES_ROM * 4096, 8);
	put_be(b, 0xfeda0000, 8);
}
/* page record; name NULL = CONTINUE */
static void page(struct sb *b, uint64_t pg, const char *name, bool zero, uint8_t fill)
{
	uint8_t data[4096];
	put_be(b, pg * 4096 | (zero ? MIG_RAM_ZERO : MIG_RAM_PAGE) | (name ? 0 : MIG_RAM_CONTINUE), 8);
	if (name)
		put_name(b, name);
	if (zero) {
		put_u8(b, 0);
	} else {
		memset(data, fill, sizeof(data));
		put(b, data, sizeof(data));
	}
}
static void tail(struct sb *b)
{
	put_u8(b, MIG_SECTION_FULL);
	put(b, "\x00\x00\x00\x03\x06timer\x00\x00\x00\x00\x00\x00\x00\x01\xaa\xbb", 20);
	put_u8(b, MIG_SECTION_EOF);
}

/* in: a stream with CONTINUE chains crossing the dropped block and sections.
 * exp_drop: what the filter must make of it when dropping ram0; exp_keep: dropping nothing. */
static void build(struct sb *in, struct sb *exp_drop, struct sb *exp_keep)
{
	struct sb *all[] = { in, exp_drop, exp_keep };
	for (int i = 0; i < 3; i++) {
		header(all[i], "x-ignore-shared");
		section(all[i], MIG_SECTION_START);
		setup(all[i]);
		footer(all[i]);
		section(all[i], MIG_SECTION_PART);
	}
	page(in, 0, "ram0", false, 0x11);
	page(exp_keep, 0, "ram0", false, 0x11);
	page(in, 1, NULL, true, 0);
	page(exp_keep, 1, "ram0", true, 0);
	page(in, 0, ROM, false, 0x22);
	page(exp_keep, 0, ROM, false, 0x22);
	page(exp_drop, 0, ROM, false, 0x22);
	page(in, 1, NULL, false, 0x23);
	page(exp_keep, 1, ROM, false, 0x23);
	page(exp_drop, 1, ROM, false, 0x23);
	page(in, 5, "ram0", false, 0x55);
	page(exp_keep, 5, "ram0", false, 0x55);
	for (int i = 0; i < 3; i++) {
		footer(all[i]);
		section(all[i], MIG_SECTION_END);
	}
	page(in, 6, NULL, false, 0x66); /* CONTINUE across sections */
	page(exp_keep, 6, "ram0", false, 0x66);
	page(in, 15, NULL, true, 0);
	page(exp_keep, 15, "ram0", true, 0);
	for (int i = 0; i < 3; i++) {
		footer(all[i]);
		tail(all[i]);
	}
}

static void test_filter_drops_guest_ram(void)
{
	struct sb in = { 0 }, ed = { 0 }, ek = { 0 };
	void *out;
	size_t len;
	struct migstream_stats st;

	build(&in, &ed, &ek);
	CHECK(migstream_filter_buf(in.p, in.len, "ram0", &out, &len, &st) == 0);
	CHECK_EQ_U64(len, ed.len);
	CHECK(len == ed.len && !memcmp(out, ed.p, len));
	CHECK_EQ_U64(st.dropped_pages, 3);
	CHECK_EQ_U64(st.dropped_zero, 2);
	CHECK_EQ_U64(st.kept_pages, 2);
	CHECK_EQ_U64(st.nblocks, 2);
	CHECK_EQ_U64(st.ram_sections, 3);
	CHECK(st.ignore_shared == 1);
	CHECK_EQ_U64(st.in_bytes, in.len);
	free(out);

	/* nothing dropped: the same pages, each with an explicit block name */
	CHECK(migstream_filter_buf(in.p, in.len, NULL, &out, &len, &st) == 0);
	CHECK(len == ek.len && !memcmp(out, ek.p, len));
	CHECK_EQ_U64(st.kept_pages, 7);
	free(out);

	/* filtering is idempotent */
	CHECK(migstream_filter_buf(ed.p, ed.len, "ram0", &out, &len, NULL) == 0);
	CHECK(len == ed.len && !memcmp(out, ed.p, len));
	free(out);
	free(in.p);
	free(ed.p);
	free(ek.p);
}

static void test_filter_fd_matches_buf(void)
{
	struct sb in = { 0 }, ed = { 0 }, ek = { 0 };
	char tmpl[] = "/tmp/test_migstream.XXXXXX";
	char tmpo[] = "/tmp/test_migstream_out.XXXXXX";
	int fi = mkostemp(tmpl, O_CLOEXEC), fo = mkostemp(tmpo, O_CLOEXEC);
	struct stat sto;
	size_t len;

	build(&in, &ed, &ek);
	CHECK(fi >= 0 && fo >= 0);
	unlink(tmpl);
	unlink(tmpo);
	CHECK(full_write(fi, in.p, in.len) == 0);
	lseek(fi, 0, SEEK_SET);
	CHECK(migstream_filter_fd(fi, fo, "ram0", 1000, NULL) == 0);
	fstat(fo, &sto);
	CHECK_EQ_U64(sto.st_size, ed.len);
	uint8_t *got = malloc(ed.len);
	len = ed.len;
	CHECK(full_pread(fo, got, len, 0) == 0 && !memcmp(got, ed.p, len));
	free(got);
	close(fi);
	close(fo);
	free(in.p);
	free(ed.p);
	free(ek.p);
}

static void test_truncations_fail(void)
{
	struct sb in = { 0 }, ed = { 0 }, ek = { 0 };
	void *out;
	size_t len, tail_at, bad = 0;

	build(&in, &ed, &ek);
	tail_at = in.len - 22; /* the FULL section starts here (verbatim from there on) */
	CHECK(in.p[tail_at] == MIG_SECTION_FULL);
	for (size_t cut = 0; cut <= tail_at; cut++) {
		if (migstream_filter_buf(in.p, cut, "ram0", &out, &len, NULL) == 0) {
			free(out);
			bad++;
		}
	}
	CHECK_EQ_U64(bad, 0);
	CHECK(migstream_filter_buf(in.p, 40, "ram0", &out, &len, NULL) < 0 &&
	      strstr(err_msg(), "truncated") && strstr(err_msg(), "[offset "));
	free(in.p);
	free(ed.p);
	free(ek.p);
}

static int run_bad(struct sb *b)
{
	void *out;
	size_t len;
	int r = migstream_filter_buf(b->p, b->len, "ram0", &out, &len, NULL);
	if (r == 0)
		free(out);
	free(b->p);
	memset(b, 0, sizeof(*b));
	return r;
}

static void test_unknown_records_fail(void)
{
	struct sb b = { 0 };

	put_be(&b, 0x12345678, 4);
	put_be(&b, 3, 4);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "magic"));

	put_be(&b, MIG_MAGIC, 4);
	put_be(&b, 2, 4);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "version"));

	header(&b, "postcopy-ram");
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "capability 'postcopy-ram'"));

	header(&b, "x-ignore-shared");
	put_u8(&b, MIG_COMMAND);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "section type 0x08"));

	header(&b, "x-ignore-shared");
	put_u8(&b, MIG_SECTION_START);
	put_be(&b, 1, 4);
	put_name(&b, "block");
	put_be(&b, 0, 4);
	put_be(&b, 1, 4);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "iterative section 'block'"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	setup(&b);
	put_be(&b, MIG_RAM_XBZRLE, 8);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "flags 0x40"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	setup(&b);
	page(&b, 0, "nosuch", false, 1);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "unknown RAM block 'nosuch'"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	setup(&b);
	page(&b, NPAGES_RAM, "ram0", false, 1);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "beyond RAM block"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	setup(&b);
	page(&b, 0, NULL, false, 1);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "CONTINUE"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	page(&b, 0, "ram0", false, 1);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "before the setup"));

	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	setup(&b);
	put_be(&b, MIG_RAM_EOS, 8);
	put_u8(&b, MIG_SECTION_FOOTER);
	put_be(&b, 9, 4);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "footer"));

	header(&b, "x-ignore-shared");
	tail(&b);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "without a RAM setup"));

	/* setup record whose blocks overflow the total */
	header(&b, "x-ignore-shared");
	section(&b, MIG_SECTION_START);
	put_be(&b, 4096 | MIG_RAM_MEM_SIZE, 8);
	put_name(&b, "ram0");
	put_be(&b, 8192, 8);
	CHECK(run_bad(&b) < 0 && strstr(err_msg(), "does not fit"));
}

static void *slurp(const char *p, size_t *len)
{
	return read_file(p, len);
}

static void test_real_state_stream(void)
{
	/* default: the state stream captured from QEMU 7.2 that seeds the fuzzer */
	const char *p = getenv("MIGSTREAM_REAL");
	size_t len, olen;
	void *in, *out;
	struct migstream_stats st;

	if (!p)
		p = "fuzz/seeds/fuzz_migstream/state-7.2";
	if (access(p, R_OK) < 0)
		SKIP("no real stream at %s (run from the repository root)", p);
	in = slurp(p, &len);
	CHECK(in != NULL);
	if (!in)
		return;
	CHECK(migstream_filter_buf(in, len, "ram0", &out, &olen, &st) == 0);
	CHECK(olen == len && !memcmp(in, out, len));
	CHECK_EQ_U64(st.dropped_pages + st.dropped_zero, 0);
	CHECK(st.nblocks >= 2 && st.kept_pages > 0 && st.ignore_shared);
	printf("  real state: %zu bytes, %u blocks, %llu kept pages\n", len, st.nblocks,
	       (unsigned long long)st.kept_pages);
	free(in);
	free(out);
}

static void test_real_full_stream(void)
{
	const char *p = getenv("MIGSTREAM_FULL"), *s = getenv("MIGSTREAM_REAL");
	size_t len, olen, slen = 0;
	void *in, *out, *state;
	struct migstream_stats st;

	if (!p || access(p, R_OK) < 0)
		SKIP("MIGSTREAM_FULL not set or missing");
	in = slurp(p, &len);
	state = s ? slurp(s, &slen) : NULL;
	CHECK(in != NULL);
	if (!in)
		return;
	CHECK(migstream_filter_buf(in, len, "ram0", &out, &olen, &st) == 0);
	CHECK(st.dropped_pages > 1000);
	/* what is left is about the size of a state-only save */
	CHECK(olen < len / 100);
	if (state)
		CHECK(olen < slen * 2 && slen < olen * 2);
	printf("  real full stream: %zu -> %zu bytes, dropped %llu pages + %llu zero\n", len, olen,
	       (unsigned long long)st.dropped_pages, (unsigned long long)st.dropped_zero);
	free(in);
	free(out);
	free(state);
}

int main(void)
{
	RUN(test_filter_drops_guest_ram);
	RUN(test_filter_fd_matches_buf);
	RUN(test_truncations_fail);
	RUN(test_unknown_records_fail);
	RUN(test_real_state_stream);
	RUN(test_real_full_stream);
	TEST_EXIT();
}
