/*
 * template.c - the template build pipeline (see template.h). Single-threaded; the only
 * long waits (boot, ready loop) poll the VM so a dead guest fails the build at once.
 * Failure handling: the build's objects are written by sandbox_snapshot_build /
 * sandbox_pause, which remove them on their own failure; a failure before that writes
 * nothing. The work directory (rootfs staging and image) is removed on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "common/proc.h"
#include "rootfs.h"
#include "sandbox/sandbox.h"
#include "storage/metadata.h"
#include "template.h"

#define START_LOG "/var/log/orch-start.log"
#define START_EXIT "/run/orch-start.exit"

struct ctx {
	const struct template_opts *o;
	uint64_t t0;
	int log_fd;
};

static void phase(struct ctx *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void phase(struct ctx *c, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[%6.1fs] %s\n", (double)(now_ns() - c->t0) / 1e9, line);
	if (c->log_fd >= 0)
		dprintf(c->log_fd, "== [%6.1fs] %s\n", (double)(now_ns() - c->t0) / 1e9, line);
}

static void log_out(void *opaque, enum envdc_stream s UNUSED, const void *data, size_t len)
{
	struct ctx *c = opaque;
	if (c->log_fd >= 0 && full_write(c->log_fd, data, len) < 0)
		return;
}

static void append_file(int log_fd, const char *path, const char *title)
{
	size_t len;
	char *buf = read_file(path, &len);
	if (!buf)
		return;
	dprintf(log_fd, "---- %s ----\n", title);
	if (full_write(log_fd, buf, len) < 0) {
		/* the log is best effort */
	}
	dprintf(log_fd, "---- end of %s ----\n", title);
	free(buf);
}

static int kernel_location(const struct template_opts *o, char *dir, size_t cap, char *version, size_t vcap)
{
	if (o->kernel_path && *o->kernel_path) {
		char tmp[PATH_MAX], *slash;
		struct stat st;
		if (stat(o->kernel_path, &st) < 0)
			return err_set_errno(errno, "kernel '%s' not found", o->kernel_path);
		if (S_ISDIR(st.st_mode))
			snprintf(tmp, sizeof(tmp), "%s/vmlinux.bin", o->kernel_path);
		else
			snprintf(tmp, sizeof(tmp), "%s", o->kernel_path);
		if (!realpath(tmp, dir))
			return err_set_errno(errno, "kernel '%s' not found", tmp);
		slash = strrchr(dir, '/');
		if (strcmp(slash + 1, "vmlinux.bin"))
			return err_set("-kernel-path must name a vmlinux.bin (or its directory), got '%s'", o->kernel_path);
		*slash = 0;
		snprintf(version, vcap, "%s", strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir);
		(void)cap;
		return 0;
	}
	return hostenv_find_kernel(o->he, o->kernel, dir, cap, version, vcap);
}

/* Start command in the background, ready command every 2 s. */
static int start_and_wait(struct ctx *c, struct sandbox *sb)
{
	const struct template_opts *o = c->o;
	uint64_t deadline = now_ns() + (o->ready_timeout_ns ? o->ready_timeout_ns : 600ull * 1000000000ull);
	int code = 0, tries = 0;
	if (o->start_cmd && *o->start_cmd) {
		char *wrapped;
		uint32_t pid = 0;
		if (asprintf(&wrapped,
			     "mkdir -p /var/log /run; rm -f " START_EXIT "; (%s\n) >" START_LOG " 2>&1 </dev/null; echo $? >" START_EXIT,
			     o->start_cmd) < 0)
			return err_set_errno(ENOMEM, "start command");
		phase(c, "starting the start command: %s", o->start_cmd);
		if (sandbox_exec_background(sb, wrapped, &pid) < 0) {
			free(wrapped);
			return err_prefix("cannot start the start command");
		}
		free(wrapped);
	}
	if (!o->ready_cmd || !*o->ready_cmd) {
		if (!o->start_cmd || !*o->start_cmd)
			return 0;
		/* no ready check: give the start command a moment to fail visibly */
		usleep(2000000);
	}
	for (;;) {
		if (o->start_cmd && *o->start_cmd) {
			/* 250: still running; otherwise the start command's exit status */
			int st = 0, ec;
			if (sandbox_exec(sb, "test -f " START_EXIT " || exit 250; exit $(cat " START_EXIT ")", NULL, NULL, &st,
					 30000) < 0)
				return err_prefix("checking the start command");
			if (st != 250 && st != 0) {
				sandbox_exec(sb, "cat " START_LOG, log_out, c, &ec, 30000);
				return err_set("the start command failed with exit status %d (see the build log)", st);
			}
		}
		if (!o->ready_cmd || !*o->ready_cmd)
			return 0;
		tries++;
		if (sandbox_exec(sb, o->ready_cmd, log_out, c, &code, 60000) < 0)
			return err_prefix("running the ready command");
		if (code == 0) {
			phase(c, "ready command succeeded (attempt %d)", tries);
			return 0;
		}
		if (now_ns() >= deadline)
			return err_set("the ready command '%s' did not succeed within %.0f s (last exit status %d)", o->ready_cmd,
				       (double)(o->ready_timeout_ns ? o->ready_timeout_ns : 600ull * 1000000000ull) / 1e9, code);
		usleep(2000000);
	}
}

