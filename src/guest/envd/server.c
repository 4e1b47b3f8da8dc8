/*
 * server.c - envd's HTTP/1.1 server: accept loop, one detached thread per connection,
 * keep-alive, request bodies (Content-Length or chunked), responses (fixed or chunked) and
 * the top-level router (access token check, REST vs Connect RPC).
 *
 * Invariants: a connection thread owns its socket and buffers; nothing else touches them.
 * Every socket is SOCK_CLOEXEC. Writes use MSG_NOSIGNAL (SIGPIPE is ignored too). A client
 * that sends a malformed or oversized head gets one error response and the connection is
 * closed; other connections never notice. Idle keep-alive connections close after
 * IDLE_TIMEOUT_MS; a request that stalls mid-head for READ_TIMEOUT_MS gets 408.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "envd.h"

#define IDLE_TIMEOUT_MS (640 * 1000)
#define READ_TIMEOUT_MS (60 * 1000)
#define CONN_BUF_INIT 8192
#define MAX_CONNS 4096
#define THREAD_STACK (1024 * 1024) /* virtual; deep directory walks recurse */

const char *envd_common_headers = "Access-Control-Allow-Origin: *\r\n"
				  "Access-Control-Expose-Headers: *\r\n";

static int active_conns;
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read more raw bytes into the buffer, waiting at most timeout_ms. >0, 0 EOF, -1 error/timeout. */
static ssize_t conn_fill(struct conn *c, int timeout_ms)
{
	if (c->off > 0 && c->off == c->len) {
		c->off = c->len = 0;
	} else if (c->off > c->cap / 2) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len == c->cap) {
		size_t ncap = c->cap * 2;
		if (ncap > HTTP_MAX_HEAD + CONN_BUF_INIT)
			ncap = HTTP_MAX_HEAD + CONN_BUF_INIT;
		if (ncap <= c->cap) {
			errno = ENOBUFS;
			return -1;
		}
		char *nb = realloc(c->buf, ncap);
		if (!nb)
			return -1;
		c->buf = nb;
		c->cap = ncap;
	}
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	for (;;) {
		int r = poll(&p, 1, timeout_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (r < 0)
			return -1;
		break;
	}
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n > 0)
			c->len += (size_t)n;
		return n;
	}
}

ssize_t conn_body_read(struct conn *c, void *buf, size_t n)
{
	if (c->body_done || c->body_mode == BODY_NONE || n == 0)
		return 0;
	if (c->req.expect_continue && !c->continue_sent) {
		c->continue_sent = true;
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (send_all(c->fd, cont, sizeof(cont) - 1) < 0)
			return -1;
	}
	for (;;) {
		size_t avail = c->len - c->off;
		if (c->body_mode == BODY_LENGTH) {
			if (c->body_left == 0) {
				c->body_done = true;
				return 0;
			}
			if (avail) {
				size_t m = MIN(MIN(avail, n), c->body_left);
				memcpy(buf, c->buf + c->off, m);
				c->off += m;
				c->body_left -= m;
				if (c->body_left == 0)
					c->body_done = true;
				return (ssize_t)m;
			}
			/* Large bodies: read straight into the caller's buffer. */
			size_t want = MIN(n, c->body_left);
			ssize_t r;
			do {
				struct pollfd p = { .fd = c->fd, .events = POLLIN };
				if (poll(&p, 1, READ_TIMEOUT_MS) == 0) {
					errno = ETIMEDOUT;
					c->broken = true;
					return -1;
				}
				r = recv(c->fd, buf, want, 0);
			} while (r < 0 && errno == EINTR);
			if (r <= 0) {
				if (r == 0)
					errno = ECONNRESET;
				c->broken = true;
				return -1;
			}
			c->body_left -= (size_t)r;
			if (c->body_left == 0)
				c->body_done = true;
			return r;
		}
		/* chunked */
		if (avail) {
			size_t used, doff, dlen;
			if (http_chunked_step(&c->ch, c->buf + c->off, avail, n, &used, &doff, &dlen) < 0) {
				c->broken = true;
				errno = EBADMSG;
				return -1;
			}
			if (dlen) {
				memcpy(buf, c->buf + c->off + doff, dlen);
				c->off += used;
				return (ssize_t)dlen;
			}
			c->off += used;
			if (c->ch.done) {
				c->body_done = true;
				return 0;
			}
			if (used)
				continue;
		}
		ssize_t r = conn_fill(c, READ_TIMEOUT_MS);
		if (r <= 0) {
			if (r == 0)
				errno = ECONNRESET;
			c->broken = true;
			return -1;
		}
	}
}

