/*
 * format_gen - an independent writer of E2B-format builds for the format tests. It does not
 * use src/storage/header.c: headers are laid out byte by byte from a per-block model (owner
 * build + storage offset of every block), so the reader is checked against a second
 * implementation of the format.
 *
 *   format_gen chain STORAGE EXPECT SEED BLOCK_SIZE NBLOCKS GENERATIONS memfile|rootfs
 *       writes a chain of builds (generation 0..GENERATIONS-1) into STORAGE, each diff dirtying
 *       random blocks (packed in ascending order) and zeroing others; EXPECT/<id> is the
 *       logical file of each build. Prints the build ids, oldest first.
 *   format_gen legacy STORAGE EXPECT SEED SIZE memfile|rootfs
 *       a build with a data object and no header. Prints its id.
 *   format_gen bad STORAGE
 *       one build per bad input (memfile); prints "<case> <id>" lines.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rng;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fail(const char *what)
{
	fprintf(stderr, "format_gen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void new_id(uint8_t id[16], char str[37])
{
	for (int i = 0; i < 16; i++)
		id[i] = (uint8_t)rnd();
	id[6] = (uint8_t)((id[6] & 0x0f) | 0x40);
	id[8] = (uint8_t)((id[8] & 0x3f) | 0x80);
	snprintf(str, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10], id[11],
		 id[12], id[13], id[14], id[15]);
}

static void write_file(const char *dir, const char *id, const char *name, const void *buf, size_t len)
{
	char p[4096];
	FILE *f;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		fail(dir);
	snprintf(p, sizeof(p), "%s/%s", dir, id);
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		fail(p);
	snprintf(p, sizeof(p), "%s/%s/%s", dir, id, name);
	f = fopen(p, "wb");
	if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0)
		fail(p);
}

static void le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

struct hdr {
	uint8_t *b;
	size_t len, cap;
};

static void hdr_meta(struct hdr *h, uint64_t version, uint64_t bs, uint64_t size, uint64_t gen,
		     const uint8_t id[16], const uint8_t base[16])
{
	h->cap = 64 + 40 * 16;
	h->b = calloc(1, h->cap);
	le64(h->b, version);
	le64(h->b + 8, bs);
	le64(h->b + 16, size);
	le64(h->b + 24, gen);
	memcpy(h->b + 32, id, 16);
	memcpy(h->b + 48, base, 16);
	h->len = 64;
}

static void hdr_map(struct hdr *h, uint64_t off, uint64_t len, const uint8_t id[16], uint64_t so)
{
	if (h->len + 40 > h->cap) {
		h->cap *= 2;
		h->b = realloc(h->b, h->cap);
		if (!h->b)
			fail("realloc");
	}
	le64(h->b + h->len, off);
	le64(h->b + h->len + 8, len);
	memcpy(h->b + h->len + 16, id, 16);
	le64(h->b + h->len + 32, so);
	h->len += 40;
}

static const char *data_name(const char *kind)
{
	return strcmp(kind, "memfile") ? "rootfs.ext4" : "memfile";
}

static const char *header_name(const char *kind)
{
	return strcmp(kind, "memfile") ? "rootfs.ext4.header" : "memfile.header";
}

static void fill_block(uint8_t *p, uint64_t bs)
{
	uint64_t pattern = rnd() | 1;
	for (uint64_t i = 0; i < bs; i += 8) {
		uint64_t v = pattern * (i + 1);
		memcpy(p + i, &v, 8);
	}
	p[rnd() % bs] = 0; /* a few zero bytes inside a non-empty block */
}

static int chain(int argc, char **argv)
{
	const char *storage = argv[2], *expect = argv[3], *kind = argv[8];
	uint64_t bs = strtoull(argv[5], NULL, 0), nblocks = strtoull(argv[6], NULL, 0);
	int gens = atoi(argv[7]);
	int *owner = calloc(nblocks, sizeof(int));
	uint64_t *so = calloc(nblocks, sizeof(uint64_t));
	uint8_t(*ids)[16] = calloc((size_t)gens + 1, 16);
	uint8_t *logical = calloc(nblocks, bs);
	uint8_t nil[16] = { 0 };
	(void)argc;
	rng = strtoull(argv[4], NULL, 0) * 0x9e3779b97f4a7c15ull + 1;
	if (!owner || !so || !ids || !logical)
		fail("calloc");
	for (int g = 0; g < gens; g++) {
		char idstr[37];
		uint64_t packed = 0, pct = g == 0 ? 60 : (rnd() % 5 == 0 ? 0 : 5 + rnd() % 30);
		uint8_t *data = malloc(nblocks * bs + 1);
		struct hdr h;
		new_id(ids[g + 1], idstr);
		for (uint64_t b = 0; b < nblocks; b++) {
			uint64_t r = rnd() % 100;
			if (r < pct) { /* dirty */
				fill_block(data + packed, bs);
				memcpy(logical + b * bs, data + packed, bs);
				owner[b] = g + 1;
				so[b] = packed;
				packed += bs;
			} else if (r < pct + (g == 0 ? 40 : 5)) { /* empty */
				memset(logical + b * bs, 0, bs);
				owner[b] = 0;
			}
		}
		hdr_meta(&h, 3, bs, nblocks * bs, (uint64_t)g, ids[g + 1], ids[1]);
		for (uint64_t b = 0; b < nblocks;) {
			uint64_t e = b + 1;
			while (e < nblocks && owner[e] == owner[b] &&
			       (owner[b] == 0 || so[e] == so[b] + (e - b) * bs))
				e++;
			hdr_map(&h, b * bs, (e - b) * bs, owner[b] ? ids[owner[b]] : nil,
				owner[b] ? so[b] : b * bs);
			b = e;
		}
		write_file(storage, idstr, header_name(kind), h.b, h.len);
		if (packed) /* a diff with no dirty block has no data object */
			write_file(storage, idstr, data_name(kind), data, packed);
		write_file(expect, idstr, "logical", logical, nblocks * bs);
		printf("%s\n", idstr);
		free(h.b);
		free(data);
	}
	free(owner);
	free(so);
	free(ids);
	free(logical);
	return 0;
}

