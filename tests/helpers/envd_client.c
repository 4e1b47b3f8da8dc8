/*
 * envd_client - a minimal Connect-protocol client for envd's tests, over a raw socket so the
 * tests can also misbehave (drop a stream mid-way). JSON codec only.
 *
 *   envd_client [-addr A] [-port P] [-user U] [-token T] [-timeout-ms MS] [-keepalive S] start JSON
 *   envd_client ... connect JSON        stream: prints "start PID", "stdout TEXT",
 *                                       "stderr TEXT", "end CODE STATUS", "keepalive",
 *                                       "error CODE MESSAGE" (one line each, text with \n escaped)
 *   envd_client ... start-drop JSON     reads the start event, prints it, then resets the
 *                                       connection
 *   envd_client ... unary Service/Method JSON   prints "HTTP STATUS" then the body
 * Exit 0 when the exchange happened (whatever the RPC's result), 1 on transport errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "common/flags.h"

static int sock = -1;
static char rbuf[1 << 16];
static size_t rlen, roff;

static int rfill(void)
{
	if (roff == rlen)
		roff = rlen = 0;
	if (rlen == sizeof(rbuf)) {
		memmove(rbuf, rbuf + roff, rlen - roff);
		rlen -= roff;
		roff = 0;
	}
	ssize_t n = recv(sock, rbuf + rlen, sizeof(rbuf) - rlen, 0);
	if (n > 0)
		rlen += (size_t)n;
	return (int)n;
}

static int rline(char *out, size_t len)
{
	for (;;) {
		char *nl = memchr(rbuf + roff, '\n', rlen - roff);
		if (nl) {
			size_t l = (size_t)(nl - (rbuf + roff));
			size_t c = l < len - 1 ? l : len - 1;
			memcpy(out, rbuf + roff, c);
			out[c] = '\0';
			if (c && out[c - 1] == '\r')
				out[c - 1] = '\0';
			roff += l + 1;
			return 0;
		}
		if (rfill() <= 0)
			return -1;
	}
}

static int rexact(char *out, size_t n)
{
	while (rlen - roff < n) {
		size_t have = rlen - roff;
		memcpy(out, rbuf + roff, have);
		out += have;
		n -= have;
		roff = rlen;
		if (rfill() <= 0)
			return -1;
	}
	memcpy(out, rbuf + roff, n);
	roff += n;
	return 0;
}

/* Body reader state */
static bool chunked;
static long long left = -1; /* content-length left, -1 = until close */
static long long chunk_left;
static bool body_end;

static int body_read(char *out, size_t n)
{
	size_t got = 0;
	while (got < n) {
		if (chunked) {
			if (chunk_left == 0) {
				char line[64];
				if (body_end || rline(line, sizeof(line)) < 0)
					return -1;
				if (!*line && rline(line, sizeof(line)) < 0)
					return -1;
				chunk_left = strtoll(line, NULL, 16);
				if (chunk_left == 0) {
					body_end = true;
					return -1;
				}
			}
			size_t m = n - got < (size_t)chunk_left ? n - got : (size_t)chunk_left;
			if (rexact(out + got, m) < 0)
				return -1;
			got += m;
			chunk_left -= (long long)m;
		} else {
			if (left == 0)
				return -1;
			size_t m = left > 0 && (size_t)left < n - got ? (size_t)left : n - got;
			if (rexact(out + got, m) < 0)
				return -1;
			got += m;
			if (left > 0)
				left -= (long long)m;
		}
	}
	return 0;
}

static void print_text(const char *label, const char *b64)
{
	/* decode base64 */
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	printf("%s ", label);
	unsigned acc = 0;
	int bits = 0;
	for (const char *p = b64; *p && *p != '='; p++) {
		const char *q = strchr(tbl, *p);
		if (!q)
			break;
		acc = acc << 6 | (unsigned)(q - tbl);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			int c = (acc >> bits) & 0xff;
			if (c == '\n')
				fputs("\\n", stdout);
			else
				putchar(c);
		}
	}
	putchar('\n');
}

