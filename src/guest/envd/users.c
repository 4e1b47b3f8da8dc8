/*
 * users.c - the user database for a static envd (no NSS): /etc/passwd and /etc/group are
 * parsed with fgetpwent_r/fgetgrent_r and cached; the cache is reloaded when either file's
 * mtime or size changes. Also per-thread filesystem identity and request path resolution.
 *
 * Locking: db_lock guards the cache. Identity switching uses the raw setfsuid/setfsgid/
 * setgroups system calls, which act on the calling thread only (glibc's wrappers for
 * setgroups broadcast to all threads, so the raw syscall is used on purpose).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "envd.h"

#define PASSWD_PATH "/etc/passwd"
#define GROUP_PATH "/etc/group"

struct db_user {
	char *name, *home;
	uid_t uid;
	gid_t gid;
};
struct db_group {
	char *name;
	gid_t gid;
	char **members; /* NULL-terminated */
};

static pthread_mutex_t db_lock = PTHREAD_MUTEX_INITIALIZER;
static struct db_user *users;
static size_t nusers;
static struct db_group *groups;
static size_t ngroups;
static struct timespec pw_mtime, gr_mtime;
static off_t pw_size = -1, gr_size = -1;

static void db_free(void)
{
	for (size_t i = 0; i < nusers; i++) {
		free(users[i].name);
		free(users[i].home);
	}
	free(users);
	users = NULL;
	nusers = 0;
	for (size_t i = 0; i < ngroups; i++) {
		free(groups[i].name);
		for (char **m = groups[i].members; m && *m; m++)
			free(*m);
		free(groups[i].members);
	}
	free(groups);
	groups = NULL;
	ngroups = 0;
}

static void db_load(void)
{
	db_free();
	char buf[16384];
	FILE *f = fopen(PASSWD_PATH, "re");
	if (f) {
		struct passwd pw, *res;
		size_t cap = 0;
		while (fgetpwent_r(f, &pw, buf, sizeof(buf), &res) == 0) {
			if (nusers == cap) {
				cap = cap ? cap * 2 : 32;
				struct db_user *n = realloc(users, cap * sizeof(*n));
				if (!n)
					break;
				users = n;
			}
			users[nusers++] = (struct db_user){ .name = strdup(pw.pw_name),
							    .home = strdup(pw.pw_dir ? pw.pw_dir : "/"),
							    .uid = pw.pw_uid,
							    .gid = pw.pw_gid };
		}
		fclose(f);
	}
	f = fopen(GROUP_PATH, "re");
	if (f) {
		struct group gr, *res;
		size_t cap = 0;
		while (fgetgrent_r(f, &gr, buf, sizeof(buf), &res) == 0) {
			if (ngroups == cap) {
				cap = cap ? cap * 2 : 32;
				struct db_group *n = realloc(groups, cap * sizeof(*n));
				if (!n)
					break;
				groups = n;
			}
			size_t nm = 0;
			while (gr.gr_mem && gr.gr_mem[nm])
				nm++;
			char **mem = calloc(nm + 1, sizeof(char *));
			for (size_t i = 0; mem && i < nm; i++)
				mem[i] = strdup(gr.gr_mem[i]);
			groups[ngroups++] = (struct db_group){ .name = strdup(gr.gr_name),
							       .gid = gr.gr_gid,
							       .members = mem };
		}
		fclose(f);
	}
}

/* Reload when a file changed. Call with db_lock held. */
static void db_refresh(void)
{
	struct stat a, b;
	bool pa = stat(PASSWD_PATH, &a) == 0, gb = stat(GROUP_PATH, &b) == 0;
	off_t as = pa ? a.st_size : -2, bs = gb ? b.st_size : -2;
	if (as == pw_size && bs == gr_size && (!pa || (a.st_mtim.tv_sec == pw_mtime.tv_sec &&
						       a.st_mtim.tv_nsec == pw_mtime.tv_nsec)) &&
	    (!gb || (b.st_mtim.tv_sec == gr_mtime.tv_sec && b.st_mtim.tv_nsec == gr_mtime.tv_nsec)))
		return;
	db_load();
	pw_size = as;
	gr_size = bs;
	if (pa)
		pw_mtime = a.st_mtim;
	if (gb)
		gr_mtime = b.st_mtim;
}

