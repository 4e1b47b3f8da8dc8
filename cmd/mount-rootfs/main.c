/*
 * mount-rootfs - mounts a build's rootfs on the host through the block layer (reference
 * spec §1.4): the build's layered rootfs plus a throwaway copy-on-write layer, attached as a
 * block device (kernel nbd when the module is loaded, else a FUSE single-file export with a
 * loop device over it), mounted ext4 read-write at -mount. Blocks until SIGINT/SIGTERM, then
 * unmounts and removes everything it created. -verify runs `e2fsck -fn` on the device
 * instead and exits with its verdict.
 *
 * Host state (CONTRACTS §6): a work directory SANDBOX_CACHE_DIR/mount-rootfs-<random>/ with
 * a held lock file, the COW file, the FUSE mount point and a `state` file naming the loop
 * device and mount point. At start, work directories of dead mount-rootfs processes are
 * cleaned: their mount is lazily unmounted (only if it is still the loop device they
 * recorded), then the directory is removed.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "block/block.h"
#include "block/fusedev.h"
#include "common/flags.h"
#include "nbd/nbd.h"
#include "storage/storage.h"

extern char **environ;

struct mount_state {
	struct storage *st;
	struct block_build *build;
	struct block_source src;
	struct block_dir dir;
	struct cow *cow;
	struct fusedev *fuse;
	struct nbd_server *srv;
	int nbd_index;
	int loop_fd;
	char dev[64];
	char fuse_dir[PATH_MAX];
	const char *mount_path;
	bool mounted, created_mount_dir;
};

/* Is `dev` mounted at `path` according to /proc/mounts? */
static bool mounted_at(const char *dev, const char *path)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/mounts", "re");
	char src[PATH_MAX], dst[PATH_MAX];
	if (!f)
		return false;
	while (fscanf(f, "%4095s %4095s %*[^\n]", src, dst) == 2)
		if (!strcmp(src, dev) && !strcmp(dst, path))
			return true;
	return false;
}

static void reap_one(const char *dir, void *opaque)
{
	char p[PATH_MAX], dev[PATH_MAX] = "", mnt[PATH_MAX] = "";
	_cleanup_fclose_ FILE *f = NULL;
	(void)opaque;
	snprintf(p, sizeof(p), "%s/state", dir);
	f = fopen(p, "re");
	if (f && fscanf(f, "dev %4095s\nmount %4095s", dev, mnt) >= 1 && *mnt &&
	    mounted_at(dev, mnt)) {
		log_info("cleaning up after a dead mount-rootfs: unmounting %s from %s", dev, mnt);
		umount2(mnt, MNT_DETACH);
	}
}

