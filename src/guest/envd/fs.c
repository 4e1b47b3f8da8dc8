/*
 * fs.c - filesystem.Filesystem: Stat, ListDir, MakeDir, Move, Remove, with the reference's
 * semantics (EntryInfo of the lstat; symlinks report their target's type and mode; ListDir
 * depth defaults to 1; MakeDir of an existing directory is already_exists; Move creates the
 * destination's parents; Remove is rm -rf and succeeds on a missing path).
 *
 * Every operation runs under the caller's filesystem identity (ident_enter/leave), so the
 * kernel decides what the user may see or change. Errors map errno -> Connect code.
 * Thread-safe: no state of its own.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envd.h"

/* Go's os.FileMode.String() for the permission string. */
static void mode_string(mode_t m, char *out)
{
	size_t i = 0;
	if (S_ISDIR(m))
		out[i++] = 'd';
	else if (S_ISLNK(m))
		out[i++] = 'L';
	else if (S_ISFIFO(m))
		out[i++] = 'p';
	else if (S_ISSOCK(m))
		out[i++] = 'S';
	else if (S_ISBLK(m))
		out[i++] = 'D';
	else if (S_ISCHR(m)) {
		out[i++] = 'D';
		out[i++] = 'c';
	}
	if (m & S_ISUID)
		out[i++] = 'u';
	if (m & S_ISGID)
		out[i++] = 'g';
	if (m & S_ISVTX)
		out[i++] = 't';
	if (i == 0)
		out[i++] = '-';
	const char *rwx = "rwxrwxrwx";
	for (int b = 0; b < 9; b++)
		out[i++] = (m & (1u << (8 - b))) ? rwx[b] : '-';
	out[i] = '\0';
}

static const char *type_name(mode_t m)
{
	if (S_ISREG(m))
		return "FILE_TYPE_FILE";
	if (S_ISDIR(m))
		return "FILE_TYPE_DIRECTORY";
	if (S_ISLNK(m))
		return "FILE_TYPE_SYMLINK";
	return "FILE_TYPE_UNSPECIFIED";
}

struct json_object *fs_entry_info(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return NULL;
	struct json_object *o = json_object_new_object();
	const char *base = strrchr(path, '/');
	base = base && base[1] ? base + 1 : path;
	json_object_object_add(o, "name", json_object_new_string(base));
	mode_t shown = st.st_mode;
	const char *type = type_name(st.st_mode);
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		char *rp = realpath(path, target);
		struct stat ts;
		if (rp && stat(target, &ts) == 0) {
			type = type_name(ts.st_mode);
			shown = ts.st_mode;
		} else {
			type = "FILE_TYPE_UNSPECIFIED";
			shown = 0;
		}
		json_object_object_add(o, "symlinkTarget", json_object_new_string(rp ? target : path));
	}
	json_object_object_add(o, "type", json_object_new_string(type));
	json_object_object_add(o, "path", json_object_new_string(path));
	char num[32];
	snprintf(num, sizeof(num), "%lld", (long long)st.st_size);
	json_object_object_add(o, "size", json_object_new_string(num));
	json_object_object_add(o, "mode", json_object_new_int64(shown & 0777));
	char perm[16];
	mode_string(st.st_mode, perm);
	json_object_object_add(o, "permissions", json_object_new_string(perm));
	char name[128];
	user_name_of(st.st_uid, name, sizeof(name));
	json_object_object_add(o, "owner", json_object_new_string(name));
	group_name_of(st.st_gid, name, sizeof(name));
	json_object_object_add(o, "group", json_object_new_string(name));
	char ts[64];
	format_rfc3339(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, ts, sizeof(ts));
	json_object_object_add(o, "modifiedTime", json_object_new_string(ts));
	return o;
}

