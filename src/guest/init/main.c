/*
 * main.c - orch-init's entry point and the real init (PID 1 on the root disk).
 *
 * Role: PID 1 in an initramfs (root is ramfs/tmpfs) runs the early stage (early.c); PID 1
 * elsewhere is the real init; any other process offers -net (the network part of the real
 * init, for images whose PID 1 is systemd), -check-cmdline and -version.
 * The real init: API filesystems, boot modules (when started without our initramfs), lo and
 * eth0 from ip=, hostname, the optional start hook (INIT_HOOK_PATH, waited for at most
 * HOOK_TIMEOUT_MS), then envd with its output on the console, restarted with exponential
 * backoff when it exits. It reaps every orphan and turns SIGTERM/SIGUSR2/SIGPWR into a clean
 * poweroff, SIGINT (ctrl-alt-del) into a reboot.
 * PID 1 must never exit (the kernel panics): nothing here returns from main in that role, and
 * every failure is printed and survived.
 * Single-threaded: signals are blocked and taken synchronously with sigtimedwait(), so there
 * are no handlers and no races with the supervision state.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/magic.h>

#include "init.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STABLE_RUN_S 10.0	/* a run this long resets the backoff */
#define HOOK_TIMEOUT_MS 30000
#define SHUTDOWN_GRACE_MS 3000

static const char *const child_env[] = {
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=linux",
	"LANG=C.UTF-8",
	NULL,
};

struct supervisor {
	pid_t envd_pid;		/* 0 when not running */
	double envd_started;	/* uptime of the last start */
	double envd_next;	/* uptime of the next start attempt (when not running) */
	unsigned backoff_ms;
	bool envd_missing_said;
	pid_t hook_pid;
	double hook_deadline;
};

static sigset_t handled;

static pid_t spawn(const char *path, char *const argv[])
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;	/* parent, or -1 */
	sigprocmask(SIG_UNBLOCK, &handled, NULL);
	setsid();
	int null = open("/dev/null", O_RDONLY);
	if (null >= 0 && null != STDIN_FILENO) {
		dup2(null, STDIN_FILENO);
		close(null);
	}
	if (chdir("/") < 0)
		_exit(126);
	execve(path, argv, (char *const *)child_env);
	dprintf(STDERR_FILENO, "orch-init: cannot exec %s: %s\n", path, strerror(errno));
	_exit(127);
}

static void mount_api_filesystems(void)
{
	const unsigned long nsd = MS_NOSUID | MS_NODEV;

	mount_once("proc", "/proc", "proc", nsd | MS_NOEXEC, NULL);
	mount_once("sysfs", "/sys", "sysfs", nsd | MS_NOEXEC, NULL);
	mount_once("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mount_once("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		   "gid=5,mode=620,ptmxmode=666");
	mount_once("tmpfs", "/dev/shm", "tmpfs", nsd, "mode=1777");
	mount_once("tmpfs", "/run", "tmpfs", nsd, "mode=0755");
	mount_once("tmpfs", "/tmp", "tmpfs", nsd, "mode=1777");
	/* optional: not every kernel or image wants it */
	if (access("/sys/fs/cgroup", F_OK) == 0 && !is_mountpoint("/sys/fs/cgroup"))
		mount("cgroup2", "/sys/fs/cgroup", "cgroup2", nsd | MS_NOEXEC, NULL);

	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++)
		symlink(links[i][0], links[i][1]);	/* EEXIST is fine */
}

static void remount_root(bool ro)
{
	struct statvfs vfs;

	if (statvfs("/", &vfs) < 0 || !!(vfs.f_flag & ST_RDONLY) == ro)
		return;
	if (mount(NULL, "/", NULL, MS_REMOUNT | (ro ? MS_RDONLY : 0), NULL) < 0)
		say("cannot remount / %s: %s", ro ? "read-only" : "read-write", strerror(errno));
}

static void start_envd(struct supervisor *s, const char *path)
{
	char *argv[] = { (char *)path, NULL };

	if (access(path, X_OK) < 0) {
		if (!s->envd_missing_said)
			say("%s: %s; will look again every %d ms", path, strerror(errno), BACKOFF_MAX_MS);
		s->envd_missing_said = true;
		s->envd_next = uptime_s() + BACKOFF_MAX_MS / 1000.0;
		return;
	}
	s->envd_missing_said = false;
	s->envd_pid = spawn(path, argv);
	s->envd_started = uptime_s();
	if (s->envd_pid < 0) {
		say("cannot fork for envd: %s", strerror(errno));
		s->envd_pid = 0;
		s->envd_next = s->envd_started + s->backoff_ms / 1000.0;
		return;
	}
	say("envd started (pid %d)", (int)s->envd_pid);
}

