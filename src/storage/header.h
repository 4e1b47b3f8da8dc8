/*
 * header.h - the E2B build header (reference spec §3), byte-compatible:
 * 64-byte little-endian metadata + 40-byte mappings. Read versions 1-3, write 3.
 *
 * The disk layout (struct header_disk_*) lives only in header.c; everything else uses the
 * in-memory struct header below. Validation follows CONTRACTS §2 and is total: any byte string
 * either parses into a header whose every mapping is in bounds, or is refused with a message
 * "[offset N] problem" (N = byte offset in the header object).
 *
 * Threading: a parsed struct header is immutable; lookups from many threads are fine.
 */
#ifndef ORCH_HEADER_H
#define ORCH_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/common.h"

#define HEADER_METADATA_SIZE 64
#define HEADER_MAPPING_SIZE 40
#define HEADER_VERSION 3
#define HEADER_MAX_SIZE (1ull << 50)

struct mapping {
	uint64_t offset;         /* logical byte offset, multiple of block_size */
	uint64_t length;         /* bytes, multiple of block_size */
	uuid_t16 build_id;       /* nil = reads as zeros */
	uint64_t storage_offset; /* byte offset in <build_id>/<data object> */
};

struct header {
	uint64_t version;
	uint64_t block_size;
	uint64_t size;
	uint64_t generation;
	uuid_t16 build_id;
	uuid_t16 base_build_id;
	struct mapping *maps; /* sorted by offset, contiguous, covering [0, size) */
	size_t nmaps;
};

/* A problem found while parsing or validating: byte offset in the header object + text. */
struct header_problem {
	uint64_t offset;
	char msg[200];
};

/* Parse and validate. On success fills *h (release with header_release). On failure returns -1
 * with err_msg() = "[offset N] <first problem>". A header with no mappings maps the whole size
 * to its own build (spec §3.2). */
int header_parse(const void *buf, size_t len, struct header *h);

/* Lenient parse for inspect-header: fills *h with whatever could be parsed (h->nmaps may be 0
 * when the metadata itself is broken, *metadata_ok says whether h's metadata is usable: the
 * 64 metadata bytes were present, so its fields hold what the file says; the problems tell
 * which of them are invalid, and mappings are as read, possibly invalid; a header shorter than
 * the metadata leaves the fields it holds completely in *h, the others 0) and
 * returns every problem found in *probs (malloc'd, caller frees). Returns 0 when the header
 * is valid, 1 when problems were found, -1 on allocation failure. */
int header_parse_report(const void *buf, size_t len, struct header *h, bool *metadata_ok,
			struct header_problem **probs, size_t *nprobs);

/* Check a header's mappings (CONTRACTS §2). 0 or -1 with the first problem. */
int header_validate(const struct header *h);

/* Serialize as version 3 (h->version is written as is if 1..3). Returns malloc'd buffer. */
void *header_serialize(const struct header *h, size_t *len);

/* Synthesize the header of a legacy build (data object without header; spec §2.1):
 * version 1, generation 1, build = base = *build, one mapping over [0, size). Validated:
 * -1 + err when size is 0 or not a multiple of block_size. */
int header_legacy(struct header *h, const uuid_t16 *build, uint64_t block_size, uint64_t size);

/* Deep copy. */
int header_copy(struct header *dst, const struct header *src);
void header_release(struct header *h);

/* Lookup (spec §3.4): the mapping holding logical offset off (any offset < size, not only
 * block-aligned). Returns the mapping and, through *storage_off and *remaining, where off is
 * in the owner's data object and how many bytes of the mapping remain from off.
 * O(log nmaps). NULL + err when off >= size. */
const struct mapping *header_lookup(const struct header *h, uint64_t off, uint64_t *storage_off,
				    uint64_t *remaining);

/* MergeMappings (spec §3.7): diff laid over base. *out malloc'd (caller frees). */
int mappings_merge(const struct mapping *base, size_t nbase, const struct mapping *diff,
		   size_t ndiff, struct mapping **out, size_t *nout);
/* NormalizeMappings (spec §3.8), in place; returns the new count. */
size_t mappings_normalize(struct mapping *maps, size_t n);

/* Mappings from a block bitmap (spec §3.6 CreateMapping): runs of set bits, storage offsets
 * packed in order. bits has nblocks bits (LSB-first in 64-bit words). */
int mappings_from_bitmap(const uint64_t *bits, uint64_t nblocks, uint64_t block_size,
			 const uuid_t16 *build, struct mapping **out, size_t *nout);

/* New diff header on top of base (spec §3.6): dirty blocks -> new_build (packed in order),
 * empty blocks -> nil; generation + 1; merged and normalized; validated. dirty / empty may be
 * NULL (no such blocks); each has size/block_size bits. The result is always version 3 and
 * keeps base->base_build_id. out is filled on success only (release with header_release). */
int header_diff(const struct header *base, const uuid_t16 *new_build, const uint64_t *dirty,
		const uint64_t *empty, struct header *out);

/* ---- formatting (for the inspect tools; no I/O) ---- */

/* The header as one JSON object, exactly:
 * {"version":N,"block_size":N,"size":N,"generation":N,"build_id":"uuid","base_build_id":"uuid",
 *  "mappings":[{"offset":N,"length":N,"build_id":"uuid","build_storage_offset":N},...]}
 * with no whitespace. malloc'd (caller frees); NULL + err on allocation failure. */
char *header_to_json(const struct header *h);
/* The mapping list alone as a JSON array in the same schema. malloc'd (caller frees). */
char *mappings_to_json(const struct mapping *maps, size_t n);
/* One mapping as the reference's inspect tools print it (spec §1.5):
 * "<first block>-<end block> [off, end) := [storage off, storage end) ⊂ <build>, <len> B".
 * block_size 0 prints "?" block ranges. Returns out. */
char *mapping_format(const struct mapping *m, uint64_t block_size, char *out, size_t outlen);

#endif
