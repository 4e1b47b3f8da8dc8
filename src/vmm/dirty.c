/*
 * dirty.c - dirty pages of a MAP_PRIVATE RAM mapping via /proc/PID/pagemap and their copy
 * via process_vm_readv (see dirty.h).
 *
 * pagemap entries (Documentation/admin-guide/mm/pagemap.rst): bit 63 present, bit 62 swapped,
 * bit 61 file-page or shared-anon. The copy batches runs of set pages into one
 * process_vm_readv call (up to IOV_MAX remote ranges and a 4 MiB buffer), so a scattered
 * diff costs few syscalls. Threading: none; buffers are per call.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#include "common/common.h"
#include "vmm/dirty.h"

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
#define SCAN_CHUNK 65536u             /* pagemap entries per read */
#define COPY_BUF (4u << 20)           /* bytes per process_vm_readv batch */
#define COPY_IOV 1024u                /* remote ranges per batch (IOV_MAX) */

int dirty_find_mapping_file(pid_t pid, dev_t dev, ino_t ino, const char *what, uint64_t *start,
			    uint64_t *len)
{
	char maps[64], line[4096 + 256];
	_cleanup_fclose_ FILE *f = NULL;
	uint64_t lo = 0, hi = 0;
	bool found = false;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
	if (!(f = fopen(maps, "re")))
		return err_set_errno(errno, "cannot open %s", maps);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b, off, i;
		unsigned maj, min;
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &a, &b, &off, &maj, &min, &i) < 6)
			continue;
		if (i != (unsigned long long)ino || makedev(maj, min) != dev)
			continue;
		if (!found) {
			if (off != 0)
				continue;
			lo = a;
			hi = b;
			found = true;
		} else if (a == hi && off == hi - lo) {
			hi = b;
		} else {
			return err_set("'%s' is mapped more than once in process %d", what, (int)pid);
		}
	}
	if (!found)
		return err_set("'%s' is not mapped in process %d", what, (int)pid);
	*start = lo;
	*len = hi - lo;
	return 0;
}

int dirty_find_mapping(pid_t pid, const char *path, uint64_t *start, uint64_t *len)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return err_set_errno(errno, "cannot stat '%s'", path);
	return dirty_find_mapping_file(pid, st.st_dev, st.st_ino, path, start, len);
}

int dirty_scan(pid_t pid, uint64_t start, uint64_t len, uint64_t **bits, uint64_t *npages,
	       uint64_t *ndirty)
{
	char pm[64];
	_cleanup_close_ int fd = -1;
	_cleanup_free_ uint64_t *ent = NULL;
	uint64_t n = len / DIRTY_PAGE, count = 0;
	uint64_t *b;

	*bits = NULL;
	if (start % DIRTY_PAGE || len % DIRTY_PAGE || len == 0)
		return err_set("dirty scan: range 0x%" PRIx64 "+0x%" PRIx64 " is not page-aligned", start, len);
	snprintf(pm, sizeof(pm), "/proc/%d/pagemap", (int)pid);
	if ((fd = open(pm, O_RDONLY | O_CLOEXEC)) < 0)
		return err_set_errno(errno, "cannot open %s", pm);
	if (!(b = calloc((n + 63) / 64, sizeof(uint64_t))) || !(ent = malloc(SCAN_CHUNK * sizeof(uint64_t)))) {
		free(b);
		return err_set_errno(ENOMEM, "dirty scan");
	}
	for (uint64_t i = 0; i < n; i += SCAN_CHUNK) {
		uint64_t k = MIN((uint64_t)SCAN_CHUNK, n - i);
		if (full_pread(fd, ent, k * sizeof(uint64_t), (start / DIRTY_PAGE + i) * sizeof(uint64_t)) < 0) {
			free(b);
			return err_set_errno(errno, "cannot read %s", pm);
		}
		for (uint64_t j = 0; j < k; j++) {
			uint64_t e = ent[j];
			if (((e & PM_PRESENT) && !(e & PM_FILE)) || (e & PM_SWAPPED)) {
				b[(i + j) / 64] |= 1ull << ((i + j) % 64);
				count++;
			}
		}
	}
	*bits = b;
	*npages = n;
	*ndirty = count;
	return 0;
}

int dirty_copy(pid_t pid, uint64_t start, const uint64_t *bits, uint64_t npages, int out_fd,
	       uint64_t *written)
{
	_cleanup_free_ char *buf = malloc(COPY_BUF);
	_cleanup_free_ struct iovec *riov = calloc(COPY_IOV, sizeof(struct iovec));
	uint64_t out_off = 0, i = 0;

	*written = 0;
	if (!buf || !riov)
		return err_set_errno(ENOMEM, "dirty copy");
	while (i < npages) {
		size_t nr = 0, fill = 0;
		/* gather runs until the buffer or the iovec array is full */
		while (i < npages && nr < COPY_IOV && fill < COPY_BUF) {
			if (!dirty_test(bits, i)) {
				if (bits[i / 64] == 0)
					i = (i / 64 + 1) * 64;
				else
					i++;
				continue;
			}
			uint64_t j = i;
			while (j < npages && dirty_test(bits, j) && (j - i + 1) * DIRTY_PAGE <= COPY_BUF - fill)
				j++;
			riov[nr].iov_base = (void *)(uintptr_t)(start + i * DIRTY_PAGE);
			riov[nr].iov_len = (size_t)((j - i) * DIRTY_PAGE);
			fill += riov[nr].iov_len;
			nr++;
			i = j;
		}
		if (nr == 0)
			break;
		struct iovec liov = { .iov_base = buf, .iov_len = fill };
		ssize_t got = process_vm_readv(pid, &liov, 1, riov, nr, 0);
		if (got < 0)
			return err_set_errno(errno, "process_vm_readv from process %d", (int)pid);
		if ((size_t)got != fill)
			return err_set("process_vm_readv from process %d: short read (%zd of %zu bytes)", (int)pid,
				       got, fill);
		if (full_pwrite(out_fd, buf, fill, out_off) < 0)
			return err_set_errno(errno, "writing the memory diff");
		out_off += fill;
	}
	*written = out_off;
	return 0;
}

int dirty_apply(int full_fd, int diff_fd, const uint64_t *bits, uint64_t npages)
{
	_cleanup_free_ char *page = malloc(DIRTY_PAGE);
	uint64_t k = 0;

	if (!page)
		return err_set_errno(ENOMEM, "dirty apply");
	for (uint64_t i = 0; i < npages; i++) {
		if (!dirty_test(bits, i))
			continue;
		if (full_pread(diff_fd, page, DIRTY_PAGE, k * DIRTY_PAGE) < 0)
			return err_set_errno(errno, "reading page %" PRIu64 " of the memory diff", k);
		if (full_pwrite(full_fd, page, DIRTY_PAGE, i * DIRTY_PAGE) < 0)
			return err_set_errno(errno, "writing page %" PRIu64 " of the memory file", i);
		k++;
	}
	return 0;
}
