/*
 * process.c - process.Process: Start/Connect streams, List, SendSignal, SendInput,
 * CloseStdin, Update (pty size).
 *
 * Each child has one reader thread that drains its stdout/stderr pipes (or pty master),
 * hands every chunk to the current subscribers (Start and Connect streams) and reaps the
 * child (pidfd + waitpid on that pid only), then publishes the end event and drops the process
 * from the table. Output produced while nobody is subscribed is discarded, as in the
 * reference. A subscriber queue holds at most SUB_QUEUE_MAX events; a full queue makes the
 * reader wait (back-pressure on that child only, never on other requests).
 * Locking: table_lock guards the table; proc->lock guards subs/ended/fds; proc->in_lock
 * serialises stdin writes. A proc is reference counted (table + reader + users).
 * Every fd is O_CLOEXEC; the child gets only 0, 1, 2.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "envd.h"

#define SUB_QUEUE_MAX 64
#define READ_CHUNK (32 * 1024)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

extern char **environ;

enum ev_kind { EV_STDOUT, EV_STDERR, EV_PTY, EV_END };

struct ev {
	struct ev *next;
	enum ev_kind kind;
	size_t len;
	char data[];
};

struct sub {
	struct sub *next;
	struct ev *head, *tail;
	size_t n;
	int efd;
	bool gone;
};

struct proc {
	struct proc *next; /* table link, table_lock */
	pthread_mutex_t lock;
	pthread_cond_t space;
	pthread_mutex_t in_lock;
	int refs;
	pid_t pid;
	int pidfd;
	int out_fd, err_fd, pty_fd, in_fd;
	char *tag;
	struct json_object *config;
	struct sub *subs;
	bool ended;
	bool killed;         /* SIGKILL/SIGTERM sent: stop waiting for output after exit */
	int64_t deadline_ns; /* kill at this monotonic time, 0 = never */
	int status;          /* wait status once ended */
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct proc *table;
static int nprocs;

void process_init(void)
{
	/* Children are reaped by pid; an inherited SIG_IGN for SIGCHLD would make the kernel reap
	 * them first and lose their exit status. An inherited signal mask would leak into them. */
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int process_count(void)
{
	pthread_mutex_lock(&table_lock);
	int n = nprocs;
	pthread_mutex_unlock(&table_lock);
	return n;
}

static void proc_unref(struct proc *p)
{
	pthread_mutex_lock(&p->lock);
	int left = --p->refs;
	pthread_mutex_unlock(&p->lock);
	if (left)
		return;
	if (p->in_fd >= 0)
		close(p->in_fd);
	if (p->pty_fd >= 0)
		close(p->pty_fd);
	if (p->pidfd >= 0)
		close(p->pidfd);
	json_object_put(p->config);
	free(p->tag);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->in_lock);
	pthread_cond_destroy(&p->space);
	free(p);
}

/* Append ev (copied per subscriber) to every subscriber. Waits for queue space. */
static void publish(struct proc *p, enum ev_kind kind, const void *data, size_t len)
{
	pthread_mutex_lock(&p->lock);
	for (struct sub *s = p->subs; s; s = s->next) {
		while (s->n >= SUB_QUEUE_MAX && !s->gone && kind != EV_END)
			pthread_cond_wait(&p->space, &p->lock);
		if (s->gone)
			continue;
		struct ev *e = malloc(sizeof(*e) + len);
		if (!e)
			continue;
		e->next = NULL;
		e->kind = kind;
		e->len = len;
		if (len)
			memcpy(e->data, data, len);
		if (s->tail)
			s->tail->next = e;
		else
			s->head = e;
		s->tail = e;
		s->n++;
		uint64_t one = 1;
		ssize_t w = write(s->efd, &one, sizeof(one));
		(void)w;
	}
	pthread_mutex_unlock(&p->lock);
}

