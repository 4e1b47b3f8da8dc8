/*
 * vmm_scenario.c - drives the QEMU driver through a whole snapshot chain for
 * tests/shell/vmm_*.sh and prints PASS/FAIL lines plus timings:
 *   boot (share=on) -> snapshot -> restore gen1 (share=off, seccomp) -> guest counter goes on
 *   -> pause_diff (dirty pages + filtered state) -> base + diff = mem1 -> restore gen2 -> goes
 *   on -> kill -9 QEMU -> reported dead and reaped; optionally N restores timed against
 *   restores from a full migration stream.
 * The guest (built by the shell test) prints "TICK <n> <lines>" on the console every ~200 ms,
 * where <lines> counts lines of a file in its RAM, so RAM contents are checked too.
 * Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common/common.h"
#include "common/flags.h"
#include "vmm/dirty.h"
#include "vmm/vmm.h"

static int failed;
static const char *opt_kernel, *opt_initrd, *opt_dir, *opt_rootfs, *opt_accel;
static uint64_t opt_mem = 256;
static int64_t opt_runs = 0, opt_concurrent = 0, opt_generations = 2;

#define PASS(n) printf("PASS %s\n", n)
#define FAIL(n, ...)                                                                               \
	do {                                                                                       \
		printf("FAIL %s: ", n);                                                            \
		printf(__VA_ARGS__);                                                               \
		printf("\n");                                                                      \
		failed = 1;                                                                        \
	} while (0)

static char *path(const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", opt_dir, name) < 0)
		abort();
	return p;
}

/* Last "TICK n lines" in a console log; returns n (0 when none), *lines set. */
static long last_tick(const char *log, long *lines)
{
	size_t len;
	char *buf = read_file(log, &len), *p, *last = NULL;
	long n = 0;
	*lines = 0;
	if (!buf)
		return 0;
	for (p = buf; (p = strstr(p, "TICK ")); p++)
		last = p;
	if (last)
		sscanf(last, "TICK %ld %ld", &n, lines);
	free(buf);
	return n;
}

static long wait_tick(const char *log, long above, double secs, long *lines)
{
	uint64_t end = now_ns() + (uint64_t)(secs * 1e9);
	long t;
	while ((t = last_tick(log, lines)) <= above && now_ns() < end)
		usleep(20000);
	return t;
}

static void config_init(struct vmm_config *c, const struct vmm_machine *m, const char *mem,
			const char *serial)
{
	memset(c, 0, sizeof(*c));
	c->machine = *m;
	c->memfile = mem;
	c->serial_log = serial;
	c->qemu_log = path("qemu.log");
	c->rootfs = opt_rootfs;
}

static int copy_file(const char *from, const char *to)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	_cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	struct stat st;
	if (in < 0 || out < 0 || fstat(in, &st) < 0 || ftruncate(out, st.st_size) < 0)
		return -1;
	/* sparse-aware copy: only data extents */
	off_t off = 0;
	for (;;) {
		off_t d = lseek(in, off, SEEK_DATA);
		if (d < 0)
			break;
		off_t h = lseek(in, d, SEEK_HOLE);
		off_t s = d;
		while (s < h) {
			ssize_t n = copy_file_range(in, &s, out, &(off_t){ s }, (size_t)(h - s), 0);
			if (n <= 0)
				return -1;
		}
		off = h;
	}
	return 0;
}

