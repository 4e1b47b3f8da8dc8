/*
 * block_mkbuild.c - test helper that makes layered builds in a local storage directory:
 *
 *   block_mkbuild base  -storage DIR -build ID -image FILE [-kind rootfs|memfile]
 *       ID's data object = FILE, header version 3 with one mapping onto itself.
 *   block_mkbuild layer -storage DIR -base ID -build NEW [-kind K] [-writes N] [-zeros N] [-seed S]
 *       opens ID through the block layer, applies N pseudo-random writes (1..16 blocks of
 *       random bytes at random block offsets, some unaligned) and N zero writes to a COW
 *       layer, and exports it as NEW (the real export path: cow_export).
 *   block_mkbuild layer -storage DIR -base ID -build NEW -image FILE
 *       same, but the writes are the blocks where FILE differs from ID's logical file.
 *   block_mkbuild cat   -storage DIR -build ID [-kind K] -o FILE
 *       writes ID's logical file (read through the block layer) to FILE.
 *
 * Prints one line of what it did. Exit 0 ok, 1 error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "block/block.h"
#include "common/flags.h"
#include "storage/header.h"
#include "storage/storage.h"

static const char *storage_dir = ".local-build", *build = "", *base = "", *image = "",
		  *kind_s = "rootfs", *out = "";
static int64_t nwrites = 8, nzeros = 2, seed = 1;

static uint64_t rnd_state;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static int cmd_base(struct storage *st, enum build_kind kind)
{
	char id[UUID_STR_LEN + 1], key[BUILD_KEY_MAX];
	uuid_t16 u;
	struct header h;
	struct stat sb;
	size_t hlen;
	_cleanup_free_ void *hb = NULL;
	if (build_id_canonical(build, id) < 0 || uuid_parse(id, &u) < 0)
		return -1;
	if (stat(image, &sb) < 0)
		return err_set_errno(errno, "cannot stat '%s'", image);
	if (header_legacy(&h, &u, BLOCK_COW_BLOCK, (uint64_t)sb.st_size) < 0)
		return -1;
	h.version = HEADER_VERSION;
	h.generation = 0;
	hb = header_serialize(&h, &hlen);
	header_release(&h);
	if (!hb)
		return -1;
	build_key(key, id, build_kind_data_object(kind));
	if (storage_write_file(st, key, image) < 0)
		return -1;
	build_key(key, id, build_kind_header_object(kind));
	if (storage_write_buf(st, key, hb, hlen) < 0)
		return -1;
	printf("base %s: %llu bytes\n", id, (unsigned long long)sb.st_size);
	return 0;
}

static int cmd_layer(struct storage *st, enum build_kind kind)
{
	char bid[UUID_STR_LEN + 1], nid[UUID_STR_LEN + 1], cowpath[PATH_MAX];
	struct block_build *b;
	struct block_source src;
	struct cow *c;
	struct cow_export_stats s;
	_cleanup_free_ uint8_t *buf = NULL;
	int ret = -1;
	if (build_id_canonical(base, bid) < 0 || build_id_canonical(build, nid) < 0)
		return -1;
	if (!(b = block_build_open(st, bid, kind)))
		return -1;
	src = block_build_source(b);
	snprintf(cowpath, sizeof(cowpath), "/tmp/block_mkbuild.%d.cow", (int)getpid());
	unlink(cowpath);
	if (!(c = cow_new(&src, cowpath))) {
		block_build_close(b);
		return -1;
	}
	buf = malloc(16 * BLOCK_COW_BLOCK + 4096);
	if (*image && buf) {
		/* the layer is whatever differs between the base and -image */
		_cleanup_close_ int fd = open(image, O_RDONLY | O_CLOEXEC);
		uint8_t *mine = buf + BLOCK_COW_BLOCK;
		if (fd < 0) {
			err_set_errno(errno, "cannot open '%s'", image);
			goto out;
		}
		for (uint64_t off = 0; off < src.size; off += BLOCK_COW_BLOCK) {
			if (full_pread(fd, mine, BLOCK_COW_BLOCK, off) < 0 ||
			    src.read(src.opaque, buf, BLOCK_COW_BLOCK, off) < 0) {
				err_set_errno(errno, "cannot compare '%s' at %llu", image, (unsigned long long)off);
				goto out;
			}
			if (memcmp(buf, mine, BLOCK_COW_BLOCK) && cow_write(c, mine, BLOCK_COW_BLOCK, off) < 0)
				goto out;
		}
		nwrites = nzeros = 0;
	}
	rnd_state = (uint64_t)seed * 0x9e3779b97f4a7c15ull + 1;
	for (int64_t i = 0; buf && i < nwrites + nzeros; i++) {
		uint64_t nb = src.size / BLOCK_COW_BLOCK;
		uint64_t len = (1 + rnd() % 16) * BLOCK_COW_BLOCK;
		uint64_t off = (rnd() % nb) * BLOCK_COW_BLOCK;
		if (i % 3 == 2) { /* some unaligned writes */
			off += rnd() % 4096;
			len -= rnd() % 4096;
		}
		if (off + len > src.size)
			len = src.size - off;
		if (i < nwrites) {
			for (uint64_t k = 0; k < len; k++)
				buf[k] = (uint8_t)(rnd() | 1);
			if (cow_write(c, buf, len, off) < 0)
				goto out;
		} else if (cow_zero(c, len, off) < 0) {
			goto out;
		}
	}
	if (cow_export(c, block_build_header(b), st, nid, kind, &s) < 0)
		goto out;
	printf("layer %s on %s: %llu dirty blocks, %llu empty blocks, %llu diff bytes\n", nid, bid,
	       (unsigned long long)s.dirty_blocks, (unsigned long long)s.empty_blocks,
	       (unsigned long long)s.diff_bytes);
	ret = 0;
