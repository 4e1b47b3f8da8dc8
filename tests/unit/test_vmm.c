/*
 * test_vmm.c - the parts of src/vmm that need no QEMU: machine options <-> JSON, accelerator
 * choice, the QMP client against a scripted fake server (ids, events, errors, timeouts, a
 * dead peer, SCM_RIGHTS), and dirty-page discovery on a MAP_PRIVATE mapping of our own
 * process (pagemap + process_vm_readv + apply). QEMU itself: tests/shell/vmm_*.sh.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "common/common.h"
#include "test.h"
#include "vmm/dirty.h"
#include "vmm/qmp.h"
#include "vmm/vmm.h"

static void test_machine_json(void)
{
	struct vmm_machine m, back;
	struct json_object *o;

	CHECK(vmm_machine_default(&m, "tcg", 2, 512) == 0);
	CHECK_STR(m.type, "qemu");
	CHECK_STR(m.accel, "tcg");
	CHECK_STR(m.cpu, "max");
	CHECK(strstr(m.machine, "microvm") && strstr(m.machine, "memory-backend=" VMM_RAM_ID));
	snprintf(m.version, sizeof(m.version), "7.2.22");
	o = vmm_machine_to_json(&m);
	CHECK(vmm_machine_from_json(o, &back) == 0);
	CHECK(!memcmp(&m, &back, sizeof(m)));
	json_object_put(o);

	o = json_tokener_parse("{\"type\":\"firecracker\",\"accel\":\"kvm\",\"cpu\":\"max\",\"machine\":\"m\","
			       "\"vcpu\":1,\"memory_mib\":512}");
	CHECK(vmm_machine_from_json(o, &back) < 0 && strstr(err_msg(), "firecracker"));
	json_object_put(o);
	o = json_tokener_parse("{\"type\":\"qemu\",\"accel\":\"hvf\",\"cpu\":\"max\",\"machine\":\"m\","
			       "\"vcpu\":1,\"memory_mib\":512}");
	CHECK(vmm_machine_from_json(o, &back) < 0 && strstr(err_msg(), "accel"));
	json_object_put(o);
	o = json_tokener_parse("{\"type\":\"qemu\",\"accel\":\"tcg\",\"cpu\":\"max\",\"machine\":\"m\","
			       "\"vcpu\":1}");
	CHECK(vmm_machine_from_json(o, &back) < 0 && strstr(err_msg(), "memory_mib"));
	json_object_put(o);
	o = json_tokener_parse("{\"type\":\"qemu\",\"accel\":\"tcg\",\"cpu\":\"max\",\"machine\":\"m\","
			       "\"vcpu\":\"1\",\"memory_mib\":512}");
	CHECK(vmm_machine_from_json(o, &back) < 0 && strstr(err_msg(), "vcpu"));
	json_object_put(o);
	CHECK(vmm_machine_default(&m, "tcg", 0, 512) < 0);
	CHECK(vmm_machine_default(&m, "tcg", 1, 1) < 0);
}

static void test_accel(void)
{
	struct stat st;
	const char *want = stat("/sys/module/kvm_intel", &st) == 0 || stat("/sys/module/kvm_amd", &st) == 0
				   ? "kvm" : "tcg";
	unsetenv("ORCH_ACCEL");
	CHECK_STR(vmm_accel_detect(NULL), want);
	CHECK_STR(vmm_accel_detect("auto"), want);
	CHECK_STR(vmm_accel_detect("kvm"), "kvm");
	setenv("ORCH_ACCEL", "kvm", 1);
	CHECK_STR(vmm_accel_detect(NULL), "kvm");
	CHECK_STR(vmm_accel_detect("tcg"), "tcg"); /* the option beats the environment */
	setenv("ORCH_ACCEL", "xen", 1);
	CHECK(vmm_accel_detect(NULL) == NULL && strstr(err_msg(), "xen"));
	unsetenv("ORCH_ACCEL");
}

/* ---- fake QMP server: reads commands, answers from a script ---- */
struct fake {
	int fd;
	int mode; /* 0 normal, 1 never answer, 2 close after greeting+caps */
	int got_fd_ok;
};

static int fake_read_cmd(int fd, char *buf, size_t n, int *passed)
{
	size_t len = 0;
	*passed = -1;
	while (len < n - 1) {
		char c;
		struct iovec iov = { .iov_base = &c, .iov_len = 1 };
		union {
			char b[CMSG_SPACE(sizeof(int))];
			struct cmsghdr a;
		} u;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
				     .msg_controllen = sizeof(u.b) };
		ssize_t r = recvmsg(fd, &mh, 0);
		if (r <= 0)
			return -1;
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			memcpy(passed, CMSG_DATA(cm), sizeof(int));
		buf[len++] = c;
		if (c == '\n')
			break;
	}
	buf[len] = '\0';
	return 0;
}

static void fake_send(int fd, const char *s)
{
	(void)!write(fd, s, strlen(s));
}