int user_lookup(const char *name, struct envd_user *u)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_lock(&db_lock);
	db_refresh();
	struct db_user *found = NULL;
	for (size_t i = 0; i < nusers; i++)
		if (strcmp(users[i].name, name) == 0) {
			found = &users[i];
			break;
		}
	if (!found) {
		pthread_mutex_unlock(&db_lock);
		errno = ENOENT;
		return -1;
	}
	snprintf(u->name, sizeof(u->name), "%s", found->name);
	snprintf(u->home, sizeof(u->home), "%s", found->home);
	u->uid = found->uid;
	u->gid = found->gid;
	u->groups[u->ngroups++] = u->gid;
	for (size_t i = 0; i < ngroups && u->ngroups < ENVD_MAX_GROUPS; i++) {
		if (groups[i].gid == u->gid)
			continue;
		for (char **m = groups[i].members; m && *m; m++)
			if (strcmp(*m, name) == 0) {
				u->groups[u->ngroups++] = groups[i].gid;
				break;
			}
	}
	pthread_mutex_unlock(&db_lock);
	return 0;
}

void user_name_of(uid_t uid, char *out, size_t len)
{
	pthread_mutex_lock(&db_lock);
	db_refresh();
	for (size_t i = 0; i < nusers; i++)
		if (users[i].uid == uid) {
			snprintf(out, len, "%s", users[i].name);
			pthread_mutex_unlock(&db_lock);
			return;
		}
	pthread_mutex_unlock(&db_lock);
	snprintf(out, len, "%u", (unsigned)uid);
}

void group_name_of(gid_t gid, char *out, size_t len)
{
	pthread_mutex_lock(&db_lock);
	db_refresh();
	for (size_t i = 0; i < ngroups; i++)
		if (groups[i].gid == gid) {
			snprintf(out, len, "%s", groups[i].name);
			pthread_mutex_unlock(&db_lock);
			return;
		}
	pthread_mutex_unlock(&db_lock);
	snprintf(out, len, "%u", (unsigned)gid);
}

void ident_enter(const struct envd_user *u, struct ident_saved *s)
{
	s->active = false;
	if (geteuid() != 0 || u->uid == 0)
		return;
	syscall(SYS_setgroups, (size_t)u->ngroups, u->groups);
	syscall(SYS_setfsgid, u->gid);
	syscall(SYS_setfsuid, u->uid);
	s->active = true;
}

void ident_leave(struct ident_saved *s)
{
	if (!s->active)
		return;
	syscall(SYS_setfsuid, 0);
	syscall(SYS_setfsgid, 0);
	syscall(SYS_setgroups, (size_t)0, NULL);
	s->active = false;
}

void path_clean(char *p)
{
	/* p is absolute. Resolve ".", "..", repeated slashes. */
	char *out = p, *r = p;
	size_t w = 0;
	while (*r) {
		while (*r == '/')
			r++;
		if (!*r)
			break;
		char *seg = r;
		while (*r && *r != '/')
			r++;
		size_t sl = (size_t)(r - seg);
		if (sl == 1 && seg[0] == '.')
			continue;
		if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			while (w > 0 && out[w - 1] != '/')
				w--;
			if (w > 0)
				w--;
			continue;
		}
		out[w++] = '/';
		memmove(out + w, seg, sl);
		w += sl;
	}
	if (w == 0)
		out[w++] = '/';
	out[w] = '\0';
}

int path_resolve(const char *in, const struct envd_user *u, const char *workdir, char *out,
		 size_t outlen, char *err, size_t errlen)
{
	const char *path = in && *in ? in : (workdir ? workdir : "");
	int n;
	if (path[0] == '~') {
		if (path[1] && path[1] != '/') {
			snprintf(err, errlen, "failed to expand path '%s' for user '%s': cannot expand user-specific home dir",
				 path, u->name);
			return -1;
		}
		n = snprintf(out, outlen, "%s/%s", u->home, path + 1);
	} else if (path[0] == '/') {
		n = snprintf(out, outlen, "%s", path);
	} else {
		n = snprintf(out, outlen, "%s/%s", u->home, path);
	}
	if (n < 0 || (size_t)n >= outlen) {
		snprintf(err, errlen, "path too long");
		return -1;
	}
	if (out[0] != '/') {
		snprintf(err, errlen, "path '%s' does not resolve to an absolute path", path);
		return -1;
	}
	path_clean(out);
	return 0;
}

int ensure_dirs(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", dir);
	size_t len = strlen(p);
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		char save = p[i];
		p[i] = '\0';
		struct stat st;
		if (stat(p, &st) == 0) {
			if (!S_ISDIR(st.st_mode)) {
				errno = ENOTDIR;
				return -1;
			}
		} else if (errno != ENOENT || (mkdir(p, 0755) < 0 && errno != EEXIST)) {
			return -1;
		}
		p[i] = save;
	}
	return 0;
}