int conn_body_read_all(struct conn *c, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	if (c->body_mode == BODY_LENGTH) {
		if (c->body_left > max) {
			c->broken = true;
			return -2;
		}
		cap = (size_t)c->body_left + 1;
	}
	char *b = malloc(cap);
	if (!b)
		return -1;
	for (;;) {
		if (n + 1 >= cap) {
			if (cap > max) {
				free(b);
				c->broken = true;
				return -2;
			}
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return -1;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t r = conn_body_read(c, b + n, cap - n - 1);
		if (r < 0) {
			free(b);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	b[n] = '\0';
	*out = b;
	*len = n;
	return 0;
}

static int write_head(struct conn *c, int status, const char *ctype, const char *extra,
		      const char *framing)
{
	char head[2048];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s%s%s%s%s%s%s\r\n", status,
			 http_reason(status), envd_common_headers, ctype ? "Content-Type: " : "",
			 ctype ? ctype : "", ctype ? "\r\n" : "", extra ? extra : "", framing,
			 c->keep_alive ? "" : "Connection: close\r\n");
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	c->responded = true;
	if (send_all(c->fd, head, (size_t)n) < 0) {
		c->broken = true;
		return -1;
	}
	return 0;
}

int conn_respond(struct conn *c, int status, const char *ctype, const void *body, size_t len,
		 const char *extra)
{
	char framing[64];
	if (status == 204 || status == 304)
		framing[0] = '\0';
	else
		snprintf(framing, sizeof(framing), "Content-Length: %zu\r\n", len);
	if (write_head(c, status, ctype, extra, framing) < 0)
		return -1;
	if (len && strcmp(c->req.method, "HEAD") != 0 && send_all(c->fd, body, len) < 0) {
		c->broken = true;
		return -1;
	}
	return 0;
}

int conn_respond_head(struct conn *c, int status, const char *ctype, uint64_t length,
		      const char *extra)
{
	char framing[64];
	snprintf(framing, sizeof(framing), "Content-Length: %llu\r\n", (unsigned long long)length);
	return write_head(c, status, ctype, extra, framing);
}

int conn_respond_json(struct conn *c, int status, struct json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							      JSON_C_TO_STRING_NOSLASHESCAPE);
	return conn_respond(c, status, "application/json", s, strlen(s), NULL);
}

int conn_json_error(struct conn *c, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "code", json_object_new_int(status));
	json_object_object_add(o, "message", json_object_new_string(msg));
	int r = conn_respond_json(c, status, o);
	json_object_put(o);
	return r;
}

int conn_stream_begin(struct conn *c, int status, const char *ctype, const char *extra)
{
	return write_head(c, status, ctype, extra, "Transfer-Encoding: chunked\r\n");
}

int conn_stream_write(struct conn *c, const void *data, size_t len)
{
	if (len == 0)
		return 0;
	char hdr[32];
	int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
	struct iovec iov[3] = {
		{ .iov_base = hdr, .iov_len = (size_t)n },
		{ .iov_base = (void *)data, .iov_len = len },
		{ .iov_base = "\r\n", .iov_len = 2 },
	};
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
	size_t total = (size_t)n + len + 2;
	while (total) {
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			c->broken = true;
			return -1;
		}
		total -= (size_t)w;
		while (w > 0 && mh.msg_iovlen) {
			if ((size_t)w >= mh.msg_iov[0].iov_len) {
				w -= (ssize_t)mh.msg_iov[0].iov_len;
				mh.msg_iov++;
				mh.msg_iovlen--;
			} else {
				mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + w;
				mh.msg_iov[0].iov_len -= (size_t)w;
				w = 0;
			}
		}
	}
	return 0;
}