static void *fake_server(void *arg)
{
	struct fake *f = arg;
	char buf[4096], out[4200];
	int passed;

	fake_send(f->fd, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}}}\r\n");
	while (fake_read_cmd(f->fd, buf, sizeof(buf), &passed) == 0) {
		struct json_object *o = json_tokener_parse(buf), *ex, *id;
		json_object_object_get_ex(o, "execute", &ex);
		json_object_object_get_ex(o, "id", &id);
		const char *cmd = json_object_get_string(ex);
		unsigned long long idv = (unsigned long long)json_object_get_uint64(id);
		if (f->mode == 2 && strcmp(cmd, "qmp_capabilities")) {
			json_object_put(o);
			break;
		}
		if (f->mode == 1 && !strcmp(cmd, "slow")) {
			json_object_put(o);
			continue;
		}
		if (!strcmp(cmd, "getfd")) {
			char c = 0;
			f->got_fd_ok = passed >= 0 && read(passed, &c, 1) == 1 && c == 'x';
			if (passed >= 0)
				close(passed);
		}
		if (!strcmp(cmd, "bad")) {
			snprintf(out, sizeof(out), "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}, \"id\": %llu}\r\n", idv);
		} else if (!strcmp(cmd, "evented")) {
			fake_send(f->fd, "{\"event\": \"STOP\", \"data\": {}}\r\n");
			fake_send(f->fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}\r\n");
			snprintf(out, sizeof(out), "{\"return\": {\"n\": 42}, \"id\": %llu}\r\n"
				 "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"completed\"}}\r\n", idv);
		} else {
			snprintf(out, sizeof(out), "{\"return\": {}, \"id\": %llu}\r\n", idv);
		}
		fake_send(f->fd, out);
		json_object_put(o);
	}
	close(f->fd);
	return NULL;
}

static bool is_completed(struct json_object *data, void *opaque)
{
	struct json_object *s;
	(void)opaque;
	return json_object_object_get_ex(data, "status", &s) && !strcmp(json_object_get_string(s), "completed");
}

static void test_qmp_client(void)
{
	int sv[2];
	pthread_t t;
	struct fake f = { 0 };
	struct qmp q;
	struct json_object *g, *ret, *ev;
	int p[2];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	f.fd = sv[1];
	f.mode = 1;
	pthread_create(&t, NULL, fake_server, &f);
	CHECK(qmp_open(&q, sv[0], -1, 2000, &g) == 0);
	CHECK(g && json_object_object_get_ex(g, "QMP", NULL));
	json_object_put(g);

	CHECK(qmp_call(&q, "bad", NULL, -1, 1000, NULL) < 0 && strstr(err_msg(), "bad: no such thing"));
	CHECK(qmp_call(&q, "evented", NULL, -1, 1000, &ret) == 0);
	struct json_object *n;
	CHECK(ret && json_object_object_get_ex(ret, "n", &n) && json_object_get_int(n) == 42);
	json_object_put(ret);
	/* the events that came before the answer were queued; "active" is skipped, kept */
	CHECK(qmp_wait_event(&q, "MIGRATION", is_completed, NULL, 1000, &ev) == 0 && ev);
	json_object_put(ev);
	CHECK(qmp_wait_event(&q, "STOP", NULL, NULL, 1000, NULL) == 0);
	CHECK(qmp_wait_event(&q, "MIGRATION", NULL, NULL, 1000, NULL) == 0); /* the queued "active" */

	/* timeout, then the late-less server still answers the next command correctly */
	uint64_t t0 = now_ns();
	CHECK(qmp_call(&q, "slow", NULL, -1, 150, NULL) < 0 && strstr(err_msg(), "timed out"));
	CHECK(now_ns() - t0 >= 140000000ull && now_ns() - t0 < 2000000000ull);
	CHECK(qmp_call(&q, "cont", NULL, -1, 1000, NULL) == 0);
	CHECK(qmp_wait_event(&q, "NEVER", NULL, NULL, 100, NULL) < 0);

	/* fd passing */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	CHECK(write(p[1], "x", 1) == 1);
	CHECK(qmp_call(&q, "getfd", json_tokener_parse("{\"fdname\":\"s\"}"), p[0], 1000, NULL) == 0);
	CHECK(f.got_fd_ok);
	close(p[0]);
	close(p[1]);
	qmp_close(&q);
	pthread_join(t, NULL);

	/* a peer that goes away: error, not a hang */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	f.fd = sv[1];
	f.mode = 2;
	pthread_create(&t, NULL, fake_server, &f);
	CHECK(qmp_open(&q, sv[0], -1, 2000, NULL) == 0);
	CHECK(qmp_call(&q, "stop", NULL, -1, 2000, NULL) < 0 && strstr(err_msg(), "closed"));
	qmp_close(&q);
	pthread_join(t, NULL);

	/* garbage greeting */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	fake_send(sv[1], "this is not json\r\n");
	CHECK(qmp_open(&q, sv[0], -1, 500, NULL) < 0 && strstr(err_msg(), "malformed"));
	close(sv[1]);
}

