/*
 * cow.c - copy-on-write overlay: a sandbox's writes go to a sparse file of the device's size,
 * a bitmap says which blocks it holds; reads take those blocks from it and the rest from the
 * read-only base. Export turns the written blocks into a packed diff + header (a new build).
 *
 * Invariants: a bit is set only after its whole block is in the COW file (so a reader that
 * sees the bit reads complete data); a partial write to a block not yet in the file first
 * copies the base block in (read-modify-write). Blocks made zero by WRITE_ZEROES/TRIM are
 * punched holes with their bit set, so they read as zeros and export as nil mappings.
 *
 * cow_map describes a range as extents of the COW file and of the base (for spliced NBD
 * replies); a block written after the map was taken may be sent old or new, like a read
 * racing a write.
 *
 * Threading: reads take no lock (bitmap words are read with acquire loads and set with
 * release ORs). Writes, zero and trim serialize on write_lock, which keeps read-modify-write
 * atomic with respect to other writers; export holds it too, so it sees a stable image.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "block.h"

struct cow {
	struct block_source base;
	char *path;
	int fd;
	uint64_t size, bs, nblocks;
	uint64_t *bits;
	pthread_mutex_t write_lock; /* guards writes to fd + setting bits */
	uint8_t *scratch;           /* one block, used under write_lock */
	uint64_t written;           /* blocks with their bit set; guarded by write_lock */
};

static bool bit_get(const struct cow *c, uint64_t b)
{
	return __atomic_load_n(&c->bits[b / 64], __ATOMIC_ACQUIRE) & (1ull << (b % 64));
}

static void bit_set(struct cow *c, uint64_t b)
{
	uint64_t old = __atomic_fetch_or(&c->bits[b / 64], 1ull << (b % 64), __ATOMIC_RELEASE);
	if (!(old & (1ull << (b % 64))))
		c->written++;
}

struct cow *cow_new(const struct block_source *base, const char *path)
{
	struct cow *c;
	uint64_t bs = base->block_size ? base->block_size : BLOCK_COW_BLOCK;
	if (bs < 512 || (bs & (bs - 1)) || base->size % bs) {
		err_set_errno(EINVAL, "cannot create COW layer: size %llu is not a multiple of block size %llu",
			      (unsigned long long)base->size, (unsigned long long)bs);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto err_nomem;
	c->base = *base;
	c->size = base->size;
	c->bs = bs;
	c->nblocks = base->size / bs;
	c->fd = -1;
	if (!(c->bits = calloc(c->nblocks / 64 + 1, sizeof(uint64_t))) || !(c->scratch = malloc(bs)) ||
	    !(c->path = strdup(path)))
		goto err_nomem;
	c->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c->fd < 0) {
		err_set_errno(errno, "cannot create COW file '%s'", path);
		free(c->path);
		c->path = NULL; /* not ours: do not remove */
		cow_free(c);
		return NULL;
	}
	if (ftruncate(c->fd, (off_t)c->size) < 0) {
		err_set_errno(errno, "cannot size COW file '%s'", path);
		cow_free(c);
		return NULL;
	}
	pthread_mutex_init(&c->write_lock, NULL);
	return c;
err_nomem:
	if (c) {
		free(c->bits);
		free(c->scratch);
		free(c->path);
		free(c);
	}
	err_set_errno(ENOMEM, "cannot create COW layer");
	return NULL;
}

uint64_t cow_size(const struct cow *c)
{
	return c->size;
}

static int range_check(const struct cow *c, uint64_t len, uint64_t off)
{
	uint64_t end;
	if (add_overflow_u64(off, len, &end) || end > c->size)
		return err_set_errno(EINVAL, "range %llu+%llu is past the end of the %llu byte device",
				     (unsigned long long)off, (unsigned long long)len,
				     (unsigned long long)c->size);
	return 0;
}

