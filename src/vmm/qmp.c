/*
 * qmp.c - QMP client (see qmp.h). Messages are one JSON object per line ("\r\n" ends each);
 * we tag every command with a numeric "id" and skip stale responses, so a command that
 * timed out cannot be mistaken for the answer to the next one.
 *
 * Invariants: q->buf holds only bytes not yet parsed; events are queued in arrival order.
 * Threading: one thread per struct qmp; no locks.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include <json-c/json.h>

#include "common/common.h"
#include "vmm/qmp.h"

#define QMP_LINE_MAX (16u << 20)
#define QMP_EVENTS_MAX 256

static int qmp_fill(struct qmp *q, uint64_t deadline)
{
	struct pollfd pfd[2] = { { .fd = q->fd, .events = POLLIN }, { .fd = q->pidfd, .events = POLLIN } };
	int nfds = q->pidfd >= 0 ? 2 : 1;
	ssize_t n;

	for (;;) {
		uint64_t now = now_ns();
		int ms, r;
		if (now >= deadline)
			return err_set("qmp: timed out waiting for qemu");
		ms = (int)MIN((deadline - now + 999999) / 1000000, (uint64_t)INT32_MAX);
		r = poll(pfd, (nfds_t)nfds, ms);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return err_set_errno(errno, "qmp: poll");
		}
		if (r == 0)
			continue;
		if (pfd[0].revents)
			break;
		if (nfds == 2 && pfd[1].revents)
			return err_set("qmp: qemu exited");
	}
	if (q->cap - q->len < 4096) {
		size_t ncap = q->cap ? q->cap * 2 : 8192;
		char *nb;
		if (ncap > QMP_LINE_MAX)
			return err_set("qmp: message longer than %u bytes", QMP_LINE_MAX);
		nb = realloc(q->buf, ncap);
		if (!nb)
			return err_set_errno(ENOMEM, "qmp");
		q->buf = nb;
		q->cap = ncap;
	}
	do
		n = recv(q->fd, q->buf + q->len, q->cap - q->len - 1, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_set_errno(errno, "qmp: recv");
	if (n == 0)
		return err_set("qmp: connection closed by qemu");
	q->len += (size_t)n;
	return 0;
}

/* Next complete message into *msg (caller puts). */
static int qmp_read_msg(struct qmp *q, uint64_t deadline, struct json_object **msg)
{
	for (;;) {
		char *nl = q->len ? memchr(q->buf, '\n', q->len) : NULL;
		if (nl) {
			size_t linelen = (size_t)(nl - q->buf) + 1;
			enum json_tokener_error jerr;
			struct json_object *o;
			*nl = '\0';
			o = json_tokener_parse_verbose(q->buf, &jerr);
			memmove(q->buf, q->buf + linelen, q->len - linelen);
			q->len -= linelen;
			if (!o || !json_object_is_type(o, json_type_object)) {
				json_object_put(o);
				return err_set("qmp: malformed message from qemu");
			}
			*msg = o;
			return 0;
		}
		if (qmp_fill(q, deadline) < 0)
			return -1;
	}
}

static int qmp_queue_event(struct qmp *q, struct json_object *ev)
{
	struct json_object **ne;
	if (q->nevents >= QMP_EVENTS_MAX) { /* nobody waits for them: drop the oldest */
		json_object_put(q->events[0]);
		memmove(q->events, q->events + 1, (q->nevents - 1) * sizeof(*q->events));
		q->nevents--;
	}
	ne = realloc(q->events, (q->nevents + 1) * sizeof(*q->events));
	if (!ne) {
		json_object_put(ev);
		return err_set_errno(ENOMEM, "qmp");
	}
	q->events = ne;
	q->events[q->nevents++] = ev;
	return 0;
}

