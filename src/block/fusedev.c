/*
 * fusedev.c - exports a block device (nbd_dev_ops) as one regular file in a private FUSE
 * mount, and attaches a loop device to that file. This is how mount-rootfs mounts a served
 * rootfs on hosts without the nbd kernel module (PLATFORM §4): FUSE file -> /dev/loopN -> ext4.
 *
 * The FUSE file system (libfuse3 high-level API) has a root directory with one file; its
 * reads and writes call the device ops directly (direct_io, so the page cache sits only above
 * the loop device, once). fallocate(PUNCH_HOLE) and fsync map to trim and flush.
 * The session runs in its own thread (fuse_loop_mt) until fusedev_stop unmounts it.
 *
 * Loop devices are configured atomically with LOOP_CONFIGURE and LO_FLAGS_AUTOCLEAR, so the
 * kernel frees them when the last user goes away even if we die; loop_detach clears them
 * explicitly as well.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse3/fuse.h>
#include <linux/falloc.h>
#include <linux/loop.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "fusedev.h"

struct fusedev {
	struct fuse *fuse;
	pthread_t thread;
	bool running;
	char *mountpoint;
	char *name; /* "/<file>" */
	uint64_t size;
	const struct nbd_dev_ops *ops;
	void *opaque;
};

static struct fusedev *fd_self(void)
{
	return fuse_get_context()->private_data;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->direct_io = 1;
	cfg->kernel_cache = 0;
	cfg->attr_timeout = 3600;
	cfg->entry_timeout = 3600;
	return fuse_get_context()->private_data;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct fusedev *f = fd_self();
	(void)fi;
	memset(st, 0, sizeof(*st));
	if (!strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
		return 0;
	}
	if (strcmp(path, f->name))
		return -ENOENT;
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_size = (off_t)f->size;
	st->st_blocks = (blkcnt_t)(f->size / 512);
	st->st_blksize = 4096;
	return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fusedev *f = fd_self();
	(void)off;
	(void)fi;
	(void)flags;
	if (strcmp(path, "/"))
		return -ENOTDIR;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	fill(buf, f->name + 1, NULL, 0, 0);
	return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
	if (strcmp(path, fd_self()->name))
		return -ENOENT;
	fi->direct_io = 1;
	return 0;
}

static int fs_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi)
{
	struct fusedev *f = fd_self();
	(void)path;
	(void)fi;
	if (off < 0)
		return -EINVAL;
	if ((uint64_t)off >= f->size)
		return 0;
	len = (size_t)MIN((uint64_t)len, f->size - (uint64_t)off);
	if (f->ops->read(f->opaque, buf, len, (uint64_t)off) < 0)
		return -(errno ? errno : EIO);
	return (int)len;
}

static int fs_write(const char *path, const char *buf, size_t len, off_t off,
		    struct fuse_file_info *fi)
{
	struct fusedev *f = fd_self();
	(void)path;
	(void)fi;
	if (off < 0 || (uint64_t)off + len > f->size)
		return -ENOSPC;
	if (f->ops->write(f->opaque, buf, len, (uint64_t)off) < 0)
		return -(errno ? errno : EIO);
	return (int)len;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	struct fusedev *f = fd_self();
	(void)path;
	(void)datasync;
	(void)fi;
	if (f->ops->flush && f->ops->flush(f->opaque) < 0)
		return -(errno ? errno : EIO);
	return 0;
}

static int fs_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return 0;
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct fusedev *f = fd_self();
	(void)path;
	(void)fi;
	if (off < 0 || len < 0 || (uint64_t)off + (uint64_t)len > f->size)
		return -EINVAL;
	if (!(mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_ZERO_RANGE))
		return mode ? -EOPNOTSUPP : 0; /* plain allocation: the space is always there */
	if (f->ops->zero ? f->ops->zero(f->opaque, (uint64_t)len, (uint64_t)off) < 0
			 : (f->ops->trim && f->ops->trim(f->opaque, (uint64_t)len, (uint64_t)off) < 0))
		return -(errno ? errno : EIO);
	return 0;
}