static uint32_t file_crc(const char *p)
{
	_cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
	static char buf[1 << 20];
	uint32_t crc = 0;
	ssize_t n;
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		crc = crc32c_update(crc, buf, (size_t)n);
	return crc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double p50_ms(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return v[n / 2] / 1e6;
}

int main(int argc, char **argv)
{
	struct flag fl[] = {
		FLAG_REQ("kernel", FLAG_STRING, &opt_kernel, "guest kernel (vmlinux)"),
		FLAG_REQ("initrd", FLAG_STRING, &opt_initrd, "guest initrd"),
		FLAG_REQ("dir", FLAG_STRING, &opt_dir, "work directory"),
		FLAG_DEF("rootfs", FLAG_STRING, &opt_rootfs, "raw disk image to attach"),
		FLAG_DEF("accel", FLAG_STRING, &opt_accel, "accelerator override"),
		FLAG_DEF("mem", FLAG_U64, &opt_mem, "guest RAM in MiB"),
		FLAG_DEF("runs", FLAG_INT, &opt_runs, "timed restores (0 = none)"),
		FLAG_DEF("generations", FLAG_INT, &opt_generations, "pause->restore generations (>= 2)"),
		FLAG_DEF("concurrent", FLAG_INT, &opt_concurrent, "VMs restored at once from one memfile"),
	};
	struct flagset fs = { .prog = "vmm_scenario", .synopsis = "-kernel K -initrd I -dir D",
			      .flags = fl, .nflags = ARRAY_SIZE(fl) };
	struct vmm_machine m;
	struct vmm_config c;
	struct vmm *vm = NULL;
	long t_boot, t1, t2, lines;
	char *mem0, *mem1, *state0, *state1, *diff1;
	struct stat st;

	flags_parse(&fs, argc, argv);
	mem0 = path("mem0");
	mem1 = path("mem1");
	state0 = path("state0");
	state1 = path("state1");
	diff1 = path("diff1");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (vmm_machine_default(&m, opt_accel, 1, opt_mem) < 0)
		die_err();
	printf("accel %s\n", m.accel);

	/* 1. boot with share=on RAM */
	config_init(&c, &m, mem0, path("serial0.log"));
	c.kernel = opt_kernel;
	c.initrd = opt_initrd;
	c.cmdline = "console=ttyS0 loglevel=1 lpj=5000000 no_timer_check panic=-1 reboot=t";
	if (vmm_boot(&c, &vm) < 0) {
		FAIL("vmm_boot", "%s", err_msg());
		return 1;
	}
	printf("booted qemu %s pid %d in %.1f ms\n", vmm_machine(vm)->version, (int)vmm_pid(vm),
	       vmm_times(vm)->spawn_to_running / 1e6);
	if (!vmm_machine(vm)->version[0])
		FAIL("vmm_version", "no version recorded");
	t_boot = wait_tick(c.serial_log, 3, 60, &lines);
	if (t_boot <= 3) {
		FAIL("vmm_boot_guest_runs", "no TICK 4 in 60 s");
		vmm_quit(vm);
		return 1;
	}
	PASS("vmm_boot_guest_runs");

	/* 2. snapshot: device state only */
	if (vmm_snapshot(vm, state0) < 0) {
		FAIL("vmm_snapshot", "%s", err_msg());
		vmm_quit(vm);
		return 1;
	}
	t_boot = last_tick(c.serial_log, &lines);
	stat(state0, &st);
	printf("snapshot: state %lld bytes in %.1f ms, last tick %ld\n", (long long)st.st_size,
	       vmm_times(vm)->state_save / 1e6, t_boot);
	if (st.st_size > 0 && st.st_size < (1 << 20))
		PASS("vmm_snapshot_small_state");
	else
		FAIL("vmm_snapshot_small_state", "state is %lld bytes", (long long)st.st_size);
	if (vmm_quit(vm) < 0)
		FAIL("vmm_quit_boot", "%s", err_msg());
	vm = NULL;

	/* 2b. a damaged state file: restore fails with QEMU's reason, nothing left running */
	{
		char *bad = path("state-bad");
		size_t blen;
		char *data = read_file(state0, &blen);
		if (!data || write_file_atomic(bad, data, blen / 2, 0644) < 0)
			die("cannot write %s", bad);
		free(data);
		config_init(&c, &m, mem0, path("serial-bad.log"));
		int r = vmm_restore(&c, bad, &vm);
		if (r < 0 && vm == NULL && strstr(err_msg(), "migration failed") && waitpid(-1, NULL, WNOHANG) < 0)
			PASS("vmm_restore_bad_state_fails");
		else
			FAIL("vmm_restore_bad_state_fails", "r=%d: %s", r, r < 0 ? err_msg() : "restored");
		printf("damaged state: %s\n", err_msg());
		if (r == 0)
			vmm_quit(vm);
		vm = NULL;
		free(bad);
	}

	/* 3. restore gen1 from the memfile (share=off) under the seccomp sandbox */
	uint32_t crc0 = file_crc(mem0);
	config_init(&c, &m, mem0, path("serial1.log"));
	if (vmm_restore(&c, state0, &vm) < 0) {
		FAIL("vmm_restore", "%s", err_msg());
		return 1;
	}
	printf("restore gen1: spawn->qmp %.1f ms, spawn->running %.1f ms\n", vmm_times(vm)->spawn_to_qmp / 1e6,
	       vmm_times(vm)->spawn_to_running / 1e6);
	t1 = wait_tick(c.serial_log, t_boot, 20, &lines);
	if (t1 > t_boot && lines == t1)
		PASS("vmm_restore_continues");
	else
		FAIL("vmm_restore_continues", "tick %ld lines %ld after boot's %ld", t1, lines, t_boot);
	usleep(500000);

	/* 3b. N more restores of the same memfile at once: all run, memory stays shared */
	if (opt_concurrent > 0) {
		struct vmm **vms = calloc((size_t)opt_concurrent, sizeof(*vms));
		char **logs = calloc((size_t)opt_concurrent, sizeof(*logs));
		int ok = 1;
		uint64_t anon = 0;
		for (int k = 0; k < opt_concurrent; k++) {
			char name[32];
			snprintf(name, sizeof(name), "serial-c%d.log", k);
			logs[k] = path(name);
			struct vmm_config cc;
			config_init(&cc, &m, mem0, logs[k]);
			if (opt_rootfs) { /* an image file can be opened by one QEMU only */
				snprintf(name, sizeof(name), "disk-c%d.img", k);
				cc.rootfs = path(name);
				if (copy_file(opt_rootfs, cc.rootfs) < 0)
					die("cannot copy %s", opt_rootfs);
			}
			if (vmm_restore(&cc, state0, &vms[k]) < 0) {
				FAIL("vmm_concurrent_restores", "restore %d: %s", k, err_msg());
				ok = 0;
				break;
			}
		}
		for (int k = 0; ok && k < opt_concurrent; k++) {
			long l, t = wait_tick(logs[k], t_boot, 30, &l);
			if (t <= t_boot || l != t) {
				FAIL("vmm_concurrent_restores", "VM %d: tick %ld lines %ld", k, t, l);
				ok = 0;
			}
		}
		for (int k = 0; k < opt_concurrent && vms[k]; k++) {
			char stp[64], line[256];
			snprintf(stp, sizeof(stp), "/proc/%d/status", (int)vmm_pid(vms[k]));
			FILE *f = fopen(stp, "re");
			while (f && fgets(line, sizeof(line), f)) {
				unsigned long kb;
				if (sscanf(line, "RssAnon: %lu kB", &kb) == 1)
					anon += kb;
			}
			if (f)
				fclose(f);
		}
		if (ok) {
			PASS("vmm_concurrent_restores");
			printf("%lld VMs from one memfile: RssAnon avg %.1f MiB per QEMU (guest RAM %llu MiB)\n",
			       (long long)opt_concurrent, anon / 1024.0 / (double)opt_concurrent,
			       (unsigned long long)opt_mem);
		}
		for (int k = 0; k < opt_concurrent; k++) {
			vmm_quit(vms[k]);
			free(logs[k]);
		}
		config_init(&c, &m, mem0, path("serial1.log"));
		free(vms);
		free(logs);
	}

	/* 4. pause into a diff */
	struct vmm_diff d;
	if (vmm_pause_diff(vm, state1, diff1, &d) < 0) {
		FAIL("vmm_pause_diff", "%s", err_msg());
		vmm_quit(vm);
		return 1;
	}
	t1 = last_tick(c.serial_log, &lines);
	stat(diff1, &st);
	printf("pause: %llu dirty pages of %llu (diff %lld bytes), state %llu bytes of a %llu-byte stream; "
	       "stop %.1f ms, scan %.1f ms, copy %.1f ms, state %.1f ms; last tick %ld\n",
	       (unsigned long long)d.ndirty, (unsigned long long)d.npages, (long long)st.st_size,
	       (unsigned long long)d.state_bytes, (unsigned long long)d.stream_bytes,
	       vmm_times(vm)->stop / 1e6, vmm_times(vm)->dirty_scan / 1e6, vmm_times(vm)->dirty_copy / 1e6,
	       vmm_times(vm)->state_save / 1e6, t1);
	if (d.ndirty > 0 && (uint64_t)st.st_size == d.ndirty * VMM_PAGE_SIZE && d.ndirty < d.npages / 2 &&
	    d.state_bytes < (1 << 20) && d.stream_bytes > d.state_bytes)
		PASS("vmm_pause_diff");
	else
		FAIL("vmm_pause_diff", "unexpected sizes");
	if (vmm_quit(vm) < 0)
		FAIL("vmm_quit_gen1", "%s", err_msg());
	vm = NULL;
	if (file_crc(mem0) == crc0)
		PASS("vmm_memfile_unchanged");
	else
		FAIL("vmm_memfile_unchanged", "mem0 changed under a share=off restore");

	/* 5. gen2 = mem0 + diff1 */
	{
		_cleanup_close_ int full = -1, df = -1;
		if (copy_file(mem0, mem1) < 0 || (full = open(mem1, O_RDWR | O_CLOEXEC)) < 0 ||
		    (df = open(diff1, O_RDONLY | O_CLOEXEC)) < 0 ||
		    dirty_apply(full, df, d.bitmap, d.npages) < 0) {
			FAIL("vmm_merge_diff", "%s", err_msg());
			return 1;
		}
	}
	config_init(&c, &m, mem1, path("serial2.log"));
	if (vmm_restore(&c, state1, &vm) < 0) {
		FAIL("vmm_restore_gen2", "%s", err_msg());
		return 1;
	}
	printf("restore gen2: spawn->running %.1f ms\n", vmm_times(vm)->spawn_to_running / 1e6);
	t2 = wait_tick(c.serial_log, t1, 20, &lines);
	if (t2 > t1 && lines == t2)
		PASS("vmm_restore_gen2_continues");
	else
		FAIL("vmm_restore_gen2_continues", "tick %ld lines %ld after gen1's %ld", t2, lines, t1);

	/* 5b. more generations: each pause of a restored VM restores and goes on */
	for (int g = 3; g <= opt_generations; g++) {
		char name[32];
		struct vmm_diff dg;
		/* mg stays allocated: c.memfile points at it for the next generation */
		_cleanup_free_ char *sg = NULL, *df = NULL;
		char *prev_mem = (char *)c.memfile, *mg;
		snprintf(name, sizeof(name), "state%d", g - 1);
		sg = path(name);
		snprintf(name, sizeof(name), "diff%d", g - 1);
		df = path(name);
		snprintf(name, sizeof(name), "mem%d", g - 1);
		mg = path(name);
		usleep(300000);
		if (vmm_pause_diff(vm, sg, df, &dg) < 0) {
			FAIL("vmm_generations", "pause of generation %d: %s", g - 1, err_msg());
			break;
		}
		long tp = last_tick(c.serial_log, &lines);
		vmm_quit(vm);
		vm = NULL;
		_cleanup_close_ int full = -1, dfd = -1;
		if (copy_file(prev_mem, mg) < 0 || (full = open(mg, O_RDWR | O_CLOEXEC)) < 0 ||
		    (dfd = open(df, O_RDONLY | O_CLOEXEC)) < 0 || dirty_apply(full, dfd, dg.bitmap, dg.npages) < 0) {
			FAIL("vmm_generations", "merge of generation %d: %s", g - 1, strerror(errno));
			vmm_diff_release(&dg);
			break;
		}
		uint64_t ndirty = dg.ndirty;
		vmm_diff_release(&dg);
		snprintf(name, sizeof(name), "serial%d.log", g);
		config_init(&c, &m, mg, path(name));
		if (vmm_restore(&c, sg, &vm) < 0) {
			FAIL("vmm_generations", "restore of generation %d: %s", g, err_msg());
			break;
		}
		long tg = wait_tick(c.serial_log, tp, 20, &lines);
		if (tg <= tp || lines != tg) {
			FAIL("vmm_generations", "generation %d: tick %ld lines %ld after %ld", g, tg, lines, tp);
			break;
		}
		printf("generation %d: %llu dirty pages, continues at tick %ld (lines %ld)\n", g,
		       (unsigned long long)ndirty, tg, lines);
		if (g == opt_generations)
			PASS("vmm_generations");
	}
	if (!vm) {
		FAIL("vmm_generations", "no VM left for the kill test");
		return 1;
	}

	/* 6. QEMU killed: reported dead, reaped */
	pid_t pid = vmm_pid(vm);
	const char *why = NULL;
	struct pollfd pfd = { .fd = vmm_exit_fd(vm), .events = POLLIN };
	if (pfd.fd < 0 || poll(&pfd, 1, 0) != 0)
		FAIL("vmm_exit_fd", "no exit fd, or readable while QEMU runs");
	kill(pid, SIGKILL);
	if (pfd.fd >= 0 && poll(&pfd, 1, 5000) != 1)
		FAIL("vmm_exit_fd", "not readable after kill");
	uint64_t end = now_ns() + 5000000000ull;
	while (vmm_alive(vm, &why) && now_ns() < end)
		usleep(1000);
	char status[32];
	int sr = vmm_status(vm, status, sizeof(status));
	if (why && strstr(why, "signal 9") && sr < 0 && kill(pid, 0) < 0 && errno == ESRCH)
		PASS("vmm_killed_reported");
	else
		FAIL("vmm_killed_reported", "why=%s status=%d", why ? why : "(alive)", sr);
	if (vmm_quit(vm) < 0 && strstr(err_msg(), "signal 9"))
		PASS("vmm_quit_reports_death");
	else
		FAIL("vmm_quit_reports_death", "quit did not report the earlier death");
	vm = NULL;
	vmm_diff_release(&d);

	/* 7. timing: ours vs a full-stream restore */
	if (opt_runs > 0) {
		char *full = path("full"), *blank = path("blank");
		uint64_t *ours = calloc((size_t)opt_runs, 8), *plain = calloc((size_t)opt_runs, 8);
		config_init(&c, &m, mem0, path("serial-full.log"));
		if (vmm_restore(&c, state0, &vm) < 0 || (usleep(300000), vmm_save_full(vm, full)) < 0) {
			FAIL("vmm_full_stream", "%s", err_msg());
			vmm_quit(vm);
			return 1;
		}
		vmm_quit(vm);
		vm = NULL;
		{
			_cleanup_close_ int b = open(blank, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (b < 0 || ftruncate(b, (off_t)(opt_mem << 20)) < 0)
				die("blank memfile");
		}
		stat(full, &st);
		printf("full stream %lld bytes\n", (long long)st.st_size);
		for (int i = 0; i < opt_runs; i++) {
			config_init(&c, &m, mem0, path("serial-t.log"));
			if (vmm_restore(&c, state0, &vm) < 0) {
				FAIL("vmm_restore_timed", "%s", err_msg());
				return 1;
			}
			ours[i] = vmm_times(vm)->spawn_to_running;
			vmm_quit(vm);
			config_init(&c, &m, blank, path("serial-t.log"));
			if (vmm_restore(&c, full, &vm) < 0) {
				FAIL("vmm_restore_full_timed", "%s", err_msg());
				return 1;
			}
			plain[i] = vmm_times(vm)->spawn_to_running;
			vmm_quit(vm);
			vm = NULL;
		}
		double a = p50_ms(ours, (int)opt_runs), b = p50_ms(plain, (int)opt_runs);
		printf("restore spawn->running p50 over %lld runs: ours %.1f ms, full stream %.1f ms (%.1fx)\n",
		       (long long)opt_runs, a, b, b / a);
		if (a < b)
			PASS("vmm_restore_faster_than_full_stream");
		else
			FAIL("vmm_restore_faster_than_full_stream", "ours %.1f ms vs %.1f ms", a, b);
		free(ours);
		free(plain);
		free(full);
		free(blank);
	}
	return failed;
}
