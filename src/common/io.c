/*
 * io.c - whole-transfer read/write helpers (retry on EINTR and short transfers), atomic file
 * writes (temp + fsync + rename in the same directory) and directory helpers.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common.h"

int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = ENODATA;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int full_read(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0) {
			errno = ENODATA;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int full_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void *read_file(const char *path, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	if (fd < 0) {
		err_set_errno(errno, "cannot open '%s'", path);
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		err_set_errno(errno, "cannot stat '%s'", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		err_set("cannot read '%s': not a regular file", path);
		return NULL;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		err_set_errno(ENOMEM, "cannot read '%s'", path);
		return NULL;
	}
	if (st.st_size > 0 && full_pread(fd, buf, (size_t)st.st_size, 0) < 0) {
		err_set_errno(errno == ENODATA ? EIO : errno, "cannot read '%s'", path);
		free(buf);
		return NULL;
	}
	buf[st.st_size] = 0;
	*len = (size_t)st.st_size;
	return buf;
}

int write_file_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	int fd;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return err_set("cannot write '%s': path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return err_set_errno(errno, "cannot create '%s'", tmp);
	if (full_write(fd, buf, len) < 0 || fsync(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		return err_set_errno(e, "cannot write '%s'", tmp);
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return err_set_errno(e, "cannot rename '%s' to '%s'", tmp, path);
	}
	return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return err_set("cannot create directory '%s': bad path", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return err_set_errno(errno, "cannot create directory '%s'", buf);
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return err_set_errno(errno, "cannot create directory '%s'", buf);
	return 0;
}

static int remove_tree_at(int dfd, const char *name, dev_t dev)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : err_set_errno(errno, "cannot stat '%s'", name);
	if (S_ISDIR(st.st_mode)) {
		int fd;
		DIR *d;
		struct dirent *e;
		if (st.st_dev != dev)
			return err_set("cannot remove '%s': it is a mount point", name);
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return err_set_errno(errno, "cannot open directory '%s'", name);
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return err_set_errno(errno, "cannot open directory '%s'", name);
		}
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (remove_tree_at(dirfd(d), e->d_name, dev) < 0) {
				closedir(d);
				return -1;
			}
		}
		closedir(d);
		if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			return err_set_errno(errno, "cannot remove directory '%s'", name);
		return 0;
	}
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return err_set_errno(errno, "cannot remove '%s'", name);
	return 0;
}

int remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : err_set_errno(errno, "cannot stat '%s'", path);
	return remove_tree_at(AT_FDCWD, path, st.st_dev);
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cleanup_freep(void *p)
{
	free(*(void **)p);
}

void cleanup_closep(int *fd)
{
	if (*fd >= 0) {
		int e = errno;
		close(*fd);
		errno = e;
	}
}

void cleanup_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
