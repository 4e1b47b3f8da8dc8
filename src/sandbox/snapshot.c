/*
 * snapshot.c - see snapshot.h. Packing walks only the allocated extents of sparse files
 * (SEEK_DATA/SEEK_HOLE), so a 1 GiB memfile with 100 MiB touched costs 100 MiB of reads.
 * Materialisation writes only non-nil mappings into a sparse temp file and renames it into
 * place under an exclusive flock of <cache>/<build>.lock; users then hold a shared lock so a
 * cleaner never removes an entry in use.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "common/common.h"
#include "snapshot.h"
#include "storage/logical.h"

#define PACK_IO (4u << 20)

static bool all_zero(const uint8_t *p, size_t n)
{
	const uint64_t *w = (const uint64_t *)p;
	for (size_t i = 0; i < n / 8; i++)
		if (w[i])
			return false;
	return true;
}

int snapshot_pack_full(const char *path, uint64_t bs, struct storage *st, const char *build_id,
		       enum build_kind kind, const char *tmp_dir, struct pack_stats *stats)
{
	_cleanup_close_ int in = -1, out = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ uint64_t *bits = NULL;
	_cleanup_free_ struct mapping *dm = NULL, *merged = NULL;
	char tmp[PATH_MAX], key[BUILD_KEY_MAX];
	struct header h = { 0 };
	struct mapping nil;
	struct stat sb;
	uint64_t nblocks, outoff = 0, off = 0;
	size_t ndm = 0, nmerged = 0, hlen;
	void *hbuf;
	int r = -1;
	memset(stats, 0, sizeof(*stats));
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0 || fstat(in, &sb) < 0)
		return err_set_errno(errno, "cannot open '%s'", path);
	if (sb.st_size == 0 || (uint64_t)sb.st_size % bs)
		return err_set("cannot pack '%s': size %lld is not a positive multiple of %llu", path,
			       (long long)sb.st_size, (unsigned long long)bs);
	nblocks = (uint64_t)sb.st_size / bs;
	bits = calloc((nblocks + 63) / 64, 8);
	buf = malloc(PACK_IO);
	if (!bits || !buf)
		return err_set_errno(ENOMEM, "cannot pack '%s'", path);
	snprintf(tmp, sizeof(tmp), "%s/pack-%s-%s.tmp", tmp_dir, build_id, build_kind_name(kind));
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return err_set_errno(errno, "cannot create '%s'", tmp);
	while (off < (uint64_t)sb.st_size) {
		off_t data = lseek(in, (off_t)off, SEEK_DATA), hole;
		if (data < 0) {
			if (errno == ENXIO)
				break; /* only a hole is left */
			data = (off_t)off;
			hole = sb.st_size;
		} else {
			hole = lseek(in, data, SEEK_HOLE);
			if (hole < 0)
				hole = sb.st_size;
		}
		/* align the extent to blocks */
		off = (uint64_t)data / bs * bs;
		while (off < (uint64_t)hole) {
			size_t len = (size_t)MIN((uint64_t)PACK_IO, (uint64_t)sb.st_size - off);
			len = (size_t)MIN((uint64_t)len, ((uint64_t)hole - off + bs - 1) / bs * bs);
			if (full_pread(in, buf, len, off) < 0) {
				err_set_errno(errno == ENODATA ? EIO : errno, "cannot read '%s'", path);
				goto out;
			}
			for (size_t k = 0; k < len; k += bs) {
				uint64_t blk = (off + k) / bs;
				if (all_zero(buf + k, (size_t)bs))
					continue;
				bits[blk / 64] |= 1ull << (blk % 64);
				if (full_pwrite(out, buf + k, (size_t)bs, outoff) < 0) {
					err_set_errno(errno, "cannot write '%s'", tmp);
					goto out;
				}
				outoff += bs;
				stats->data_blocks++;
			}
			off += len;
		}
	}
	stats->blocks = nblocks;
	stats->data_bytes = outoff;
	if (fsync(out) < 0) {
		err_set_errno(errno, "cannot write '%s'", tmp);
		goto out;
	}
	/* header: data blocks -> this build, everything else nil */
	if (uuid_parse(build_id, &h.build_id) < 0)
		goto out;
	if (mappings_from_bitmap(bits, nblocks, bs, &h.build_id, &dm, &ndm) < 0)
		goto out;
	memset(&nil, 0, sizeof(nil));
	nil.length = (uint64_t)sb.st_size;
	if (mappings_merge(&nil, 1, dm, ndm, &merged, &nmerged) < 0)
		goto out;
	nmerged = mappings_normalize(merged, nmerged);
	h.version = HEADER_VERSION;
	h.block_size = bs;
	h.size = (uint64_t)sb.st_size;
	h.generation = 0;
	h.base_build_id = h.build_id;
	h.maps = merged;
	h.nmaps = nmerged;
	if (header_validate(&h) < 0) {
		err_prefix("packing '%s'", path);
		goto out;
	}
	hbuf = header_serialize(&h, &hlen);
	if (!hbuf)
		goto out;
	build_key(key, build_id, build_kind_data_object(kind));
	if (outoff > 0 && storage_write_file(st, key, tmp) < 0) {
		free(hbuf);
		goto out;
	}
	build_key(key, build_id, build_kind_header_object(kind));
	r = storage_write_buf(st, key, hbuf, hlen);
	free(hbuf);