static void envd_exited(struct supervisor *s, int status)
{
	double ran = uptime_s() - s->envd_started;

	if (WIFSIGNALED(status))
		say("envd (pid %d) killed by signal %d after %.1f s", (int)s->envd_pid,
		    WTERMSIG(status), ran);
	else
		say("envd (pid %d) exited with status %d after %.1f s", (int)s->envd_pid,
		    WEXITSTATUS(status), ran);
	s->envd_pid = 0;
	if (ran >= STABLE_RUN_S)
		s->backoff_ms = BACKOFF_MIN_MS;
	s->envd_next = uptime_s() + s->backoff_ms / 1000.0;
	say("restarting envd in %u ms", s->backoff_ms);
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

static void reap(struct supervisor *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == s->envd_pid) {
			envd_exited(s, status);
		} else if (pid == s->hook_pid) {
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				say(INIT_HOOK_PATH " failed (status 0x%x)", (unsigned)status);
			s->hook_pid = 0;
		}
	}
}

/* Waits up to ms for a handled signal; returns it, or 0 on timeout. */
static int wait_signal(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	int sig = sigtimedwait(&handled, NULL, &ts);

	return sig < 0 ? 0 : sig;
}

static void unmount_all(void)
{
	char *points[64];
	char line[512];
	size_t n = 0;
	FILE *f = fopen("/proc/self/mounts", "re");

	if (f) {
		while (n < 64 && fgets(line, sizeof(line), f)) {
			char dev[256], dir[256];
			if (sscanf(line, "%255s %255s", dev, dir) == 2 && strcmp(dir, "/"))
				points[n++] = strdup(dir);
		}
		fclose(f);
	}
	/* reverse mount order: children before parents */
	while (n > 0) {
		char *p = points[--n];
		if (p && umount2(p, 0) < 0 && errno != EINVAL)
			umount2(p, MNT_DETACH);
		free(p);
	}
	sync();
	remount_root(true);
}

static __attribute__((noreturn)) void shutdown_now(int sig)
{
	int cmd = sig == SIGINT ? RB_AUTOBOOT : RB_POWER_OFF;
	double deadline;

	say("%s (signal %d)", cmd == RB_AUTOBOOT ? "rebooting" : "powering off", sig);
	kill(-1, SIGTERM);
	deadline = uptime_s() + SHUTDOWN_GRACE_MS / 1000.0;
	while (uptime_s() < deadline) {
		pid_t pid = waitpid(-1, NULL, WNOHANG);
		if (pid < 0 && errno == ECHILD)
			break;
		if (pid == 0)
			wait_signal(50);
	}
	kill(-1, SIGKILL);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	sync();
	unmount_all();
	reboot(cmd);
	/* only reached when the kernel refused: never exit as PID 1 */
	say("reboot(2) failed: %s", strerror(errno));
	for (;;)
		pause();
}