static void test_dirty_pages_of_private_mapping(void)
{
	char path[] = "/tmp/test_vmm_mem.XXXXXX";
	const size_t npg = 64, sz = npg * DIRTY_PAGE;
	int fd = mkostemp(path, O_CLOEXEC), out, full;
	uint64_t start, len, *bits = NULL, n, nd, written;
	char *m, page[DIRTY_PAGE];

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)sz) == 0);
	memset(page, 0x5a, sizeof(page));
	CHECK(full_pwrite(fd, page, sizeof(page), 3 * DIRTY_PAGE) == 0); /* file data, not dirty */
	m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(m != MAP_FAILED);
	if (m == MAP_FAILED)
		return;
	volatile char sink = m[3 * DIRTY_PAGE] + m[10 * DIRTY_PAGE]; /* reads: file pages */
	(void)sink;
	m[0] = 1;
	m[5 * DIRTY_PAGE + 7] = 2;
	m[6 * DIRTY_PAGE] = 3;
	m[63 * DIRTY_PAGE + 4095] = 4;
	CHECK(dirty_find_mapping(getpid(), path, &start, &len) == 0);
	CHECK_EQ_U64(start, (uintptr_t)m);
	CHECK_EQ_U64(len, sz);
	CHECK(dirty_scan(getpid(), start, len, &bits, &n, &nd) == 0);
	CHECK_EQ_U64(n, npg);
	CHECK_EQ_U64(nd, 4);
	if (!bits)
		return;
	CHECK(dirty_test(bits, 0) && dirty_test(bits, 5) && dirty_test(bits, 6) && dirty_test(bits, 63));
	CHECK(!dirty_test(bits, 3) && !dirty_test(bits, 10) && !dirty_test(bits, 1));

	char dpath[] = "/tmp/test_vmm_diff.XXXXXX";
	out = mkostemp(dpath, O_CLOEXEC);
	CHECK(dirty_copy(getpid(), start, bits, n, out, &written) == 0);
	CHECK_EQ_U64(written, 4 * DIRTY_PAGE);
	char got[DIRTY_PAGE];
	CHECK(full_pread(out, got, DIRTY_PAGE, DIRTY_PAGE) == 0 && got[7] == 2); /* 2nd packed = page 5 */
	CHECK(full_pread(out, got, DIRTY_PAGE, 3 * DIRTY_PAGE) == 0 && got[4095] == 4);

	/* base file + diff = what the process sees */
	char fpath[] = "/tmp/test_vmm_full.XXXXXX";
	full = mkostemp(fpath, O_CLOEXEC);
	CHECK(ftruncate(full, (off_t)sz) == 0);
	CHECK(full_pwrite(full, page, sizeof(page), 3 * DIRTY_PAGE) == 0);
	CHECK(dirty_apply(full, out, bits, n) == 0);
	char *all = malloc(sz);
	CHECK(full_pread(full, all, sz, 0) == 0 && !memcmp(all, m, sz));
	free(all);

	CHECK(dirty_find_mapping(getpid(), "/etc/hostname", &start, &len) < 0 && strstr(err_msg(), "not mapped"));
	uint64_t *none = NULL;
	CHECK(dirty_scan(getpid(), (uintptr_t)m + 1, 4096, &none, &n, &nd) < 0 && none == NULL);
	free(bits);
	munmap(m, sz);
	close(fd);
	close(out);
	close(full);
	unlink(path);
	unlink(dpath);
	unlink(fpath);
}

static void test_spawn_failure_reaped(void)
{
	struct vmm_config c = { 0 };
	struct vmm *vm = NULL;
	char mem[] = "/tmp/test_vmm_spawn.XXXXXX";
	int fd = mkostemp(mem, O_CLOEXEC);

	close(fd);
	CHECK(vmm_machine_default(&c.machine, "tcg", 1, 64) == 0);
	c.memfile = mem;
	c.serial_log = "/dev/null";
	c.kernel = "/nonexistent/vmlinux";
	c.qemu_path = "/bin/false"; /* exits at once: must be reported and reaped */
	CHECK(vmm_boot(&c, &vm) < 0 && vm == NULL);
	CHECK(strstr(err_msg(), "exited with status 1") != NULL);
	CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD); /* nothing left to reap */
	c.qemu_path = "/nonexistent/qemu";
	CHECK(vmm_boot(&c, &vm) < 0 && strstr(err_msg(), "/nonexistent/qemu"));
	c.qemu_path = NULL;
	c.kernel = NULL;
	CHECK(vmm_boot(&c, &vm) < 0 && strstr(err_msg(), "kernel"));
	CHECK(vmm_restore(&c, "/nonexistent/state", &vm) < 0);
	unlink(mem);
}

int main(void)
{
	RUN(test_machine_json);
	RUN(test_accel);
	RUN(test_qmp_client);
	RUN(test_dirty_pages_of_private_mapping);
	RUN(test_spawn_failure_reaped);
	TEST_EXIT();
}
