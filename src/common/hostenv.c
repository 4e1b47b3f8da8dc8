/*
 * hostenv.c - local-mode host directories (see hostenv.h). Called once at command start,
 * before any thread exists (it calls setenv).
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "hostenv.h"

static int pick(char *dst, const char *env, const char *data, const char *suffix)
{
	const char *v = getenv(env);
	if (v && *v) {
		if (v[0] == '/')
			snprintf(dst, PATH_MAX, "%s", v);
		else {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd)))
				return err_set_errno(errno, "cannot resolve %s", env);
			snprintf(dst, PATH_MAX, "%s/%s", cwd, v);
		}
	} else {
		snprintf(dst, PATH_MAX, "%s/%s", data, suffix);
	}
	setenv(env, dst, 1);
	return 0;
}

int hostenv_setup(const char *location, bool create_templates, struct hostenv *he)
{
	char data[PATH_MAX];
	const char *dir = location && *location && !strstr(location, "://") ? location : ".local-build";
	memset(he, 0, sizeof(*he));
	if (mkdir_p(dir, 0755) < 0)
		return -1;
	if (!realpath(dir, data))
		return err_set_errno(errno, "cannot resolve '%s'", dir);
	snprintf(he->data_dir, sizeof(he->data_dir), "%s", data);
	if (pick(he->base, "ORCHESTRATOR_BASE_PATH", data, "orchestrator") < 0 ||
	    pick(he->snapshot_cache, "SNAPSHOT_CACHE_DIR", data, "snapshot-cache") < 0 ||
	    pick(he->kernels, "HOST_KERNELS_DIR", data, "kernels") < 0 ||
	    pick(he->fc_versions, "FIRECRACKER_VERSIONS_DIR", data, "fc-versions") < 0 ||
	    pick(he->envd, "HOST_ENVD_PATH", data, "envd/envd") < 0 ||
	    pick(he->sandbox_dir, "SANDBOX_DIR", data, "sandbox") < 0)
		return -1;
	if (mkdir_p(he->base, 0755) < 0 || mkdir_p(he->snapshot_cache, 0755) < 0 ||
	    mkdir_p(he->kernels, 0755) < 0 || mkdir_p(he->sandbox_dir, 0755) < 0)
		return -1;
	if (create_templates) {
		char t[PATH_MAX + 16];
		snprintf(t, sizeof(t), "%s/templates", data);
		if (mkdir_p(t, 0755) < 0)
			return -1;
	}
	return 0;
}

/* Directory of the running executable's build tree (…/build), "" when unknown. */
static void build_tree(char *out, size_t cap)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;
	out[0] = 0;
	if (n <= 0)
		return;
	exe[n] = 0;
	slash = strrchr(exe, '/'); /* …/build/bin/<cmd> */
	if (!slash)
		return;
	*slash = 0;
	slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = 0;
	snprintf(out, cap, "%s", exe);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

int hostenv_find_guest_binary(const struct hostenv *he, const char *name, const char *explicit_path,
			      char *out, size_t cap)
{
	char cand[PATH_MAX], tree[PATH_MAX], beside[PATH_MAX];
	if (explicit_path && *explicit_path) {
		if (!exists(explicit_path))
			return err_set_errno(ENOENT, "%s binary '%s' not found", name, explicit_path);
		snprintf(out, cap, "%s", explicit_path);
		return 0;
	}
	if (!strcmp(name, "envd")) {
		snprintf(cand, sizeof(cand), "%s", he->envd);
	} else {
		char *slash;
		snprintf(beside, sizeof(beside), "%s", he->envd);
		slash = strrchr(beside, '/');
		if (slash)
			*slash = 0;
		snprintf(cand, sizeof(cand), "%s/%s", beside, name);
	}
	if (exists(cand)) {
		snprintf(out, cap, "%s", cand);
		return 0;
	}
	build_tree(tree, sizeof(tree));
	if (tree[0]) {
		char alt[PATH_MAX + 32];
		snprintf(alt, sizeof(alt), "%s/guest/%s", tree, name);
		if (exists(alt)) {
			snprintf(out, cap, "%s", alt);
			return 0;
		}
		return err_set_errno(ENOENT, "%s binary not found at '%s' nor '%s' (run make)", name, cand, alt);
	}
	return err_set_errno(ENOENT, "%s binary not found at '%s'", name, cand);
}

int hostenv_find_kernel(const struct hostenv *he, const char *version, char *out, size_t cap,
			char *real_version, size_t vcap)
{
	char cand[PATH_MAX + 64], tree[PATH_MAX], alt[PATH_MAX + 64], real[PATH_MAX];
	const char *v = version && *version ? version : "default";
	const char *dirs[2];
	if (strchr(v, '/') || !strcmp(v, "..") || !strcmp(v, "."))
		return err_set("invalid kernel version '%s'", v);
	build_tree(tree, sizeof(tree));
	snprintf(cand, sizeof(cand), "%s/%s", he->kernels, v);
	snprintf(alt, sizeof(alt), "%s/kernels/%s", tree, v);
	dirs[0] = cand;
	dirs[1] = tree[0] ? alt : NULL;
	for (int i = 0; i < 2; i++) {
		char vm[PATH_MAX + 80];
		if (!dirs[i])
			continue;
		snprintf(vm, sizeof(vm), "%s/vmlinux.bin", dirs[i]);
		if (!exists(vm))
			continue;
		if (!realpath(dirs[i], real))
			return err_set_errno(errno, "cannot resolve '%s'", dirs[i]);
		snprintf(out, cap, "%s", real);
		snprintf(real_version, vcap, "%s", strrchr(real, '/') + 1);
		return 0;
	}
	return err_set_errno(ENOENT,
			     "kernel '%s' not found: no vmlinux.bin in '%s'%s%s (provide it with scripts/kernel.sh DIR, or -kernel-path)",
			     v, cand, tree[0] ? " nor " : "", tree[0] ? alt : "");
}
