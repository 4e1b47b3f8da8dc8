/*
 * util.c - small helpers of orch-init: console messages with boot timestamps, idempotent
 * mounts, mkdir -p. Everything reports on the console itself (PID 1 has nobody to return
 * errors to) and keeps going where it can.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

double uptime_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void say(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one write per line so lines from several processes never interleave mid-line */
	dprintf(STDERR_FILENO, "[%12.6f] orch-init: %s\n", uptime_s(), msg);
}

void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int mkdir_p_mode(const char *path, unsigned mode)
{
	char buf[INIT_PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -1;
	return 0;
}

bool is_mountpoint(const char *path)
{
	char parent[INIT_PATH_MAX];
	struct stat a, b;

	if (snprintf(parent, sizeof(parent), "%s/..", path) >= (int)sizeof(parent))
		return false;
	if (stat(path, &a) < 0 || stat(parent, &b) < 0)
		return false;
	/* a different device, or the same inode as the parent (a filesystem root) */
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

int mount_once(const char *src, const char *target, const char *fstype, unsigned long flags,
	       const char *data)
{
	if (mkdir_p_mode(target, 0755) < 0) {
		say("cannot create %s: %s", target, strerror(errno));
		return -1;
	}
	if (is_mountpoint(target))
		return 0;
	if (mount(src, target, fstype, flags, data) < 0) {
		say("cannot mount %s on %s: %s", fstype, target, strerror(errno));
		return -1;
	}
	return 0;
}