static void *reader_thread(void *arg)
{
	struct proc *p = arg;
	char *buf = malloc(READ_CHUNK);
	bool exited = false;
	int status = 0;
	for (;;) {
		bool outputs = p->out_fd >= 0 || p->err_fd >= 0 || p->pty_fd >= 0;
		if (exited && (!outputs || __atomic_load_n(&p->killed, __ATOMIC_RELAXED)))
			break;
		struct pollfd fds[4];
		int nf = 0, i_out = -1, i_err = -1, i_pty = -1, i_pid = -1;
		if (p->out_fd >= 0) {
			i_out = nf;
			fds[nf++] = (struct pollfd){ .fd = p->out_fd, .events = POLLIN };
		}
		if (p->err_fd >= 0) {
			i_err = nf;
			fds[nf++] = (struct pollfd){ .fd = p->err_fd, .events = POLLIN };
		}
		if (p->pty_fd >= 0 && !(exited && __atomic_load_n(&p->killed, __ATOMIC_RELAXED))) {
			i_pty = nf;
			fds[nf++] = (struct pollfd){ .fd = p->pty_fd, .events = POLLIN };
		}
		if (!exited && p->pidfd >= 0) {
			i_pid = nf;
			fds[nf++] = (struct pollfd){ .fd = p->pidfd, .events = POLLIN };
		}
		int timeout = -1;
		if (!exited && p->pidfd < 0)
			timeout = 50;
		if (!exited && p->deadline_ns) {
			int64_t left = (p->deadline_ns - (int64_t)now_ns()) / 1000000;
			if (left <= 0) {
				kill(p->pid, SIGKILL);
				__atomic_store_n(&p->killed, true, __ATOMIC_RELAXED);
				p->deadline_ns = 0;
				left = 0;
			}
			if (timeout < 0 || left < timeout)
				timeout = (int)MIN(left + 1, 1 << 30);
		}
		int r = poll(fds, (nfds_t)nf, timeout);
		if (r < 0 && errno != EINTR)
			break;
		int idx[3] = { i_out, i_err, i_pty };
		int *fdp[3] = { &p->out_fd, &p->err_fd, &p->pty_fd };
		enum ev_kind kinds[3] = { EV_STDOUT, EV_STDERR, EV_PTY };
		for (int k = 0; k < 3 && r > 0; k++) {
			if (idx[k] < 0 || !(fds[idx[k]].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = buf ? read(*fdp[k], buf, READ_CHUNK) : -1;
			if (n > 0) {
				publish(p, kinds[k], buf, (size_t)n);
			} else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
				/* EOF (pipes) or EIO (pty whose slave side is gone) */
				if (k != 2)
					close(*fdp[k]);
				else {
					pthread_mutex_lock(&p->lock);
					close(p->pty_fd);
				}
				*fdp[k] = -1;
				if (k == 2)
					pthread_mutex_unlock(&p->lock);
			}
		}
		if (!exited && (p->pidfd < 0 || (i_pid >= 0 && (fds[i_pid].revents & POLLIN)))) {
			pid_t w = waitpid(p->pid, &status, WNOHANG);
			if (w == p->pid || (w < 0 && errno == ECHILD))
				exited = true;
		}
	}
	if (!exited) /* only on poll failure: make sure the child is reaped */
		waitpid(p->pid, &status, 0);
	for (int k = 0; k < 2; k++) {
		int *fd = k ? &p->err_fd : &p->out_fd;
		if (*fd >= 0) {
			close(*fd);
			*fd = -1;
		}
	}
	free(buf);
	/* leave the table first so List/SendSignal stop seeing it */
	pthread_mutex_lock(&table_lock);
	for (struct proc **pp = &table; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			nprocs--;
			break;
		}
	pthread_mutex_unlock(&table_lock);
	pthread_mutex_lock(&p->lock);
	p->status = status;
	p->ended = true;
	pthread_mutex_unlock(&p->lock);
	publish(p, EV_END, NULL, 0);
	proc_unref(p); /* the table's reference */
	proc_unref(p); /* the reader's reference */
	release_thread_stack();
	return NULL;
}

/* ---- env and spawning ---- */

struct strv {
	char **v;
	size_t n, cap;
};

static void strv_set(struct strv *s, const char *key, const char *value)
{
	size_t kl = strlen(key);
	char *kv;
	if (asprintf(&kv, "%s=%s", key, value) < 0)
		return;
	for (size_t i = 0; i < s->n; i++)
		if (strncmp(s->v[i], key, kl) == 0 && s->v[i][kl] == '=') {
			free(s->v[i]);
			s->v[i] = kv;
			return;
		}
	if (s->n + 2 > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 32;
		char **nv = realloc(s->v, s->cap * sizeof(char *));
		if (!nv) {
			free(kv);
			return;
		}
		s->v = nv;
	}
	s->v[s->n++] = kv;
	s->v[s->n] = NULL;
}

static void strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

static const char *strv_get(const struct strv *s, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < s->n; i++)
		if (strncmp(s->v[i], key, kl) == 0 && s->v[i][kl] == '=')
			return s->v[i] + kl + 1;
	return NULL;
}