static int run_e2fsck(const char *dev, int *status)
{
	char *argv[] = { "e2fsck", "-fn", (char *)dev, NULL };
	posix_spawnattr_t attr;
	sigset_t none;
	pid_t pid;
	int e;
	/* our signal mask blocks SIGINT/SIGTERM (for sigwait); e2fsck gets the default one */
	sigemptyset(&none);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	e = posix_spawnp(&pid, "e2fsck", NULL, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	if (e)
		return err_set_errno(e, "cannot run e2fsck");
	while (waitpid(pid, status, 0) < 0)
		if (errno != EINTR)
			return err_set_errno(errno, "cannot wait for e2fsck");
	return 0;
}

static void unmount_retry(const char *path)
{
	/* the reference retries every 600 ms for 30 s; then detach lazily */
	for (int i = 0; i < 50; i++) {
		if (umount2(path, 0) == 0 || errno == EINVAL || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		nanosleep(&(struct timespec){ 0, 600000000 }, NULL);
	}
	log_warn("cannot unmount '%s' (%s): detaching it lazily", path, strerror(errno));
	umount2(path, MNT_DETACH);
}

static void teardown(struct mount_state *m)
{
	if (m->mounted)
		unmount_retry(m->mount_path);
	if (m->created_mount_dir)
		rmdir(m->mount_path);
	if (m->loop_fd >= 0)
		loop_detach(m->loop_fd);
	m->loop_fd = -1;
	if (m->nbd_index >= 0 && nbd_kernel_detach(m->nbd_index) < 0)
		log_warn("%s", err_msg());
	nbd_server_free(m->srv);
	fusedev_stop(m->fuse);
	cow_free(m->cow);
	block_build_close(m->build);
	storage_free(m->st);
	block_dir_release(&m->dir);
}

static __attribute__((noreturn)) void fail(struct mount_state *m)
{
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	teardown(m);
	die("%s", msg);
}

int main(int argc, char **argv)
{
	const char *build = "", *storage_flag = "", *mount_path = "";
	bool verify = false, empty = false, verbose = false;
	uint64_t size = 1ull << 30, block_size = 4096;
	struct flag fl[] = {
		FLAG_DEF("build", FLAG_STRING, &build, "build id whose rootfs to mount"),
		FLAG_DEF("storage", FLAG_STRING, &storage_flag, "storage location (default: TEMPLATE_BUCKET_NAME or .local-build)"),
		FLAG_DEF("mount", FLAG_STRING, &mount_path, "mount point (created when missing)"),
		FLAG_DEF("verify", FLAG_BOOL, &verify, "run e2fsck -fn on the device and exit with its verdict"),
		FLAG_DEF("empty", FLAG_BOOL, &empty, "serve an empty (zero) device instead of a build"),
		FLAG_DEF("size", FLAG_U64, &size, "device size with -empty"),
		FLAG_DEF("block-size", FLAG_U64, &block_size, "block size with -empty"),
		FLAG_DEF("v", FLAG_BOOL, &verbose, "verbose"),
	};
	struct flagset fs = {
		.prog = "mount-rootfs",
		.synopsis = "-build ID [-storage DIR] -mount PATH [-verify] [-empty -size N -block-size N] [-v]",
		.about = "Serves a build's rootfs with a throwaway copy-on-write layer, attaches it as a block device "
			 "(kernel nbd, or FUSE + loop device) and mounts it read-write until Ctrl-C.",
		.flags = fl,
		.nflags = ARRAY_SIZE(fl),
	};
	struct mount_state m = { .nbd_index = -1, .loop_fd = -1, .dir = { .lock_fd = -1 } };
	char id[UUID_STR_LEN + 1], cowpath[PATH_MAX], state[PATH_MAX * 2 + 32], abs_mount[PATH_MAX];
	_cleanup_free_ char *sandbox_dir = NULL, *loc = NULL;
	sigset_t set;
	int sig;

	log_set_prog("mount-rootfs");
	flags_parse(&fs, argc, argv);
	if (verbose)
		log_set_level(LOG_DEBUG);
	if (!empty && !*build)
		flags_usage_error(&fs, "-build is required (or -empty)");
	if (empty && (block_size < 512 || (block_size & (block_size - 1)) || size == 0 || size % block_size))
		flags_usage_error(&fs, "-size must be a positive multiple of -block-size (a power of two >= 512)");
	m.mount_path = mount_path;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* the device: layered build (or zeros) + COW */
	if (empty) {
		m.src = block_zero_source(size, block_size);
	} else {
		if (build_id_canonical(build, id) < 0)
			fail(&m);
		loc = storage_location_resolve(storage_flag);
		if (!loc || !(m.st = storage_open(loc, false)))
			fail(&m);
		if (!(m.build = block_build_open(m.st, id, BUILD_KIND_ROOTFS)))
			fail(&m);
		m.src = block_build_source(m.build);
	}
	if (!(sandbox_dir = block_sandbox_dir()))
		fail(&m);
	block_dir_reap(sandbox_dir, "mount-rootfs", reap_one, NULL);
	if (block_dir_claim(&m.dir, sandbox_dir, "mount-rootfs") < 0)
		fail(&m);
	snprintf(cowpath, sizeof(cowpath), "%s/rootfs.cow", m.dir.path);
	if (!(m.cow = cow_new(&m.src, cowpath)))
		fail(&m);
	if (empty)
		printf("serving an empty %llu byte device (block size %llu), copy-on-write layer %s\n",
		       (unsigned long long)size, (unsigned long long)block_size, cowpath);
	else
		printf("serving rootfs of build %s from %s (%llu bytes, generation %llu, %zu mappings), copy-on-write layer %s\n",
		       id, storage_describe(m.st), (unsigned long long)m.src.size,
		       (unsigned long long)block_build_header(m.build)->generation,
		       block_build_header(m.build)->nmaps, cowpath);

	/* attach */
	if (nbd_kernel_available()) {
		struct nbd_export exp = { .name = "", .size = cow_size(m.cow), .ops = &cow_nbd_ops, .opaque = m.cow };
		if (!(m.srv = nbd_server_new(&exp)) ||
		    nbd_kernel_attach(m.srv, cow_size(m.cow), 4096, 4, &m.nbd_index) < 0)
			fail(&m);
		snprintf(m.dev, sizeof(m.dev), "/dev/nbd%d", m.nbd_index);
		printf("attached through the kernel nbd driver as %s (4 connections)\n", m.dev);
	} else {
		char file[PATH_MAX + 16];
		snprintf(m.fuse_dir, sizeof(m.fuse_dir), "%s/fuse", m.dir.path);
		if (mkdir(m.fuse_dir, 0700) < 0) {
			err_set_errno(errno, "cannot create '%s'", m.fuse_dir);
			fail(&m);
		}
		if (!(m.fuse = fusedev_start(m.fuse_dir, "rootfs.ext4", cow_size(m.cow), &cow_nbd_ops, m.cow)))
			fail(&m);
		snprintf(file, sizeof(file), "%s/rootfs.ext4", m.fuse_dir);
		if (loop_attach(file, 0, m.dev, sizeof(m.dev), &m.loop_fd) < 0)
			fail(&m);
		printf("no nbd kernel module: exported through FUSE as %s, attached to %s\n", file, m.dev);
	}
	if (*mount_path) {
		/* an absolute path, as /proc/mounts will show it (for the reaper) */
		struct stat sb;
		if (stat(mount_path, &sb) < 0) {
			if (errno != ENOENT || mkdir_p(mount_path, 0755) < 0) {
				err_set_errno(errno, "cannot create mount point '%s'", mount_path);
				fail(&m);
			}
			m.created_mount_dir = true;
		}
		if (!realpath(mount_path, abs_mount)) {
			err_set_errno(errno, "cannot resolve mount point '%s'", mount_path);
			fail(&m);
		}
		m.mount_path = mount_path = abs_mount;
	}
	snprintf(state, sizeof(state), "dev %s\nmount %s\n", m.dev, *mount_path ? mount_path : "-");
	{
		char sp[PATH_MAX];
		snprintf(sp, sizeof(sp), "%s/state", m.dir.path);
		if (write_file_atomic(sp, state, strlen(state), 0600) < 0)
			fail(&m);
	}
	fflush(stdout);

	if (verify) {
		int status = 0;
		if (run_e2fsck(m.dev, &status) < 0)
			fail(&m);
		teardown(&m);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			printf("e2fsck: file system is clean\n");
			return 0;
		}
		die("e2fsck -fn %s: file system has problems (e2fsck exit status %d)", m.dev,
		    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}

	if (*mount_path) {
		if (mount(m.dev, mount_path, "ext4", 0, "") < 0) {
			err_set_errno(errno, "cannot mount %s at '%s' as ext4", m.dev, mount_path);
			fail(&m);
		}
		m.mounted = true;
		printf("mounted %s at %s (ext4, read-write; writes go to the copy-on-write layer)\n", m.dev,
		       mount_path);
	}
	printf("press Ctrl-C to unmount and clean up\n");
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	printf("got %s: cleaning up\n", strsignal(sig));
	if (verbose)
		printf("copy-on-write layer held %llu blocks; %llu remote chunks fetched\n",
		       (unsigned long long)cow_written_blocks(m.cow),
		       (unsigned long long)(m.build ? block_build_fetched(m.build) : 0));
	teardown(&m);
	printf("unmounted, detached %s and removed the work directory\n", m.dev);
	return 0;
}
