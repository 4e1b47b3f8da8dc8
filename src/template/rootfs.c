/*
 * rootfs.c - base source -> staged directory -> ext4 image. Everything happens in a private
 * work directory; nothing is mounted (mkfs.ext4 -d builds the image from the directory), so
 * a failure leaves nothing behind but the work directory the caller removes.
 * Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "common/proc.h"
#include "rootfs.h"

#define RUN(log, ...)                                                                              \
	({                                                                                         \
		const char *const _argv[] = { __VA_ARGS__, NULL };                                 \
		int _rc = run_argv(_argv, (log));                                                  \
		_rc == 0 ? 0                                                                       \
			 : (_rc < 0 ? -1 : err_set("'%s' failed with status %d", argv_str(_argv), _rc)); \
	})

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int write_text(const char *root, const char *rel, const char *text, mode_t mode)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	unlink(p); /* may be a symlink pointing out of the image (resolv.conf) */
	return write_file_atomic(p, text, strlen(text), mode);
}

static int copy_file(const char *src, const char *dst, mode_t mode)
{
	size_t len;
	char *buf = read_file(src, &len);
	int r;
	if (!buf)
		return -1;
	unlink(dst);
	r = write_file_atomic(dst, buf, len, mode);
	free(buf);
	if (r == 0 && chmod(dst, mode) < 0)
		return err_set_errno(errno, "cannot chmod '%s'", dst);
	return r;
}