/* Find cmd in PATH (when it has no slash). Returns 0 and fills out, or -1 with errno. */
static int find_exec(const char *cmd, const char *path, char *out, size_t outlen)
{
	if (strchr(cmd, '/')) {
		snprintf(out, outlen, "%s", cmd);
		return 0;
	}
	int err = ENOENT;
	const char *p = path ? path : DEFAULT_PATH;
	while (*p) {
		const char *c = strchr(p, ':');
		size_t dl = c ? (size_t)(c - p) : strlen(p);
		snprintf(out, outlen, "%.*s/%s", (int)dl, dl ? p : ".", cmd);
		struct stat st;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
			if (access(out, X_OK) == 0)
				return 0;
			err = EACCES;
		}
		p = c ? c + 1 : p + dl;
	}
	errno = err;
	return -1;
}

static struct proc *proc_find(struct json_object *req, struct rpc_error *e)
{
	struct json_object *sel, *v;
	if (!json_object_object_get_ex(req, "process", &sel) || !json_object_is_type(sel, json_type_object)) {
		rpc_fail(e, "invalid_argument", "process selector is required");
		return NULL;
	}
	int64_t pid = -1;
	const char *tag = NULL;
	if (json_object_object_get_ex(sel, "pid", &v)) {
		errno = 0;
		pid = json_object_get_int64(v);
		if (pid <= 0 || pid > INT32_MAX) {
			rpc_fail(e, "invalid_argument", "invalid pid");
			return NULL;
		}
	} else if ((tag = json_get_string(sel, "tag")) == NULL) {
		rpc_fail(e, "invalid_argument", "process selector needs a pid or a tag");
		return NULL;
	}
	pthread_mutex_lock(&table_lock);
	struct proc *found = NULL;
	for (struct proc *p = table; p; p = p->next)
		if ((pid > 0 && p->pid == pid) || (tag && p->tag && strcmp(p->tag, tag) == 0)) {
			found = p;
			pthread_mutex_lock(&p->lock);
			p->refs++;
			pthread_mutex_unlock(&p->lock);
			break;
		}
	pthread_mutex_unlock(&table_lock);
	if (!found) {
		if (tag)
			rpc_fail(e, "not_found", "process with tag '%s' not found", tag);
		else
			rpc_fail(e, "not_found", "process with pid %lld not found", (long long)pid);
	}
	return found;
}

static struct sub *subscribe(struct proc *p)
{
	struct sub *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->efd < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_lock(&p->lock);
	s->next = p->subs;
	p->subs = s;
	pthread_mutex_unlock(&p->lock);
	return s;
}

static void unsubscribe(struct proc *p, struct sub *s)
{
	pthread_mutex_lock(&p->lock);
	for (struct sub **sp = &p->subs; *sp; sp = &(*sp)->next)
		if (*sp == s) {
			*sp = s->next;
			break;
		}
	s->gone = true;
	pthread_cond_broadcast(&p->space);
	pthread_mutex_unlock(&p->lock);
	for (struct ev *e = s->head, *n; e; e = n) {
		n = e->next;
		free(e);
	}
	close(s->efd);
	free(s);
}

static struct json_object *event_msg(const char *kind, struct json_object *payload)
{
	struct json_object *ev = json_object_new_object(), *msg = json_object_new_object();
	json_object_object_add(ev, kind, payload);
	json_object_object_add(msg, "event", ev);
	return msg;
}

static struct json_object *end_payload(int status)
{
	struct json_object *o = json_object_new_object();
	char st[96];
	int code;
	bool exited = WIFEXITED(status);
	if (exited) {
		code = WEXITSTATUS(status);
		snprintf(st, sizeof(st), "exit status %d", code);
	} else {
		code = -1;
		int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
		const char *name = strsignal(sig);
		char lower[64];
		size_t i = 0;
		for (; name && name[i] && i + 1 < sizeof(lower); i++)
			lower[i] = (char)(i == 0 ? tolower((unsigned char)name[i]) : name[i]);
		lower[i] = '\0';
		snprintf(st, sizeof(st), "signal: %s", lower);
	}
	json_object_object_add(o, "exitCode", json_object_new_int(code));
	json_object_object_add(o, "exited", json_object_new_boolean(exited));
	json_object_object_add(o, "status", json_object_new_string(st));
	if (!exited || code != 0)
		json_object_object_add(o, "error", json_object_new_string(st));
	return o;
}