out:
	cow_free(c);
	block_build_close(b);
	return ret;
}

static int cmd_cat(struct storage *st, enum build_kind kind)
{
	char id[UUID_STR_LEN + 1];
	struct block_build *b;
	struct block_source src;
	_cleanup_free_ uint8_t *buf = malloc(1 << 20);
	_cleanup_close_ int fd = -1;
	if (build_id_canonical(build, id) < 0)
		return -1;
	if (!(b = block_build_open(st, id, kind)))
		return -1;
	src = block_build_source(b);
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !buf) {
		block_build_close(b);
		return err_set_errno(errno, "cannot create '%s'", out);
	}
	for (uint64_t off = 0; off < src.size; off += 1 << 20) {
		size_t n = (size_t)MIN((uint64_t)1 << 20, src.size - off);
		if (src.read(src.opaque, buf, n, off) < 0 || full_pwrite(fd, buf, n, off) < 0) {
			block_build_close(b);
			return -1;
		}
	}
	printf("cat %s: %llu bytes\n", id, (unsigned long long)src.size);
	block_build_close(b);
	return 0;
}

int main(int argc, char **argv)
{
	struct flag fl[] = {
		FLAG_DEF("storage", FLAG_STRING, &storage_dir, "storage directory"),
		FLAG_DEF("build", FLAG_STRING, &build, "build id to create / read"),
		FLAG_DEF("base", FLAG_STRING, &base, "base build id (layer)"),
		FLAG_DEF("image", FLAG_STRING, &image, "image file (base)"),
		FLAG_DEF("kind", FLAG_STRING, &kind_s, "rootfs or memfile"),
		FLAG_DEF("o", FLAG_STRING, &out, "output file (cat)"),
		FLAG_DEF("writes", FLAG_INT, &nwrites, "random writes (layer)"),
		FLAG_DEF("zeros", FLAG_INT, &nzeros, "zero writes (layer)"),
		FLAG_DEF("seed", FLAG_INT, &seed, "random seed (layer)"),
	};
	struct flagset fs = { .prog = "block_mkbuild", .synopsis = "base|layer|cat [flags]",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	enum build_kind kind;
	struct storage *st;
	const char *sub;
	int r;
	log_set_prog("block_mkbuild");
	if (argc < 2)
		flags_usage_error(&fs, "missing subcommand");
	sub = argv[1];
	flags_parse(&fs, argc - 1, argv + 1);
	if (build_kind_parse(kind_s, &kind) < 0)
		die_err();
	if (!(st = storage_open(storage_dir, true)))
		die_err();
	if (!strcmp(sub, "base"))
		r = cmd_base(st, kind);
	else if (!strcmp(sub, "layer"))
		r = cmd_layer(st, kind);
	else if (!strcmp(sub, "cat"))
		r = cmd_cat(st, kind);
	else
		flags_usage_error(&fs, "unknown subcommand '%s'", sub);
	storage_free(st);
	if (r < 0)
		die_err();
	return 0;
}