static int resolve(const struct envd_user *u, const char *in, char *out, struct rpc_error *e)
{
	char wd[PATH_MAX], err[512];
	state_default_workdir(wd, sizeof(wd));
	if (path_resolve(in, u, *wd ? wd : NULL, out, PATH_MAX, err, sizeof(err)) < 0)
		return rpc_fail(e, "invalid_argument", "%s", err);
	return 0;
}

static struct json_object *wrap_entry(struct json_object *entry)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "entry", entry);
	return o;
}

struct json_object *fs_stat(struct json_object *req, const struct envd_user *u, struct rpc_error *e)
{
	char path[PATH_MAX];
	if (resolve(u, json_get_string(req, "path"), path, e) < 0)
		return NULL;
	struct ident_saved id;
	ident_enter(u, &id);
	struct json_object *entry = fs_entry_info(path);
	int err = errno;
	ident_leave(&id);
	if (!entry) {
		rpc_fail_errno(e, err, err == ENOENT ? "file not found: '%s'" : "error getting file info of '%s'", path);
		return NULL;
	}
	return wrap_entry(entry);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walk dir (real path) listing entries up to depth, reported under shown (requested path). */
static int walk(const char *dir, const char *shown, unsigned depth, unsigned max_depth,
		struct json_object *arr, struct rpc_error *e)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return rpc_fail_errno(e, errno, "error reading directory '%s'", dir);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return rpc_fail_errno(e, errno, "error reading directory '%s'", dir);
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn)
				break;
			names = nn;
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), name_cmp);
	int rc = 0;
	/* path buffers on the heap: the recursion depth is bounded by PATH_MAX, not the stack */
	char *real = malloc(PATH_MAX), *vis = malloc(PATH_MAX);
	for (size_t i = 0; real && vis && i < n; i++) {
		if (snprintf(real, PATH_MAX, "%s/%s", strcmp(dir, "/") ? dir : "", names[i]) >= PATH_MAX ||
		    snprintf(vis, PATH_MAX, "%s/%s", strcmp(shown, "/") ? shown : "", names[i]) >= PATH_MAX)
			continue;
		struct json_object *entry = fs_entry_info(real);
		if (!entry)
			continue; /* vanished meanwhile */
		json_object_object_add(entry, "path", json_object_new_string(vis));
		json_object_array_add(arr, entry);
		struct stat st;
		if (rc == 0 && depth < max_depth && lstat(real, &st) == 0 && S_ISDIR(st.st_mode))
			rc = walk(real, vis, depth + 1, max_depth, arr, e);
	}
	free(real);
	free(vis);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

struct json_object *fs_list_dir(struct json_object *req, const struct envd_user *u, struct rpc_error *e)
{
	char path[PATH_MAX], real[PATH_MAX];
	if (resolve(u, json_get_string(req, "path"), path, e) < 0)
		return NULL;
	struct json_object *dv;
	int64_t depth = 1;
	if (json_object_object_get_ex(req, "depth", &dv)) {
		depth = json_object_get_int64(dv);
		if (depth < 0 || depth > 1024) {
			rpc_fail(e, "invalid_argument", "invalid depth %lld", (long long)depth);
			return NULL;
		}
		if (depth == 0)
			depth = 1;
	}
	struct ident_saved id;
	ident_enter(u, &id);
	struct json_object *resp = NULL;
	struct stat st;
	if (!realpath(path, real)) {
		rpc_fail_errno(e, errno, errno == ENOENT ? "path not found: '%s'" : "error resolving '%s'", path);
	} else if (stat(real, &st) < 0) {
		rpc_fail_errno(e, errno, "error getting file info of '%s'", path);
	} else if (!S_ISDIR(st.st_mode)) {
		rpc_fail(e, "invalid_argument", "path is not a directory: %s", path);
	} else {
		struct json_object *arr = json_object_new_array();
		if (walk(real, path, 1, (unsigned)depth, arr, e) < 0) {
			json_object_put(arr);
		} else {
			resp = json_object_new_object();
			json_object_object_add(resp, "entries", arr);
		}
	}
	ident_leave(&id);
	return resp;
}