/* Serve a subscription until the end event, the client leaving, or the deadline. */
static void pump(struct rpc_stream *s, struct proc *p, struct sub *sub, struct rpc_error *e)
{
	struct json_object *start = json_object_new_object();
	json_object_object_add(start, "pid", json_object_new_int(p->pid));
	struct json_object *m = event_msg("start", start);
	int r = rpc_stream_send(s, m);
	json_object_put(m);
	if (r < 0) {
		rpc_fail(e, "canceled", "client went away");
		return;
	}
	bool watch_sock = true;
	int64_t next_ka = (int64_t)now_ns() + (int64_t)s->keepalive_ms * 1000000;
	for (;;) {
		uint64_t cnt;
		ssize_t rr = read(sub->efd, &cnt, sizeof(cnt));
		(void)rr;
		pthread_mutex_lock(&p->lock);
		struct ev *list = sub->head;
		sub->head = sub->tail = NULL;
		sub->n = 0;
		pthread_cond_broadcast(&p->space);
		int status = p->status;
		pthread_mutex_unlock(&p->lock);
		bool done = false;
		for (struct ev *ev = list, *n; ev; ev = n) {
			n = ev->next;
			if (!done && r == 0) {
				if (ev->kind == EV_END) {
					m = event_msg("end", end_payload(status));
					done = true;
				} else {
					static const char *const names[] = { "stdout", "stderr", "pty" };
					char *b = b64_encode(ev->data, ev->len);
					struct json_object *d = json_object_new_object();
					json_object_object_add(d, names[ev->kind], json_object_new_string(b ? b : ""));
					free(b);
					m = event_msg("data", d);
				}
				r = rpc_stream_send(s, m);
				json_object_put(m);
				next_ka = (int64_t)now_ns() + (int64_t)s->keepalive_ms * 1000000;
			}
			free(ev);
		}
		if (r < 0) {
			rpc_fail(e, "canceled", "client went away");
			return;
		}
		if (done)
			return;
		int64_t now = (int64_t)now_ns();
		int64_t wake = next_ka;
		if (s->deadline_ns && s->deadline_ns < wake)
			wake = s->deadline_ns;
		int timeout = wake <= now ? 0 : (int)MIN((wake - now) / 1000000 + 1, 1 << 30);
		struct pollfd fds[2] = { { .fd = sub->efd, .events = POLLIN },
					 { .fd = s->c->fd, .events = POLLIN | POLLRDHUP } };
		int pr = poll(fds, watch_sock ? 2 : 1, timeout);
		if (pr < 0 && errno != EINTR) {
			rpc_fail(e, "internal", "poll failed");
			return;
		}
		if (watch_sock && pr > 0 && (fds[1].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR))) {
			char c;
			ssize_t n = recv(s->c->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
				rpc_fail(e, "canceled", "client went away");
				s->c->broken = true;
				return;
			}
			if (n > 0)
				watch_sock = false; /* pipelined bytes: leave them for later */
		}
		now = (int64_t)now_ns();
		if (s->deadline_ns && now >= s->deadline_ns) {
			rpc_fail(e, "deadline_exceeded", "deadline exceeded");
			return;
		}
		if (now >= next_ka) {
			m = event_msg("keepalive", json_object_new_object());
			r = rpc_stream_send(s, m);
			json_object_put(m);
			next_ka = now + (int64_t)s->keepalive_ms * 1000000;
		}
	}
}

struct spawn_args {
	char path[PATH_MAX];
	char **argv;
	char **envp;
	const char *cwd;
	const struct envd_user *u;
	bool change_user;
	int in_fd, out_fd, err_fd; /* child ends; -1 = /dev/null */
	const char *pty_slave;
	int errpipe;
};