int conn_stream_end(struct conn *c)
{
	if (send_all(c->fd, "0\r\n\r\n", 5) < 0) {
		c->broken = true;
		return -1;
	}
	return 0;
}

/* Answer an error for a request whose head could not be used, then close. */
static void respond_and_close(struct conn *c, int status, const char *msg)
{
	c->keep_alive = false;
	c->req.method = "GET";
	char body[256];
	int n = snprintf(body, sizeof(body), "{\"code\":%d,\"message\":\"%s\"}", status, msg);
	conn_respond(c, status, "application/json", body, (size_t)n, NULL);
	/* Lingering close: read what the client is still sending (bounded), so closing with
	 * unread input does not reset the connection before the client read the answer. */
	shutdown(c->fd, SHUT_WR);
	uint64_t t0 = now_ns();
	size_t budget = 8u << 20;
	char tmp[16384];
	while (budget && now_ns() - t0 < 2000000000ull) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, 200) <= 0)
			break;
		ssize_t r = recv(c->fd, tmp, sizeof(tmp), 0);
		if (r <= 0)
			break;
		budget -= MIN(budget, (size_t)r);
	}
}

static void route(struct conn *c)
{
	const char *m = c->req.method, *p = c->req.path;
	if (strcmp(m, "OPTIONS") == 0) {
		conn_respond(c, 204, NULL, NULL, 0,
			     "Access-Control-Allow-Methods: GET, POST, PUT, DELETE, OPTIONS\r\n"
			     "Access-Control-Allow-Headers: *\r\n"
			     "Access-Control-Max-Age: 7200\r\n");
		return;
	}
	if (strcmp(p, "/health") == 0 && (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)) {
		conn_respond(c, 204, NULL, NULL, 0, NULL);
		return;
	}
	bool is_init = strcmp(p, "/init") == 0 && strcmp(m, "POST") == 0;
	/* /init checks the token itself: the orchestrator may re-send the same token in the body. */
	const char *token = http_header(&c->req, "X-Access-Token");
	bool files = strcmp(p, "/files") == 0 && (strcmp(m, "GET") == 0 || strcmp(m, "POST") == 0);
	if (files && !token && state_token_is_set()) {
		/* file URLs may be signed instead (the reference's download/upload URLs) */
		char path[PATH_MAX] = "", user[256] = "", sig[128] = "", exp[32] = "";
		http_query_get(c->req.query, "path", path, sizeof(path));
		http_query_get(c->req.query, "username", user, sizeof(user));
		http_query_get(c->req.query, "signature", sig, sizeof(sig));
		http_query_get(c->req.query, "signature_expiration", exp, sizeof(exp));
		const char *msg;
		if (state_check_signature(path, strcmp(m, "GET") == 0 ? "read" : "write", user, sig, exp,
					  &msg) < 0) {
			conn_json_error(c, 401, "%s", msg);
			return;
		}
	} else if (!is_init && !state_token_ok(token)) {
		conn_json_error(c, 401, "unauthorized access, please provide a valid access token");
		return;
	}
	if (strncmp(p, "/process.Process/", 17) == 0 ||
	    strncmp(p, "/filesystem.Filesystem/", 23) == 0) {
		rpc_handle(c);
		return;
	}
	rest_handle(c);
}

/* Skip whatever is left of the request body so the next request can be read. */
static void drain_body(struct conn *c)
{
	char tmp[16384];
	uint64_t budget = 64u << 20;
	while (!c->body_done && c->body_mode != BODY_NONE && !c->broken) {
		ssize_t r = conn_body_read(c, tmp, sizeof(tmp));
		if (r <= 0)
			break;
		if ((uint64_t)r > budget) {
			c->broken = true;
			break;
		}
		budget -= (uint64_t)r;
	}
}

