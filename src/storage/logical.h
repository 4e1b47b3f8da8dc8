/*
 * logical.h - the logical file of a build (its memfile or rootfs as the guest sees it),
 * read through the build's header: each mapping's bytes come from the packed diff object of
 * the owning build, <owner>/<data object>, at storage_offset + shift; nil mappings read as
 * zeros (reference spec §3.5).
 *
 * Opening: logical_open() reads <build>/<header object>; when it is missing but the data
 * object exists the build is a legacy one and a header is synthesized (CONTRACTS §2, spec
 * §2.1: one mapping over the whole object, block size 2 MiB for memfile when the object is a
 * multiple of it, else 4096). The header is validated and every data object it references is
 * checked to exist and be long enough for its mappings (clear error naming the build, the file
 * and the logical offset) before logical_open returns. Data objects themselves are opened
 * lazily, on the first read that needs them, and then kept open.
 *
 * Threading: logical_read() may be called from many threads at once. A mutex guards the lazy
 * opening of objects; reads of opened objects take no lock. logical_close() must not race
 * with reads.
 *
 * Ownership: struct logical owns its header and the objects it opened; the storage passed in
 * must outlive it.
 */
#ifndef ORCH_LOGICAL_H
#define ORCH_LOGICAL_H

#include "header.h"
#include "storage.h"

struct logical;

/* Hook that lets a caller (the block layer's chunk cache) substitute its own objects.
 * open_object returns an object for key "<build-id>/<data object>" that logical_close()
 * releases with storage_object_close(); NULL + err (errno ENOENT when missing) on failure.
 * It may be called from any thread, but never twice for the same key concurrently. */
struct logical_options {
	struct storage_object *(*open_object)(void *opaque, const char *key);
	void *opaque;
	/* Check each data object's size against the mappings when it is first opened instead
	 * of (with storage_size) in logical_open. Useful when sizes are known only after open. */
	bool lazy_size_check;
};

/* Open the logical file of build_id (canonical or any-case UUID) of the given kind.
 * NULL + err: invalid build id, build missing ("build X not found in LOCATION"), invalid
 * header ("[offset N] ..."), data object missing or too short. */
struct logical *logical_open(struct storage *st, const char *build_id, enum build_kind kind);

/* Same from an already parsed header; takes ownership of *h's contents (h is emptied, even on
 * failure). st may be NULL when opts->open_object is given; opts may be NULL. The header is
 * validated here. */
struct logical *logical_open_header(struct storage *st, struct header *h, enum build_kind kind,
				    const struct logical_options *opts);

/* The header in use (owned by l, valid until logical_close). */
const struct header *logical_header(const struct logical *l);
/* Logical size in bytes (= logical_header(l)->size). */
uint64_t logical_size(const struct logical *l);
/* True when the header was synthesized for a legacy build (no header object). */
bool logical_is_legacy(const struct logical *l);

/* Read len bytes at logical offset off into buf. Thread-safe. 0, or -1 + err when the range
 * goes past the size or a data object cannot be read. */
int logical_read(struct logical *l, void *buf, size_t len, uint64_t off);

/* Read the header of a build, synthesizing a legacy one when only the data object exists.
 * *legacy says which. Fills *h (release with header_release). Does NOT check data objects.
 * This is what inspect-header and inspect-data use to get the block size. */
int logical_load_header(struct storage *st, const char *build_id, enum build_kind kind,
			struct header *h, bool *legacy);

/* Check that every data object referenced by h exists and is long enough (CONTRACTS §2).
 * 0 or -1 + err naming the build, the file and the logical offset of the first mapping that
 * does not fit. */
int logical_check_objects(struct storage *st, const struct header *h, enum build_kind kind);

/* For inspect-header: check the data objects of a valid header that exist; each one shorter
 * than its mappings need becomes a problem at the offset of the mapping record that needs the
 * most. Missing objects are not problems (inspecting a header needs only the header); their
 * count goes to *nmissing. *probs is malloc'd (caller frees). 0, or -1 + err on storage or
 * allocation errors other than ENOENT. */
int logical_object_problems(struct storage *st, const struct header *h, enum build_kind kind,
			    struct header_problem **probs, size_t *nprobs, size_t *nmissing);

void logical_close(struct logical *l);

#endif