out:
	unlink(tmp);
	return r;
}

int snapshot_publish_diff(const char *diff_path, const uint64_t *bitmap, uint64_t nblocks,
			  const struct header *base, struct storage *st, const char *new_build,
			  enum build_kind kind)
{
	_cleanup_free_ uint64_t *empty = calloc((nblocks + 63) / 64, 8);
	struct header h = { 0 };
	uuid_t16 nb;
	char key[BUILD_KEY_MAX];
	struct stat sb;
	size_t hlen;
	void *hbuf;
	int r;
	if (!empty)
		return err_set_errno(ENOMEM, "cannot build the diff header");
	if (nblocks * base->block_size != base->size)
		return err_set("diff bitmap covers %llu blocks, the base header %llu bytes",
			       (unsigned long long)nblocks, (unsigned long long)base->size);
	if (uuid_parse(new_build, &nb) < 0)
		return -1;
	if (header_diff(base, &nb, bitmap, empty, &h) < 0)
		return err_prefix("building the %s diff header of %s", build_kind_name(kind), new_build);
	hbuf = header_serialize(&h, &hlen);
	header_release(&h);
	if (!hbuf)
		return -1;
	build_key(key, new_build, build_kind_data_object(kind));
	if (stat(diff_path, &sb) == 0 && sb.st_size > 0 && storage_write_file(st, key, diff_path) < 0) {
		free(hbuf);
		return -1;
	}
	build_key(key, new_build, build_kind_header_object(kind));
	r = storage_write_buf(st, key, hbuf, hlen);
	free(hbuf);
	return r;
}

static int materialise_memfile(struct storage *st, const char *build_id, const char *dst)
{
	struct logical *l = logical_open(st, build_id, BUILD_KIND_MEMFILE);
	const struct header *h;
	_cleanup_free_ uint8_t *buf = NULL;
	char tmp[PATH_MAX + 16];
	int fd, r = -1;
	if (!l)
		return -1;
	h = logical_header(l);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", dst, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	buf = malloc(PACK_IO);
	if (fd < 0 || !buf) {
		err_set_errno(errno ? errno : ENOMEM, "cannot create '%s'", tmp);
		goto out;
	}
	if (ftruncate(fd, (off_t)h->size) < 0) {
		err_set_errno(errno, "cannot size '%s'", tmp);
		goto out;
	}
	for (size_t i = 0; i < h->nmaps; i++) {
		const struct mapping *m = &h->maps[i];
		if (uuid_is_nil(&m->build_id))
			continue;
		for (uint64_t o = 0; o < m->length; o += PACK_IO) {
			size_t len = (size_t)MIN((uint64_t)PACK_IO, m->length - o);
			if (logical_read(l, buf, len, m->offset + o) < 0)
				goto out;
			if (full_pwrite(fd, buf, len, m->offset + o) < 0) {
				err_set_errno(errno, "cannot write '%s'", tmp);
				goto out;
			}
		}
	}
	if (fsync(fd) < 0 || rename(tmp, dst) < 0) {
		err_set_errno(errno, "cannot publish '%s'", dst);
		goto out;
	}
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	if (r < 0)
		unlink(tmp);
	logical_close(l);
	return r;
}

int snapshot_cache_get(const char *cache_dir, struct storage *st, const char *build_id,
		       struct snapshot_files *out)
{
	char dir[PATH_MAX], lock[PATH_MAX + 8], key[BUILD_KEY_MAX];
	struct stat sb;
	int fd;
	out->lock_fd = -1;
	snprintf(dir, sizeof(dir), "%s/%s", cache_dir, build_id);
	snprintf(lock, sizeof(lock), "%s.lock", dir);
	snprintf(out->memfile, sizeof(out->memfile), "%s/memfile", dir);
	snprintf(out->snapfile, sizeof(out->snapfile), "%s/snapfile", dir);
	if (mkdir_p(dir, 0755) < 0)
		return -1;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set_errno(errno, "cannot open '%s'", lock);
	if (flock(fd, LOCK_SH) < 0)
		goto fail_errno;
	if (stat(out->memfile, &sb) == 0 && stat(out->snapfile, &sb) == 0) {
		out->lock_fd = fd;
		return 0;
	}
	/* upgrade: one process materialises, the others wait on the lock and then find it */
	if (flock(fd, LOCK_EX) < 0)
		goto fail_errno;
	if (stat(out->memfile, &sb) < 0 && materialise_memfile(st, build_id, out->memfile) < 0) {
		close(fd);
		return err_prefix("cannot materialise the memfile of build %s", build_id);
	}
	build_key(key, build_id, BUILD_SNAPFILE);
	if (stat(out->snapfile, &sb) < 0 && storage_download(st, key, out->snapfile) < 0) {
		close(fd);
		return err_prefix("cannot fetch the snapfile of build %s", build_id);
	}
	if (flock(fd, LOCK_SH) < 0)
		goto fail_errno;
	out->lock_fd = fd;
	return 0;
fail_errno:
	err_set_errno(errno, "cannot lock '%s'", lock);
	close(fd);
	return -1;
}

void snapshot_files_release(struct snapshot_files *f)
{
	if (f->lock_fd >= 0)
		close(f->lock_fd);
	f->lock_fd = -1;
}
