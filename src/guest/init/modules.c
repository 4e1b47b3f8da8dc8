/*
 * modules.c - loads the boot modules (virtio-mmio, virtio-blk, virtio-net and their
 * dependencies) with finit_module(2), in the order of a modules.order file, so no modprobe,
 * depmod or busybox is needed. The order file lists bare names (one per line, '#' comments);
 * dependencies come first, which is how scripts/kernel.sh writes it. A module that is already
 * loaded (EEXIST) counts as loaded. Compressed modules (.ko.xz/.ko.zst) are handed to the
 * kernel to decompress when it can (MODULE_INIT_COMPRESSED_FILE, Linux 5.17+).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "init.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

void modules_dir(char *buf, size_t len)
{
	struct utsname u;

	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "unknown");
	snprintf(buf, len, INIT_MODULES_FMT, u.release);
}

/* 0 loaded (or already), -1 failed (printed), 1 no file for that name */
static int load_one(const char *dir, const char *name)
{
	static const struct { const char *ext; int flags; } kinds[] = {
		{ ".ko", 0 },
		{ ".ko.xz", MODULE_INIT_COMPRESSED_FILE },
		{ ".ko.zst", MODULE_INIT_COMPRESSED_FILE },
	};
	char path[INIT_PATH_MAX];

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int fd, rc;

		snprintf(path, sizeof(path), "%s/%s%s", dir, name, kinds[i].ext);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		rc = (int)syscall(SYS_finit_module, fd, "", kinds[i].flags);
		close(fd);
		if (rc < 0 && errno != EEXIST) {
			say("cannot load module %s: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	return 1;
}

int modules_load_dir(const char *dir)
{
	char path[INIT_PATH_MAX], line[128];
	int failed = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/modules.order", dir);
	f = fopen(path, "re");
	if (!f)
		return 0;	/* nothing to load: everything built in, or loaded earlier */
	while (fgets(line, sizeof(line), f)) {
		char *s = line, *e;

		s[strcspn(s, "#\r\n")] = '\0';
		while (*s == ' ' || *s == '\t')
			s++;
		for (e = s + strlen(s); e > s && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		if (!*s || strchr(s, '/'))
			continue;
		int rc = load_one(dir, s);
		if (rc < 0)
			failed++;
		else if (rc > 0) {
			say("module %s listed in %s but no file", s, path);
			failed++;
		}
	}
	fclose(f);
	return failed;
}