static int guest_sync(struct sandbox *sb)
{
	int code = 0;
	if (sandbox_exec(sb, "sync", NULL, NULL, &code, 60000) < 0)
		return err_prefix("sync in the guest");
	if (code != 0)
		return err_set("sync in the guest failed with status %d", code);
	return 0;
}

static void fill_meta(const struct template_opts *o, struct build_metadata *m, const char *kernel_version,
		      const char *from_image)
{
	snprintf(m->kernel_version, sizeof(m->kernel_version), "%s", kernel_version);
	m->disk_mib = o->disk_mib;
	free(m->start_cmd);
	free(m->ready_cmd);
	m->start_cmd = o->start_cmd ? strdup(o->start_cmd) : NULL;
	m->ready_cmd = o->ready_cmd ? strdup(o->ready_cmd) : NULL;
	if (from_image)
		snprintf(m->from_image, sizeof(m->from_image), "%s", from_image);
	if (o->from_build)
		snprintf(m->from_build, sizeof(m->from_build), "%s", o->from_build);
}

static int build_from_image(struct ctx *c, struct template_result *res)
{
	const struct template_opts *o = c->o;
	char kdir[PATH_MAX], kver[128], envd[PATH_MAX], init[PATH_MAX], work[PATH_MAX], img[PATH_MAX + 16];
	char from_image[256] = "", console[PATH_MAX + 16];
	struct sandbox *sb = NULL;
	struct build_metadata meta;
	struct rootfs_opts ro = { 0 };
	int r = -1;
	if (kernel_location(o, kdir, sizeof(kdir), kver, sizeof(kver)) < 0)
		return -1;
	if (hostenv_find_guest_binary(o->he, "envd", o->envd_path, envd, sizeof(envd)) < 0 ||
	    hostenv_find_guest_binary(o->he, "orch-init", NULL, init, sizeof(init)) < 0)
		return -1;
	snprintf(work, sizeof(work), "%s/build/%s-work", o->he->base, o->build_id);
	remove_tree(work);
	if (mkdir_p(work, 0700) < 0)
		return -1;
	snprintf(img, sizeof(img), "%s/rootfs.ext4", work);
	snprintf(console, sizeof(console), "%s/console.log", work);
	phase(c, "preparing the rootfs from base '%s'", o->base && *o->base ? o->base : "busybox");
	ro.base = o->base;
	ro.envd_path = envd;
	ro.init_path = init;
	ro.hostname = "sandbox";
	ro.disk_mib = o->disk_mib;
	ro.work_dir = work;
	{
		char cache[PATH_MAX + 16];
		snprintf(cache, sizeof(cache), "%s/base-cache", o->he->base);
		ro.cache_dir = cache;
		ro.log_fd = c->log_fd;
		if (rootfs_build(&ro, img, &res->rootfs_size, from_image) < 0)
			goto out;
	}
	phase(c, "rootfs image ready: %.1f MiB; booting kernel %s (%u vCPU, %llu MiB)", (double)res->rootfs_size / 1048576.0,
	      kver, o->vcpu, (unsigned long long)o->memory_mib);
	{
		struct sandbox_boot_opts bo = { .he = o->he, .kernel_dir = kdir, .rootfs_image = img, .accel = o->accel,
						.vcpu = o->vcpu, .memory_mib = o->memory_mib, .qemu_path = o->qemu_path,
						.serial_log = console };
		if (sandbox_boot(&bo, &sb) < 0)
			goto out;
	}
	phase(c, "envd is up (boot took %.1f s)",
	      (double)(sandbox_times(sb)->ready_ns - sandbox_times(sb)->start_ns) / 1e9);
	if (start_and_wait(c, sb) < 0)
		goto out;
	if (guest_sync(sb) < 0)
		goto out;
	phase(c, "snapshotting");
	metadata_init(&meta);
	fill_meta(o, &meta, kver, from_image);
	r = sandbox_snapshot_build(sb, o->st, o->build_id, &meta);
	metadata_release(&meta);
	if (r == 0)
		res->memfile_size = o->memory_mib << 20;
out:
	sandbox_kill(sb);
	append_file(c->log_fd, console, "guest console");
	remove_tree(work);
	return r;
}