static __attribute__((noreturn)) void real_main(void)
{
	char cmdline[4096], dir[INIT_PATH_MAX];
	struct boot_config cfg;
	struct supervisor s = { .backoff_ms = BACKOFF_MIN_MS };
	bool hook_done;

	sigprocmask(SIG_BLOCK, &handled, NULL);
	reboot(RB_DISABLE_CAD);	/* ctrl-alt-del becomes SIGINT to us */
	umask(022);
	mount_api_filesystems();
	if (cmdline_read(cmdline, sizeof(cmdline)) < 0)
		cmdline[0] = '\0';
	cmdline_parse(cmdline, &cfg);
	remount_root(cfg.ro);

	modules_dir(dir, sizeof(dir));
	modules_load_dir(dir);

	if (cfg.ip_error[0])
		say("%s", cfg.ip_error);
	if (cfg.ip.hostname[0] && sethostname(cfg.ip.hostname, strlen(cfg.ip.hostname)) < 0)
		say("cannot set hostname: %s", strerror(errno));
	net_setup(&cfg.ip);

	if (access(INIT_HOOK_PATH, X_OK) == 0) {
		char *argv[] = { INIT_HOOK_PATH, NULL };
		s.hook_pid = spawn(INIT_HOOK_PATH, argv);
		if (s.hook_pid < 0)
			s.hook_pid = 0;
		s.hook_deadline = uptime_s() + HOOK_TIMEOUT_MS / 1000.0;
	}
	hook_done = s.hook_pid == 0;

	for (;;) {
		double now = uptime_s();
		unsigned wait_ms = 60000;

		if (!hook_done && (s.hook_pid == 0 || now >= s.hook_deadline)) {
			if (s.hook_pid)
				say(INIT_HOOK_PATH " still running after %d ms: starting envd anyway",
				    HOOK_TIMEOUT_MS);
			hook_done = true;
		}
		if (hook_done && !cfg.envd_off && s.envd_pid == 0 && now >= s.envd_next)
			start_envd(&s, cfg.envd);
		if (!hook_done)
			wait_ms = 100;
		else if (!cfg.envd_off && s.envd_pid == 0)
			wait_ms = s.envd_next > now ? (unsigned)((s.envd_next - now) * 1000) + 1 : 1;

		int sig = wait_signal(wait_ms);
		reap(&s);
		if (sig == SIGTERM || sig == SIGUSR1 || sig == SIGUSR2 || sig == SIGPWR ||
		    sig == SIGINT)
			shutdown_now(sig);
	}
}

static int usage(FILE *f, int rc)
{
	fprintf(f, "usage: orch-init [-net | -check-cmdline TEXT | -version]\n"
		   "  As PID 1 in an initramfs: mounts root= and switch_roots into init=.\n"
		   "  As PID 1 on a root disk: the guest init (mounts, network from ip=, envd).\n"
		   "  -net                 apply ip= and the hostname of /proc/cmdline, then exit\n"
		   "                       (a oneshot unit in images whose PID 1 is systemd)\n"
		   "  -check-cmdline TEXT  print how a kernel command line would be read\n");
	return rc;
}

int main(int argc, char **argv)
{
	struct statfs fs;

	sigemptyset(&handled);
	sigaddset(&handled, SIGCHLD);
	sigaddset(&handled, SIGTERM);
	sigaddset(&handled, SIGINT);
	sigaddset(&handled, SIGHUP);
	sigaddset(&handled, SIGUSR1);
	sigaddset(&handled, SIGUSR2);
	sigaddset(&handled, SIGPWR);

	if (getpid() == 1) {
		if (statfs("/", &fs) == 0 &&
		    (fs.f_type == RAMFS_MAGIC || fs.f_type == TMPFS_MAGIC) &&
		    access("/proc/1/root", F_OK) < 0 /* proc not yet mounted: a fresh initramfs */)
			early_main(argv);	/* returns only after powering off failed */
		real_main();
	}

	if (argc == 3 && (!strcmp(argv[1], "-check-cmdline") || !strcmp(argv[1], "--check-cmdline"))) {
		struct boot_config cfg;
		cmdline_parse(argv[2], &cfg);
		cmdline_print(STDOUT_FILENO, &cfg);
		return 0;
	}
	if (argc == 2 && (!strcmp(argv[1], "-net") || !strcmp(argv[1], "--net"))) {
		/* for images whose PID 1 is systemd: a oneshot unit applies ip= and the hostname */
		char cmdline[4096];
		struct boot_config cfg;
		int rc = 0;

		if (cmdline_read(cmdline, sizeof(cmdline)) < 0) {
			say("cannot read /proc/cmdline: %s", strerror(errno));
			return 1;
		}
		cmdline_parse(cmdline, &cfg);
		if (cfg.ip_error[0])
			say("%s", cfg.ip_error);
		if (cfg.ip.hostname[0] && sethostname(cfg.ip.hostname, strlen(cfg.ip.hostname)) < 0) {
			say("cannot set hostname: %s", strerror(errno));
			rc = 1;
		}
		if (net_setup(&cfg.ip) < 0)
			rc = 1;
		return rc;
	}
	if (argc == 2 && (!strcmp(argv[1], "-version") || !strcmp(argv[1], "--version"))) {
		printf("orch-init 1\n");
		return 0;
	}
	if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")))
		return usage(stdout, 0);
	return usage(stderr, 2);
}