int main(int argc, char **argv)
{
	log_set_prog("envd_client");
	const char *addr = "127.0.0.1", *user = NULL, *token = NULL;
	int64_t port = 49983, timeout_ms = 0, keepalive = 0;
	struct flag flags[] = {
		FLAG_DEF("addr", FLAG_STRING, &addr, "envd address"),
		FLAG_DEF("port", FLAG_INT, &port, "envd port"),
		FLAG_DEF("user", FLAG_STRING, &user, "HTTP Basic username"),
		FLAG_DEF("token", FLAG_STRING, &token, "X-Access-Token"),
		FLAG_DEF("timeout-ms", FLAG_INT, &timeout_ms, "Connect-Timeout-Ms"),
		FLAG_DEF("keepalive", FLAG_INT, &keepalive, "Keepalive-Ping-Interval (seconds)"),
	};
	struct flagset fs = { .prog = "envd_client", .synopsis = "start|connect|start-drop JSON | unary Svc/Method JSON",
			      .flags = flags, .nflags = ARRAY_SIZE(flags) };
	int i = flags_parse(&fs, argc, argv);
	if (argc - i < 2)
		flags_usage_error(&fs, "missing arguments");
	const char *mode = argv[i], *path, *json;
	char pbuf[256];
	bool stream = strcmp(mode, "unary") != 0;
	if (stream) {
		snprintf(pbuf, sizeof(pbuf), "/process.Process/%s", strcmp(mode, "connect") == 0 ? "Connect" : "Start");
		path = pbuf;
		json = argv[i + 1];
	} else {
		if (argc - i < 3)
			flags_usage_error(&fs, "unary needs Service/Method and JSON");
		snprintf(pbuf, sizeof(pbuf), "/%s", argv[i + 1]);
		path = pbuf;
		json = argv[i + 2];
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, addr, &sa.sin_addr);
	sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("cannot connect to %s:%lld: %s", addr, (long long)port, strerror(errno));
	size_t jl = strlen(json), bl = stream ? jl + 5 : jl;
	char *body = malloc(bl);
	if (stream) {
		body[0] = 0;
		body[1] = (char)(jl >> 24);
		body[2] = (char)(jl >> 16);
		body[3] = (char)(jl >> 8);
		body[4] = (char)jl;
		memcpy(body + 5, json, jl);
	} else {
		memcpy(body, json, jl);
	}
	char head[2048], auth[600] = "", tok[600] = "", to[128] = "";
	if (user) {
		char raw[300];
		snprintf(raw, sizeof(raw), "%s:", user);
		static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char enc[500];
		size_t o = 0, n = strlen(raw);
		for (size_t k = 0; k < n; k += 3) {
			unsigned v = (unsigned)(unsigned char)raw[k] << 16 |
				     (k + 1 < n ? (unsigned)(unsigned char)raw[k + 1] << 8 : 0) |
				     (k + 2 < n ? (unsigned char)raw[k + 2] : 0);
			enc[o++] = tbl[v >> 18];
			enc[o++] = tbl[(v >> 12) & 63];
			enc[o++] = k + 1 < n ? tbl[(v >> 6) & 63] : '=';
			enc[o++] = k + 2 < n ? tbl[v & 63] : '=';
		}
		enc[o] = '\0';
		snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", enc);
	}
	if (token)
		snprintf(tok, sizeof(tok), "X-Access-Token: %s\r\n", token);
	int tl = 0;
	if (timeout_ms)
		tl = snprintf(to, sizeof(to), "Connect-Timeout-Ms: %lld\r\n", (long long)timeout_ms);
	if (keepalive)
		snprintf(to + tl, sizeof(to) - (size_t)tl, "Keepalive-Ping-Interval: %lld\r\n", (long long)keepalive);
	int hl = snprintf(head, sizeof(head),
			  "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nConnect-Protocol-Version: 1\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
			  path, addr, stream ? "application/connect+json" : "application/json", bl, auth, tok, to);
	if (full_write(sock, head, (size_t)hl) < 0 || full_write(sock, body, bl) < 0)
		die("cannot send the request: %s", strerror(errno));
	char line[4096];
	if (rline(line, sizeof(line)) < 0)
		die("no response");
	int status = atoi(line + 9);
	while (rline(line, sizeof(line)) == 0 && *line) {
		if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked"))
			chunked = true;
		if (strncasecmp(line, "content-length:", 15) == 0)
			left = atoll(line + 15);
	}
	if (!stream || status != 200) {
		printf("HTTP %d\n", status);
		char c;
		while (body_read(&c, 1) == 0)
			putchar(c);
		putchar('\n');
		return 0;
	}
	for (;;) {
		unsigned char env[5];
		if (body_read((char *)env, 5) < 0) {
			printf("eof\n");
			return 1;
		}
		size_t ml = (size_t)env[1] << 24 | (size_t)env[2] << 16 | (size_t)env[3] << 8 | env[4];
		char *msg = malloc(ml + 1);
		if (body_read(msg, ml) < 0)
			die("truncated envelope");
		msg[ml] = '\0';
		struct json_object *o = json_tokener_parse(msg), *ev, *x, *y;
		free(msg);
		if (!o)
			die("bad JSON in envelope");
		if (env[0] & 2) {
			if (json_object_object_get_ex(o, "error", &x))
				printf("error %s %s\n", json_object_get_string(json_object_object_get(x, "code")),
				       json_object_get_string(json_object_object_get(x, "message")));
			else
				printf("eos\n");
			return 0;
		}
		if (!json_object_object_get_ex(o, "event", &ev))
			die("message without event");
		if (json_object_object_get_ex(ev, "start", &x)) {
			printf("start %d\n", json_object_get_int(json_object_object_get(x, "pid")));
			if (strcmp(mode, "start-drop") == 0) {
				fflush(stdout);
				struct linger lg = { .l_onoff = 1, .l_linger = 0 };
				setsockopt(sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
				close(sock);
				return 0;
			}
		} else if (json_object_object_get_ex(ev, "data", &x)) {
			if (json_object_object_get_ex(x, "stdout", &y))
				print_text("stdout", json_object_get_string(y));
			else if (json_object_object_get_ex(x, "stderr", &y))
				print_text("stderr", json_object_get_string(y));
			else if (json_object_object_get_ex(x, "pty", &y))
				print_text("pty", json_object_get_string(y));
		} else if (json_object_object_get_ex(ev, "end", &x)) {
			printf("end %d %s\n", json_object_get_int(json_object_object_get(x, "exitCode")),
			       json_object_get_string(json_object_object_get(x, "status")));
		} else if (json_object_object_get_ex(ev, "keepalive", &x)) {
			printf("keepalive\n");
		}
		fflush(stdout);
		json_object_put(o);
	}
}
