/*
 * vmm.c - the driver-independent part of the VMM interface: dispatch on the machine type,
 * accelerator detection, machine options <-> JSON, and reaping of the VMM child.
 *
 * Reaping: every VMM process is our child and is waited for exactly once (vmm_try_reap /
 * vmm_kill_reap record the status in vm->why and set vm->reaped); nobody else may wait for
 * it (callers must not install a SIGCHLD handler that reaps everything).
 * Threading: a struct vmm is used by one thread at a time.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "common/common.h"
#include "vmm/internal.h"

#define QEMU_MACHINE_DEFAULT "microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=" VMM_RAM_ID

static const struct vmm_ops *vmm_driver(const char *type)
{
	if (!strcmp(type, "qemu"))
		return &vmm_qemu_ops;
	err_set("unsupported vmm type '%s' (this build has: qemu)", type);
	return NULL;
}

const char *vmm_accel_detect(const char *override)
{
	const char *v = override;
	struct stat st;

	if (!v || !*v || !strcmp(v, "auto"))
		v = getenv("ORCH_ACCEL");
	if (v && *v && strcmp(v, "auto")) {
		if (!strcmp(v, "kvm"))
			return "kvm";
		if (!strcmp(v, "tcg"))
			return "tcg";
		err_set("unknown accelerator '%s' (want kvm, tcg or auto)", v);
		return NULL;
	}
	/* /dev/kvm alone is not enough: nested paravirtual KVM (kvm_pvm) cannot run our guests. */
	if (stat("/sys/module/kvm_intel", &st) == 0 || stat("/sys/module/kvm_amd", &st) == 0)
		return "kvm";
	return "tcg";
}

int vmm_machine_default(struct vmm_machine *m, const char *accel, unsigned vcpu,
			uint64_t memory_mib)
{
	const char *a = vmm_accel_detect(accel);

	memset(m, 0, sizeof(*m));
	if (!a)
		return -1;
	if (vcpu == 0 || vcpu > 64)
		return err_set("invalid vcpu count %u", vcpu);
	if (memory_mib < 16 || memory_mib > (1u << 20))
		return err_set("invalid memory size %llu MiB", (unsigned long long)memory_mib);
	snprintf(m->type, sizeof(m->type), "qemu");
	snprintf(m->accel, sizeof(m->accel), "%s", a);
	snprintf(m->cpu, sizeof(m->cpu), "max");
	snprintf(m->machine, sizeof(m->machine), "%s", QEMU_MACHINE_DEFAULT);
	m->vcpu = vcpu;
	m->memory_mib = memory_mib;
	return 0;
}

struct json_object *vmm_machine_to_json(const struct vmm_machine *m)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string(m->type));
	json_object_object_add(o, "version", json_object_new_string(m->version));
	json_object_object_add(o, "accel", json_object_new_string(m->accel));
	json_object_object_add(o, "cpu", json_object_new_string(m->cpu));
	json_object_object_add(o, "machine", json_object_new_string(m->machine));
	json_object_object_add(o, "vcpu", json_object_new_int64(m->vcpu));
	json_object_object_add(o, "memory_mib", json_object_new_uint64(m->memory_mib));
	return o;
}