static int qmp_send(struct qmp *q, const char *data, size_t len, int pass_fd)
{
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (pass_fd >= 0) {
		struct cmsghdr *c;
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	while (iov.iov_len > 0) {
		n = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return err_set_errno(errno, "qmp: send");
		}
		iov.iov_base = (char *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
		mh.msg_control = NULL; /* the fd went with the first byte */
		mh.msg_controllen = 0;
	}
	return 0;
}

int qmp_call(struct qmp *q, const char *cmd, struct json_object *args, int pass_fd,
	     uint64_t timeout_ms, struct json_object **ret)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	uint64_t id = ++q->next_id;
	struct json_object *req = json_object_new_object();
	const char *text;
	char *line;
	int r;

	if (ret)
		*ret = NULL;
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_uint64(id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (asprintf(&line, "%s\n", text) < 0) {
		json_object_put(req);
		return err_set_errno(ENOMEM, "qmp");
	}
	json_object_put(req);
	r = qmp_send(q, line, strlen(line), pass_fd);
	free(line);
	if (r < 0)
		return err_prefix("%s", cmd);

	for (;;) {
		struct json_object *msg, *v;
		if (qmp_read_msg(q, deadline, &msg) < 0)
			return err_prefix("%s", cmd);
		if (json_object_object_get_ex(msg, "event", NULL)) {
			if (qmp_queue_event(q, msg) < 0)
				return -1;
			continue;
		}
		if (!json_object_object_get_ex(msg, "id", &v) || json_object_get_uint64(v) != id) {
			json_object_put(msg); /* answer to a command that timed out earlier */
			continue;
		}
		if (json_object_object_get_ex(msg, "error", &v)) {
			struct json_object *desc = NULL;
			json_object_object_get_ex(v, "desc", &desc);
			err_set("%s: %s", cmd, desc ? json_object_get_string(desc) : "qmp error");
			json_object_put(msg);
			return -1;
		}
		if (!json_object_object_get_ex(msg, "return", &v)) {
			json_object_put(msg);
			return err_set("%s: qmp answer without return", cmd);
		}
		if (ret)
			*ret = json_object_get(v);
		json_object_put(msg);
		return 0;
	}
}

static bool event_matches(struct json_object *ev, const char *name,
			  bool (*match)(struct json_object *, void *), void *opaque)
{
	struct json_object *n, *data = NULL;
	if (!json_object_object_get_ex(ev, "event", &n) || strcmp(json_object_get_string(n), name))
		return false;
	json_object_object_get_ex(ev, "data", &data);
	return !match || match(data, opaque);
}

int qmp_wait_event(struct qmp *q, const char *name,
		   bool (*match)(struct json_object *data, void *opaque), void *opaque,
		   uint64_t timeout_ms, struct json_object **ev)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	size_t i;

	if (ev)
		*ev = NULL;
	for (i = 0; i < q->nevents; i++) {
		if (event_matches(q->events[i], name, match, opaque)) {
			struct json_object *e = q->events[i];
			memmove(q->events + i, q->events + i + 1, (q->nevents - i - 1) * sizeof(*q->events));
			q->nevents--;
			if (ev)
				*ev = e;
			else
				json_object_put(e);
			return 0;
		}
	}
	for (;;) {
		struct json_object *msg;
		if (qmp_read_msg(q, deadline, &msg) < 0)
			return err_prefix("waiting for event %s", name);
		if (!json_object_object_get_ex(msg, "event", NULL)) {
			json_object_put(msg); /* stale command answer */
			continue;
		}
		if (event_matches(msg, name, match, opaque)) {
			if (ev)
				*ev = msg;
			else
				json_object_put(msg);
			return 0;
		}
		if (qmp_queue_event(q, msg) < 0)
			return -1;
	}
}

int qmp_open(struct qmp *q, int fd, int pidfd, uint64_t timeout_ms,
	     struct json_object **greeting)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	struct json_object *g = NULL;

	memset(q, 0, sizeof(*q));
	q->fd = fd;
	q->pidfd = pidfd;
	if (greeting)
		*greeting = NULL;
	if (qmp_read_msg(q, deadline, &g) < 0) {
		err_prefix("qmp greeting");
		goto err;
	}
	if (!json_object_object_get_ex(g, "QMP", NULL)) {
		err_set("qmp: unexpected greeting");
		goto err;
	}
	if (qmp_call(q, "qmp_capabilities", NULL, -1, timeout_ms, NULL) < 0)
		goto err;
	if (greeting)
		*greeting = g;
	else
		json_object_put(g);
	return 0;
err:
	json_object_put(g);
	qmp_close(q);
	return -1;
}

void qmp_close(struct qmp *q)
{
	size_t i;
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	free(q->buf);
	q->buf = NULL;
	q->len = q->cap = 0;
	for (i = 0; i < q->nevents; i++)
		json_object_put(q->events[i]);
	free(q->events);
	q->events = NULL;
	q->nevents = 0;
}
