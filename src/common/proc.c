/*
 * proc.c - fork/exec helpers. The child closes nothing explicitly: every fd in this program
 * is O_CLOEXEC, so only stdin/stdout/stderr cross the exec.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "common.h"
#include "proc.h"

static pid_t spawn(const char *const argv[], int out_fd, int err_fd)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(out_fd >= 0 ? out_fd : nul, 1);
		dup2(err_fd >= 0 ? err_fd : nul, 2);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static int wait_status(pid_t pid, const char *const argv[])
{
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return err_set_errno(errno, "cannot wait for %s", argv[0]);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

int run_argv(const char *const argv[], int out_fd)
{
	pid_t pid = spawn(argv, out_fd, out_fd);
	if (pid < 0)
		return err_set_errno(errno, "cannot start %s", argv[0]);
	return wait_status(pid, argv);
}

int run_capture(const char *const argv[], char *out, size_t cap, int err_fd)
{
	int p[2];
	size_t len = 0;
	pid_t pid;
	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set_errno(errno, "cannot start %s", argv[0]);
	pid = spawn(argv, p[1], err_fd);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return err_set_errno(errno, "cannot start %s", argv[0]);
	}
	for (;;) {
		char buf[4096];
		ssize_t n = read(p[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (cap > 0 && len < cap - 1) {
			size_t take = MIN((size_t)n, cap - 1 - len);
			memcpy(out + len, buf, take);
			len += take;
		}
	}
	close(p[0]);
	if (cap > 0) {
		while (len > 0 && out[len - 1] == '\n')
			len--;
		out[len] = 0;
	}
	return wait_status(pid, argv);
}

const char *argv_str(const char *const argv[])
{
	static char buf[1024];
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; argv[i] && n < sizeof(buf) - 1; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", argv[i]);
	return buf;
}