static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	(void)path;
	(void)fi;
	return (uint64_t)size == fd_self()->size ? 0 : -EPERM;
}

static const struct fuse_operations fs_ops = {
	.init = fs_init,
	.getattr = fs_getattr,
	.readdir = fs_readdir,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	.fsync = fs_fsync,
	.flush = fs_flush,
	.fallocate = fs_fallocate,
	.truncate = fs_truncate,
};

static void *loop_main(void *arg)
{
	struct fusedev *f = arg;
	struct fuse_loop_config cfg = { .clone_fd = 0, .max_idle_threads = 8 };
	fuse_loop_mt(f->fuse, &cfg);
	return NULL;
}

struct fusedev *fusedev_start(const char *mountpoint, const char *file, uint64_t size,
			      const struct nbd_dev_ops *ops, void *opaque)
{
	char *argv[] = { "orch-fusedev", "-o", "default_permissions,fsname=orch-fusedev,subtype=orch", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	struct fusedev *f = calloc(1, sizeof(*f));
	int e;
	if (!f || !(f->mountpoint = strdup(mountpoint)) || asprintf(&f->name, "/%s", file) < 0) {
		if (f)
			free(f->mountpoint);
		free(f);
		err_set_errno(ENOMEM, "cannot start FUSE export");
		return NULL;
	}
	f->size = size;
	f->ops = ops;
	f->opaque = opaque;
	f->fuse = fuse_new(&args, &fs_ops, sizeof(fs_ops), f);
	fuse_opt_free_args(&args);
	if (!f->fuse) {
		err_set("cannot create FUSE file system (is /dev/fuse available?)");
		goto err;
	}
	if (fuse_mount(f->fuse, mountpoint) != 0) {
		err_set("cannot mount FUSE file system at '%s'", mountpoint);
		fuse_destroy(f->fuse);
		f->fuse = NULL;
		goto err;
	}
	e = pthread_create(&f->thread, NULL, loop_main, f);
	if (e) {
		err_set_errno(e, "cannot start FUSE thread");
		fuse_unmount(f->fuse);
		fuse_destroy(f->fuse);
		f->fuse = NULL;
		goto err;
	}
	f->running = true;
	return f;
err:
	free(f->mountpoint);
	free(f->name);
	free(f);
	return NULL;
}

void fusedev_stop(struct fusedev *f)
{
	if (!f)
		return;
	if (f->fuse) {
		fuse_exit(f->fuse);
		fuse_unmount(f->fuse); /* ends the session: the loop thread returns */
		if (f->running)
			pthread_join(f->thread, NULL);
		fuse_destroy(f->fuse);
	}
	free(f->mountpoint);
	free(f->name);
	free(f);
}

/* ---- loop devices ---- */

int loop_attach(const char *file, uint32_t block_size, char *dev, size_t devlen, int *loop_fd)
{
	_cleanup_close_ int ctl = -1, ffd = -1;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return err_set_errno(errno, "cannot open /dev/loop-control");
	ffd = open(file, O_RDWR | O_CLOEXEC);
	if (ffd < 0)
		return err_set_errno(errno, "cannot open '%s'", file);
	for (int tries = 0; tries < 16; tries++) {
		struct loop_config cfg;
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		int lfd;
		if (n < 0)
			return err_set_errno(errno, "cannot get a free loop device");
		snprintf(dev, devlen, "/dev/loop%d", n);
		lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0)
			return err_set_errno(errno, "cannot open '%s'", dev);
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (uint32_t)ffd;
		cfg.block_size = block_size;
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", file);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			*loop_fd = lfd;
			return 0;
		}
		close(lfd);
		if (errno != EBUSY)
			return err_set_errno(errno, "cannot attach '%s' to %s", file, dev);
		/* another process took it between GET_FREE and CONFIGURE: try the next */
	}
	return err_set_errno(EBUSY, "cannot find a free loop device");
}

void loop_detach(int loop_fd)
{
	if (loop_fd < 0)
		return;
	ioctl(loop_fd, LOOP_CLR_FD, 0); /* with AUTOCLEAR this also happens on last close */
	close(loop_fd);
}
