/*
 * network_ctl.c - drives network slots for tests/shell/network_*.sh and vmm_network.sh.
 *   network_ctl -dir D [-internet] hold N   acquire N slots, print "SLOT idx ns_path host_ip
 *                                            veth_ip vpeer_ip" each, then "READY"; release all
 *                                            on SIGTERM/SIGINT or stdin EOF, print "RELEASED"
 *   network_ctl -dir D cleanup              remove dead owners' slots, print "REMOVED n"
 *   network_ctl -dir D cycle N              acquire + release N times, print ms per cycle
 * Single-threaded (signals are taken synchronously with sigwait).
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/common.h"
#include "common/flags.h"
#include "network/network.h"

static sigset_t sigs;

static void *stdin_watch(void *arg)
{
	char c;
	(void)arg;
	while (read(0, &c, 1) > 0)
		;
	kill(getpid(), SIGTERM);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	bool internet = false, watch_stdin = false;
	struct flag fl[] = {
		FLAG_REQ("dir", FLAG_STRING, &dir, "lock directory"),
		FLAG_DEF("internet", FLAG_BOOL, &internet, "outbound NAT through the host"),
		FLAG_DEF("stdin", FLAG_BOOL, &watch_stdin, "hold: also release at stdin EOF"),
	};
	struct flagset fs = { .prog = "network_ctl", .synopsis = "-dir D hold N | cleanup | cycle N",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct net_config cfg;
	int i = flags_parse(&fs, argc, argv), sig;

	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_prog("network_ctl");
	if (i >= argc)
		flags_usage_error(&fs, "missing command");
	if (net_config_default(&cfg) < 0)
		die_err();
	cfg.run_dir = dir;
	cfg.internet = internet;

	if (!strcmp(argv[i], "cleanup")) {
		unsigned n;
		if (net_cleanup_stale(&cfg, &n) < 0)
			die_err();
		printf("REMOVED %u\n", n);
		return 0;
	}
	if (i + 1 >= argc)
		flags_usage_error(&fs, "missing count");
	int n = atoi(argv[i + 1]);
	if (n <= 0 || n > 64)
		flags_usage_error(&fs, "bad count");

	if (!strcmp(argv[i], "cycle")) {
		uint64_t t0 = now_ns();
		for (int k = 0; k < n; k++) {
			struct net_slot *s;
			if (net_slot_acquire(&cfg, &s) < 0)
				die_err();
			if (net_slot_release(s) < 0)
				die_err();
		}
		printf("CYCLE %.1f ms per acquire+release\n", (now_ns() - t0) / 1e6 / n);
		return 0;
	}
	if (strcmp(argv[i], "hold"))
		flags_usage_error(&fs, "unknown command %s", argv[i]);

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	struct net_slot *slots[64];
	uint64_t t0 = now_ns();
	for (int k = 0; k < n; k++) {
		if (net_slot_acquire(&cfg, &slots[k]) < 0) {
			log_error("%s", err_msg());
			while (k-- > 0)
				net_slot_release(slots[k]);
			return 1;
		}
		printf("SLOT %u %s %s %s %s\n", slots[k]->idx, slots[k]->ns_path, slots[k]->host_ip,
		       slots[k]->veth_ip, slots[k]->vpeer_ip);
	}
	printf("READY %.1f ms per slot\n", (now_ns() - t0) / 1e6 / n);
	if (watch_stdin) {
		pthread_t t;
		pthread_create(&t, NULL, stdin_watch, NULL);
		pthread_detach(t);
	}
	sigwait(&sigs, &sig);
	int rc = 0;
	for (int k = 0; k < n; k++)
		if (net_slot_release(slots[k]) < 0) {
			log_error("%s", err_msg());
			rc = 1;
		}
	printf("RELEASED\n");
	return rc;
}
