/*
 * health_bench - latency of GET PATH against an HTTP server on 127.0.0.1:PORT.
 *   health_bench -port P [-path /health] [-n 2000] [-new-conn]
 * Keep-alive mode sends all requests on one connection; -new-conn opens one per request.
 * Prints "p50_us=.. p90_us=.. p99_us=.. n=.." on stdout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "common/flags.h"

static int dial(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to port %d: %s", port, strerror(errno));
	return fd;
}

/* Read one response (head + Content-Length body). 0/-1. */
static int read_response(int fd)
{
	char buf[8192];
	size_t len = 0;
	for (;;) {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (n <= 0)
			return len ? 0 : -1;
		len += (size_t)n;
		buf[len] = '\0';
		char *end = strstr(buf, "\r\n\r\n");
		if (!end)
			continue;
		char *cl = strcasestr(buf, "content-length:");
		size_t want = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
		while (len < want) {
			n = recv(fd, buf, sizeof(buf), 0);
			if (n <= 0)
				return -1;
			len += (size_t)n;
		}
		return 0;
	}
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	log_set_prog("health_bench");
	int64_t port = 49983, n = 2000;
	const char *path = "/health";
	bool new_conn = false;
	struct flag flags[] = {
		FLAG_DEF("port", FLAG_INT, &port, "server port on 127.0.0.1"),
		FLAG_DEF("path", FLAG_STRING, &path, "request path"),
		FLAG_DEF("n", FLAG_INT, &n, "requests"),
		FLAG_DEF("new-conn", FLAG_BOOL, &new_conn, "one connection per request"),
	};
	struct flagset fs = { .prog = "health_bench", .synopsis = "-port P [-path P] [-n N] [-new-conn]",
			      .flags = flags, .nflags = ARRAY_SIZE(flags) };
	flags_parse(&fs, argc, argv);
	if (n <= 0)
		flags_usage_error(&fs, "-n must be positive");
	uint64_t *lat = calloc((size_t)n, sizeof(*lat));
	char req[512];
	int rl = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path,
			  new_conn ? "Connection: close\r\n" : "");
	int fd = new_conn ? -1 : dial((int)port);
	for (int64_t i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		if (new_conn)
			fd = dial((int)port);
		if (full_write(fd, req, (size_t)rl) < 0 || read_response(fd) < 0)
			die("request %lld failed", (long long)i);
		if (new_conn)
			close(fd);
		lat[i] = now_ns() - t0;
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp);
	printf("p50_us=%.1f p90_us=%.1f p99_us=%.1f n=%lld\n", lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3,
	       lat[n * 99 / 100] / 1e3, (long long)n);
	return 0;
}
