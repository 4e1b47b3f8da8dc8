/*
 * qemu.c - the QEMU microvm driver of the VMM interface (vmm.h; recipes in PLATFORM.md §2-3,
 * §11; design in docs/vmm.md).
 *
 * Process: QEMU is forked (after setns() into the sandbox's network namespace when asked)
 * with its QMP monitor on one end of a socketpair passed as fd 3 (`-chardev socket,fd=3`), so
 * there is no socket file to poll for and no connect race; fds travel over it (SCM_RIGHTS).
 * A pidfd of the child makes every QMP wait notice QEMU's death at once.
 * State transfer always goes through file descriptors (`getfd` + `fd:` URIs), never `exec:`,
 * because the seccomp sandbox (`spawn=deny`) kills QEMU on fork. Outgoing streams are read
 * from a pipe through the RAM-record filter (migstream.h) into the state file.
 *
 * Invariants: a `struct qemu_vm` owns exactly one child, reaped by qemu_quit() or by the error
 * path of boot/restore; the QMP socket and pidfd are closed with it.
 * Threading: one thread drives one VM; calls on distinct VMs may run concurrently (no globals
 * besides the immutable option tables).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "common/common.h"
#include "vmm/dirty.h"
#include "vmm/internal.h"
#include "vmm/migstream.h"
#include "vmm/qmp.h"

#define QEMU_DEFAULT_BIN "qemu-system-x86_64"
#define QEMU_SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
#define QEMU_TERM_MS 2000
#define QMP_FD 3
#define ARGV_MAX 64

struct qemu_vm {
	struct vmm vm; /* first: vmm.c sees this */
	struct qmp qmp;
	char *memfile;
	char *qemu_log;
	bool restored; /* RAM is share=off (diffs via pagemap) */
	dev_t mem_dev; /* the memfile QEMU mapped (its path may be replaced later) */
	ino_t mem_ino;
	bool caps_set; /* migration capabilities configured */
	uint64_t timeout_ms;
};

extern char **environ;

struct argv {
	char *v[ARGV_MAX + 1];
	int n;
	bool oom;
};

static void argv_add(struct argv *a, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void argv_add(struct argv *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	if (a->n >= ARGV_MAX) {
		a->oom = true;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0) {
		a->oom = true;
		s = NULL;
	}
	va_end(ap);
	if (s)
		a->v[a->n++] = s;
}

static void argv_release(struct argv *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
}

/* QEMU option values escape ',' as ",,". Caller frees. */
static char *qemu_escape(const char *s)
{
	size_t n = strlen(s), extra = 0;
	for (size_t i = 0; i < n; i++)
		extra += s[i] == ',';
	char *o = malloc(n + extra + 1), *p = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		*p++ = s[i];
		if (s[i] == ',')
			*p++ = ',';
	}
	*p = '\0';
	return o;
}

/* Resolve the binary before fork (execve in the child; no PATH walk after fork). */
static char *qemu_binary(const char *path)
{
	const char *p = path ? path : getenv("ORCH_QEMU");
	const char *env;
	if (!p || !*p)
		p = QEMU_DEFAULT_BIN;
	if (strchr(p, '/'))
		return access(p, X_OK) == 0 ? strdup(p) : (err_set_errno(errno, "qemu binary '%s'", p), NULL);
	env = getenv("PATH");
	if (!env || !*env)
		env = "/usr/local/bin:/usr/bin:/bin";
	while (*env) {
		size_t l = strcspn(env, ":");
		char *c;
		if (asprintf(&c, "%.*s/%s", (int)l, env, p) < 0)
			break;
		if (access(c, X_OK) == 0)
			return c;
		free(c);
		env += l;
		if (*env == ':')
			env++;
	}
	err_set("qemu binary '%s' not found in PATH", p);
	return NULL;
}

/* Last non-empty line of QEMU's stderr log, for error messages. */
static void log_tail(const char *path, char *out, size_t n)
{
	char buf[1024];
	out[0] = '\0';
	if (!path)
		return;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t start = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t r = pread(fd, buf, (size_t)(end - start), start);
	if (r <= 0)
		return;
	buf[r] = '\0';
	while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == '\r'))
		buf[--r] = '\0';
	char *nl = strrchr(buf, '\n');
	snprintf(out, n, "%s", nl ? nl + 1 : buf);
}

