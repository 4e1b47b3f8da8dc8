/*
 * server.c - sockets and threads around the protocol engine (proto.c).
 *
 * One accept thread per listener (unix socket or TCP). Each connection starts with one
 * thread that runs the handshake, then NBD_WORKERS_PER_CONN threads serve it leader/follower
 * style (see nbd.h). Worker threads are detached; a connection is freed by its last worker.
 * nbd_server_stop shuts every connection's socket down (blocked reads return), then waits on
 * srv->cond until no connection is left, so after it returns no thread touches the device.
 *
 * Locking: srv->lock guards the connection list, each connection's worker count, the
 * counters and `stopping`. It is never held across I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include "internal.h"

#define MAX_LISTENERS 8

struct listener {
	int fd;
	char *unix_path;
	pthread_t thread;
	bool running;
	struct nbd_server *srv;
};

struct nbd_server {
	struct nbd_export exp;
	char *name, *desc;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct listener ls[MAX_LISTENERS];
	size_t nls;
	int wake_fd;
	bool stopping, stopped;
	struct nbd_conn *conns;
	uint64_t next_id;
	uint64_t connections, active, requests, protocol_errors;
};

/* ---- fd streams ---- */

static int fd_read(void *opaque, void *buf, size_t len)
{
	int fd = (int)(intptr_t)opaque;
	char *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fd_writev(void *opaque, const struct iovec *iov_in, int iovcnt)
{
	int fd = (int)(intptr_t)opaque;
	struct iovec iov[4];
	struct msghdr mh = { 0 };
	int i = 0;
	if (iovcnt > 4)
		return -1;
	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	while (i < iovcnt) {
		ssize_t n;
		if (iov[i].iov_len == 0) {
			i++;
			continue;
		}
		mh.msg_iov = iov + i;
		mh.msg_iovlen = (size_t)(iovcnt - i);
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		while (n > 0 && i < iovcnt) {
			size_t k = MIN((size_t)n, iov[i].iov_len);
			iov[i].iov_base = (char *)iov[i].iov_base + k;
			iov[i].iov_len -= k;
			n -= (ssize_t)k;
			if (iov[i].iov_len == 0)
				i++;
		}
	}
	return 0;
}

/* ---- connections ---- */

static void *thread_main(void *arg);

static int spawn(struct nbd_conn *c)
{
	pthread_t t;
	pthread_attr_t a;
	int e;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 256 << 10);
	e = pthread_create(&t, &a, thread_main, c);
	pthread_attr_destroy(&a);
	return e ? err_set_errno(e, "cannot start a connection thread") : 0;
}

static void conn_put(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;
	bool last;
	pthread_mutex_lock(&srv->lock);
	last = --c->workers == 0;
	if (last) {
		struct nbd_conn **pp = &srv->conns;
		while (*pp && *pp != c)
			pp = &(*pp)->next;
		if (*pp)
			*pp = c->next;
	}
	pthread_mutex_unlock(&srv->lock);
	if (!last)
		return;
	close(c->fd);
	pthread_mutex_destroy(&c->recv_lock);
	pthread_mutex_destroy(&c->send_lock);
	free(c);
	pthread_mutex_lock(&srv->lock);
	srv->active--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
}

static void conn_fail(struct nbd_conn *c)
{
	log_warn("nbd: connection %llu: %s: closing it", (unsigned long long)c->id, err_msg());
	__atomic_add_fetch(&c->srv->protocol_errors, 1, __ATOMIC_RELAXED);
	shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&c->recv_lock);
	c->closing = true;
	pthread_mutex_unlock(&c->recv_lock);
}

static void worker_loop(struct nbd_conn *c)
{
	struct nbd_buf buf = { 0 };
	int r;
	while ((r = nbd_serve_one(c, &buf)) == 1)
		;
	if (r < 0)
		conn_fail(c);
	nbd_buf_free(&buf);
}