/* The embedded default: busybox-static plus the files a shell environment expects. */
static int stage_busybox(const char *stage, int log)
{
	static const char *dirs[] = { "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp",
				      "run", "root", "home/user", "var/tmp", "var/log", "mnt", "srv" };
	char p[PATH_MAX], list[65536], *line, *save = NULL;
	const char *bb = "/bin/busybox";
	const char *const lsargv[] = { "/bin/busybox", "--list-full", NULL };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", stage, dirs[i]);
		if (mkdir_p(p, 0755) < 0)
			return -1;
	}
	snprintf(p, sizeof(p), "%s/tmp", stage);
	chmod(p, 01777);
	if (!is_file(bb))
		return err_set("cannot build the default base: %s is missing (install busybox-static)", bb);
	snprintf(p, sizeof(p), "%s/bin/busybox", stage);
	if (copy_file(bb, p, 0755) < 0)
		return -1;
	if (run_capture(lsargv, list, sizeof(list), log) != 0)
		return err_set("cannot list busybox applets");
	for (line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "bin/busybox") || strstr(line, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", stage, line);
		if (symlink("/bin/busybox", p) < 0 && errno != EEXIST)
			return err_set_errno(errno, "cannot create '%s'", p);
	}
	if (write_text(stage, "etc/passwd",
		       "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"
		       "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0644) < 0 ||
	    write_text(stage, "etc/group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n", 0644) < 0 ||
	    write_text(stage, "etc/shadow", "root::1::::::\nuser::1::::::\n", 0600) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/home/user", stage);
	if (chown(p, 1000, 1000) < 0)
		return err_set_errno(errno, "cannot chown '%s'", p);
	return 0;
}

/* OCI image layout: find a tag in index.json when none is given, then umoci unpack. */
static int stage_oci(const char *layout, const char *tag, const char *work, const char *stage, int log)
{
	char ref[PATH_MAX + 128], bundle[PATH_MAX], idx[PATH_MAX], found[128] = "";
	char rootfs[PATH_MAX + 8];
	if (!tag || !*tag) {
		struct json_object *root, *mans, *ann, *name;
		snprintf(idx, sizeof(idx), "%s/index.json", layout);
		root = json_object_from_file(idx);
		if (root && json_object_object_get_ex(root, "manifests", &mans)) {
			for (size_t i = 0; i < json_object_array_length(mans); i++) {
				struct json_object *m = json_object_array_get_idx(mans, i);
				if (json_object_object_get_ex(m, "annotations", &ann) &&
				    json_object_object_get_ex(ann, "org.opencontainers.image.ref.name", &name)) {
					snprintf(found, sizeof(found), "%s", json_object_get_string(name));
					break;
				}
			}
		}
		json_object_put(root);
		if (!found[0])
			return err_set("OCI layout '%s' has no tagged image (give one as oci:%s:TAG)", layout, layout);
		tag = found;
	}
	snprintf(ref, sizeof(ref), "%s:%s", layout, tag);
	snprintf(bundle, sizeof(bundle), "%s/bundle", work);
	if (RUN(log, "umoci", "unpack", "--image", ref, bundle) < 0)
		return err_prefix("cannot unpack OCI image '%s'", ref);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", bundle);
	rmdir(stage);
	if (rename(rootfs, stage) < 0)
		return err_set_errno(errno, "cannot move '%s' to '%s'", rootfs, stage);
	return 0;
}

static int stage_debian(const char *stage, const char *work, const char *cache_dir, int log)
{
	char tarball[PATH_MAX], tmpdir[PATH_MAX], tmptar[PATH_MAX + 8];
	snprintf(tarball, sizeof(tarball), "%s/debian-bookworm-minbase.tar", cache_dir);
	if (!is_file(tarball)) {
		if (mkdir_p(cache_dir, 0755) < 0)
			return -1;
		snprintf(tmpdir, sizeof(tmpdir), "%s/debootstrap", work);
		log_info("base debian: running debootstrap (first time only, cached in %s)", cache_dir);
		if (RUN(log, "debootstrap", "--variant=minbase", "--include=python3,ca-certificates", "bookworm",
			tmpdir) < 0)
			return err_prefix("cannot build the debian base");
		snprintf(tmptar, sizeof(tmptar), "%s.tmp", tarball);
		if (RUN(log, "tar", "--numeric-owner", "-C", tmpdir, "-cf", tmptar, ".") < 0)
			return -1;
		if (rename(tmptar, tarball) < 0)
			return err_set_errno(errno, "cannot store '%s'", tarball);
		remove_tree(tmpdir);
	}
	return RUN(log, "tar", "--numeric-owner", "-C", stage, "-xf", tarball);
}

static int stage_base(const struct rootfs_opts *o, const char *stage, char *desc)
{
	const char *base = o->base ? o->base : "";
	char layout[PATH_MAX], marker[PATH_MAX + 16];
	int log = o->log_fd;
	if (!*base || !strcmp(base, "busybox")) {
		snprintf(desc, 256, "busybox");
		return stage_busybox(stage, log);
	}
	if (!strcmp(base, "debian")) {
		snprintf(desc, 256, "debian:bookworm");
		return stage_debian(stage, o->work_dir, o->cache_dir, log);
	}
	snprintf(desc, 256, "%s", base);
	if (!strncmp(base, "oci:", 4)) {
		const char *tag = NULL;
		char *colon;
		snprintf(layout, sizeof(layout), "%s", base + 4);
		colon = strrchr(layout, ':');
		if (colon && !is_dir(layout)) {
			*colon = 0;
			tag = colon + 1;
		}
		if (!is_dir(layout))
			return err_set("base '%s': '%s' is not an OCI layout directory", base, layout);
		return stage_oci(layout, tag, o->work_dir, stage, log);
	}
	if (is_dir(base)) {
		snprintf(marker, sizeof(marker), "%s/oci-layout", base);
		if (is_file(marker))
			return stage_oci(base, NULL, o->work_dir, stage, log);
		snprintf(marker, sizeof(marker), "%s/.", base);
		return RUN(log, "cp", "-a", marker, stage);
	}
	if (is_file(base)) {
		const char *const probe[] = { "tar", "-tf", base, "manifest.json", NULL };
		if (run_argv(probe, -1) == 0) {
			/* docker-archive: convert to an OCI layout first */
			char src[PATH_MAX + 32], dst[PATH_MAX + 32];
			snprintf(layout, sizeof(layout), "%s/oci", o->work_dir);
			snprintf(src, sizeof(src), "docker-archive:%s", base);
			snprintf(dst, sizeof(dst), "oci:%s:base", layout);
			if (RUN(log, "skopeo", "copy", "--insecure-policy", src, dst) < 0)
				return err_prefix("cannot read docker archive '%s'", base);
			return stage_oci(layout, "base", o->work_dir, stage, log);
		}
		return RUN(log, "tar", "--numeric-owner", "-C", stage, "-xf", base);
	}
	return err_set_errno(ENOENT, "base '%s' not found (use busybox, debian, a directory, a tarball, an OCI layout or a docker archive)", base);
}

static int inject(const struct rootfs_opts *o, const char *stage)
{
	static const char *dirs[] = { "usr/bin", "etc", "proc", "sys", "dev", "tmp", "run", "root" };
	char p[PATH_MAX], hosts[512];
	const char *hn = o->hostname ? o->hostname : "sandbox";
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		snprintf(p, sizeof(p), "%s/%s", stage, dirs[i]);
		if (mkdir_p(p, 0755) < 0)
			return -1;
	}
	snprintf(p, sizeof(p), "%s/usr/bin/envd", stage);
	if (copy_file(o->envd_path, p, 0755) < 0)
		return err_prefix("cannot install envd into the image");
	snprintf(p, sizeof(p), "%s/usr/bin/orch-init", stage);
	if (copy_file(o->init_path, p, 0755) < 0)
		return err_prefix("cannot install orch-init into the image");
	snprintf(hosts, sizeof(hosts), "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n", hn);
	snprintf(p, sizeof(p), "%s\n", hn);
	if (write_text(stage, "etc/hostname", p, 0644) < 0 || write_text(stage, "etc/hosts", hosts, 0644) < 0 ||
	    write_text(stage, "etc/resolv.conf", "nameserver 8.8.8.8\n", 0644) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/etc/passwd", stage);
	if (!is_file(p) && write_text(stage, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0644) < 0)
		return -1;
	return 0;
}

int rootfs_build(const struct rootfs_opts *o, const char *out_img, uint64_t *size, char *from_image)
{
	char stage[PATH_MAX], out[64], sz[32];
	uint64_t used = 0, files = 0, bytes;
	const char *const du[] = { "du", "-sb", stage, NULL };
	snprintf(stage, sizeof(stage), "%s/rootfs", o->work_dir);
	if (mkdir_p(stage, 0755) < 0)
		return -1;
	if (stage_base(o, stage, from_image) < 0 || inject(o, stage) < 0)
		return -1;
	if (run_capture(du, out, sizeof(out), -1) != 0)
		return err_set("cannot measure '%s'", stage);
	used = strtoull(out, NULL, 10);
	{
		char cmd[PATH_MAX + 64];
		const char *const cnt[] = { "sh", "-c", cmd, NULL };
		snprintf(cmd, sizeof(cmd), "find '%s' -xdev | wc -l", stage);
		if (run_capture(cnt, out, sizeof(out), -1) == 0)
			files = strtoull(out, NULL, 10);
	}
	/* data + 10% + metadata per file + the free space asked for + journal, in 4 MiB steps */
	bytes = used + used / 10 + files * 4096 + (o->disk_mib << 20) + (64ull << 20);
	bytes = (bytes + (4ull << 20) - 1) & ~((4ull << 20) - 1);
	snprintf(sz, sizeof(sz), "%lluk", (unsigned long long)(bytes >> 10));
	unlink(out_img);
	if (RUN(o->log_fd, "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-E", "root_owner=0:0", "-L", "rootfs", "-d",
		stage, out_img, sz) < 0)
		return err_prefix("cannot create the rootfs image");
	*size = bytes;
	return 0;
}