/* Append "(qemu <why>: <stderr tail>)" context to the current error when QEMU is gone. */
static int qemu_fail(struct qemu_vm *q)
{
	char tail[512], msg[ERR_MSG_MAX];
	if (!vmm_try_reap(&q->vm, 200))
		return -1;
	log_tail(q->qemu_log, tail, sizeof(tail));
	snprintf(msg, sizeof(msg), "%s", err_msg()); /* err_set must not read its own buffer */
	return err_set("%s (qemu %s%s%s)", msg, q->vm.why, tail[0] ? ": " : "", tail);
}

/* The host's TSC rate in kHz from /proc/cpuinfo ("cpu MHz"), 0 when unknown. Under TCG the
 * guest's TSC runs at the host's rate (QEMU reads the host TSC). */
static unsigned long host_tsc_khz(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];
	double mhz;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1 && mhz > 100 && mhz < 100000)
			return (unsigned long)(mhz * 1000 + 0.5);
	return 0;
}

static int build_argv(const struct vmm_config *c, bool restore, const char *bin, struct argv *a)
{
	const struct vmm_machine *m = &c->machine;
	_cleanup_free_ char *mem = qemu_escape(c->memfile);
	_cleanup_free_ char *ser = qemu_escape(c->serial_log);
	_cleanup_free_ char *disk = c->rootfs ? qemu_escape(c->rootfs) : NULL;
	_cleanup_free_ char *tap = c->tap ? qemu_escape(c->tap) : NULL;

	if (!mem || !ser || (c->rootfs && !disk) || (c->tap && !tap))
		return err_set_errno(ENOMEM, "qemu arguments");
	argv_add(a, "%s", bin);
	argv_add(a, "-M");
	argv_add(a, "%s", m->machine);
	argv_add(a, "-accel");
	argv_add(a, "%s", m->accel);
	argv_add(a, "-cpu");
	argv_add(a, "%s", m->cpu);
	argv_add(a, "-smp");
	argv_add(a, "%u", m->vcpu);
	argv_add(a, "-m");
	argv_add(a, "%lluM", (unsigned long long)m->memory_mib);
	argv_add(a, "-object");
	argv_add(a, "memory-backend-file,id=" VMM_RAM_ID ",size=%lluM,mem-path=%s,share=%s",
		 (unsigned long long)m->memory_mib, mem, restore ? "off" : "on");
	argv_add(a, "-nodefaults");
	argv_add(a, "-no-user-config");
	argv_add(a, "-display");
	argv_add(a, "none");
	argv_add(a, "-serial");
	argv_add(a, "file:%s", ser);
	argv_add(a, "-chardev");
	argv_add(a, "socket,id=qmp,fd=%d", QMP_FD);
	argv_add(a, "-mon");
	argv_add(a, "chardev=qmp,mode=control");
	argv_add(a, "-no-reboot");
	if (!c->no_sandbox) {
		argv_add(a, "-sandbox");
		argv_add(a, QEMU_SANDBOX);
	}
	if (c->rootfs) {
		argv_add(a, "-drive");
		argv_add(a, "id=root,file=%s,format=raw,if=none%s", disk,
			 c->rootfs_readonly ? ",readonly=on" : "");
		argv_add(a, "-device");
		argv_add(a, "virtio-blk-device,drive=root");
	}
	if (c->tap) {
		argv_add(a, "-netdev");
		argv_add(a, "tap,id=n0,ifname=%s,script=no,downscript=no", tap);
		argv_add(a, "-device");
		argv_add(a, "virtio-net-device,netdev=n0,mac=" VMM_GUEST_MAC);
	}
	if (restore) {
		argv_add(a, "-incoming");
		argv_add(a, "defer");
	} else {
		argv_add(a, "-kernel");
		argv_add(a, "%s", c->kernel);
		if (c->initrd) {
			argv_add(a, "-initrd");
			argv_add(a, "%s", c->initrd);
		}
		/* Under TCG on a loaded host the guest's PIT-based TSC calibration fails ("tsc: Unable
		 * to calibrate against PIT"), the TSC is marked unstable and boot hangs; telling the
		 * kernel the rate skips that calibration (docs/vmm.md). */
		const char *cl = c->cmdline ? c->cmdline : "";
		unsigned long khz = 0;
		if (!strcmp(m->accel, "tcg") && !c->no_tsc_hint && !strstr(cl, "tsc_early_khz="))
			khz = host_tsc_khz();
		argv_add(a, "-append");
		if (khz)
			argv_add(a, "%s%stsc_early_khz=%lu", cl, *cl ? " " : "", khz);
		else
			argv_add(a, "%s", cl);
	}
	if (a->oom)
		return err_set("qemu arguments: too many or out of memory");
	return 0;
}