static void *thread_main(void *arg)
{
	struct nbd_conn *c = arg;
	bool first;
	sigset_t pipe_set;
	/* splice() to a socket whose peer left raises SIGPIPE (it has no MSG_NOSIGNAL): keep it
	 * away from the process; proto.c drains it after an EPIPE */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL);
	pthread_mutex_lock(&c->srv->lock);
	first = !c->running;
	c->running = true;
	pthread_mutex_unlock(&c->srv->lock);
	if (first) {
		/* the connection's first thread: handshake, then bring up the other workers */
		int r = 1;
		if (c->handshake) {
			/* a client that stalls in the handshake does not hold its thread forever */
			struct timeval tv = { .tv_sec = NBD_HANDSHAKE_TIMEOUT_S }, none = { 0 };
			setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			r = nbd_handshake(c);
			setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
		}
		if (r < 0)
			conn_fail(c);
		if (r == 1) {
			for (int i = 1; i < NBD_WORKERS_PER_CONN; i++) {
				pthread_mutex_lock(&c->srv->lock);
				c->workers++;
				pthread_mutex_unlock(&c->srv->lock);
				if (spawn(c) < 0) {
					pthread_mutex_lock(&c->srv->lock);
					c->workers--;
					pthread_mutex_unlock(&c->srv->lock);
					break;
				}
			}
			worker_loop(c);
		}
	} else {
		worker_loop(c);
	}
	conn_put(c);
	return NULL;
}

static int conn_start(struct nbd_server *srv, int fd, bool handshake)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	int one = 1;
	if (!c) {
		close(fd);
		return err_set_errno(ENOMEM, "cannot accept a connection");
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* fails harmlessly on unix */
	{
		/* room for a few large READ replies in flight: fewer sleeps in sendmsg */
		int sz = 4 << 20;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) < 0)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	c->exp = &srv->exp;
	c->s = (struct nbd_stream){ .read = fd_read, .writev = fd_writev, .opaque = (void *)(intptr_t)fd };
	c->fd = fd;
	c->srv = srv;
	c->handshake = handshake;
	c->tflags = nbd_transmission_flags(&srv->exp);
	c->requests = &srv->requests;
	c->protocol_errors = &srv->protocol_errors;
	c->workers = 1;
	pthread_mutex_init(&c->recv_lock, NULL);
	pthread_mutex_init(&c->send_lock, NULL);
	pthread_mutex_lock(&srv->lock);
	if (srv->stopping || srv->active >= NBD_MAX_CONNECTIONS) {
		bool stopping = srv->stopping;
		pthread_mutex_unlock(&srv->lock);
		close(fd);
		pthread_mutex_destroy(&c->recv_lock);
		pthread_mutex_destroy(&c->send_lock);
		free(c);
		return stopping ? err_set("server is stopping")
				: err_set("refusing a connection: %d are open", NBD_MAX_CONNECTIONS);
	}
	c->id = ++srv->next_id;
	c->next = srv->conns;
	srv->conns = c;
	srv->connections++;
	srv->active++;
	pthread_mutex_unlock(&srv->lock);
	if (spawn(c) < 0) {
		int e = errno;
		c->workers = 1;
		conn_put(c);
		errno = e;
		return -1;
	}
	return 0;
}

int nbd_server_serve_fd(struct nbd_server *srv, int fd, bool handshake)
{
	return conn_start(srv, fd, handshake);
}

/* ---- listeners ---- */

static void *accept_main(void *arg)
{
	struct listener *l = arg;
	struct nbd_server *srv = l->srv;
	for (;;) {
		struct pollfd p[2] = { { .fd = l->fd, .events = POLLIN }, { .fd = srv->wake_fd, .events = POLLIN } };
		int fd;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("nbd: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_warn("nbd: accept: %s", strerror(errno));
				poll(NULL, 0, 100);
				continue;
			}
			log_error("nbd: accept: %s", strerror(errno));
			break;
		}
		if (conn_start(srv, fd, true) < 0)
			log_warn("nbd: %s", err_msg());
	}
	return NULL;
}

static struct listener *listener_add(struct nbd_server *srv, int fd)
{
	struct listener *l;
	if (srv->nls == MAX_LISTENERS) {
		close(fd);
		err_set("too many listeners");
		return NULL;
	}
	l = &srv->ls[srv->nls++];
	*l = (struct listener){ .fd = fd, .srv = srv };
	return l;
}