/* Runs in the forked child: only async-signal-safe calls. */
static __attribute__((noreturn)) void child_exec(const struct spawn_args *a)
{
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	int err, step = 0;
	if (a->pty_slave) {
		setsid();
		int fd = open(a->pty_slave, O_RDWR);
		if (fd < 0)
			goto fail;
		ioctl(fd, TIOCSCTTY, 0);
		if (dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			goto fail;
		if (fd > 2)
			close(fd);
	} else {
		int null = open("/dev/null", O_RDWR);
		int in = a->in_fd >= 0 ? a->in_fd : null;
		if (in < 0 || dup2(in, 0) < 0 || dup2(a->out_fd, 1) < 0 || dup2(a->err_fd, 2) < 0)
			goto fail;
		if (null > 2)
			close(null);
	}
	/* like the reference: user processes are the first the OOM killer picks, not envd */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		ssize_t ow = write(oom, "100", 3);
		(void)ow;
		close(oom);
	}
	step = 1;
	if (a->change_user) {
		if (syscall(SYS_setgroups, (size_t)a->u->ngroups, a->u->groups) < 0 ||
		    syscall(SYS_setgid, a->u->gid) < 0 || syscall(SYS_setuid, a->u->uid) < 0)
			goto fail;
	}
	step = 2;
	if (chdir(a->cwd) < 0)
		goto fail;
	step = 3;
	execve(a->path, a->argv, a->envp);
fail:
	err = errno;
	int msg[2] = { step, err };
	ssize_t w = write(a->errpipe, msg, sizeof(msg));
	(void)w;
	_exit(127);
}

void process_start(struct rpc_stream *s, struct json_object *req, const struct envd_user *u,
		   struct rpc_error *e)
{
	struct json_object *pc, *v;
	if (!json_object_object_get_ex(req, "process", &pc) || !json_object_is_type(pc, json_type_object)) {
		rpc_fail(e, "invalid_argument", "process is required");
		return;
	}
	const char *cmd = json_get_string(pc, "cmd");
	if (!cmd || !*cmd) {
		rpc_fail(e, "invalid_argument", "process.cmd is required");
		return;
	}
	struct json_object *args = NULL, *envs = NULL, *pty = NULL, *size = NULL;
	if (json_object_object_get_ex(pc, "args", &args) && !json_object_is_type(args, json_type_array) &&
	    !json_object_is_type(args, json_type_null)) {
		rpc_fail(e, "invalid_argument", "process.args must be a list of strings");
		return;
	}
	if (json_object_object_get_ex(pc, "envs", &envs) && !json_object_is_type(envs, json_type_object) &&
	    !json_object_is_type(envs, json_type_null)) {
		rpc_fail(e, "invalid_argument", "process.envs must be a map of strings");
		return;
	}
	bool want_stdin = true;
	if (json_object_object_get_ex(req, "stdin", &v) && json_object_is_type(v, json_type_boolean))
		want_stdin = json_object_get_boolean(v);
	uint32_t cols = 80, rows = 24;
	if (json_object_object_get_ex(req, "pty", &pty) && json_object_is_type(pty, json_type_object)) {
		if (json_object_object_get_ex(pty, "size", &size) && json_object_is_type(size, json_type_object)) {
			if (json_object_object_get_ex(size, "cols", &v))
				cols = (uint32_t)json_object_get_int64(v);
			if (json_object_object_get_ex(size, "rows", &v))
				rows = (uint32_t)json_object_get_int64(v);
		}
	} else {
		pty = NULL;
	}
	const char *tag = json_get_string(req, "tag");