static int validate_config(const struct vmm_config *c, bool restore)
{
	if (!c->memfile || !c->serial_log)
		return err_set("vmm config: memfile and serial_log are required");
	if (!restore && !c->kernel)
		return err_set("vmm config: a kernel is required to boot");
	if (strcmp(c->machine.accel, "tcg") && strcmp(c->machine.accel, "kvm"))
		return err_set("vmm config: unknown accel '%s'", c->machine.accel);
	if (!c->machine.vcpu || c->machine.memory_mib < 16 || !c->machine.machine[0] || !c->machine.cpu[0])
		return err_set("vmm config: incomplete machine options");
	if (c->tap && (strlen(c->tap) >= 16 || !*c->tap))
		return err_set("vmm config: invalid tap name '%s'", c->tap);
	return 0;
}

/* Fork + exec QEMU; on success q->vm.pid/pidfd are set and QMP is negotiated. */
static int qemu_spawn(struct qemu_vm *q, const struct vmm_config *c, bool restore)
{
	struct argv a = { .n = 0 };
	_cleanup_free_ char *bin = NULL;
	_cleanup_close_ int devnull = -1, logfd = -1, nsfd = -1;
	int sv[2] = { -1, -1 };
	struct json_object *greeting = NULL;
	uint64_t t0;
	pid_t pid;

	if (!(bin = qemu_binary(c->qemu_path)) || build_argv(c, restore, bin, &a) < 0)
		goto err;
	if ((devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0) {
		err_set_errno(errno, "cannot open /dev/null");
		goto err;
	}
	logfd = c->qemu_log ? open(c->qemu_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
			    : fcntl(devnull, F_DUPFD_CLOEXEC, 3);
	if (logfd < 0) {
		err_set_errno(errno, "cannot open qemu log '%s'", c->qemu_log);
		goto err;
	}
	if (c->netns_path && (nsfd = open(c->netns_path, O_RDONLY | O_CLOEXEC)) < 0) {
		err_set_errno(errno, "cannot open network namespace '%s'", c->netns_path);
		goto err;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		err_set_errno(errno, "socketpair");
		goto err;
	}
	t0 = now_ns();
	pid = fork();
	if (pid < 0) {
		err_set_errno(errno, "fork");
		goto err;
	}
	if (pid == 0) {
		/* child: only async-signal-safe calls from here; failures go to QEMU's log, which
		 * the parent quotes in its error */
#define CHILD_FAIL(msg)                                                                            \
	do {                                                                                       \
		(void)!write(logfd, msg "\n", sizeof(msg));                                       \
		_exit(126);                                                                        \
	} while (0)
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			CHILD_FAIL("orch: cannot join the network namespace (setns)");
		/* dup2 onto itself keeps O_CLOEXEC: clear it by hand in that case */
		if ((devnull == 0 ? fcntl(0, F_SETFD, 0) : dup2(devnull, 0)) < 0 ||
		    (logfd == 1 ? fcntl(1, F_SETFD, 0) : dup2(logfd, 1)) < 0 ||
		    (logfd == 2 ? fcntl(2, F_SETFD, 0) : dup2(logfd, 2)) < 0)
			CHILD_FAIL("orch: cannot set up stdio for qemu");
		if ((sv[1] == QMP_FD ? fcntl(QMP_FD, F_SETFD, 0) : dup2(sv[1], QMP_FD)) < 0)
			CHILD_FAIL("orch: cannot pass the QMP socket to qemu");
		/* whatever another module left without O_CLOEXEC must not live on in QEMU */
		syscall(SYS_close_range, QMP_FD + 1, ~0u, 0);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execve(bin, a.v, environ);
		(void)!write(2, "orch: cannot execute qemu\n", 26);
		_exit(127);
#undef CHILD_FAIL
	}
	close(sv[1]);
	sv[1] = -1;
	q->vm.pid = pid;
	q->vm.pidfd = vmm_pidfd_open(pid);
	if (qmp_open(&q->qmp, TAKE_FD(sv[0]), q->vm.pidfd, q->timeout_ms, &greeting) < 0) {
		q->qmp.fd = -1;
		qemu_fail(q);
		goto err;
	}
	q->vm.times.spawn_to_qmp = now_ns() - t0;
	struct json_object *v, *qv, *x;
	if (json_object_object_get_ex(greeting, "QMP", &v) && json_object_object_get_ex(v, "version", &v) &&
	    json_object_object_get_ex(v, "qemu", &qv)) {
		int maj = 0, min = 0, mic = 0;
		if (json_object_object_get_ex(qv, "major", &x))
			maj = json_object_get_int(x);
		if (json_object_object_get_ex(qv, "minor", &x))
			min = json_object_get_int(x);
		if (json_object_object_get_ex(qv, "micro", &x))
			mic = json_object_get_int(x);
		snprintf(q->vm.machine.version, sizeof(q->vm.machine.version), "%d.%d.%d", maj, min, mic);
	}
	json_object_put(greeting);
	argv_release(&a);
	return 0;
err:
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	argv_release(&a);
	return -1;
}

static struct qemu_vm *qemu_new(const struct vmm_config *c)
{
	struct qemu_vm *q = calloc(1, sizeof(*q));
	if (!q) {
		err_set_errno(ENOMEM, "vmm");
		return NULL;
	}
	q->vm.ops = &vmm_qemu_ops;
	q->vm.machine = c->machine;
	q->vm.pidfd = -1;
	q->qmp.fd = -1;
	q->timeout_ms = c->timeout_ms ? c->timeout_ms : VMM_DEFAULT_TIMEOUT_MS;
	q->memfile = strdup(c->memfile);
	q->qemu_log = c->qemu_log ? strdup(c->qemu_log) : NULL;
	if (!q->memfile || (c->qemu_log && !q->qemu_log)) {
		free(q->memfile);
		free(q->qemu_log);
		free(q);
		err_set_errno(ENOMEM, "vmm");
		return NULL;
	}
	return q;
}

static int qemu_quit(struct vmm *vm)
{
	struct qemu_vm *q = (struct qemu_vm *)vm;
	bool died_before = vm->reaped || vmm_try_reap(vm, 0);
	char why[sizeof(vm->why)];

	qmp_close(&q->qmp);
	vmm_kill_reap(vm, QEMU_TERM_MS);
	snprintf(why, sizeof(why), "%s", vm->why);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	free(q->memfile);
	free(q->qemu_log);
	free(q);
	if (died_before)
		return err_set("qemu had %s", why);
	return 0;
}

/* Kill and free a VM that failed to start, keeping the error that made it fail. */
static int qemu_abort(struct qemu_vm *q)
{
	char msg[ERR_MSG_MAX];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	qemu_quit(&q->vm);
	return err_set("%s", msg);
}

static int qemu_call(struct qemu_vm *q, const char *cmd, struct json_object *args, int fd,
		     struct json_object **ret)
{
	if (qmp_call(&q->qmp, cmd, args, fd, q->timeout_ms, ret) < 0)
		return qemu_fail(q);
	return 0;
}

static int qemu_set_caps(struct qemu_vm *q)
{
	struct json_object *caps, *args;
	static const char *const names[] = { "x-ignore-shared", "events" };

	if (q->caps_set)
		return 0;
	caps = json_object_new_array();
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		struct json_object *c = json_object_new_object();
		json_object_object_add(c, "capability", json_object_new_string(names[i]));
		json_object_object_add(c, "state", json_object_new_boolean(1));
		json_object_array_add(caps, c);
	}
	args = json_object_new_object();
	json_object_object_add(args, "capabilities", caps);
	if (qemu_call(q, "migrate-set-capabilities", args, -1, NULL) < 0)
		return -1;
	/* the default 128 MiB/s cap would pace the RAM stream of a pause (the VM is stopped:
	 * there is no guest to protect from the copy) */
	args = json_object_new_object();
	json_object_object_add(args, "max-bandwidth", json_object_new_int64(INT64_C(1) << 40));
	if (qemu_call(q, "migrate-set-parameters", args, -1, NULL) < 0)
		return -1;
	q->caps_set = true;
	return 0;
}

static bool migration_done(struct json_object *data, void *opaque)
{
	struct json_object *s;
	(void)opaque;
	if (!data || !json_object_object_get_ex(data, "status", &s))
		return false;
	const char *st = json_object_get_string(s);
	return !strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled");
}

/* Wait for the MIGRATION event that ends a migration; error unless "completed". */
static int qemu_wait_migration(struct qemu_vm *q, const char *what)
{
	struct json_object *ev = NULL, *data, *s;
	if (qmp_wait_event(&q->qmp, "MIGRATION", migration_done, NULL, q->timeout_ms, &ev) < 0) {
		err_prefix("%s", what);
		return qemu_fail(q);
	}
	json_object_object_get_ex(ev, "data", &data);
	json_object_object_get_ex(data, "status", &s);
	if (strcmp(json_object_get_string(s), "completed")) {
		char tail[512];
		log_tail(q->qemu_log, tail, sizeof(tail));
		err_set("%s: migration %s%s%s", what, json_object_get_string(s), tail[0] ? ": " : "", tail);
		json_object_put(ev);
		return -1;
	}
	json_object_put(ev);
	return 0;
}

static int qemu_status(struct vmm *vm, char *buf, size_t len)
{
	struct qemu_vm *q = (struct qemu_vm *)vm;
	struct json_object *ret, *s;
	if (qemu_call(q, "query-status", NULL, -1, &ret) < 0)
		return -1;
	if (!json_object_object_get_ex(ret, "status", &s)) {
		json_object_put(ret);
		return err_set("query-status: no status");
	}
	snprintf(buf, len, "%s", json_object_get_string(s));
	json_object_put(ret);
	return 0;
}

static int qemu_stop(struct vmm *vm)
{
	return qemu_call((struct qemu_vm *)vm, "stop", NULL, -1, NULL);
}

static int qemu_cont(struct vmm *vm)
{
	return qemu_call((struct qemu_vm *)vm, "cont", NULL, -1, NULL);
}

static int qemu_boot(const struct vmm_config *c, struct vmm **out)
{
	struct qemu_vm *q;
	_cleanup_close_ int fd = -1;
	uint64_t size = c->machine.memory_mib << 20;

	*out = NULL;
	if (validate_config(c, false) < 0)
		return -1;
	/* fresh RAM: an empty sparse file of RAM size */
	if ((fd = open(c->memfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return err_set_errno(errno, "cannot create memfile '%s'", c->memfile);
	if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0)
		return err_set_errno(errno, "cannot size memfile '%s'", c->memfile);
	if (!(q = qemu_new(c)))
		return -1;
	uint64_t t0 = now_ns();
	if (qemu_spawn(q, c, false) < 0) {
		err_prefix("boot");
		return qemu_abort(q);
	}
	q->vm.times.spawn_to_running = now_ns() - t0;
	*out = &q->vm;
	return 0;
}

static int qemu_restore(const struct vmm_config *c, const char *statefile, struct vmm **out)
{
	struct qemu_vm *q;
	_cleanup_close_ int fd = -1;
	struct stat st;
	struct json_object *args;

	*out = NULL;
	if (validate_config(c, true) < 0)
		return -1;
	if (stat(c->memfile, &st) < 0)
		return err_set_errno(errno, "memfile '%s'", c->memfile);
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != c->machine.memory_mib << 20)
		return err_set("memfile '%s' has %lld bytes, the machine has %llu MiB", c->memfile,
			       (long long)st.st_size, (unsigned long long)c->machine.memory_mib);
	if ((fd = open(statefile, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set_errno(errno, "cannot open state file '%s'", statefile);
	if (!(q = qemu_new(c)))
		return -1;
	q->restored = true;
	q->mem_dev = st.st_dev;
	q->mem_ino = st.st_ino;
	uint64_t t0 = now_ns();
	if (qemu_spawn(q, c, true) < 0)
		goto err;
	if (qemu_set_caps(q) < 0)
		goto err;
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("state"));
	if (qemu_call(q, "getfd", args, fd, NULL) < 0)
		goto err;
	close(TAKE_FD(fd));
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string("fd:state"));
	if (qemu_call(q, "migrate-incoming", args, -1, NULL) < 0)
		goto err;
	if (qemu_wait_migration(q, "incoming migration") < 0)
		goto err;
	if (qemu_call(q, "cont", NULL, -1, NULL) < 0)
		goto err;
	q->vm.times.spawn_to_running = now_ns() - t0;
	*out = &q->vm;
	return 0;
err:
	err_prefix("restore from '%s'", statefile);
	return qemu_abort(q);
}

/* Stop (if needed) and save the device state through the RAM filter into statefile. */
static int qemu_save_state(struct qemu_vm *q, const char *statefile, const char *drop,
			   struct vmm_diff *diff)
{
	_cleanup_close_ int out = -1;
	int p[2] = { -1, -1 };
	struct json_object *args;
	struct migstream_stats st;
	uint64_t t0 = now_ns();
	int r = -1;

	if (qemu_set_caps(q) < 0)
		return -1;
	if ((out = open(statefile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
		return err_set_errno(errno, "cannot create state file '%s'", statefile);
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set_errno(errno, "pipe");
	args = json_object_new_object();
	json_object_object_add(args, "fdname", json_object_new_string("mig"));
	if (qemu_call(q, "getfd", args, p[1], NULL) < 0)
		goto out;
	close(p[1]);
	p[1] = -1;
	args = json_object_new_object();
	json_object_object_add(args, "uri", json_object_new_string("fd:mig"));
	if (qemu_call(q, "migrate", args, -1, NULL) < 0)
		goto out;
	if (migstream_filter_fd(p[0], out, drop, q->timeout_ms, &st) < 0) {
		char msg[ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		close(p[0]); /* QEMU's writes fail now; let its migration end */
		p[0] = -1;
		qemu_wait_migration(q, "migration");
		err_set("%s", msg);
		goto out;
	}
	if (qemu_wait_migration(q, "migration") < 0)
		goto out;
	if (fsync(out) < 0) {
		err_set_errno(errno, "fsync '%s'", statefile);
		goto out;
	}
	if (diff) {
		diff->state_bytes = st.out_bytes;
		diff->stream_bytes = st.in_bytes;
	}
	r = 0;
out:
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	q->vm.times.state_save = now_ns() - t0;
	if (r < 0)
		err_prefix("saving state to '%s'", statefile);
	return r;
}

static int qemu_snapshot(struct vmm *vm, const char *statefile)
{
	struct qemu_vm *q = (struct qemu_vm *)vm;
	if (q->restored)
		return err_set("snapshot: a restored VM (private RAM) is saved with pause_diff");
	if (qemu_stop(vm) < 0)
		return -1;
	return qemu_save_state(q, statefile, VMM_RAM_ID, NULL);
}

static int qemu_pause_diff(struct vmm *vm, const char *statefile, const char *diff_path,
			   struct vmm_diff *diff)
{
	struct qemu_vm *q = (struct qemu_vm *)vm;
	_cleanup_close_ int dfd = -1;
	uint64_t start, len, written, t;

	memset(diff, 0, sizeof(*diff));
	if (!q->restored)
		return err_set("pause_diff: only a restored VM has a diff (use snapshot)");
	t = now_ns();
	if (qemu_stop(vm) < 0)
		return -1;
	vm->times.stop = now_ns() - t;
	t = now_ns();
	if (dirty_find_mapping_file(vm->pid, q->mem_dev, q->mem_ino, q->memfile, &start, &len) < 0)
		goto err;
	if (len != vm->machine.memory_mib << 20) {
		err_set("guest RAM mapping is %llu bytes, expected %llu MiB", (unsigned long long)len,
			(unsigned long long)vm->machine.memory_mib);
		goto err;
	}
	if (dirty_scan(vm->pid, start, len, &diff->bitmap, &diff->npages, &diff->ndirty) < 0)
		goto err;
	vm->times.dirty_scan = now_ns() - t;
	t = now_ns();
	if ((dfd = open(diff_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
		err_set_errno(errno, "cannot create memory diff '%s'", diff_path);
		goto err;
	}
	if (dirty_copy(vm->pid, start, diff->bitmap, diff->npages, dfd, &written) < 0)
		goto err;
	if (fsync(dfd) < 0) {
		err_set_errno(errno, "fsync '%s'", diff_path);
		goto err;
	}
	vm->times.dirty_copy = now_ns() - t;
	if (qemu_save_state(q, statefile, VMM_RAM_ID, diff) < 0)
		goto err;
	return 0;
err:
	err_prefix("pause");
	vmm_diff_release(diff);
	return -1;
}

static int qemu_save_full(struct vmm *vm, const char *statefile)
{
	if (qemu_stop(vm) < 0)
		return -1;
	return qemu_save_state((struct qemu_vm *)vm, statefile, NULL, NULL);
}

const struct vmm_ops vmm_qemu_ops = {
	.type = "qemu",
	.boot = qemu_boot,
	.restore = qemu_restore,
	.stop = qemu_stop,
	.cont = qemu_cont,
	.snapshot = qemu_snapshot,
	.pause_diff = qemu_pause_diff,
	.save_full = qemu_save_full,
	.status = qemu_status,
	.quit = qemu_quit,
};
