/*
 * main.c - envd, the in-guest agent: flags, process-wide setup, then the HTTP server.
 * Built as a static binary (mk/envd.mk) so it runs in any guest rootfs.
 *
 * Flags (Go style, src/common/flags.h): -port (default 49983, env ENVD_PORT), -addr (default
 * 0.0.0.0, env ENVD_ADDR), -no-clock (never set CLOCK_REALTIME; for running on a host),
 * -version, -isnotfc (accepted for compatibility), -v (debug log).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

#include "common/flags.h"
#include "envd.h"

/*
 * glibc keeps up to 40 MiB of exited threads' stacks cached, with their top pages resident:
 * after a burst of connections that alone is megabytes of RSS in an idle sandbox. The cache
 * size is only settable as a tunable read at start-up, so envd re-executes itself once with it
 * (children never see it: their environment is built from scratch). Best effort.
 */
static void limit_stack_cache(char **argv)
{
	const char *t = getenv("GLIBC_TUNABLES");
	if (t && strstr(t, "glibc.pthread.stack_cache_size"))
		return;
	char v[1024];
	int n = snprintf(v, sizeof(v), "%s%sglibc.pthread.stack_cache_size=1048576", t ? t : "",
			 t && *t ? ":" : "");
	if (n < 0 || (size_t)n >= sizeof(v) || setenv("GLIBC_TUNABLES", v, 1) < 0)
		return;
	/* exec the real path, not /proc/self/exe: the process name (comm) comes from it */
	char self[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl > 0) {
		self[sl] = '\0';
		execv(self, argv);
	}
	unsetenv("GLIBC_TUNABLES"); /* no /proc: run on as we are */
	if (t)
		setenv("GLIBC_TUNABLES", t, 1);
}

int main(int argc, char **argv)
{
	limit_stack_cache(argv);
	log_set_prog("envd");
	int64_t port = 49983;
	const char *addr = "0.0.0.0";
	const char *cmd = NULL;
	bool no_clock = false, version = false, isnotfc = false, verbose = false;
	const char *ep = getenv("ENVD_PORT"), *ea = getenv("ENVD_ADDR");
	if (ep && *ep)
		port = strtoll(ep, NULL, 10);
	if (ea && *ea)
		addr = ea;
	struct flag flags[] = {
		FLAG_DEF("port", FLAG_INT, &port, "TCP port to listen on (env ENVD_PORT)"),
		FLAG_DEF("addr", FLAG_STRING, &addr, "IPv4 address to listen on (env ENVD_ADDR)"),
		FLAG_DEF("no-clock", FLAG_BOOL, &no_clock, "never set the system clock from /init"),
		FLAG_DEF("version", FLAG_BOOL, &version, "print the version and exit"),
		FLAG_DEF("isnotfc", FLAG_BOOL, &isnotfc, "accepted for compatibility (no effect)"),
		FLAG_DEF("cmd", FLAG_STRING, &cmd, "accepted for compatibility (no effect)"),
		FLAG_DEF("v", FLAG_BOOL, &verbose, "debug logging"),
	};
	struct flagset fs = { .prog = "envd",
			      .synopsis = "[-port N] [-addr IP] [-no-clock]",
			      .about = "The in-sandbox agent: health, /init, files and processes over HTTP "
				       "(E2B envd API, Connect protocol with the JSON codec).",
			      .flags = flags,
			      .nflags = ARRAY_SIZE(flags) };
	flags_parse(&fs, argc, argv);
	if (version) {
		printf("%s\n", ENVD_VERSION);
		return 0;
	}
	if (port <= 0 || port > 65535)
		flags_usage_error(&fs, "invalid -port %lld", (long long)port);
	if (verbose)
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);
	umask(022);
	/* One malloc arena: per-thread arenas would keep megabytes after a burst of connections. */
	mallopt(M_ARENA_MAX, 1);
	process_init();
	state_init(!no_clock);
	/* Marker files of the reference (best effort: absent /run on a host test is fine). */
	if (mkdir("/run/e2b", 0755) == 0 || errno == EEXIST) {
		int fd = open("/run/e2b/.E2B_SANDBOX", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			(void)!write(fd, "true", 4);
			close(fd);
		}
	}
	if (server_run(addr, (int)port) < 0)
		die_err();
	return 0;
}
