/*
 * bucket_mkbuild.c - test helper: writes a 3-layer build chain into a local directory, with
 * valid v3 headers (header_diff + header_serialize) and packed diffs, for copy-build tests.
 *   bucket_mkbuild DIR [MEMFILE_MIB [ROOTFS_MIB]]
 *     builds A (base: every block), B (diff over A), C (diff over B), each with memfile,
 *     rootfs.ext4, their headers, snapfile and metadata.json; prints "A B C" on stdout and
 *     writes C's logical images to DIR/expected-memfile and DIR/expected-rootfs.
 *   bucket_mkbuild legacy DIR [ROOTFS_MIB]
 *     a legacy build: rootfs.ext4 and metadata.json, no headers; prints its id.
 * Diff pattern: B rewrites every 3rd block of the first half and zeroes every 7th block;
 * C rewrites every 5th block and zeroes every 11th of the second half. Block contents are a
 * PRNG stream of (layer, block), never all zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>

#include "storage/header.h"
#include "storage/storage.h"

#define BS 4096

static void fill_block(uint8_t *p, unsigned layer, uint64_t block)
{
	uint64_t x = (block + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)layer << 56) ^ 0x5bd1e995u;
	for (size_t i = 0; i < BS; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	p[0] |= 1;
}

static void die_if(int rc)
{
	if (rc < 0)
		die_err();
}

static void write_obj(const char *dir, const char *id, const char *name, const void *buf, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, id);
	die_if(mkdir_p(path, 0755));
	snprintf(path, sizeof(path), "%s/%s/%s", dir, id, name);
	die_if(write_file_atomic(path, buf, len, 0644));
}

static void write_header(const char *dir, const char *id, const char *name, const struct header *h)
{
	size_t len;
	void *buf = header_serialize(h, &len);
	if (!buf)
		die_err();
	write_obj(dir, id, name, buf, len);
	free(buf);
}

static void write_meta(const char *dir, const char *id)
{
	char json[256];
	snprintf(json, sizeof(json), "{\"version\":2,\"template\":{\"build_id\":\"%s\"}}\n", id);
	write_obj(dir, id, BUILD_METADATA, json, strlen(json));
	snprintf(json, sizeof(json), "snapfile of %s\n", id);
	write_obj(dir, id, BUILD_SNAPFILE, json, strlen(json));
}

/* One kind (memfile or rootfs) of the whole chain; logical = C's logical image (updated). */
static void make_kind(const char *dir, const uuid_t16 ids[3], const char *data_name,
		      const char *header_name, uint64_t size, const char *expected_path)
{
	uint64_t nblocks = size / BS, words = (nblocks + 63) / 64;
	uint8_t *logical = calloc(1, size), *diff = malloc(size);
	uint64_t *dirty = calloc(words, 8), *empty = calloc(words, 8);
	struct header h[3];
	char sid[3][UUID_STR_LEN + 1];
	if (!logical || !diff || !dirty || !empty)
		die("out of memory");
	for (int l = 0; l < 3; l++)
		uuid_format(&ids[l], sid[l]);

	/* A: every block, mapping [0, size) -> A */
	for (uint64_t b = 0; b < nblocks; b++)
		fill_block(logical + b * BS, 0, b);
	memset(&h[0], 0, sizeof(h[0]));
	h[0].version = HEADER_VERSION;
	h[0].block_size = BS;
	h[0].size = size;
	h[0].build_id = h[0].base_build_id = ids[0];
	h[0].nmaps = 1;
	h[0].maps = calloc(1, sizeof(struct mapping));
	if (!h[0].maps)
		die("out of memory");
	h[0].maps[0] = (struct mapping){ .offset = 0, .length = size, .build_id = ids[0], .storage_offset = 0 };
	write_obj(dir, sid[0], data_name, logical, size);
	write_header(dir, sid[0], header_name, &h[0]);

	for (int l = 1; l < 3; l++) {
		uint64_t packed = 0;
		memset(dirty, 0, words * 8);
		memset(empty, 0, words * 8);
		for (uint64_t b = 0; b < nblocks; b++) {
			bool d, e;
			if (l == 1) {
				d = b < nblocks / 2 && b % 3 == 0;
				e = b < nblocks / 2 && b % 7 == 1;
			} else {
				d = b % 5 == 2;
				e = b >= nblocks / 2 && b % 11 == 4;
			}
			if (d) {
				dirty[b / 64] |= 1ull << (b % 64);
				fill_block(logical + b * BS, (unsigned)l, b);
				memcpy(diff + packed, logical + b * BS, BS);
				packed += BS;
			} else if (e) {
				empty[b / 64] |= 1ull << (b % 64);
				memset(logical + b * BS, 0, BS);
			}
		}
		die_if(header_diff(&h[l - 1], &ids[l], dirty, empty, &h[l]));
		write_obj(dir, sid[l], data_name, diff, packed);
		write_header(dir, sid[l], header_name, &h[l]);
	}
	die_if(write_file_atomic(expected_path, logical, size, 0644));
	for (int l = 0; l < 3; l++)
		header_release(&h[l]);
	free(logical);
	free(diff);
	free(dirty);
	free(empty);
}

int main(int argc, char **argv)
{
	char path[PATH_MAX], sid[UUID_STR_LEN + 1];
	log_set_prog("bucket_mkbuild");
	if (argc >= 3 && !strcmp(argv[1], "legacy")) {
		uint64_t mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 2;
		size_t size = (size_t)(mib << 20);
		uint8_t *buf = malloc(size);
		uuid_t16 id;
		if (!buf)
			die("out of memory");
		uuid_generate(&id);
		uuid_format(&id, sid);
		for (uint64_t b = 0; b < size / BS; b++)
			fill_block(buf + b * BS, 9, b);
		write_obj(argv[2], sid, BUILD_ROOTFS, buf, size);
		write_meta(argv[2], sid);
		free(buf);
		printf("%s\n", sid);
		return 0;
	}
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: bucket_mkbuild DIR [MEMFILE_MIB [ROOTFS_MIB]] | legacy DIR [ROOTFS_MIB]\n");
		return 2;
	}
	{
		uint64_t mem_mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 8;
		uint64_t root_mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 4;
		uuid_t16 ids[3];
		char s[3][UUID_STR_LEN + 1];
		if (!mem_mib || !root_mib)
			die("sizes must be at least 1 MiB");
		for (int l = 0; l < 3; l++) {
			uuid_generate(&ids[l]);
			uuid_format(&ids[l], s[l]);
		}
		die_if(mkdir_p(argv[1], 0755));
		snprintf(path, sizeof(path), "%s/expected-memfile", argv[1]);
		make_kind(argv[1], ids, BUILD_MEMFILE, BUILD_MEMFILE_HEADER, mem_mib << 20, path);
		snprintf(path, sizeof(path), "%s/expected-rootfs", argv[1]);
		make_kind(argv[1], ids, BUILD_ROOTFS, BUILD_ROOTFS_HEADER, root_mib << 20, path);
		for (int l = 0; l < 3; l++)
			write_meta(argv[1], s[l]);
		printf("%s %s %s\n", s[0], s[1], s[2]);
	}
	return 0;
}
