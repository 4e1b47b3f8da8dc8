/*
 * migstream.h - parse and filter QEMU 7.2 migration streams (PLATFORM.md §3.6).
 *
 * The filter copies a stream, dropping the page records (PAGE, ZERO) of one RAM block (the
 * guest RAM, whose contents travel separately as memfile + diff), and keeps the setup record,
 * the records of the other RAM blocks (ROMs, ACPI tables) and the device sections verbatim.
 * Any record or section the parser does not know fails the filter loudly: the format belongs
 * to QEMU's version, and a silently wrong state file would restore a broken VM.
 *
 * Threading: no shared state; each call is independent.
 */
#ifndef ORCH_VMM_MIGSTREAM_H
#define ORCH_VMM_MIGSTREAM_H

#include <stddef.h>
#include <stdint.h>

/* Stream constants (QEMU migration/savevm.c, migration/ram.c; QEMU 7.2). */
#define MIG_MAGIC 0x5145564du /* "QEVM" */
#define MIG_VERSION 3u
#define MIG_SECTION_EOF 0x00
#define MIG_SECTION_START 0x01
#define MIG_SECTION_PART 0x02
#define MIG_SECTION_END 0x03
#define MIG_SECTION_FULL 0x04
#define MIG_SUBSECTION 0x05
#define MIG_VMDESCRIPTION 0x06
#define MIG_CONFIGURATION 0x07
#define MIG_COMMAND 0x08
#define MIG_SECTION_FOOTER 0x7e

#define MIG_RAM_FULL 0x01 /* obsolete */
#define MIG_RAM_ZERO 0x02
#define MIG_RAM_MEM_SIZE 0x04
#define MIG_RAM_PAGE 0x08
#define MIG_RAM_EOS 0x10
#define MIG_RAM_CONTINUE 0x20
#define MIG_RAM_XBZRLE 0x40
#define MIG_RAM_HOOK 0x80
#define MIG_RAM_COMPRESS_PAGE 0x100
#define MIG_PAGE_SIZE 4096u

struct migstream_stats {
	uint64_t in_bytes, out_bytes;
	uint64_t dropped_pages; /* PAGE records of the dropped block */
	uint64_t dropped_zero;  /* ZERO records of the dropped block */
	uint64_t kept_pages;    /* PAGE + ZERO records of other blocks */
	uint64_t ram_sections;  /* START/PART/END sections of "ram" */
	unsigned nblocks;       /* RAM blocks in the setup record */
	int ignore_shared;      /* the x-ignore-shared capability was on at the source */
};

/* Filter the stream read from in_fd (until EOF) into out_fd. Waits at most timeout_ms for
 * each read (0 = no limit), so a stuck QEMU cannot hang us. drop_block NULL keeps every
 * page (a parse-only copy). 0/-1 + err "[offset N] what". st (optional) filled. */
int migstream_filter_fd(int in_fd, int out_fd, const char *drop_block, uint64_t timeout_ms,
			struct migstream_stats *st);
/* Same over memory; *out malloc'd (caller frees). */
int migstream_filter_buf(const void *in, size_t len, const char *drop_block, void **out,
			 size_t *out_len, struct migstream_stats *st);

#endif