static int build_from_build(struct ctx *c)
{
	const struct template_opts *o = c->o;
	struct sandbox *sb = NULL;
	struct build_metadata meta;
	struct sandbox_pause_stats ps;
	struct sandbox_opts so = { .he = o->he, .st = o->st, .build_id = o->from_build, .qemu_path = o->qemu_path };
	bool complete;
	int r = -1;
	if (build_is_complete(o->st, o->from_build, &complete) < 0)
		return -1;
	if (!complete)
		return err_set("build %s (-from-build) is missing or incomplete in %s", o->from_build, storage_describe(o->st));
	phase(c, "resuming build %s", o->from_build);
	if (sandbox_resume(&so, &sb) < 0)
		return -1;
	phase(c, "resumed in %.1f ms", (double)(sandbox_times(sb)->ready_ns - sandbox_times(sb)->start_ns) / 1e6);
	if (start_and_wait(c, sb) < 0)
		goto out;
	if (guest_sync(sb) < 0)
		goto out;
	phase(c, "pausing into a diff build");
	if (metadata_load(o->st, o->from_build, &meta) < 0)
		goto out;
	fill_meta(o, &meta, meta.kernel_version, NULL);
	r = sandbox_pause(sb, o->st, o->build_id, &meta, &ps);
	metadata_release(&meta);
	if (r == 0)
		phase(c, "diff: memfile %.1f MiB, rootfs %.1f MiB, device state %.1f KiB",
		      (double)ps.memfile_diff_bytes / 1048576.0, (double)ps.rootfs_diff_bytes / 1048576.0,
		      (double)ps.state_bytes / 1024.0);
out:
	sandbox_kill(sb);
	return r;
}

int template_build(const struct template_opts *o, struct template_result *res)
{
	struct ctx c = { .o = o, .t0 = now_ns(), .log_fd = -1 };
	char logdir[PATH_MAX + 16], prefix[UUID_STR_LEN + 2];
	char **keys = NULL;
	size_t nkeys = 0;
	int r;
	memset(res, 0, sizeof(*res));
	snprintf(prefix, sizeof(prefix), "%s/", o->build_id);
	if (storage_list(o->st, prefix, &keys, &nkeys) < 0)
		return -1;
	storage_list_free(keys, nkeys);
	if (nkeys > 0) {
		if (!o->force)
			return err_set("build %s already exists in %s (use -force to replace it)", o->build_id,
				       storage_describe(o->st));
		if (storage_delete_prefix(o->st, prefix) < 0)
			return -1;
	}
	snprintf(logdir, sizeof(logdir), "%s/build-logs", o->he->base);
	if (mkdir_p(logdir, 0755) < 0)
		return -1;
	snprintf(res->log_path, sizeof(res->log_path), "%s/%s.log", logdir, o->build_id);
	c.log_fd = open(res->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (c.log_fd < 0)
		return err_set_errno(errno, "cannot create build log '%s'", res->log_path);
	phase(&c, "building %s into %s (log: %s)", o->build_id, storage_describe(o->st), res->log_path);
	r = o->from_build ? build_from_build(&c) : build_from_image(&c, res);
	if (r < 0) {
		char msg[ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		dprintf(c.log_fd, "== build failed: %s\n", msg);
		storage_delete_prefix(o->st, prefix);
		err_set("%s", msg);
	} else {
		phase(&c, "build %s finished", o->build_id);
	}
	close(c.log_fd);
	res->total_ns = now_ns() - c.t0;
	return r;
}
