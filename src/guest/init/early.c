/*
 * early.c - the initramfs stage (initrd.img's /init): load the boot modules, mount the root
 * disk (root=, default /dev/vda, ext4, read-write unless "ro") on /newroot, move /dev, /proc
 * and /sys into it, empty the initramfs (its memory is freed), make /newroot the root and exec
 * the real init (init=, default /usr/bin/orch-init; /sbin/init for images with systemd; when
 * the named one is missing, /usr/bin/orch-init, then /sbin/init).
 * The same steps as switch_root(8), without busybox. Kernel arguments that reached us in argv
 * and the environment are passed on unchanged.
 * A failure prints why and powers the VM off (panic=1 would also end it, but with a less clear
 * message), so a broken image never hangs a boot.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

#define NEWROOT "/newroot"

extern char **environ;

static void fatal(const char *what)
{
	say("early init failed: %s; powering off", what);
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* Removes everything under the directory fd that lives on device dev (the initramfs). */
static void remove_tree(int dfd, dev_t dev)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;

	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			if (sub >= 0)
				remove_tree(sub, dev);
			unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd(d), e->d_name, 0);
		}
	}
	closedir(d);
}

static int mount_root(const struct boot_config *cfg)
{
	unsigned long flags = cfg->ro ? MS_RDONLY : 0;
	unsigned waited = 0;

	for (;;) {
		if (mount(cfg->root, NEWROOT, cfg->rootfstype, flags, cfg->rootflags) == 0)
			return 0;
		/* the disk may not have been probed yet: wait for it (rootwait) */
		if ((errno != ENOENT && errno != ENXIO && errno != ENODEV) || waited >= cfg->rootwait_ms)
			return -1;
		sleep_ms(5);
		waited += 5;
	}
}

static void move_api_mount(const char *what)
{
	char dst[INIT_PATH_MAX];
	struct stat st;

	snprintf(dst, sizeof(dst), NEWROOT "%s", what);
	if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode) && mount(what, dst, NULL, MS_MOVE, NULL) == 0)
		return;
	/* no place for it in the new root: the real init mounts its own */
	umount2(what, MNT_DETACH);
}

void early_main(char **argv)
{
	char cmdline[4096], dir[INIT_PATH_MAX], msg[INIT_PATH_MAX + 64], init[INIT_PATH_MAX];
	struct boot_config cfg;
	struct stat st;
	const char *candidates[3];

	mount_once("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_once("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	if (mount_once("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
		fatal("cannot mount devtmpfs");
	if (cmdline_read(cmdline, sizeof(cmdline)) < 0)
		cmdline[0] = '\0';
	cmdline_parse(cmdline, &cfg);

	modules_dir(dir, sizeof(dir));
	modules_load_dir(dir);

	mkdir(NEWROOT, 0755);
	if (mount_root(&cfg) < 0) {
		snprintf(msg, sizeof(msg), "cannot mount %s (%s) on " NEWROOT ": %s", cfg.root,
			 cfg.rootfstype, strerror(errno));
		fatal(msg);
	}

	move_api_mount("/dev");
	move_api_mount("/proc");
	move_api_mount("/sys");

	if (chdir(NEWROOT) < 0)
		fatal("cannot enter the new root");
	/* free the initramfs: everything on the root device that is not the new root */
	if (stat("/", &st) == 0) {
		int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0)
			remove_tree(fd, st.st_dev);
	}
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		fatal("cannot move the new root onto /");
	if (chroot(".") < 0 || chdir("/") < 0)
		fatal("cannot chroot into the new root");

	/* resolved only now: /sbin/init is often an absolute symlink (-> /lib/systemd/systemd)
	 * that means something only inside the new root */
	candidates[0] = cfg.init;
	candidates[1] = INIT_REAL_DEFAULT;
	candidates[2] = "/sbin/init";
	init[0] = '\0';
	for (size_t i = 0; i < 3 && !init[0]; i++) {
		if (access(candidates[i], X_OK) == 0)
			snprintf(init, sizeof(init), "%s", candidates[i]);
		else if (i == 0)
			say("init %s not found on %s: trying the defaults", cfg.init, cfg.root);
	}
	if (!init[0])
		fatal("no init found on the root disk");

	argv[0] = init;
	execve(init, argv, environ);
	snprintf(msg, sizeof(msg), "cannot exec %s: %s", init, strerror(errno));
	fatal(msg);
}