	/* cwd */
	char cwd[PATH_MAX], wd[PATH_MAX], err[512];
	state_default_workdir(wd, sizeof(wd));
	if (path_resolve(json_get_string(pc, "cwd"), u, *wd ? wd : NULL, cwd, sizeof(cwd), err, sizeof(err)) < 0) {
		rpc_fail(e, "invalid_argument", "%s", err);
		return;
	}
	struct stat st;
	if (stat(cwd, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rpc_fail(e, "invalid_argument", "cwd '%s' does not exist", cwd);
		return;
	}

	/* argv and env */
	size_t nargs = args && json_object_is_type(args, json_type_array) ? json_object_array_length(args) : 0;
	char **argv = calloc(nargs + 2, sizeof(char *));
	struct strv env = { 0 };
	struct spawn_args sa = { .cwd = cwd, .u = u, .in_fd = -1, .out_fd = -1, .err_fd = -1 };
	int in_p[2] = { -1, -1 }, out_p[2] = { -1, -1 }, err_p[2] = { -1, -1 }, ep[2] = { -1, -1 };
	int master = -1;
	char slave[128];
	struct proc *p = NULL;
	struct sub *sub = NULL;
	if (!argv) {
		rpc_fail(e, "internal", "out of memory");
		goto out;
	}
	argv[0] = (char *)cmd;
	for (size_t i = 0; i < nargs; i++) {
		struct json_object *a = json_object_array_get_idx(args, i);
		if (!json_object_is_type(a, json_type_string)) {
			rpc_fail(e, "invalid_argument", "process.args must be a list of strings");
			goto out;
		}
		argv[i + 1] = (char *)json_object_get_string(a);
	}
	const char *path_env = getenv("PATH");
	strv_set(&env, "PATH", path_env && *path_env ? path_env : DEFAULT_PATH);
	strv_set(&env, "HOME", u->home);
	strv_set(&env, "USER", u->name);
	strv_set(&env, "LOGNAME", u->name);
	struct json_object *defaults = state_env_vars();
	json_object_object_foreach(defaults, dk, dv) strv_set(&env, dk, json_object_get_string(dv));
	json_object_put(defaults);
	if (envs && json_object_is_type(envs, json_type_object)) {
		json_object_object_foreach(envs, k, ev)
		{
			if (!*k || strchr(k, '=') || !json_object_is_type(ev, json_type_string)) {
				rpc_fail(e, "invalid_argument", "invalid environment variable '%s'", k);
				goto out;
			}
			strv_set(&env, k, json_object_get_string(ev));
		}
	}
	if (find_exec(cmd, strv_get(&env, "PATH"), sa.path, sizeof(sa.path)) < 0) {
		rpc_fail_errno(e, errno, "error starting process '%s'", cmd);
		if (strcmp(e->code, "not_found") == 0 || strcmp(e->code, "permission_denied") == 0)
			e->code = "invalid_argument";
		goto out;
	}
	sa.argv = argv;
	sa.envp = env.v;
	sa.change_user = geteuid() == 0 ? true : u->uid != geteuid();

	if (pty) {
		master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
		    ptsname_r(master, slave, sizeof(slave)) != 0) {
			rpc_fail_errno(e, errno, "error creating a pty");
			goto out;
		}
		struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
		ioctl(master, TIOCSWINSZ, &ws);
		if (sa.change_user)
			(void)!chown(slave, u->uid, (gid_t)-1);
		sa.pty_slave = slave;
	} else {
		if (pipe2(out_p, O_CLOEXEC) < 0 || pipe2(err_p, O_CLOEXEC) < 0 ||
		    (want_stdin && pipe2(in_p, O_CLOEXEC) < 0)) {
			rpc_fail_errno(e, errno, "error creating pipes");
			goto out;
		}
		sa.out_fd = out_p[1];
		sa.err_fd = err_p[1];
		sa.in_fd = in_p[0];
	}
	if (pipe2(ep, O_CLOEXEC) < 0) {
		rpc_fail_errno(e, errno, "error creating pipes");
		goto out;
	}
	sa.errpipe = ep[1];

	p = calloc(1, sizeof(*p));
	if (!p) {
		rpc_fail(e, "internal", "out of memory");
		goto out;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->in_lock, NULL);
	pthread_cond_init(&p->space, NULL);
	p->refs = 1; /* ours */
	p->out_fd = p->err_fd = p->pty_fd = p->in_fd = p->pidfd = -1;
	p->tag = tag ? strdup(tag) : NULL;
	p->config = json_object_get(pc);
	if (s->deadline_ns)
		p->deadline_ns = s->deadline_ns;
	sub = subscribe(p);
	if (!sub) {
		rpc_fail_errno(e, errno, "error creating an eventfd");
		goto out;
	}

