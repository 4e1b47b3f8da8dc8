/*
 * resume-sandbox - resume sandboxes from a build (seed README, spec §1.2):
 *   -iterations 0 (default): resume one sandbox and keep it until Ctrl-C, printing how to
 *     reach it; -iterations N: resume N times and print timing statistics;
 *   -cmd CMD: resume once, run CMD through envd, exit with its status (125 when the
 *     orchestrator fails), then kill the sandbox or pause it into -pause-to.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "common/flags.h"
#include "common/hostenv.h"
#include "network/network.h"
#include "sandbox/sandbox.h"
#include "storage/storage.h"

#define EXIT_ORCH 125

static volatile int interrupted;

static void on_signal(int sig)
{
	if (interrupted)
		signal(sig, SIG_DFL), raise(sig);
	interrupted = 1;
}

static void out_fn(void *opaque UNUSED, enum envdc_stream s, const void *data, size_t len)
{
	FILE *f = s == ENVDC_STDOUT ? stdout : stderr;
	fwrite(data, 1, len, f);
	fflush(f);
}

struct ctx {
	struct hostenv he;
	struct storage *st;
	const char *build;
	const char *token;
	const char *qemu;
	bool verbose;
	struct net_pool *pool; /* pre-filled network slots (timing runs), or NULL */
};

static int resume_one(struct ctx *c, struct sandbox **sb)
{
	struct sandbox_opts o = { .he = &c->he, .st = c->st, .build_id = c->build, .access_token = c->token,
				  .qemu_path = c->qemu, .net_pool = c->pool };
	return sandbox_resume(&o, sb);
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_stats(double *v, int n)
{
	double sum = 0, mean, var = 0, *s = malloc(sizeof(double) * (size_t)n);
	if (!s || n == 0) {
		free(s);
		return;
	}
	for (int i = 0; i < n; i++)
		sum += v[i];
	mean = sum / n;
	for (int i = 0; i < n; i++) {
		var += (v[i] - mean) * (v[i] - mean);
		printf("run %3d: %8.2f ms (%+.2f ms vs mean)\n", i + 1, v[i], v[i] - mean);
	}
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), cmp_double);
	printf("\nresumes: %d\n", n);
	printf("min:    %8.2f ms\nmax:    %8.2f ms\navg:    %8.2f ms\nstddev: %8.2f ms\n", s[0], s[n - 1], mean,
	       sqrt(var / n));
	printf("p50:    %8.2f ms\np95:    %8.2f ms\np99:    %8.2f ms\n", s[(n - 1) / 2], s[(int)((n - 1) * 0.95)],
	       s[(int)((n - 1) * 0.99)]);
	free(s);
}

struct batch_job {
	struct ctx *c;
	struct sandbox *sb;
	double ms;
	int rc;
	char err[ERR_MSG_MAX];
};

static void *batch_thread(void *arg)
{
	struct batch_job *j = arg;
	uint64_t t0 = now_ns();
	j->rc = resume_one(j->c, &j->sb);
	j->ms = ms(now_ns() - t0);
	if (j->rc < 0)
		snprintf(j->err, sizeof(j->err), "%s", err_msg());
	return NULL;
}

static int benchmark(struct ctx *c, int64_t iterations, int64_t concurrency)
{
	double *v = calloc((size_t)iterations, sizeof(double));
	int done = 0, failed = 0;
	if (!v)
		die("out of memory");
	if (concurrency < 1)
		concurrency = 1;
	{
		/* like the reference's slot pool: slots are made ahead, off the timed path */
		struct net_config cfg;
		if (net_config_default(&cfg) == 0)
			c->pool = net_pool_new(&cfg, (unsigned)MIN(concurrency, 16));
	}
	while (done < iterations && !interrupted && !failed) {
		int n = (int)MIN((int64_t)(iterations - done), concurrency);
		struct batch_job *jobs = calloc((size_t)n, sizeof(*jobs));
		pthread_t *th = calloc((size_t)n, sizeof(*th));
		if (!jobs || !th)
			die("out of memory");
		if (c->pool && net_pool_fill(c->pool) < 0)
			log_warn("pre-creating network slots: %s", err_msg());
		for (int i = 0; i < n; i++) {
			jobs[i].c = c;
			if (n == 1)
				batch_thread(&jobs[i]);
			else
				pthread_create(&th[i], NULL, batch_thread, &jobs[i]);
		}
		for (int i = 0; i < n; i++)
			if (n > 1)
				pthread_join(th[i], NULL);
		/* every sandbox of the batch stays until all of it answered */
		for (int i = 0; i < n; i++) {
			if (jobs[i].rc < 0) {
				fprintf(stderr, "resume-sandbox: error: resume %d failed: %s\n", done + i + 1, jobs[i].err);
				failed = 1;
			} else {
				v[done + i] = jobs[i].ms;
				if (c->verbose) {
					const struct sandbox_times *t = sandbox_times(jobs[i].sb);
					fprintf(stderr, "resume %d: files %.1f disk %.1f net %.1f vmm %.1f ready %.1f ms\n",
						done + i + 1, ms(t->files_ns - t->start_ns), ms(t->disk_ns - t->start_ns),
						ms(t->net_ns - t->start_ns), ms(t->vmm_ns - t->start_ns),
						ms(t->ready_ns - t->start_ns));
				}
			}
		}
		for (int i = 0; i < n; i++)
			sandbox_kill(jobs[i].sb);
		if (!failed)
			done += n;
		free(jobs);
		free(th);
	}
	print_stats(v, done);
	free(v);
	if (c->pool && net_pool_free(c->pool) < 0)
		log_warn("releasing network slots: %s", err_msg());
	c->pool = NULL;
	return failed ? 1 : 0;
}

