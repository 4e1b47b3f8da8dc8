/*
 * nbd_serve.c - test/bench helper: serves a build (through the layered device and a COW
 * layer) or a zero device over NBD, the way the sandbox runtime will:
 *
 *   nbd_serve -storage DIR -build ID [-kind rootfs] -socket PATH [-tcp PORT] [-export NEW]
 *             [-readonly] [-cow PATH]
 *   nbd_serve -empty -size N -socket PATH
 *
 * Prints "ready SIZE" on stdout once listening, serves until SIGINT/SIGTERM, then stops the
 * server, exports the COW layer as build NEW when asked (prints "exported NEW dirty=D
 * empty=E bytes=B"), prints "stats connections=C requests=R protocol_errors=P fetched=F"
 * and exits 0.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>

#include "block/block.h"
#include "common/flags.h"
#include "nbd/nbd.h"

int main(int argc, char **argv)
{
	const char *storage_dir = ".local-build", *build = "", *kind_s = "rootfs", *sock = "",
		   *export_id = "", *cowpath = "";
	int64_t tcp_port = -1;
	uint64_t size = 1 << 30;
	bool readonly = false, empty = false;
	struct flag fl[] = {
		FLAG_DEF("storage", FLAG_STRING, &storage_dir, "storage directory"),
		FLAG_DEF("build", FLAG_STRING, &build, "build to serve"),
		FLAG_DEF("kind", FLAG_STRING, &kind_s, "rootfs or memfile"),
		FLAG_DEF("socket", FLAG_STRING, &sock, "unix socket path"),
		FLAG_DEF("tcp", FLAG_INT, &tcp_port, "also listen on 127.0.0.1:PORT (0 = any)"),
		FLAG_DEF("export", FLAG_STRING, &export_id, "export the COW layer as this build at exit"),
		FLAG_DEF("readonly", FLAG_BOOL, &readonly, "read-only export"),
		FLAG_DEF("cow", FLAG_STRING, &cowpath, "COW file path (default: in SANDBOX_CACHE_DIR)"),
		FLAG_DEF("empty", FLAG_BOOL, &empty, "serve zeros instead of a build"),
		FLAG_DEF("size", FLAG_U64, &size, "size with -empty"),
	};
	struct flagset fs = { .prog = "nbd_serve", .synopsis = "-build ID -socket PATH [flags]",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct storage *st = NULL;
	struct block_build *b = NULL;
	struct block_source src;
	struct cow *c;
	struct nbd_server *srv;
	struct nbd_stats stats;
	struct block_dir dir = { .lock_fd = -1 };
	char path[PATH_MAX], id[UUID_STR_LEN + 1];
	enum build_kind kind;
	sigset_t set;
	int sig, bound = 0;

	log_set_prog("nbd_serve");
	flags_parse(&fs, argc, argv);
	if (!*sock)
		flags_usage_error(&fs, "-socket is required");
	if (build_kind_parse(kind_s, &kind) < 0)
		die_err();
	/* block signals before any thread starts so sigwait gets them */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	if (empty) {
		src = block_zero_source(size, BLOCK_COW_BLOCK);
	} else {
		if (build_id_canonical(build, id) < 0)
			die_err();
		if (!(st = storage_open(storage_dir, false)) || !(b = block_build_open(st, id, kind)))
			die_err();
		src = block_build_source(b);
	}
	if (!*cowpath) {
		_cleanup_free_ char *sd = block_sandbox_dir();
		if (sd)
			block_dir_reap(sd, "nbd-serve", NULL, NULL); /* dead servers' COW files */
		if (!sd || block_dir_claim(&dir, sd, "nbd-serve") < 0)
			die_err();
		snprintf(path, sizeof(path), "%s/rootfs.cow", dir.path);
		cowpath = path;
	}
	if (!(c = cow_new(&src, cowpath)))
		die_err();
	struct nbd_export exp = { .name = "", .description = "orchestrator build", .size = cow_size(c),
				  .read_only = readonly, .ops = &cow_nbd_ops, .opaque = c };
	if (!(srv = nbd_server_new(&exp)) || nbd_server_listen_unix(srv, sock) < 0)
		die_err();
	if (tcp_port >= 0 && nbd_server_listen_tcp(srv, "127.0.0.1", (int)tcp_port, &bound) < 0)
		die_err();
	if (nbd_server_start(srv) < 0)
		die_err();
	if (tcp_port >= 0)
		printf("ready %llu port %d\n", (unsigned long long)cow_size(c), bound);
	else
		printf("ready %llu\n", (unsigned long long)cow_size(c));
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	nbd_server_stats(srv, &stats);
	nbd_server_stop(srv);
	if (*export_id) {
		struct cow_export_stats s;
		if (!b)
			die("-export needs -build");
		if (build_id_canonical(export_id, id) < 0 ||
		    cow_export(c, block_build_header(b), st, id, kind, &s) < 0)
			die_err();
		printf("exported %s dirty=%llu empty=%llu bytes=%llu\n", id,
		       (unsigned long long)s.dirty_blocks, (unsigned long long)s.empty_blocks,
		       (unsigned long long)s.diff_bytes);
	}
	printf("stats connections=%llu requests=%llu protocol_errors=%llu fetched=%llu\n",
	       (unsigned long long)stats.connections, (unsigned long long)stats.requests,
	       (unsigned long long)stats.protocol_errors,
	       (unsigned long long)(b ? block_build_fetched(b) : 0));
	nbd_server_free(srv);
	cow_free(c);
	block_build_close(b);
	storage_free(st);
	block_dir_release(&dir);
	return 0;
}