	pid_t pid = fork();
	if (pid < 0) {
		rpc_fail_errno(e, errno, "error starting process '%s'", cmd);
		goto out;
	}
	if (pid == 0)
		child_exec(&sa);
	close(ep[1]);
	ep[1] = -1;
	/* the child's ends: without closing them the pipes never reach EOF */
	for (int *fd = (int[]){ in_p[0], out_p[1], err_p[1] }, i = 0; i < 3; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	in_p[0] = out_p[1] = err_p[1] = -1;
	int child_err[2] = { 0, 0 };
	ssize_t n;
	do
		n = read(ep[0], child_err, sizeof(child_err));
	while (n < 0 && errno == EINTR);
	close(ep[0]);
	ep[0] = -1;
	if (n > 0) {
		waitpid(pid, NULL, 0);
		static const char *const steps[] = { "setting up stdio", "switching to the user",
						     "changing to the working directory", "executing" };
		rpc_fail_errno(e, child_err[1], "error starting process '%s' (%s as user '%s' in '%s')", cmd,
			       steps[child_err[0] & 3], u->name, cwd);
		e->code = "invalid_argument";
		goto out;
	}
	p->pid = pid;
	p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pty) {
		p->pty_fd = master;
		master = -1;
	} else {
		p->out_fd = out_p[0];
		p->err_fd = err_p[0];
		p->in_fd = in_p[1];
		out_p[0] = err_p[0] = in_p[1] = -1;
	}
	p->refs = 3; /* ours, the table's, the reader's */
	pthread_mutex_lock(&table_lock);
	p->next = table;
	table = p;
	nprocs++;
	pthread_mutex_unlock(&table_lock);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 128 * 1024);
	pthread_t th;
	if (pthread_create(&th, &attr, reader_thread, p) != 0) {
		/* cannot watch it: kill and reap it here */
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		pthread_mutex_lock(&table_lock);
		for (struct proc **pp = &table; *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				nprocs--;
				break;
			}
		pthread_mutex_unlock(&table_lock);
		p->refs = 1;
		if (p->out_fd >= 0)
			close(p->out_fd);
		if (p->err_fd >= 0)
			close(p->err_fd);
		rpc_fail(e, "internal", "cannot create a reader thread");
		pthread_attr_destroy(&attr);
		goto out;
	}
	pthread_attr_destroy(&attr);
	log_debug("started pid %d: %s", pid, cmd);
	pump(s, p, sub, e);