static int legacy(char **argv)
{
	const char *storage = argv[2], *expect = argv[3], *kind = argv[6];
	uint64_t size = strtoull(argv[5], NULL, 0);
	uint8_t id[16], *data = calloc(1, size + 1);
	char idstr[37];
	rng = strtoull(argv[4], NULL, 0) * 0x9e3779b97f4a7c15ull + 1;
	new_id(id, idstr);
	for (uint64_t i = 0; i + 4096 <= size; i += 8192)
		fill_block(data + i, 4096);
	write_file(storage, idstr, data_name(kind), data, size);
	write_file(expect, idstr, "logical", data, size);
	printf("%s\n", idstr);
	free(data);
	return 0;
}

/* Writes the case under idstr, then makes a fresh id for the next one. */
static void bad_case(const char *storage, const char *name, uint8_t id[16], char idstr[37],
		     const void *hdr, size_t len, uint64_t data_len)
{
	write_file(storage, idstr, "memfile.header", hdr, len);
	if (data_len) {
		uint8_t *d = calloc(1, data_len);
		memset(d, 0x5a, data_len);
		write_file(storage, idstr, "memfile", d, data_len);
		free(d);
	}
	printf("%s %s\n", name, idstr);
	new_id(id, idstr);
}

static int bad(char **argv)
{
	const char *st = argv[2];
	const uint64_t bs = 4096;
	uint8_t id[16], rand_bytes[1000];
	char idstr[37];
	struct hdr h;
	rng = 42;
	new_id(id, idstr);

	bad_case(st, "empty", id, idstr, "", 0, 0);
	hdr_meta(&h, 3, bs, 4 * bs, 0, id, id);
	bad_case(st, "truncated-metadata", id, idstr, h.b, 40, 0);
	hdr_map(&h, 0, 4 * bs, id, 0);
	bad_case(st, "partial-mapping", id, idstr, h.b, h.len - 9, 0);
	free(h.b);

#define ONE(name, m_bs, m_size, m_off, m_len, m_so, m_data)                                       \
	do {                                                                                       \
		hdr_meta(&h, 3, m_bs, m_size, 0, id, id);                                          \
		hdr_map(&h, m_off, m_len, id, m_so);                                               \
		bad_case(st, name, id, idstr, h.b, h.len, m_data);                                            \
		free(h.b);                                                                         \
	} while (0)
	ONE("block-size-0", 0, 4 * bs, 0, 4 * bs, 0, 0);
	ONE("mapping-past-size", bs, 4 * bs, 0, 5 * bs, 0, 0);
	ONE("size-2^63", bs, 1ull << 63, 0, 1ull << 63, 0, 0);
	ONE("short-diff-object", bs, 4 * bs, 0, 4 * bs, 0, 3 * bs + 100);

	hdr_meta(&h, 3, bs, 4 * bs, 0, id, id);
	hdr_map(&h, 0, bs, id, 0);
	hdr_map(&h, 2 * bs, 2 * bs, id, bs);
	bad_case(st, "gap", id, idstr, h.b, h.len, 0);
	free(h.b);
	hdr_meta(&h, 3, bs, 4 * bs, 0, id, id);
	hdr_map(&h, 0, 2 * bs, id, 0);
	hdr_map(&h, bs, 3 * bs, id, 2 * bs);
	bad_case(st, "overlap", id, idstr, h.b, h.len, 0);
	free(h.b);
	hdr_meta(&h, 3, bs, 4 * bs, 0, id, id);
	hdr_map(&h, 0, bs, id, 0);
	hdr_map(&h, bs + 512, 3 * bs - 512, id, bs);
	bad_case(st, "unaligned-offset", id, idstr, h.b, h.len, 0);
	free(h.b);
	hdr_meta(&h, 3, bs, 4 * bs, 0, id, id);
	hdr_map(&h, 0, 4 * bs, id, 0);
	hdr_map(&h, 4 * bs, UINT64_MAX - 2 * bs + 1, id, 0);
	bad_case(st, "offset-length-overflow", id, idstr, h.b, h.len, 0);
	free(h.b);
	for (size_t i = 0; i < sizeof(rand_bytes); i++)
		rand_bytes[i] = (uint8_t)rnd();
	bad_case(st, "random-bytes", id, idstr, rand_bytes, sizeof(rand_bytes), 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 9 && !strcmp(argv[1], "chain"))
		return chain(argc, argv);
	if (argc == 7 && !strcmp(argv[1], "legacy"))
		return legacy(argv);
	if (argc == 3 && !strcmp(argv[1], "bad"))
		return bad(argv);
	fprintf(stderr, "usage: format_gen chain STORAGE EXPECT SEED BS NBLOCKS GENS KIND | legacy STORAGE EXPECT SEED SIZE KIND | bad STORAGE\n");
	return 2;
}