static int get_str(const struct json_object *o, const char *key, char *dst, size_t n, bool required)
{
	struct json_object *v;
	const char *s;
	if (!json_object_object_get_ex(o, key, &v)) {
		if (required)
			return err_set("vmm: missing \"%s\"", key);
		dst[0] = '\0';
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return err_set("vmm: \"%s\" is not a string", key);
	s = json_object_get_string(v);
	if (strlen(s) >= n || (required && !*s))
		return err_set("vmm: invalid \"%s\"", key);
	/* these end up in QEMU's argv: no option separators beyond the machine string's own */
	if (strpbrk(s, "\n\r"))
		return err_set("vmm: invalid \"%s\"", key);
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int get_u64(const struct json_object *o, const char *key, uint64_t *dst)
{
	struct json_object *v;
	int64_t x;
	if (!json_object_object_get_ex(o, key, &v))
		return err_set("vmm: missing \"%s\"", key);
	if (!json_object_is_type(v, json_type_int))
		return err_set("vmm: \"%s\" is not an integer", key);
	errno = 0;
	x = json_object_get_int64(v);
	if (x <= 0 || errno)
		return err_set("vmm: invalid \"%s\"", key);
	*dst = (uint64_t)x;
	return 0;
}

int vmm_machine_from_json(const struct json_object *o, struct vmm_machine *m)
{
	uint64_t vcpu, mem;

	memset(m, 0, sizeof(*m));
	if (!o || !json_object_is_type(o, json_type_object))
		return err_set("vmm: not an object");
	if (get_str(o, "type", m->type, sizeof(m->type), true) < 0 ||
	    get_str(o, "version", m->version, sizeof(m->version), false) < 0 ||
	    get_str(o, "accel", m->accel, sizeof(m->accel), true) < 0 ||
	    get_str(o, "cpu", m->cpu, sizeof(m->cpu), true) < 0 ||
	    get_str(o, "machine", m->machine, sizeof(m->machine), true) < 0 ||
	    get_u64(o, "vcpu", &vcpu) < 0 || get_u64(o, "memory_mib", &mem) < 0)
		return -1;
	if (strcmp(m->accel, "tcg") && strcmp(m->accel, "kvm"))
		return err_set("vmm: unknown accel '%s'", m->accel);
	if (strchr(m->cpu, ','))
		return err_set("vmm: invalid cpu '%s'", m->cpu);
	if (vcpu > 64 || mem < 16 || mem > (1u << 20))
		return err_set("vmm: vcpu %llu / memory %llu MiB out of range", (unsigned long long)vcpu,
			       (unsigned long long)mem);
	m->vcpu = (unsigned)vcpu;
	m->memory_mib = mem;
	return vmm_driver(m->type) ? 0 : -1;
}

int vmm_boot(const struct vmm_config *config, struct vmm **out)
{
	const struct vmm_ops *ops = vmm_driver(config->machine.type);
	*out = NULL;
	return ops ? ops->boot(config, out) : -1;
}

int vmm_restore(const struct vmm_config *config, const char *statefile, struct vmm **out)
{
	const struct vmm_ops *ops = vmm_driver(config->machine.type);
	*out = NULL;
	return ops ? ops->restore(config, statefile, out) : -1;
}

int vmm_stop(struct vmm *vm)
{
	return vm->ops->stop(vm);
}
int vmm_cont(struct vmm *vm)
{
	return vm->ops->cont(vm);
}
int vmm_snapshot(struct vmm *vm, const char *statefile)
{
	return vm->ops->snapshot(vm, statefile);
}
int vmm_pause_diff(struct vmm *vm, const char *statefile, const char *diff_path,
		   struct vmm_diff *diff)
{
	return vm->ops->pause_diff(vm, statefile, diff_path, diff);
}
int vmm_save_full(struct vmm *vm, const char *statefile)
{
	return vm->ops->save_full(vm, statefile);
}
int vmm_status(struct vmm *vm, char *buf, size_t len)
{
	return vm->ops->status(vm, buf, len);
}
int vmm_quit(struct vmm *vm)
{
	return vm ? vm->ops->quit(vm) : 0;
}
pid_t vmm_pid(const struct vmm *vm)
{
	return vm->pid;
}
int vmm_exit_fd(const struct vmm *vm)
{
	return vm->reaped ? -1 : vm->pidfd;
}
const struct vmm_machine *vmm_machine(const struct vmm *vm)
{
	return &vm->machine;
}
const struct vmm_times *vmm_times(const struct vmm *vm)
{
	return &vm->times;
}

void vmm_diff_release(struct vmm_diff *d)
{
	free(d->bitmap);
	memset(d, 0, sizeof(*d));
}

static void vmm_record_exit(struct vmm *vm, int status)
{
	if (WIFEXITED(status))
		snprintf(vm->why, sizeof(vm->why), "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(vm->why, sizeof(vm->why), "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(vm->why, sizeof(vm->why), "ended (status 0x%x)", status);
	vm->reaped = true;
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	vm->pidfd = -1;
}

bool vmm_try_reap(struct vmm *vm, uint64_t timeout_ms)
{
	uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
	int status;

	if (vm->reaped || vm->pid <= 0)
		return true;
	for (;;) {
		pid_t r = waitpid(vm->pid, &status, WNOHANG);
		if (r == vm->pid) {
			vmm_record_exit(vm, status);
			return true;
		}
		if (r < 0 && errno == ECHILD) { /* somebody else reaped it */
			snprintf(vm->why, sizeof(vm->why), "exited (reaped elsewhere)");
			vm->reaped = true;
			return true;
		}
		uint64_t now = now_ns();
		if (timeout_ms == 0 || now >= deadline)
			return false;
		if (vm->pidfd >= 0) {
			struct pollfd p = { .fd = vm->pidfd, .events = POLLIN };
			poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
		} else {
			usleep(1000);
		}
	}
}

void vmm_kill_reap(struct vmm *vm, uint64_t term_ms)
{
	if (vmm_try_reap(vm, 0))
		return;
	kill(vm->pid, SIGTERM);
	if (vmm_try_reap(vm, term_ms))
		return;
	kill(vm->pid, SIGKILL);
	vmm_try_reap(vm, 60000);
}

bool vmm_alive(struct vmm *vm, const char **why)
{
	if (vmm_try_reap(vm, 0)) {
		if (why)
			*why = vm->why;
		return false;
	}
	return true;
}

int vmm_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	(void)pid;
	errno = ENOSYS;
	return -1;
#endif
}
