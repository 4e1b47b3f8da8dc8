/* Builds images from the busybox base, a directory and a rootfs tarball, and checks the
 * injected files are inside (debugfs reads the image without mounting it). */
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "common/proc.h"
#include "template/rootfs.h"
#include "test.h"

static char work[] = "/tmp/orch-unit-rootfs.XXXXXX";

static int image_has(const char *img, const char *path, char *out, size_t cap)
{
	char req[256];
	snprintf(req, sizeof(req), "cat %s", path);
	const char *const argv[] = { "debugfs", "-R", req, img, NULL };
	return run_capture(argv, out, cap, -1);
}

static void build_one(const char *base, const char *name)
{
	char img[300], wd[300], out[4096] = "", from[256];
	uint64_t size = 0;
	struct rootfs_opts o = { .base = base, .envd_path = "/bin/true", .init_path = "/bin/true",
				 .hostname = "tst", .disk_mib = 16, .log_fd = -1 };
	snprintf(img, sizeof(img), "%s/%s.ext4", work, name);
	snprintf(wd, sizeof(wd), "%s/work-%s", work, name);
	o.work_dir = wd;
	o.cache_dir = work;
	CHECK(rootfs_build(&o, img, &size, from) == 0);
	if (test_cur_failed) {
		printf("  %s\n", err_msg());
		return;
	}
	CHECK(size > (16ull << 20));
	CHECK(image_has(img, "/etc/hostname", out, sizeof(out)) == 0);
	CHECK(strstr(out, "tst") != NULL);
	CHECK(image_has(img, "/etc/passwd", out, sizeof(out)) == 0 && strstr(out, "root:") != NULL);
	{
		const char *const st[] = { "debugfs", "-R", "stat /usr/bin/envd", img, NULL };
		CHECK(run_capture(st, out, sizeof(out), -1) == 0 && strstr(out, "Size:") != NULL);
	}
	{
		const char *const fsck[] = { "e2fsck", "-fn", img, NULL };
		CHECK(run_argv(fsck, -1) == 0);
	}
	remove_tree(wd);
}

static void busybox_base(void)
{
	if (access("/bin/busybox", X_OK) != 0)
		SKIP("busybox-static is not installed");
	build_one("", "busybox");
}

static void directory_and_tarball_base(void)
{
	char d[300], f[320], tarball[320];
	snprintf(d, sizeof(d), "%s/srcdir", work);
	snprintf(f, sizeof(f), "%s/etc", d);
	CHECK(mkdir_p(f, 0755) == 0);
	snprintf(f, sizeof(f), "%s/etc/marker", d);
	CHECK(write_file_atomic(f, "dir\n", 4, 0644) == 0);
	build_one(d, "dir");
	snprintf(tarball, sizeof(tarball), "%s/src.tar", work);
	{
		const char *const tar[] = { "tar", "-C", d, "-cf", tarball, ".", NULL };
		CHECK(run_argv(tar, -1) == 0);
	}
	build_one(tarball, "tar");
}

static void missing_base_is_an_error(void)
{
	char img[300], from[256];
	uint64_t size;
	struct rootfs_opts o = { .base = "/nonexistent/base", .envd_path = "/bin/true", .init_path = "/bin/true",
				 .work_dir = work, .log_fd = -1 };
	snprintf(img, sizeof(img), "%s/x.ext4", work);
	CHECK(rootfs_build(&o, img, &size, from) < 0);
	CHECK(strstr(err_msg(), "not found") != NULL);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP template_rootfs: needs root (chown, mkfs as root)\n");
		return 0;
	}
	if (!mkdtemp(work))
		return 1;
	RUN(busybox_base);
	RUN(directory_and_tarball_base);
	RUN(missing_base_is_an_error);
	remove_tree(work);
	TEST_EXIT();
}