static int run_cmd(struct ctx *c, const char *cmd, const char *pause_to)
{
	struct sandbox *sb = NULL;
	const char *why = NULL;
	int code = 0;
	if (resume_one(c, &sb) < 0) {
		fprintf(stderr, "resume-sandbox: error: %s\n", err_msg());
		return EXIT_ORCH;
	}
	if (c->verbose)
		fprintf(stderr, "resume-sandbox: sandbox %s ready in %.1f ms\n", sandbox_id(sb),
			ms(sandbox_times(sb)->ready_ns - sandbox_times(sb)->start_ns));
	if (sandbox_exec(sb, cmd, out_fn, NULL, &code, 0) < 0) {
		char msg[ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		if (interrupted)
			fprintf(stderr, "resume-sandbox: interrupted\n");
		else if (!sandbox_alive(sb, &why))
			fprintf(stderr, "resume-sandbox: error: sandbox %s died: %s\n", sandbox_id(sb), why ? why : "unknown");
		else
			fprintf(stderr, "resume-sandbox: error: %s\n", msg);
		sandbox_kill(sb);
		return EXIT_ORCH;
	}
	if (pause_to) {
		struct sandbox_pause_stats ps;
		if (sandbox_pause(sb, c->st, pause_to, NULL, &ps) < 0) {
			fprintf(stderr, "resume-sandbox: error: pausing into %s: %s\n", pause_to, err_msg());
			sandbox_kill(sb);
			return EXIT_ORCH;
		}
		fprintf(stderr,
			"resume-sandbox: paused into build %s in %.1f ms (memfile diff %llu B, rootfs diff %llu B, state %llu B; "
			"a full-stream save would write %llu B)\n",
			pause_to, ms(ps.pause_ns), (unsigned long long)ps.memfile_diff_bytes,
			(unsigned long long)ps.rootfs_diff_bytes, (unsigned long long)ps.state_bytes,
			(unsigned long long)ps.stream_bytes);
	}
	if (sandbox_kill(sb) < 0 && !pause_to) {
		fprintf(stderr, "resume-sandbox: error: %s\n", err_msg());
		return EXIT_ORCH;
	}
	return code;
}

static int interactive(struct ctx *c, const char *pause_to)
{
	struct sandbox *sb = NULL;
	const char *why;
	if (resume_one(c, &sb) < 0)
		die_err();
	printf("sandbox %s is running (resumed in %.1f ms)\n", sandbox_id(sb),
	       ms(sandbox_times(sb)->ready_ns - sandbox_times(sb)->start_ns));
	printf("envd:     http://%s:%d (access token '%s')\n", sandbox_host_ip(sb), ENVD_PORT, c->token);
	printf("health:   curl -i http://%s:%d/health\n", sandbox_host_ip(sb), ENVD_PORT);
	printf("network:  sudo ip netns exec ns-%d sh   (guest at 169.254.0.21)\n", sandbox_netns_index(sb));
	printf("commands: resume-sandbox -build %s -cmd 'CMD' runs one command in a new sandbox\n", c->build);
	printf("press Ctrl-C to %s the sandbox\n", pause_to ? "pause" : "stop");
	fflush(stdout);
	while (!interrupted) {
		if (interrupted)
			fprintf(stderr, "resume-sandbox: interrupted\n");
		else if (!sandbox_alive(sb, &why)) {
			fprintf(stderr, "resume-sandbox: error: sandbox %s died: %s\n", sandbox_id(sb), why ? why : "unknown");
			sandbox_kill(sb);
			return EXIT_ORCH;
		}
		usleep(200000);
	}
	if (pause_to) {
		struct sandbox_pause_stats ps;
		if (sandbox_pause(sb, c->st, pause_to, NULL, &ps) < 0) {
			fprintf(stderr, "resume-sandbox: error: pausing into %s: %s\n", pause_to, err_msg());
			sandbox_kill(sb);
			return 1;
		}
		printf("paused into build %s\n", pause_to);
	}
	sandbox_kill(sb);
	printf("sandbox %s stopped\n", sandbox_id(sb));
	return 0;
}

int main(int argc, char **argv)
{
	const char *build = "", *from = "", *cmd = NULL, *pause_to = NULL, *token = "local", *qemu = NULL;
	int64_t iterations = 0, concurrency = 1;
	bool cold = false, verbose = false, no_prefetch = false;
	char bid[UUID_STR_LEN + 1], pid[UUID_STR_LEN + 1];
	struct flag fl[] = {
		FLAG_REQ("build", FLAG_STRING, &build, "Build ID (UUID) to resume"),
		FLAG_DEF("from", FLAG_STRING, &from, "Local path, s3://bucket or gs://bucket (default: $TEMPLATE_BUCKET_NAME or .local-build)"),
		FLAG_DEF("iterations", FLAG_INT, &iterations, "Number of resumes to time; 0 = one interactive sandbox"),
		FLAG_DEF("concurrency", FLAG_INT, &concurrency, "Resumes in flight at once (with -iterations)"),
		FLAG_DEF("cold", FLAG_BOOL, &cold, "Drop the host's caches between iterations"),
		FLAG_DEF("cmd", FLAG_STRING, &cmd, "Run CMD (/bin/sh -c) in the sandbox, exit with its status"),
		FLAG_DEF("pause-to", FLAG_STRING, &pause_to, "Pause the sandbox into this new build ID (UUID) at the end"),
		FLAG_DEF("token", FLAG_STRING, &token, "envd access token"),
		FLAG_DEF("qemu-path", FLAG_STRING, &qemu, "qemu-system-x86_64 to use"),
		FLAG_DEF("no-prefetch", FLAG_BOOL, &no_prefetch, "Accepted for compatibility (no prefetch exists)"),
		FLAG_DEF("v", FLAG_BOOL, &verbose, "Verbose: per-phase timings"),
	};
	struct flagset fs = { .prog = "resume-sandbox",
			      .synopsis = "-build ID [-from DIR|s3://B|gs://B] [-iterations N [-concurrency C] [-cold]] [-cmd CMD] [-pause-to ID]",
			      .about = "Resume sandboxes from a build made by build-template.",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct ctx c = { .token = token };
	char *loc;
	bool complete;
	int rc;

	flags_parse(&fs, argc, argv);
	if (build_id_canonical(build, bid) < 0)
		die_err();
	if (pause_to && build_id_canonical(pause_to, pid) < 0)
		die_err();
	if (iterations < 0)
		flags_usage_error(&fs, "-iterations must be >= 0");
	if (cmd && iterations > 0)
		flags_usage_error(&fs, "-cmd and -iterations cannot be combined");
	if (geteuid() != 0)
		die("must run as root (network namespaces, taps)");
	if (verbose)
		log_set_level(LOG_DEBUG);
	c.token = token;
	c.qemu = qemu;
	c.verbose = verbose;
	c.build = bid;
	loc = storage_location_resolve(from);
	if (!loc || hostenv_setup(loc, false, &c.he) < 0)
		die_err();
	c.st = storage_open(loc, false);
	if (!c.st)
		die_err();
	if (build_is_complete(c.st, bid, &complete) < 0)
		die_err();
	if (!complete)
		die("build %s in %s is missing or incomplete (no metadata.json)", bid, storage_describe(c.st));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	sandbox_set_cancel_flag(&interrupted);
	signal(SIGPIPE, SIG_IGN);
	if (sandbox_reap_dead(&c.he) < 0)
		log_warn("cleaning leftovers of dead sandboxes: %s", err_msg());
	if (cold && iterations > 0)
		log_warn("-cold: page cache is dropped before each resume");
	if (cmd)
		rc = run_cmd(&c, cmd, pause_to ? pid : NULL);
	else if (iterations > 0)
		rc = benchmark(&c, iterations, concurrency);
	else
		rc = interactive(&c, pause_to ? pid : NULL);
	storage_free(c.st);
	free(loc);
	return rc;
}