out:
	if (sub)
		unsubscribe(p, sub);
	if (p)
		proc_unref(p);
	for (int i = 0; i < 2; i++) {
		if (in_p[i] >= 0)
			close(in_p[i]);
		if (out_p[i] >= 0)
			close(out_p[i]);
		if (err_p[i] >= 0)
			close(err_p[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
	if (master >= 0)
		close(master);
	free(argv);
	strv_free(&env);
}

void process_connect(struct rpc_stream *s, struct json_object *req, struct rpc_error *e)
{
	struct proc *p = proc_find(req, e);
	if (!p)
		return;
	struct sub *sub = subscribe(p);
	if (!sub) {
		rpc_fail_errno(e, errno, "error creating an eventfd");
	} else {
		pthread_mutex_lock(&p->lock);
		bool ended = p->ended;
		pthread_mutex_unlock(&p->lock);
		if (ended)
			rpc_fail(e, "not_found", "process %d has ended", p->pid);
		else
			pump(s, p, sub, e);
		unsubscribe(p, sub);
	}
	proc_unref(p);
}

struct json_object *process_list(struct json_object *req, struct rpc_error *e)
{
	(void)req;
	(void)e;
	struct json_object *arr = json_object_new_array();
	pthread_mutex_lock(&table_lock);
	for (struct proc *p = table; p; p = p->next) {
		struct json_object *info = json_object_new_object();
		json_object_object_add(info, "config", json_object_get(p->config));
		json_object_object_add(info, "pid", json_object_new_int(p->pid));
		if (p->tag)
			json_object_object_add(info, "tag", json_object_new_string(p->tag));
		json_object_array_add(arr, info);
	}
	pthread_mutex_unlock(&table_lock);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "processes", arr);
	return o;
}

struct json_object *process_send_signal(struct json_object *req, struct rpc_error *e)
{
	struct json_object *v;
	int sig = 0;
	if (json_object_object_get_ex(req, "signal", &v)) {
		if (json_object_is_type(v, json_type_string)) {
			const char *s = json_object_get_string(v);
			if (strcmp(s, "SIGNAL_SIGKILL") == 0 || strcmp(s, "9") == 0)
				sig = SIGKILL;
			else if (strcmp(s, "SIGNAL_SIGTERM") == 0 || strcmp(s, "15") == 0)
				sig = SIGTERM;
		} else if (json_object_is_type(v, json_type_int)) {
			int64_t n = json_object_get_int64(v);
			if (n == 9 || n == 15)
				sig = (int)n;
		}
	}
	if (!sig) {
		rpc_fail(e, "invalid_argument", "invalid signal (want SIGNAL_SIGTERM or SIGNAL_SIGKILL)");
		return NULL;
	}
	struct proc *p = proc_find(req, e);
	if (!p)
		return NULL;
	pthread_mutex_lock(&p->lock);
	int rc = 0;
	if (!p->ended) {
		rc = kill(p->pid, sig);
		__atomic_store_n(&p->killed, true, __ATOMIC_RELAXED);
	}
	int err = errno;
	pthread_mutex_unlock(&p->lock);
	proc_unref(p);
	if (rc < 0) {
		rpc_fail_errno(e, err, "error sending signal");
		return NULL;
	}
	return json_object_new_object();
}

struct json_object *process_send_input(struct json_object *req, struct rpc_error *e)
{
	struct json_object *in;
	if (!json_object_object_get_ex(req, "input", &in) || !json_object_is_type(in, json_type_object)) {
		rpc_fail(e, "invalid_argument", "input is required");
		return NULL;
	}
	const char *b = json_get_string(in, "stdin");
	bool to_pty = false;
	if (!b) {
		b = json_get_string(in, "pty");
		to_pty = true;
	}
	if (!b) {
		rpc_fail(e, "invalid_argument", "input needs stdin or pty bytes");
		return NULL;
	}
	unsigned char *data;
	size_t len;
	if (b64_decode(b, strlen(b), &data, &len) < 0) {
		rpc_fail(e, "invalid_argument", "input bytes are not valid base64");
		return NULL;
	}
	struct proc *p = proc_find(req, e);
	if (!p) {
		free(data);
		return NULL;
	}
	pthread_mutex_lock(&p->in_lock);
	pthread_mutex_lock(&p->lock);
	int src = to_pty ? p->pty_fd : p->in_fd;
	int fd = src >= 0 ? fcntl(src, F_DUPFD_CLOEXEC, 3) : -1;
	pthread_mutex_unlock(&p->lock);
	int rc = 0, err = 0;
	if (fd < 0) {
		rc = -1;
		rpc_fail(e, "failed_precondition", to_pty ? "process %d has no pty" : "stdin of process %d is not enabled or closed", p->pid);
	} else {
		rc = full_write(fd, data, len);
		err = errno;
		close(fd);
		if (rc < 0)
			rpc_fail_errno(e, err, "error writing to the input of process %d", p->pid);
	}
	pthread_mutex_unlock(&p->in_lock);
	proc_unref(p);
	free(data);
	return rc < 0 ? NULL : json_object_new_object();
}

struct json_object *process_close_stdin(struct json_object *req, struct rpc_error *e)
{
	struct proc *p = proc_find(req, e);
	if (!p)
		return NULL;
	pthread_mutex_lock(&p->in_lock);
	pthread_mutex_lock(&p->lock);
	bool is_pty = p->pty_fd >= 0;
	if (!is_pty && p->in_fd >= 0) {
		close(p->in_fd);
		p->in_fd = -1;
	}
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&p->in_lock);
	proc_unref(p);
	if (is_pty) {
		rpc_fail(e, "failed_precondition", "cannot close stdin of a pty process, send Ctrl+D instead");
		return NULL;
	}
	return json_object_new_object();
}

struct json_object *process_update(struct json_object *req, struct rpc_error *e)
{
	struct json_object *pty, *size, *v;
	struct proc *p = proc_find(req, e);
	if (!p)
		return NULL;
	struct json_object *resp = NULL;
	if (json_object_object_get_ex(req, "pty", &pty) && json_object_object_get_ex(pty, "size", &size)) {
		struct winsize ws = { 0 };
		if (json_object_object_get_ex(size, "cols", &v))
			ws.ws_col = (unsigned short)json_object_get_int64(v);
		if (json_object_object_get_ex(size, "rows", &v))
			ws.ws_row = (unsigned short)json_object_get_int64(v);
		pthread_mutex_lock(&p->lock);
		int rc = p->pty_fd >= 0 ? ioctl(p->pty_fd, TIOCSWINSZ, &ws) : -1;
		bool has = p->pty_fd >= 0;
		pthread_mutex_unlock(&p->lock);
		if (!has)
			rpc_fail(e, "failed_precondition", "tty not assigned to process %d", p->pid);
		else if (rc < 0)
			rpc_fail_errno(e, errno, "error resizing the pty");
		else
			resp = json_object_new_object();
	} else {
		resp = json_object_new_object();
	}
	proc_unref(p);
	return resp;
}
