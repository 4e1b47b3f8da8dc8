/*
 * local.c - the local-directory backend: object "<build>/<name>" is the file DIR/<build>/<name>.
 * Writes are atomic (temp file in the same directory, fsync, rename), so a reader never sees
 * a half-written object and a crash leaves only a ".tmp." file that listing ignores.
 * Objects are opened per call; nothing is cached, so it is safe from any thread.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

static int local_path(struct storage *st, const char *key, char *out)
{
	if (snprintf(out, PATH_MAX, "%s/%s", st->local_dir, key) >= PATH_MAX)
		return err_set("object key '%s' is too long", key);
	return 0;
}

static int local_size(struct storage *st, const char *key, uint64_t *size)
{
	char p[PATH_MAX];
	struct stat sb;
	if (local_path(st, key, p) < 0)
		return -1;
	if (stat(p, &sb) < 0)
		return err_set_errno(errno, "cannot stat '%s'", p);
	if (!S_ISREG(sb.st_mode))
		return err_set_errno(EINVAL, "'%s' is not a regular file", p);
	*size = (uint64_t)sb.st_size;
	return 0;
}

static void *local_read_all(struct storage *st, const char *key, size_t *len)
{
	char p[PATH_MAX];
	if (local_path(st, key, p) < 0)
		return NULL;
	return read_file(p, len);
}

static int parent_dir(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = 0;
	return mkdir_p(dir, 0755);
}

/* Copy src (fd) into a temp file beside dst and rename it into place. */
static int publish_fd(int in, const char *dst)
{
	char tmp[PATH_MAX];
	struct stat sb;
	int out;
	uint64_t off = 0;
	if (parent_dir(dst) < 0)
		return -1;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d.%llx", dst, (int)getpid(),
		     (unsigned long long)now_ns()) >= (int)sizeof(tmp))
		return err_set("cannot write '%s': path too long", dst);
	if (fstat(in, &sb) < 0)
		return err_set_errno(errno, "cannot stat source of '%s'", dst);
	out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0)
		return err_set_errno(errno, "cannot create '%s'", tmp);
	while (off < (uint64_t)sb.st_size) {
		loff_t ioff = (loff_t)off, ooff = (loff_t)off;
		ssize_t n = copy_file_range(in, &ioff, out, &ooff, (size_t)((uint64_t)sb.st_size - off), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
			/* fall back to read/write, keeping holes as holes */
			static const size_t bs = 1 << 20;
			char *buf = malloc(bs);
			if (!buf)
				goto fail_errno;
			while (off < (uint64_t)sb.st_size) {
				size_t len = (size_t)MIN((uint64_t)bs, (uint64_t)sb.st_size - off);
				size_t k;
				if (full_pread(in, buf, len, off) < 0) {
					free(buf);
					goto fail_errno;
				}
				for (k = 0; k < len && !buf[k]; k++)
					;
				if (k < len && full_pwrite(out, buf, len, off) < 0) {
					free(buf);
					goto fail_errno;
				}
				off += len;
			}
			free(buf);
			if (ftruncate(out, sb.st_size) < 0)
				goto fail_errno;
			break;
		}
		if (n <= 0)
			goto fail_errno;
		off += (uint64_t)n;
	}
	if (fsync(out) < 0)
		goto fail_errno;
	close(out);
	if (rename(tmp, dst) < 0) {
		int e = errno;
		unlink(tmp);
		return err_set_errno(e, "cannot rename '%s' to '%s'", tmp, dst);
	}
	return 0;
fail_errno: {
	int e = errno ? errno : EIO;
	close(out);
	unlink(tmp);
	return err_set_errno(e, "cannot write '%s'", dst);
}
}

