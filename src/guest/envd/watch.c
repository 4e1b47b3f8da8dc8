/*
 * watch.c - filesystem.Filesystem/WatchDir (server stream) with inotify, mapped like the
 * reference's fsnotify: CREATE (created or moved in), WRITE (modified), REMOVE (deleted),
 * RENAME (moved away), CHMOD (attributes). Event names are relative to the watched directory.
 * recursive adds a watch on every subdirectory, including ones created while watching.
 *
 * Runs on the connection's thread under the caller's filesystem identity; ends when the client
 * goes away (socket readable with EOF), on the Connect deadline, or on an inotify overflow.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "envd.h"

#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB | \
		    IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_ONLYDIR)
#define MAX_WATCHES 8192

struct wd_path {
	int wd;
	char *path;
};

struct watcher {
	int fd;
	struct wd_path *w;
	size_t n, cap;
};

static const char *wd_lookup(struct watcher *w, int wd)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->w[i].wd == wd)
			return w->w[i].path;
	return NULL;
}

static int add_watch(struct watcher *w, const char *path, bool recursive)
{
	if (w->n >= MAX_WATCHES)
		return 0;
	int wd = inotify_add_watch(w->fd, path, WATCH_MASK);
	if (wd < 0)
		return -1;
	if (!wd_lookup(w, wd)) {
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 16;
			struct wd_path *nw = realloc(w->w, w->cap * sizeof(*nw));
			if (!nw)
				return -1;
			w->w = nw;
		}
		w->w[w->n++] = (struct wd_path){ .wd = wd, .path = strdup(path) };
	}
	if (!recursive)
		return 0;
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char *child;
		struct stat st;
		if (asprintf(&child, "%s/%s", path, de->d_name) < 0)
			break;
		if (strlen(child) < PATH_MAX && lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
			add_watch(w, child, true);
		free(child);
	}
	closedir(d);
	return 0;
}

static void watcher_release(struct watcher *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->w[i].path);
	free(w->w);
	if (w->fd >= 0)
		close(w->fd);
}

static int send_event(struct rpc_stream *s, const char *name, const char *type, const char *full,
		      bool include_entry)
{
	struct json_object *fe = json_object_new_object();
	json_object_object_add(fe, "name", json_object_new_string(name));
	json_object_object_add(fe, "type", json_object_new_string(type));
	if (include_entry && full) {
		struct json_object *entry = fs_entry_info(full);
		if (entry)
			json_object_object_add(fe, "entry", entry);
	}
	struct json_object *m = json_object_new_object();
	json_object_object_add(m, "filesystem", fe);
	int r = rpc_stream_send(s, m);
	json_object_put(m);
	return r;
}

void fs_watch_dir(struct rpc_stream *s, struct json_object *req, const struct envd_user *u,
		  struct rpc_error *e)
{
	char root[PATH_MAX], wd[PATH_MAX], err[512];
	state_default_workdir(wd, sizeof(wd));
	if (path_resolve(json_get_string(req, "path"), u, *wd ? wd : NULL, root, sizeof(root), err,
			 sizeof(err)) < 0) {
		rpc_fail(e, "invalid_argument", "%s", err);
		return;
	}
	struct json_object *v;
	bool recursive = json_object_object_get_ex(req, "recursive", &v) && json_object_get_boolean(v);
	bool include_entry = json_object_object_get_ex(req, "includeEntry", &v) && json_object_get_boolean(v);
	struct ident_saved id;
	ident_enter(u, &id);
	struct watcher w = { .fd = -1 };
	struct stat st;
	if (stat(root, &st) < 0) {
		rpc_fail_errno(e, errno, "path %s cannot be watched", root);
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rpc_fail(e, "invalid_argument", "path %s not a directory", root);
		goto out;
	}
	w.fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (w.fd < 0 || add_watch(&w, root, recursive) < 0) {
		rpc_fail_errno(e, errno, "error adding path %s to watcher", root);
		goto out;
	}
	struct json_object *m = json_object_new_object();
	json_object_object_add(m, "start", json_object_new_object());
	int r = rpc_stream_send(s, m);
	json_object_put(m);
	if (r < 0) {
		rpc_fail(e, "canceled", "client went away");
		goto out;
	}
	int64_t next_ka = (int64_t)now_ns() + (int64_t)s->keepalive_ms * 1000000;
	bool watch_sock = true;
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	size_t rootlen = strlen(root);
	for (;;) {
		int64_t now = (int64_t)now_ns(), wake = next_ka;
		if (s->deadline_ns && s->deadline_ns < wake)
			wake = s->deadline_ns;
		int timeout = wake <= now ? 0 : (int)MIN((wake - now) / 1000000 + 1, 1 << 30);
		struct pollfd fds[2] = { { .fd = w.fd, .events = POLLIN },
					 { .fd = s->c->fd, .events = POLLIN | POLLRDHUP } };
		int pr = poll(fds, watch_sock ? 2 : 1, timeout);
		if (pr < 0 && errno != EINTR) {
			rpc_fail(e, "internal", "poll failed");
			goto out;
		}
		if (watch_sock && pr > 0 && (fds[1].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) {
			char c;
			ssize_t n = recv(s->c->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				rpc_fail(e, "canceled", "client went away");
				s->c->broken = true;
				goto out;
			}
			if (n > 0)
				watch_sock = false;
		}
		if (pr > 0 && (fds[0].revents & POLLIN)) {
			ssize_t n = read(w.fd, buf, sizeof(buf));
			for (char *p = buf; n > 0 && p < buf + n;) {
				struct inotify_event *ev = (struct inotify_event *)p;
				p += sizeof(*ev) + ev->len;
				if (ev->mask & IN_Q_OVERFLOW) {
					rpc_fail(e, "resource_exhausted", "watcher event queue overflowed");
					goto out;
				}
				const char *dir = wd_lookup(&w, ev->wd);
				if (!dir)
					continue;
				char full[PATH_MAX];
				if (ev->len)
					snprintf(full, sizeof(full), "%s/%s", dir, ev->name);
				else
					snprintf(full, sizeof(full), "%s", dir);
				const char *rel = strlen(full) > rootlen ? full + rootlen + 1 : ".";
				static const struct {
					uint32_t mask;
					const char *type;
				} map[] = {
					{ IN_CREATE | IN_MOVED_TO, "EVENT_TYPE_CREATE" },
					{ IN_MOVED_FROM | IN_MOVE_SELF, "EVENT_TYPE_RENAME" },
					{ IN_ATTRIB, "EVENT_TYPE_CHMOD" },
					{ IN_MODIFY, "EVENT_TYPE_WRITE" },
					{ IN_DELETE | IN_DELETE_SELF, "EVENT_TYPE_REMOVE" },
				};
				for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
					if (!(ev->mask & map[i].mask))
						continue;
					bool carries = i == 0 || i == 2 || i == 3;
					if (send_event(s, rel, map[i].type, full, include_entry && carries) < 0) {
						rpc_fail(e, "canceled", "client went away");
						goto out;
					}
					next_ka = (int64_t)now_ns() + (int64_t)s->keepalive_ms * 1000000;
				}
				if (recursive && (ev->mask & (IN_CREATE | IN_MOVED_TO)) && (ev->mask & IN_ISDIR))
					add_watch(&w, full, true);
				if ((ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) && strcmp(dir, root) == 0) {
					rpc_fail(e, "not_found", "watched directory %s is gone", root);
					goto out;
				}
			}
		}
		now = (int64_t)now_ns();
		if (s->deadline_ns && now >= s->deadline_ns) {
			rpc_fail(e, "deadline_exceeded", "deadline exceeded");
			goto out;
		}
		if (now >= next_ka) {
			m = json_object_new_object();
			json_object_object_add(m, "keepalive", json_object_new_object());
			r = rpc_stream_send(s, m);
			json_object_put(m);
			if (r < 0) {
				rpc_fail(e, "canceled", "client went away");
				goto out;
			}
			next_ka = now + (int64_t)s->keepalive_ms * 1000000;
		}
	}
out:
	watcher_release(&w);
	ident_leave(&id);
}