struct json_object *fs_make_dir(struct json_object *req, const struct envd_user *u, struct rpc_error *e)
{
	char path[PATH_MAX];
	if (resolve(u, json_get_string(req, "path"), path, e) < 0)
		return NULL;
	struct ident_saved id;
	ident_enter(u, &id);
	struct json_object *resp = NULL;
	struct stat st;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			rpc_fail(e, "already_exists", "directory already exists: %s", path);
		else
			rpc_fail(e, "invalid_argument", "path already exists but it is not a directory: %s", path);
	} else if (errno != ENOENT) {
		rpc_fail_errno(e, errno, "error getting file info of '%s'", path);
	} else if (ensure_dirs(path) < 0) {
		rpc_fail_errno(e, errno, "error creating directory '%s'", path);
	} else {
		struct json_object *entry = fs_entry_info(path);
		if (entry)
			resp = wrap_entry(entry);
		else
			rpc_fail_errno(e, errno, "error getting file info of '%s'", path);
	}
	ident_leave(&id);
	return resp;
}

struct json_object *fs_move(struct json_object *req, const struct envd_user *u, struct rpc_error *e)
{
	char src[PATH_MAX], dst[PATH_MAX], dir[PATH_MAX];
	const char *s = json_get_string(req, "source"), *d = json_get_string(req, "destination");
	if (!s || !*s || !d || !*d) {
		rpc_fail(e, "invalid_argument", "source and destination are required");
		return NULL;
	}
	if (resolve(u, s, src, e) < 0 || resolve(u, d, dst, e) < 0)
		return NULL;
	snprintf(dir, sizeof(dir), "%s", dst);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	struct ident_saved id;
	ident_enter(u, &id);
	struct json_object *resp = NULL;
	struct stat st;
	if (lstat(src, &st) < 0) {
		rpc_fail_errno(e, errno, errno == ENOENT ? "source file not found: '%s'" : "error getting file info of '%s'", src);
	} else if (ensure_dirs(dir) < 0) {
		rpc_fail_errno(e, errno, "error creating directory '%s'", dir);
	} else if (rename(src, dst) < 0) {
		rpc_fail_errno(e, errno, "error renaming '%s' to '%s'", src, dst);
	} else {
		struct json_object *entry = fs_entry_info(dst);
		if (entry)
			resp = wrap_entry(entry);
		else
			rpc_fail_errno(e, errno, "error getting file info of '%s'", dst);
	}
	ident_leave(&id);
	return resp;
}

/* rm -rf that reports the first failure with its errno (does not follow symlinks). */
static int remove_all(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *child;
		if (asprintf(&child, "%s/%s", path, de->d_name) < 0) {
			errno = ENOMEM;
			rc = -1;
			break;
		}
		int r = strlen(child) >= PATH_MAX ? (errno = ENAMETOOLONG, -1) : remove_all(child);
		free(child);
		if (r < 0) {
			rc = -1;
			break;
		}
	}
	int saved = errno;
	closedir(d);
	errno = saved;
	if (rc < 0)
		return -1;
	return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
}

struct json_object *fs_remove(struct json_object *req, const struct envd_user *u, struct rpc_error *e)
{
	char path[PATH_MAX];
	const char *p = json_get_string(req, "path");
	if (!p || !*p) {
		rpc_fail(e, "invalid_argument", "path is required");
		return NULL;
	}
	if (resolve(u, p, path, e) < 0)
		return NULL;
	if (strcmp(path, "/") == 0) {
		rpc_fail(e, "invalid_argument", "refusing to remove '/'");
		return NULL;
	}
	struct ident_saved id;
	ident_enter(u, &id);
	int rc = remove_all(path), err = errno;
	ident_leave(&id);
	if (rc < 0) {
		rpc_fail_errno(e, err, "error removing file or directory '%s'", path);
		return NULL;
	}
	return json_object_new_object();
}
