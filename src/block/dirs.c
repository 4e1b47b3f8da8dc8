/*
 * dirs.c - host directories of the block layer and their ownership (CONTRACTS §6).
 *
 * An owned directory is parent/<prefix>-<16 hex>/ containing a file `lock` that its creator
 * holds with flock(LOCK_EX) for as long as it lives (the fd is O_CLOEXEC, so children do not
 * inherit it). Reaping takes the lock non-blocking: only a directory whose lock is free (its
 * owner died) is removed, never a live process's. A FUSE mount left inside a dead owner's
 * directory is lazily unmounted first so the removal does not stop at it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "block.h"

static char *env_or(const char *name, const char *base, const char *sub)
{
	const char *e = getenv(name);
	char *out;
	if (e && *e)
		return strdup(e);
	if (asprintf(&out, "%s/%s", base, sub) < 0)
		return NULL;
	return out;
}

char *block_base_dir(void)
{
	const char *e = getenv("ORCHESTRATOR_BASE_PATH");
	return strdup(e && *e ? e : "/tmp/orchestrator");
}

char *block_cache_dir(void)
{
	_cleanup_free_ char *base = block_base_dir();
	return base ? env_or("DEFAULT_CACHE_DIR", base, "build") : NULL;
}

char *block_sandbox_dir(void)
{
	_cleanup_free_ char *base = block_base_dir();
	return base ? env_or("SANDBOX_CACHE_DIR", base, "sandbox") : NULL;
}

int block_dir_claim(struct block_dir *d, const char *parent, const char *prefix)
{
	uint64_t r;
	char lock[PATH_MAX];
	d->path = NULL;
	d->lock_fd = -1;
	if (mkdir_p(parent, 0700) < 0)
		return -1;
	for (int tries = 0; tries < 16; tries++) {
		if (getrandom(&r, sizeof(r), 0) != sizeof(r))
			r = now_ns() ^ ((uint64_t)getpid() << 32);
		free(d->path);
		if (asprintf(&d->path, "%s/%s-%016llx", parent, prefix, (unsigned long long)r) < 0) {
			d->path = NULL;
			return err_set_errno(ENOMEM, "cannot name a directory in '%s'", parent);
		}
		if (mkdir(d->path, 0700) == 0)
			break;
		if (errno != EEXIST) {
			err_set_errno(errno, "cannot create '%s'", d->path);
			free(d->path);
			d->path = NULL;
			return -1;
		}
	}
	snprintf(lock, sizeof(lock), "%s/lock", d->path);
	d->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd < 0 || flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		err_set_errno(errno, "cannot lock '%s'", lock);
		block_dir_release(d);
		return -1;
	}
	return 0;
}

void block_dir_release(struct block_dir *d)
{
	if (d->path) {
		if (remove_tree(d->path) < 0)
			log_warn("cannot remove '%s': %s", d->path, err_msg());
		free(d->path);
		d->path = NULL;
	}
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
}

int block_dir_reap(const char *parent, const char *prefix,
		   void (*before_remove)(const char *dir, void *opaque), void *opaque)
{
	DIR *dir = opendir(parent);
	struct dirent *e;
	size_t pl = strlen(prefix);
	int removed = 0;
	if (!dir)
		return errno == ENOENT ? 0 : err_set_errno(errno, "cannot list '%s'", parent);
	while ((e = readdir(dir))) {
		char path[PATH_MAX], lock[PATH_MAX + 8];
		int fd;
		if (strncmp(e->d_name, prefix, pl) || e->d_name[pl] != '-')
			continue;
		snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
		snprintf(lock, sizeof(lock), "%s/lock", path);
		fd = open(lock, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			/* a directory without lock file is half-created; leave it unless clearly ours */
			continue;
		}
		if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd); /* owner alive */
			continue;
		}
		/* owner gone: detach anything still mounted below, then remove */
		if (before_remove)
			before_remove(path, opaque);
		{
			DIR *sub = opendir(path);
			struct dirent *se;
			while (sub && (se = readdir(sub))) {
				char p2[PATH_MAX * 2];
				if (se->d_name[0] == '.')
					continue;
				snprintf(p2, sizeof(p2), "%s/%s", path, se->d_name);
				umount2(p2, MNT_DETACH); /* fails harmlessly when nothing is mounted */
			}
			if (sub)
				closedir(sub);
		}
		if (remove_tree(path) == 0)
			removed++;
		close(fd);
	}
	closedir(dir);
	return removed;
}

/* ---- zero source ---- */

static int zero_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	(void)opaque;
	(void)off;
	memset(buf, 0, len);
	return 0;
}

static int zero_map(void *opaque, uint64_t off, uint64_t len, struct nbd_extent *ext, int max)
{
	(void)opaque;
	if (max < 1)
		return 0;
	ext[0] = (struct nbd_extent){ .fd = -1, .offset = off, .length = len };
	return 1;
}

struct block_source block_zero_source(uint64_t size, uint64_t block_size)
{
	return (struct block_source){ .read = zero_read, .map = zero_map, .size = size,
				      .block_size = block_size };
}