void release_thread_stack(void)
{
	/* glibc caches the stacks of exited threads with their pages still resident: drop the
	 * pages below the current frame (the stack grows down) before the thread ends. */
	pthread_attr_t a;
	void *lo;
	size_t size;
	if (pthread_getattr_np(pthread_self(), &a) != 0)
		return;
	if (pthread_attr_getstack(&a, &lo, &size) == 0) {
		char here;
		uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
		uintptr_t start = ((uintptr_t)lo + page - 1) & ~(page - 1);
		uintptr_t end = ((uintptr_t)&here - 4096) & ~(page - 1);
		if (end > start)
			madvise((void *)start, end - start, MADV_DONTNEED);
	}
	pthread_attr_destroy(&a);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	c->cap = CONN_BUF_INIT;
	c->buf = malloc(c->cap);
	if (!c->buf)
		goto out;
	for (;;) {
		/* read one request head */
		ssize_t hl;
		int status = 400;
		bool first = true;
		for (;;) {
			if (c->len > c->off) {
				hl = http_parse_head(c->buf + c->off, c->len - c->off, &c->req, &status);
				if (hl != 0)
					break;
			}
			ssize_t r = conn_fill(c, first && c->len == c->off ? IDLE_TIMEOUT_MS
									    : READ_TIMEOUT_MS);
			first = false;
			if (r == 0 || (r < 0 && errno != ETIMEDOUT && errno != ENOBUFS))
				goto out;
			if (r < 0) {
				if (errno == ENOBUFS) {
					respond_and_close(c, 431, "request head too large");
				} else if (c->len > c->off) {
					respond_and_close(c, 408, "request head timed out");
				}
				goto out;
			}
		}
		if (hl < 0) {
			respond_and_close(c, status, status == 431 ? "request head too large"
								   : "malformed request");
			goto out;
		}
		c->off += (size_t)hl;
		c->keep_alive = c->req.keep_alive;
		c->responded = false;
		c->continue_sent = false;
		c->body_done = false;
		memset(&c->ch, 0, sizeof(c->ch));
		if (c->req.chunked) {
			c->body_mode = BODY_CHUNKED;
		} else if (c->req.content_length > 0) {
			c->body_mode = BODY_LENGTH;
			c->body_left = (uint64_t)c->req.content_length;
		} else {
			c->body_mode = BODY_NONE;
			c->body_done = true;
		}
		route(c);
		if (!c->responded)
			conn_json_error(c, 500, "no response");
		if (!c->body_done) {
			/* Unread body: drain small ones, close on big ones. */
			if (c->body_mode == BODY_LENGTH && c->body_left > (1u << 20))
				c->broken = true;
			else
				drain_body(c);
		}
		if (c->broken || !c->keep_alive)
			break;
	}
out:
	close(c->fd);
	free(c->buf);
	free(c);
	pthread_mutex_lock(&conns_lock);
	bool idle = --active_conns == 0;
	pthread_mutex_unlock(&conns_lock);
	if (idle)
		malloc_trim(0); /* give a burst's memory back: idle RSS is what a sandbox pays for */
	release_thread_stack();
	return NULL;
}

int server_run(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return err_set("invalid listen address '%s'", addr);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return err_set_errno(errno, "cannot create socket");
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(lfd);
		return err_set_errno(e, "cannot bind %s:%d", addr, port);
	}
	if (listen(lfd, 1024) < 0) {
		int e = errno;
		close(lfd);
		return err_set_errno(e, "cannot listen on %s:%d", addr, port);
	}
	log_info("listening on %s:%d", addr, port);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
				log_warn("accept: %s", strerror(errno));
				usleep(50 * 1000);
				continue;
			}
			int e = errno;
			close(lfd);
			return err_set_errno(e, "accept failed");
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_mutex_lock(&conns_lock);
		bool full = active_conns >= MAX_CONNS;
		if (!full)
			active_conns++;
		pthread_mutex_unlock(&conns_lock);
		if (full) {
			static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
						   "Content-Length: 0\r\nConnection: close\r\n\r\n";
			send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			close(fd);
			continue;
		}
		struct conn *c = calloc(1, sizeof(*c));
		pthread_t th;
		if (!c || (c->fd = fd, pthread_create(&th, &attr, conn_thread, c) != 0)) {
			free(c);
			close(fd);
			pthread_mutex_lock(&conns_lock);
			active_conns--;
			pthread_mutex_unlock(&conns_lock);
			usleep(10 * 1000);
		}
	}
}