int cow_read(struct cow *c, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	if (range_check(c, len, off) < 0)
		return -1;
	while (len > 0) {
		/* a run of blocks with the same presence becomes one read */
		uint64_t b = off / c->bs;
		bool in_cow = bit_get(c, b);
		uint64_t end = MIN((b + 1) * c->bs, off + len);
		while (end < off + len && bit_get(c, end / c->bs) == in_cow)
			end = MIN(end + c->bs, off + len);
		size_t n = (size_t)(end - off);
		if (in_cow) {
			if (full_pread(c->fd, p, n, off) < 0)
				return err_set_errno(errno == ENODATA ? EIO : errno,
						     "cannot read COW file '%s' at %llu", c->path,
						     (unsigned long long)off);
		} else if (c->base.read(c->base.opaque, p, n, off) < 0) {
			if (!errno)
				errno = EIO;
			return -1;
		}
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int cow_map(struct cow *c, uint64_t off, uint64_t len, struct nbd_extent *ext, int max)
{
	int n = 0;
	uint64_t end;
	if (add_overflow_u64(off, len, &end) || end > c->size)
		return 0;
	while (len > 0) {
		uint64_t b = off / c->bs;
		bool in_cow = bit_get(c, b);
		uint64_t e = MIN((b + 1) * c->bs, off + len);
		while (e < off + len && bit_get(c, e / c->bs) == in_cow)
			e = MIN(e + c->bs, off + len);
		if (in_cow) {
			if (n == max)
				return 0;
			ext[n++] = (struct nbd_extent){ .fd = c->fd, .offset = off, .length = e - off };
		} else {
			int k = c->base.map ? c->base.map(c->base.opaque, off, e - off, ext + n, max - n) : 0;
			if (k <= 0)
				return 0;
			n += k;
		}
		len -= e - off;
		off = e;
	}
	return n;
}

/* Bring block b into the COW file from the base (under write_lock). */
static int fill_block(struct cow *c, uint64_t b)
{
	if (bit_get(c, b))
		return 0;
	if (c->base.read(c->base.opaque, c->scratch, c->bs, b * c->bs) < 0) {
		if (!errno)
			errno = EIO;
		return -1;
	}
	if (full_pwrite(c->fd, c->scratch, c->bs, b * c->bs) < 0)
		return err_set_errno(errno, "cannot write COW file '%s'", c->path);
	bit_set(c, b);
	return 0;
}

/* Write under write_lock. data NULL = zeros. */
static int write_locked(struct cow *c, const char *data, uint64_t len, uint64_t off, bool punch)
{
	while (len > 0) {
		uint64_t b = off / c->bs, in = off % c->bs;
		if (in || len < c->bs) {
			/* partial block: read-modify-write */
			uint64_t n = MIN(c->bs - in, len);
			if (fill_block(c, b) < 0)
				return -1;
			const char *src = data;
			if (!src) {
				memset(c->scratch, 0, n);
				src = (const char *)c->scratch;
			}
			if (full_pwrite(c->fd, src, n, off) < 0)
				return err_set_errno(errno, "cannot write COW file '%s'", c->path);
			off += n;
			len -= n;
			if (data)
				data += n;
			continue;
		}
		/* whole blocks */
		uint64_t n = len - len % c->bs;
		if (data) {
			if (full_pwrite(c->fd, data, n, off) < 0)
				return err_set_errno(errno, "cannot write COW file '%s'", c->path);
			data += n;
		} else {
			bool done = punch && fallocate(c->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						      (off_t)off, (off_t)n) == 0;
			for (uint64_t k = 0; !done && k < n; k += c->bs) {
				memset(c->scratch, 0, c->bs);
				if (full_pwrite(c->fd, c->scratch, c->bs, off + k) < 0)
					return err_set_errno(errno, "cannot write COW file '%s'", c->path);
			}
		}
		for (uint64_t k = 0; k < n; k += c->bs)
			bit_set(c, (off + k) / c->bs);
		off += n;
		len -= n;
	}
	return 0;
}

int cow_write(struct cow *c, const void *buf, size_t len, uint64_t off)
{
	int r;
	if (range_check(c, len, off) < 0) {
		errno = ENOSPC;
		return -1;
	}
	pthread_mutex_lock(&c->write_lock);
	r = write_locked(c, buf, len, off, false);
	pthread_mutex_unlock(&c->write_lock);
	return r;
}

int cow_zero(struct cow *c, uint64_t len, uint64_t off)
{
	int r;
	if (range_check(c, len, off) < 0)
		return -1;
	pthread_mutex_lock(&c->write_lock);
	r = write_locked(c, NULL, len, off, true);
	pthread_mutex_unlock(&c->write_lock);
	return r;
}

int cow_trim(struct cow *c, uint64_t len, uint64_t off)
{
	uint64_t start, end;
	if (range_check(c, len, off) < 0)
		return -1;
	start = (off + c->bs - 1) / c->bs * c->bs;
	end = (off + len) / c->bs * c->bs;
	if (end <= start)
		return 0;
	return cow_zero(c, end - start, start);
}

int cow_flush(struct cow *c)
{
	if (fdatasync(c->fd) < 0)
		return err_set_errno(errno, "cannot flush COW file '%s'", c->path);
	return 0;
}

uint64_t cow_written_blocks(struct cow *c)
{
	uint64_t n;
	pthread_mutex_lock(&c->write_lock);
	n = c->written;
	pthread_mutex_unlock(&c->write_lock);
	return n;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	static const uint8_t z[256];
	for (size_t i = 0; i < n; i += sizeof(z))
		if (memcmp(p + i, z, MIN(sizeof(z), n - i)))
			return false;
	return true;
}

int cow_export(struct cow *c, const struct header *base_header, struct storage *st,
	       const char *new_build, enum build_kind kind, struct cow_export_stats *stats)
{
	char tmp[PATH_MAX], key[BUILD_KEY_MAX];
	uuid_t16 id;
	struct header out = { 0 };
	_cleanup_free_ uint64_t *dirty = NULL, *empty = NULL;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ void *hbuf = NULL;
	_cleanup_close_ int fd = -1;
	struct cow_export_stats s = { 0 };
	uint64_t woff = 0;
	size_t hlen;
	int ret = -1;
	const size_t batch = 1u << 20;

	if (uuid_parse(new_build, &id) < 0)
		return err_prefix("cannot export COW layer");
	if (base_header->size != c->size || base_header->block_size != c->bs)
		return err_set("cannot export COW layer: base header is %llu bytes in %llu byte blocks, device is %llu in %llu",
			       (unsigned long long)base_header->size,
			       (unsigned long long)base_header->block_size,
			       (unsigned long long)c->size, (unsigned long long)c->bs);
	if (snprintf(tmp, sizeof(tmp), "%s.export", c->path) >= (int)sizeof(tmp))
		return err_set("cannot export COW layer: path too long");
	dirty = calloc(c->nblocks / 64 + 1, 8);
	empty = calloc(c->nblocks / 64 + 1, 8);
	buf = malloc(batch);
	if (!dirty || !empty || !buf)
		return err_set_errno(ENOMEM, "cannot export COW layer");
	unlink(tmp);
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set_errno(errno, "cannot create '%s'", tmp);

	pthread_mutex_lock(&c->write_lock);
	for (uint64_t b = 0; b < c->nblocks;) {
		uint64_t e;
		if (!c->bits[b / 64] && b % 64 == 0) {
			b += 64;
			continue;
		}
		if (!bit_get(c, b)) {
			b++;
			continue;
		}
		/* a run of written blocks, read in batches */
		for (e = b; e < c->nblocks && bit_get(c, e) && (e - b + 1) * c->bs <= batch; e++)
			;
		if (full_pread(c->fd, buf, (e - b) * c->bs, b * c->bs) < 0) {
			err_set_errno(errno == ENODATA ? EIO : errno, "cannot read COW file '%s'", c->path);
			goto out_unlock;
		}
		for (uint64_t k = b; k < e; k++) {
			const uint8_t *blk = buf + (k - b) * c->bs;
			if (all_zero(blk, c->bs)) {
				empty[k / 64] |= 1ull << (k % 64);
				s.empty_blocks++;
				continue;
			}
			dirty[k / 64] |= 1ull << (k % 64);
			s.dirty_blocks++;
			if (full_pwrite(fd, blk, c->bs, woff) < 0) {
				err_set_errno(errno, "cannot write '%s'", tmp);
				goto out_unlock;
			}
			woff += c->bs;
		}
		b = e;
	}
	pthread_mutex_unlock(&c->write_lock);
	s.diff_bytes = woff;

	if (header_diff(base_header, &id, dirty, empty, &out) < 0)
		goto out;
	if (!(hbuf = header_serialize(&out, &hlen)))
		goto out;
	build_key(key, new_build, build_kind_data_object(kind));
	if (storage_write_file(st, key, tmp) < 0)
		goto out;
	build_key(key, new_build, build_kind_header_object(kind));
	if (storage_write_buf(st, key, hbuf, hlen) < 0)
		goto out;
	if (stats)
		*stats = s;
	ret = 0;
	goto out;
out_unlock:
	pthread_mutex_unlock(&c->write_lock);
out:
	header_release(&out);
	unlink(tmp);
	if (ret < 0)
		err_prefix("cannot export COW layer as build %s", new_build);
	return ret;
}

void cow_free(struct cow *c)
{
	if (!c)
		return;
	if (c->fd >= 0) {
		close(c->fd);
		pthread_mutex_destroy(&c->write_lock);
	}
	if (c->path)
		unlink(c->path);
	free(c->path);
	free(c->bits);
	free(c->scratch);
	free(c);
}

/* ---- nbd device ops ---- */

static int op_read(void *o, void *buf, size_t len, uint64_t off)
{
	return cow_read(o, buf, len, off);
}
static int op_map(void *o, uint64_t off, uint64_t len, struct nbd_extent *ext, int max)
{
	return cow_map(o, off, len, ext, max);
}
static int op_write(void *o, const void *buf, size_t len, uint64_t off)
{
	return cow_write(o, buf, len, off);
}
static int op_flush(void *o)
{
	return cow_flush(o);
}
static int op_trim(void *o, uint64_t len, uint64_t off)
{
	return cow_trim(o, len, off);
}
static int op_zero(void *o, uint64_t len, uint64_t off)
{
	return cow_zero(o, len, off);
}

const struct nbd_dev_ops cow_nbd_ops = {
	.read = op_read,
	.map = op_map,
	.write = op_write,
	.flush = op_flush,
	.trim = op_trim,
	.zero = op_zero,
};
