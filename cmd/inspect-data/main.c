/*
 * inspect-data - per-block view of a build's raw packed diff object (reference spec §1.6:
 * each block EMPTY or "N non-zero bytes", then a summary), in the header's block size; or,
 * with -logical -o FILE|-, the byte-exact logical file (blocks [start, end)) resolved through
 * the header and every ancestor's data object.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "common/common.h"
#include "common/flags.h"
#include "storage/header.h"
#include "storage/logical.h"
#include "storage/storage.h"

#define CHUNK (4u << 20)

static void check_range(uint64_t start, uint64_t *end, uint64_t nblocks, const char *what)
{
	if (*end == 0)
		*end = nblocks;
	if (start > nblocks || *end > nblocks || start > *end)
		die("invalid block range [%llu, %llu): the %s has %llu blocks",
		    (unsigned long long)start, (unsigned long long)*end, what,
		    (unsigned long long)nblocks);
}

static int write_logical(struct logical *l, uint64_t off, uint64_t end, const char *out)
{
	_cleanup_free_ uint8_t *buf = malloc(CHUNK);
	int fd;
	bool is_stdout = !strcmp(out, "-");
	if (!buf)
		return err_set_errno(ENOMEM, "cannot allocate read buffer");
	fd = is_stdout ? STDOUT_FILENO : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set_errno(errno, "cannot create '%s'", out);
	while (off < end) {
		size_t n = (size_t)MIN((uint64_t)CHUNK, end - off);
		if (logical_read(l, buf, n, off) < 0)
			goto err;
		if (full_write(fd, buf, n) < 0) {
			err_set_errno(errno, "cannot write '%s'", is_stdout ? "stdout" : out);
			goto err;
		}
		off += n;
	}
	if (!is_stdout && close(fd) < 0)
		return err_set_errno(errno, "cannot write '%s'", out);
	return 0;
err:
	if (!is_stdout)
		close(fd);
	return -1;
}

/* Raw mode: the build's own packed diff object, block by block. */
static int inspect_raw(struct storage *st, const char *id, enum build_kind kind,
		       const struct header *h, uint64_t start, uint64_t end)
{
	char key[BUILD_KEY_MAX];
	const uint64_t bs = h->block_size;
	uint64_t need = 0, need_off = 0, size = 0, nblocks, empty = 0, nonzero_bytes = 0;
	struct storage_object *o = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	uuid_t16 u;

	uuid_parse(id, &u);
	build_key(key, id, build_kind_data_object(kind));
	/* what the header needs from this build's own object (validated: no overflow) */
	for (size_t i = 0; i < h->nmaps; i++) {
		const struct mapping *m = &h->maps[i];
		if (uuid_equal(&m->build_id, &u) && m->storage_offset + m->length > need) {
			need = m->storage_offset + m->length;
			need_off = m->offset;
		}
	}
	o = storage_object_open(st, key);
	if (!o) {
		if (errno != ENOENT || need > 0)
			return -1;
		/* no dirty blocks of its own: the object is legitimately absent */
		printf("build %s has no %s data object (no blocks of its own)\n", id, build_kind_name(kind));
	} else {
		size = storage_object_size(o);
	}
	if (size < need) {
		storage_object_close(o);
		return err_set("build %s %s: data object '%s' is %llu bytes, but the mapping at logical offset %llu needs %llu",
			       id, build_kind_name(kind), key, (unsigned long long)size,
			       (unsigned long long)need_off, (unsigned long long)need);
	}
	nblocks = size / bs + (size % bs != 0);
	check_range(start, &end, nblocks, "data object");
	buf = malloc(bs);
	if (!buf) {
		storage_object_close(o);
		return err_set_errno(ENOMEM, "cannot allocate a block");
	}
	printf("%s (%llu bytes, %llu blocks of %llu B), blocks [%llu, %llu)\n", key,
	       (unsigned long long)size, (unsigned long long)nblocks, (unsigned long long)bs,
	       (unsigned long long)start, (unsigned long long)end);
	for (uint64_t b = start; b < end; b++) {
		uint64_t off = b * bs, n = MIN(bs, size - off), nz = 0;
		if (storage_object_read(o, buf, (size_t)n, off) < 0) {
			storage_object_close(o);
			return -1;
		}
		for (uint64_t k = 0; k < n; k++)
			nz += buf[k] != 0;
		if (nz == 0) {
			empty++;
			printf("block %llu [%llu, %llu): EMPTY\n", (unsigned long long)b,
			       (unsigned long long)off, (unsigned long long)(off + n));
		} else {
			printf("block %llu [%llu, %llu): %llu non-zero bytes\n", (unsigned long long)b,
			       (unsigned long long)off, (unsigned long long)(off + n),
			       (unsigned long long)nz);
		}
		nonzero_bytes += nz;
	}
	printf("\nSUMMARY\n=======\nblocks inspected: %llu\nempty blocks:     %llu\nnon-empty blocks: %llu\nnon-zero bytes:   %llu\n",
	       (unsigned long long)(end - start), (unsigned long long)empty,
	       (unsigned long long)(end - start - empty), (unsigned long long)nonzero_bytes);
	storage_object_close(o);
	return 0;
}