int nbd_server_listen_unix(struct nbd_server *srv, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat sb;
	struct listener *l;
	int fd;
	if (strlen(path) >= sizeof(sa.sun_path))
		return err_set("socket path '%s' is too long", path);
	strcpy(sa.sun_path, path);
	if (lstat(path, &sb) == 0 && S_ISSOCK(sb.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return err_set_errno(errno, "cannot create socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		close(fd);
		return err_set_errno(e, "cannot listen on '%s'", path);
	}
	if (!(l = listener_add(srv, fd)))
		return -1;
	if (!(l->unix_path = strdup(path)))
		return err_set_errno(ENOMEM, "cannot listen on '%s'", path);
	return 0;
}

int nbd_server_listen_tcp(struct nbd_server *srv, const char *host, int port, int *bound)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char portstr[16];
	int fd = -1, one = 1, e;
	snprintf(portstr, sizeof(portstr), "%d", port);
	e = getaddrinfo(host, portstr, &hints, &res);
	if (e)
		return err_set("cannot resolve '%s': %s", host, gai_strerror(e));
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(res);
		return err_set_errno(errno, "cannot create socket");
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		e = errno;
		close(fd);
		freeaddrinfo(res);
		return err_set_errno(e, "cannot listen on %s:%d", host, port);
	}
	freeaddrinfo(res);
	if (bound) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		*bound = port;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
								: ((struct sockaddr_in *)&ss)->sin_port);
	}
	return listener_add(srv, fd) ? 0 : -1;
}

/* ---- lifecycle ---- */

struct nbd_server *nbd_server_new(const struct nbd_export *exp)
{
	struct nbd_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		goto err_nomem;
	srv->exp = *exp;
	if (exp->name && !(srv->name = strdup(exp->name)))
		goto err_nomem;
	if (exp->description && !(srv->desc = strdup(exp->description)))
		goto err_nomem;
	srv->exp.name = srv->name;
	srv->exp.description = srv->desc;
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->wake_fd < 0) {
		err_set_errno(errno, "cannot create eventfd");
		free(srv->name);
		free(srv->desc);
		free(srv);
		return NULL;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	return srv;
err_nomem:
	if (srv) {
		free(srv->name);
		free(srv->desc);
	}
	free(srv);
	err_set_errno(ENOMEM, "cannot create NBD server");
	return NULL;
}

int nbd_server_start(struct nbd_server *srv)
{
	for (size_t i = 0; i < srv->nls; i++) {
		int e;
		if (srv->ls[i].running)
			continue;
		e = pthread_create(&srv->ls[i].thread, NULL, accept_main, &srv->ls[i]);
		if (e)
			return err_set_errno(e, "cannot start accept thread");
		srv->ls[i].running = true;
	}
	return 0;
}

void nbd_server_stop(struct nbd_server *srv)
{
	uint64_t one = 1;
	if (!srv || srv->stopped)
		return;
	pthread_mutex_lock(&srv->lock);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->lock);
	if (write(srv->wake_fd, &one, sizeof(one)) < 0)
		log_warn("nbd: cannot wake accept threads: %s", strerror(errno));
	for (size_t i = 0; i < srv->nls; i++) {
		if (srv->ls[i].running)
			pthread_join(srv->ls[i].thread, NULL);
		srv->ls[i].running = false;
		close(srv->ls[i].fd);
		if (srv->ls[i].unix_path)
			unlink(srv->ls[i].unix_path);
		free(srv->ls[i].unix_path);
		srv->ls[i].unix_path = NULL;
	}
	srv->nls = 0;
	pthread_mutex_lock(&srv->lock);
	for (struct nbd_conn *c = srv->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (srv->active > 0)
		pthread_cond_wait(&srv->cond, &srv->lock);
	pthread_mutex_unlock(&srv->lock);
	srv->stopped = true;
}

void nbd_server_free(struct nbd_server *srv)
{
	if (!srv)
		return;
	nbd_server_stop(srv);
	close(srv->wake_fd);
	pthread_mutex_destroy(&srv->lock);
	pthread_cond_destroy(&srv->cond);
	free(srv->name);
	free(srv->desc);
	free(srv);
}

void nbd_server_stats(struct nbd_server *srv, struct nbd_stats *out)
{
	pthread_mutex_lock(&srv->lock);
	out->connections = srv->connections;
	out->active = srv->active;
	out->requests = __atomic_load_n(&srv->requests, __ATOMIC_RELAXED);
	out->protocol_errors = __atomic_load_n(&srv->protocol_errors, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&srv->lock);
}
