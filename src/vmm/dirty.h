/*
 * dirty.h - the guest RAM pages a restored VM wrote, read from outside the VM process.
 *
 * A restored QEMU maps the memfile MAP_PRIVATE (share=off): a page the guest (or QEMU) wrote
 * became an anonymous copy-on-write page. /proc/PID/pagemap tells them apart: present (bit
 * 63) and not file-backed (bit 61 clear), or swapped (bit 62) = written. The VM must be
 * stopped while scanning and copying, or the result is a blur.
 * Bitmaps: one bit per 4 KiB page, LSB-first in 64-bit words (header.h's layout).
 * Threading: stateless; any thread (reading another process needs ptrace rights: root).
 */
#ifndef ORCH_VMM_DIRTY_H
#define ORCH_VMM_DIRTY_H

#include <stdint.h>
#include <sys/types.h>

#define DIRTY_PAGE 4096u

/* The address range where pid maps the file at path (matched by device + inode), from file
 * offset 0; adjacent VMAs of the same file are merged. 0/-1 + err. */
int dirty_find_mapping(pid_t pid, const char *path, uint64_t *start, uint64_t *len);
/* Same for a file known by device + inode (still found when its path was replaced or
 * unlinked since); what names it in errors. */
int dirty_find_mapping_file(pid_t pid, dev_t dev, ino_t ino, const char *what, uint64_t *start,
			    uint64_t *len);
/* Scan len bytes from start (page-aligned). *bits malloc'd (caller frees), *npages = len /
 * page, *ndirty = set bits. 0/-1 + err. */
int dirty_scan(pid_t pid, uint64_t start, uint64_t len, uint64_t **bits, uint64_t *npages,
	       uint64_t *ndirty);
/* Copy the set pages of [start, start + npages pages) out of pid with process_vm_readv into
 * out_fd from offset 0, packed in page order (the memfile diff). *written = bytes. 0/-1 +
 * err. */
int dirty_copy(pid_t pid, uint64_t start, const uint64_t *bits, uint64_t npages, int out_fd,
	       uint64_t *written);
/* Lay a packed diff (as written by dirty_copy) over a full file: page i of the full file
 * gets the next packed page when bit i is set. For tests and full-memfile materialisation.
 * 0/-1 + err. */
int dirty_apply(int full_fd, int diff_fd, const uint64_t *bits, uint64_t npages);

static inline int dirty_test(const uint64_t *bits, uint64_t i)
{
	return (int)((bits[i / 64] >> (i % 64)) & 1);
}

#endif