int main(int argc, char **argv)
{
	const char *build = NULL, *kind_s = NULL, *storage_flag = NULL, *out = NULL;
	bool logical_mode = false, legacy;
	uint64_t start = 0, end = 0;
	struct flag flags[] = {
		FLAG_REQ("build", FLAG_STRING, &build, "build id (UUID)"),
		FLAG_REQ("kind", FLAG_STRING, &kind_s, "memfile or rootfs"),
		FLAG_DEF("start", FLAG_U64, &start, "first block (in the header's block size)"),
		FLAG_DEF("end", FLAG_U64, &end, "end block, exclusive (0 = last)"),
		FLAG_DEF("logical", FLAG_BOOL, &logical_mode,
			 "write the logical file (resolved through the header) instead of inspecting the raw diff"),
		FLAG_DEF("o", FLAG_STRING, &out, "output file for -logical ('-' = stdout)"),
		FLAG_DEF("storage", FLAG_STRING, &storage_flag,
			 "storage location (directory or s3://, gs:// URL); default $TEMPLATE_BUCKET_NAME, else .local-build"),
	};
	struct flagset fs = { .prog = "inspect-data",
			      .synopsis = "-build ID -kind memfile|rootfs [-start B] [-end B] [-logical -o FILE|-] [-storage LOC]",
			      .about = "Prints, per block, how much of a build's raw diff object is non-zero; with -logical writes the build's logical file.",
			      .flags = flags,
			      .nflags = ARRAY_SIZE(flags) };
	char id[UUID_STR_LEN + 1];
	_cleanup_free_ char *loc = NULL;
	enum build_kind kind;
	struct storage *st;
	struct header h;
	int first;

	log_set_prog(fs.prog);
	first = flags_parse(&fs, argc, argv);
	if (first != argc)
		flags_usage_error(&fs, "unexpected argument '%s'", argv[first]);
	if (build_kind_parse(kind_s, &kind) < 0)
		flags_usage_error(&fs, "%s", err_msg());
	if (logical_mode && !out)
		flags_usage_error(&fs, "-logical needs -o FILE (or -o - for stdout)");
	if (!logical_mode && out)
		flags_usage_error(&fs, "-o is only valid with -logical");
	if (build_id_canonical(build, id) < 0)
		die_err();
	loc = storage_location_resolve(storage_flag);
	if (!loc)
		die("cannot resolve the storage location: out of memory");
	st = storage_open(loc, false);
	if (!st)
		die_err();

	if (logical_mode) {
		struct logical *l = logical_open(st, id, kind);
		const struct header *lh;
		if (!l)
			die_err();
		lh = logical_header(l);
		check_range(start, &end, lh->size / lh->block_size, "logical file");
		if (write_logical(l, start * lh->block_size, end * lh->block_size, out) < 0)
			die_err();
		logical_close(l);
	} else {
		if (logical_load_header(st, id, kind, &h, &legacy) < 0)
			die_err();
		if (inspect_raw(st, id, kind, &h, start, end) < 0)
			die_err();
		header_release(&h);
	}
	storage_free(st);
	return 0;
}
