/*
 * init.h - orch-init, the guest's PID 1 (docs/guest.md).
 *
 * One static binary with two roles, chosen by where it runs:
 *  - early stage: PID 1 of the initramfs (initrd.img's /init): loads the boot modules, mounts
 *    the root disk and switch_roots into the real init named by init= on the command line;
 *  - real init: PID 1 on the root disk (init=/usr/bin/orch-init): mounts the API filesystems,
 *    configures lo and eth0 from ip=, sets the hostname, supervises envd, reaps zombies and
 *    powers off cleanly on a signal.
 * Not PID 1 it only offers diagnostics (-check-cmdline). Single-threaded; no libc NSS, no
 * heap beyond a few small buffers, nothing in src/common (the guest binary stays tiny).
 */
#ifndef ORCH_GUEST_INIT_H
#define ORCH_GUEST_INIT_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#define INIT_PATH_MAX 256
#define INIT_ENVD_DEFAULT "/usr/bin/envd"
#define INIT_REAL_DEFAULT "/usr/bin/orch-init"
#define INIT_HOOK_PATH "/etc/orch-init/start"
/* Boot modules: <dir>/modules.order lists names, <dir>/<name>.ko are the files. */
#define INIT_MODULES_FMT "/lib/modules/%s/orch-boot"

/* ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:... (kernel syntax) */
struct ip_config {
	bool set;		/* a usable static address was given */
	struct in_addr addr, gw;
	int prefix;		/* 0..32 */
	char hostname[65];
	char dev[IFNAMSIZ];
};

struct boot_config {
	char init[INIT_PATH_MAX];	/* init= : the real init (early stage execs it) */
	char root[INIT_PATH_MAX];	/* root= : default /dev/vda */
	char rootfstype[32];		/* rootfstype= : default ext4 */
	char rootflags[INIT_PATH_MAX];	/* rootflags= : fs-specific mount data */
	bool ro;			/* "ro" given (default: read-write) */
	unsigned rootwait_ms;		/* orch.rootwait= (ms to wait for the root device) */
	char envd[INIT_PATH_MAX];	/* orch.envd= : default /usr/bin/envd */
	bool envd_off;			/* orch.envd=off : do not start envd */
	struct ip_config ip;
	char ip_error[128];		/* why ip= was ignored ("" when fine or absent) */
};

/* cmdline.c: parse a kernel command line (the text of /proc/cmdline). Never fails: bad or
 * unsupported values fall back to defaults and are described in cfg->ip_error. */
void cmdline_parse(const char *text, struct boot_config *cfg);
/* Reads /proc/cmdline (must be mounted) into buf. 0 / -1 with errno. */
int cmdline_read(char *buf, size_t len);
/* Writes a description of cfg to fd, one "key=value" per line (for -check-cmdline). */
void cmdline_print(int fd, const struct boot_config *cfg);

/* util.c */
/* Prints "[  1.234567] orch-init: <msg>" on stderr (the console for PID 1). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
double uptime_s(void);
/* Mounts fstype on target unless target is already a mount point; creates target. 0 / -1. */
int mount_once(const char *src, const char *target, const char *fstype, unsigned long flags,
	       const char *data);
bool is_mountpoint(const char *path);
int mkdir_p_mode(const char *path, unsigned mode);
/* Sleeps ms milliseconds (restarted on EINTR). */
void sleep_ms(unsigned ms);

/* modules.c: loads the modules named in dir/modules.order in order; missing dir is fine.
 * Returns the number that failed to load (already-loaded ones are fine). */
int modules_load_dir(const char *dir);
/* The boot module directory for the running kernel (INIT_MODULES_FMT). */
void modules_dir(char *buf, size_t len);

/* net.c: brings lo up; when ip->set, waits for ip->dev, assigns the address, brings it up and
 * adds the default route. 0 / -1 (messages already printed). */
int net_setup(const struct ip_config *ip);

/* early.c: the initramfs stage. Returns only on failure (after printing why). */
void early_main(char **argv);

#endif
