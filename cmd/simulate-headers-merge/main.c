/*
 * simulate-headers-merge - lays the mappings of a diff header that belong to the diff build
 * over a base header (reference spec §1.7, MergeMappings §3.7) and shows the result: the
 * base, the diff's own mappings, the merged list (not normalized, as the reference prints
 * it) and whether it is valid; -json prints the merged list normalized (§3.8) as one JSON
 * array; -visualize draws one character per block, 128 per row.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "common/flags.h"
#include "storage/header.h"
#include "storage/logical.h"
#include "storage/storage.h"

#define GRID_COLUMNS 128

static void print_maps(const char *title, const struct mapping *m, size_t n, uint64_t bs)
{
	char line[256];
	printf("%s (%zu mappings)\n", title, n);
	for (size_t i = 0; i < n; i++)
		printf("  %s\n", mapping_format(&m[i], bs, line, sizeof(line)));
	printf("\n");
}

/* One rune per block: top (diff build) full block, bottom (other base layers) dark shade,
 * skipped (zeros or the base build itself) light shade. */
static void visualize(FILE *f, const struct header *base, const uuid_t16 *diff_build,
		      const struct mapping *m, size_t n)
{
	uint64_t col = 0;
	fprintf(f, "\u2588 diff layer   \u2593 base layers   \u2591 zeros or the base build (%llu blocks of %llu B)\n",
		(unsigned long long)(base->size / base->block_size),
		(unsigned long long)base->block_size);
	for (size_t i = 0; i < n; i++) {
		const char *r = uuid_equal(&m[i].build_id, diff_build) ? "\u2588"
				: (uuid_is_nil(&m[i].build_id) ||
				   uuid_equal(&m[i].build_id, &base->base_build_id))
				    ? "\u2591"
				    : "\u2593";
		for (uint64_t b = 0; b < m[i].length / base->block_size; b++) {
			fputs(r, f);
			if (++col == GRID_COLUMNS) {
				fputc('\n', f);
				col = 0;
			}
		}
	}
	if (col)
		fputc('\n', f);
}

static int load(struct storage *st, const char *flag, const char *build, enum build_kind kind,
		char *id, struct header *h)
{
	bool legacy;
	if (build_id_canonical(build, id) < 0)
		return err_prefix("-%s", flag);
	if (logical_load_header(st, id, kind, h, &legacy) < 0)
		return err_prefix("%s build", flag);
	return 0;
}

int main(int argc, char **argv)
{
	const char *base_s = NULL, *diff_s = NULL, *kind_s = NULL, *storage_flag = NULL;
	bool json = false, vis = false;
	struct flag flags[] = {
		FLAG_REQ("base", FLAG_STRING, &base_s, "base build id (UUID)"),
		FLAG_REQ("diff", FLAG_STRING, &diff_s, "diff build id (UUID)"),
		FLAG_REQ("kind", FLAG_STRING, &kind_s, "memfile or rootfs"),
		FLAG_DEF("json", FLAG_BOOL, &json, "print the merged, normalized mappings as one JSON array"),
		FLAG_DEF("visualize", FLAG_BOOL, &vis,
			 "draw the merged file, one character per block (on stderr with -json)"),
		FLAG_DEF("storage", FLAG_STRING, &storage_flag,
			 "storage location (directory or s3://, gs:// URL); default $TEMPLATE_BUCKET_NAME, else .local-build"),
	};
	struct flagset fs = { .prog = "simulate-headers-merge",
			      .synopsis = "-base ID -diff ID -kind memfile|rootfs [-json] [-visualize] [-storage LOC]",
			      .about = "Merges the diff build's own mappings onto the base header, as a new diff would be.",
			      .flags = flags,
			      .nflags = ARRAY_SIZE(flags) };
	char bid[UUID_STR_LEN + 1], did[UUID_STR_LEN + 1];
	_cleanup_free_ char *loc = NULL;
	_cleanup_free_ struct mapping *own = NULL, *merged = NULL;
	size_t nown = 0, nmerged;
	enum build_kind kind;
	struct storage *st;
	struct header base, diff, mh;
	int first;

	log_set_prog(fs.prog);
	first = flags_parse(&fs, argc, argv);
	if (first != argc)
		flags_usage_error(&fs, "unexpected argument '%s'", argv[first]);
	if (build_kind_parse(kind_s, &kind) < 0)
		flags_usage_error(&fs, "%s", err_msg());
	if (build_id_canonical(base_s, bid) < 0 || build_id_canonical(diff_s, did) < 0)
		die_err();
	loc = storage_location_resolve(storage_flag);
	if (!loc)
		die("cannot resolve the storage location: out of memory");
	st = storage_open(loc, false);
	if (!st)
		die_err();
	if (load(st, "base", base_s, kind, bid, &base) < 0 || load(st, "diff", diff_s, kind, did, &diff) < 0)
		die_err();
	if (base.size != diff.size || base.block_size != diff.block_size)
		die("diff header (size %llu, block size %llu) does not match the base header (size %llu, block size %llu)",
		    (unsigned long long)diff.size, (unsigned long long)diff.block_size,
		    (unsigned long long)base.size, (unsigned long long)base.block_size);

	own = malloc((diff.nmaps ? diff.nmaps : 1) * sizeof(*own));
	if (!own)
		die("out of memory");
	for (size_t i = 0; i < diff.nmaps; i++)
		if (uuid_equal(&diff.maps[i].build_id, &diff.build_id))
			own[nown++] = diff.maps[i];
	if (mappings_merge(base.maps, base.nmaps, own, nown, &merged, &nmerged) < 0)
		die_err();

	mh = base;
	mh.maps = merged;
	mh.nmaps = nmerged;
	if (!json) {
		print_maps("BASE MAPPINGS", base.maps, base.nmaps, base.block_size);
		print_maps("DIFF MAPPINGS (owned by the diff build)", own, nown, base.block_size);
		print_maps("MERGED MAPPINGS", merged, nmerged, base.block_size);
	}
	if (header_validate(&mh) < 0) {
		fflush(stdout);
		die("merged mappings are invalid: %s", err_msg());
	}
	if (json) {
		_cleanup_free_ char *j = NULL;
		nmerged = mappings_normalize(merged, nmerged);
		j = mappings_to_json(merged, nmerged);
		if (!j)
			die_err();
		printf("%s\n", j);
		if (vis)
			visualize(stderr, &base, &diff.build_id, merged, nmerged);
	} else {
		size_t nnorm = mappings_normalize(merged, nmerged);
		printf("merged mappings are valid (%zu mappings, %zu after normalizing)\n", nmerged, nnorm);
		if (vis) {
			printf("\n");
			visualize(stdout, &base, &diff.build_id, merged, nnorm);
		}
	}
	header_release(&base);
	header_release(&diff);
	storage_free(st);
	return 0;
}