static int local_write_file(struct storage *st, const char *key, const char *path)
{
	char p[PATH_MAX];
	_cleanup_close_ int in = -1;
	if (local_path(st, key, p) < 0)
		return -1;
	in = open(path, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return err_set_errno(errno, "cannot open '%s'", path);
	return publish_fd(in, p);
}

static int local_write_buf(struct storage *st, const char *key, const void *buf, size_t len)
{
	char p[PATH_MAX];
	if (local_path(st, key, p) < 0 || parent_dir(p) < 0)
		return -1;
	return write_file_atomic(p, buf, len, 0644);
}

static int local_download(struct storage *st, const char *key, const char *path)
{
	char p[PATH_MAX];
	_cleanup_close_ int in = -1;
	if (local_path(st, key, p) < 0)
		return -1;
	in = open(p, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return err_set_errno(errno, "cannot open '%s'", p);
	return publish_fd(in, path);
}

struct keylist {
	char **keys;
	size_t n, cap;
};

static int keylist_add(struct keylist *kl, const char *key)
{
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 16;
		char **k = realloc(kl->keys, cap * sizeof(*k));
		if (!k)
			return err_set_errno(ENOMEM, "cannot list objects");
		kl->keys = k;
		kl->cap = cap;
	}
	if (!(kl->keys[kl->n] = strdup(key)))
		return err_set_errno(ENOMEM, "cannot list objects");
	kl->n++;
	return 0;
}

static int walk(const char *root, const char *rel, const char *prefix, struct keylist *kl)
{
	char dirpath[PATH_MAX];
	DIR *d;
	struct dirent *e;
	snprintf(dirpath, sizeof(dirpath), "%s%s%s", root, *rel ? "/" : "", rel);
	d = opendir(dirpath);
	if (!d)
		return errno == ENOENT ? 0 : err_set_errno(errno, "cannot list '%s'", dirpath);
	while ((e = readdir(d))) {
		char child[PATH_MAX];
		struct stat sb;
		char full[PATH_MAX * 2];
		if (e->d_name[0] == '.' || strstr(e->d_name, ".tmp."))
			continue;
		snprintf(child, sizeof(child), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
		snprintf(full, sizeof(full), "%s/%s", root, child);
		if (lstat(full, &sb) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			/* descend only where the prefix can still match */
			size_t cl = strlen(child);
			if (strncmp(child, prefix, MIN(cl, strlen(prefix))) != 0)
				continue;
			if (walk(root, child, prefix, kl) < 0) {
				closedir(d);
				return -1;
			}
		} else if (S_ISREG(sb.st_mode) && !strncmp(child, prefix, strlen(prefix))) {
			if (keylist_add(kl, child) < 0) {
				closedir(d);
				return -1;
			}
		}
	}
	closedir(d);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int local_list(struct storage *st, const char *prefix, char ***keys, size_t *n)
{
	struct keylist kl = { 0 };
	if (walk(st->local_dir, "", prefix, &kl) < 0) {
		storage_list_free(kl.keys, kl.n);
		return -1;
	}
	if (kl.n)
		qsort(kl.keys, kl.n, sizeof(char *), cmp_str);
	*keys = kl.keys;
	*n = kl.n;
	return 0;
}

static int local_delete_prefix(struct storage *st, const char *prefix)
{
	char p[PATH_MAX];
	char **keys;
	size_t n;
	size_t len = strlen(prefix);
	if (prefix[len - 1] == '/') {
		if (local_path(st, prefix, p) < 0)
			return -1;
		p[strlen(p) - 1] = 0;
		return remove_tree(p);
	}
	if (local_list(st, prefix, &keys, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (local_path(st, keys[i], p) == 0 && unlink(p) < 0 && errno != ENOENT) {
			err_set_errno(errno, "cannot remove '%s'", p);
			storage_list_free(keys, n);
			return -1;
		}
	}
	storage_list_free(keys, n);
	return 0;
}

static int local_crc32c(struct storage *st, const char *key, uint32_t *crc, bool *known)
{
	char p[PATH_MAX];
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	uint32_t c = 0;
	if (local_path(st, key, p) < 0)
		return -1;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set_errno(errno, "cannot open '%s'", p);
	buf = malloc(1 << 20);
	if (!buf)
		return err_set_errno(ENOMEM, "cannot checksum '%s'", p);
	for (;;) {
		ssize_t r = read(fd, buf, 1 << 20);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return err_set_errno(errno, "cannot read '%s'", p);
		if (r == 0)
			break;
		c = crc32c_update(c, buf, (size_t)r);
	}
	*crc = c;
	*known = true;
	return 0;
}

static int local_obj_read(struct storage_object *o, void *buf, size_t len, uint64_t off)
{
	int fd = (int)(intptr_t)o->priv;
	if (full_pread(fd, buf, len, off) < 0)
		return err_set_errno(errno == ENODATA ? EIO : errno,
				     "cannot read %zu bytes at offset %llu of '%s/%s'", len,
				     (unsigned long long)off, o->st->local_dir, o->key);
	return 0;
}

static void local_obj_close(struct storage_object *o)
{
	close((int)(intptr_t)o->priv);
	free(o->key);
	free(o);
}

static const struct storage_object_ops local_obj_ops = {
	.read = local_obj_read,
	.close = local_obj_close,
};

static struct storage_object *local_object_open(struct storage *st, const char *key)
{
	char p[PATH_MAX];
	struct storage_object *o;
	struct stat sb;
	int fd;
	if (local_path(st, key, p) < 0)
		return NULL;
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err_set_errno(errno, "cannot open '%s'", p);
		return NULL;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		err_set_errno(errno ? errno : EINVAL, "cannot open '%s'", p);
		close(fd);
		return NULL;
	}
	o = calloc(1, sizeof(*o));
	if (!o || !(o->key = strdup(key))) {
		free(o);
		close(fd);
		err_set_errno(ENOMEM, "cannot open '%s'", p);
		return NULL;
	}
	o->ops = &local_obj_ops;
	o->st = st;
	o->size = (uint64_t)sb.st_size;
	o->priv = (void *)(intptr_t)fd;
	return o;
}

static void local_free(struct storage *st)
{
	free(st->describe);
	free(st->local_dir);
	free(st);
}

static const struct storage_ops local_ops = {
	.name = "local",
	.size = local_size,
	.read_all = local_read_all,
	.write_file = local_write_file,
	.write_buf = local_write_buf,
	.download = local_download,
	.delete_prefix = local_delete_prefix,
	.list = local_list,
	.crc32c = local_crc32c,
	.object_open = local_object_open,
	.free = local_free,
};

struct storage *local_storage_open(const char *dir, bool create)
{
	char abs[PATH_MAX], tdir[PATH_MAX + 16];
	struct storage *st;
	struct stat sb;
	if (stat(dir, &sb) < 0) {
		if (errno != ENOENT || !create) {
			err_set_errno(errno, "cannot open storage '%s'", dir);
			return NULL;
		}
		if (mkdir_p(dir, 0755) < 0)
			return NULL;
	} else if (!S_ISDIR(sb.st_mode)) {
		err_set_errno(ENOTDIR, "cannot open storage '%s'", dir);
		return NULL;
	}
	if (!realpath(dir, abs)) {
		err_set_errno(errno, "cannot resolve storage '%s'", dir);
		return NULL;
	}
	snprintf(tdir, sizeof(tdir), "%s/templates", abs);
	if (stat(tdir, &sb) == 0 && S_ISDIR(sb.st_mode))
		snprintf(abs, sizeof(abs), "%s", tdir);
	st = calloc(1, sizeof(*st));
	if (!st || !(st->local_dir = strdup(abs)) || !(st->describe = strdup(abs))) {
		if (st)
			free(st->local_dir);
		free(st);
		err_set_errno(ENOMEM, "cannot open storage '%s'", dir);
		return NULL;
	}
	st->ops = &local_ops;
	return st;
}
