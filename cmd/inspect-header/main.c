/*
 * inspect-header - prints a build's memfile or rootfs header (reference spec §1.5): metadata,
 * every mapping with its block range, and a per-build summary; -json prints the header as one
 * JSON object. Problems are printed after what could be parsed as "[offset N] problem"
 * (on stdout, or as a "problems" array with -json); when any exists the command ends with one
 * error line on stderr and exit status 1.
 */
#include <errno.h>
#include <string.h>

#include "common/common.h"
#include "common/flags.h"
#include "storage/header.h"
#include "storage/logical.h"
#include "storage/storage.h"

struct build_sum {
	uuid_t16 id;
	uint64_t bytes;
};

static int cmp_sum(const void *a, const void *b)
{
	return memcmp(((const struct build_sum *)a)->id.b, ((const struct build_sum *)b)->id.b, UUID_LEN);
}

static void print_summary(const struct header *h)
{
	_cleanup_free_ struct build_sum *v = calloc(h->nmaps ? h->nmaps : 1, sizeof(*v));
	size_t n = 0;
	if (!v)
		return;
	for (size_t i = 0; i < h->nmaps; i++)
		v[i] = (struct build_sum){ h->maps[i].build_id, h->maps[i].length };
	qsort(v, h->nmaps, sizeof(*v), cmp_sum);
	for (size_t i = 0; i < h->nmaps; i++) {
		if (n && uuid_equal(&v[n - 1].id, &v[i].id))
			v[n - 1].bytes += v[i].bytes;
		else
			v[n++] = v[i];
	}
	printf("\nMAPPING SUMMARY\n===============\n");
	for (size_t i = 0; i < n; i++) {
		char id[UUID_STR_LEN + 1];
		const char *tag = uuid_equal(&v[i].id, &h->build_id)        ? " (current)"
				  : uuid_equal(&v[i].id, &h->base_build_id) ? " (base)"
				  : uuid_is_nil(&v[i].id)                   ? " (zeros)"
									    : "";
		printf("%s: %llu blocks, %.2f MiB (%.2f%%)%s\n", uuid_format(&v[i].id, id),
		       h->block_size ? (unsigned long long)(v[i].bytes / h->block_size) : 0ull,
		       (double)v[i].bytes / (1024.0 * 1024.0),
		       h->size ? 100.0 * (double)v[i].bytes / (double)h->size : 0.0, tag);
	}
}

/* A header shorter than its 64-byte metadata: print the fields it holds completely
 * (layout in header.h: version, block size, size, generation, build id, base build id). */
static void print_truncated(const struct header *h, size_t len)
{
	char a[UUID_STR_LEN + 1];
	printf("METADATA\n========\n(truncated: %zu of %d bytes)\n", len, HEADER_METADATA_SIZE);
	if (len >= 8)
		printf("Version       %llu\n", (unsigned long long)h->version);
	if (len >= 16)
		printf("Block size    %llu B\n", (unsigned long long)h->block_size);
	if (len >= 24)
		printf("Size          %llu B\n", (unsigned long long)h->size);
	if (len >= 32)
		printf("Generation    %llu\n", (unsigned long long)h->generation);
	if (len >= 48)
		printf("Build ID      %s\n", uuid_format(&h->build_id, a));
}

static void print_human(const struct header *h, bool metadata_ok, bool legacy, size_t len)
{
	char a[UUID_STR_LEN + 1], b[UUID_STR_LEN + 1], line[256];
	if (!metadata_ok) {
		print_truncated(h, len);
		return;
	}
	printf("METADATA\n========\n");
	if (legacy)
		printf("(legacy build: no header object, synthesized from the data object)\n");
	printf("Version       %llu\n", (unsigned long long)h->version);
	printf("Generation    %llu\n", (unsigned long long)h->generation);
	printf("Build ID      %s\n", uuid_format(&h->build_id, a));
	printf("Base build ID %s\n", uuid_format(&h->base_build_id, b));
	printf("Size          %llu B (%.2f MiB)\n", (unsigned long long)h->size,
	       (double)h->size / (1024.0 * 1024.0));
	printf("Block size    %llu B\n", (unsigned long long)h->block_size);
	if (h->block_size)
		printf("Blocks        %llu\n",
		       (unsigned long long)(h->size / h->block_size + (h->size % h->block_size != 0)));
	printf("\nMAPPING (%zu maps, uses %zu KiB in storage)\n=======\n", h->nmaps,
	       (size_t)HEADER_MAPPING_SIZE * h->nmaps / 1024);
	for (size_t i = 0; i < h->nmaps; i++)
		printf("%s\n", mapping_format(&h->maps[i], h->block_size, line, sizeof(line)));
	print_summary(h);
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

int main(int argc, char **argv)
{
	const char *build = NULL, *kind_s = NULL, *storage_flag = NULL;
	bool json = false, metadata_ok = false, legacy = false;
	struct flag flags[] = {
		FLAG_REQ("build", FLAG_STRING, &build, "build id (UUID)"),
		FLAG_REQ("kind", FLAG_STRING, &kind_s, "memfile or rootfs"),
		FLAG_DEF("json", FLAG_BOOL, &json, "print the header as one JSON object"),
		FLAG_DEF("storage", FLAG_STRING, &storage_flag,
			 "storage location (directory or s3://, gs:// URL); default $TEMPLATE_BUCKET_NAME, else .local-build"),
	};
	struct flagset fs = { .prog = "inspect-header",
			      .synopsis = "-build ID -kind memfile|rootfs [-json] [-storage LOC]",
			      .about = "Prints a build's header: metadata, mappings, per-build summary and any problem.",
			      .flags = flags,
			      .nflags = ARRAY_SIZE(flags) };
	char id[UUID_STR_LEN + 1], key[BUILD_KEY_MAX];
	_cleanup_free_ char *loc = NULL;
	_cleanup_free_ void *buf = NULL;
	_cleanup_free_ struct header_problem *probs = NULL, *dprobs = NULL;
	size_t len = 0, nprobs = 0, ndprobs = 0, nmissing = 0;
	enum build_kind kind;
	struct storage *st;
	struct header h = { 0 };
	int rc, first;

	log_set_prog(fs.prog);
	first = flags_parse(&fs, argc, argv);
	if (first != argc)
		flags_usage_error(&fs, "unexpected argument '%s'", argv[first]);
	if (build_kind_parse(kind_s, &kind) < 0)
		flags_usage_error(&fs, "%s", err_msg());
	if (build_id_canonical(build, id) < 0)
		die_err();
	loc = storage_location_resolve(storage_flag);
	if (!loc)
		die("cannot resolve the storage location: out of memory");
	st = storage_open(loc, false);
	if (!st)
		die_err();

	build_key(key, id, build_kind_header_object(kind));
	buf = storage_read_all(st, key, &len);
	if (buf) {
		rc = header_parse_report(buf, len, &h, &metadata_ok, &probs, &nprobs);
		if (rc < 0)
			die_err();
	} else if (errno == ENOENT) {
		/* no header: a legacy build when the data object exists, else a missing build */
		if (logical_load_header(st, id, kind, &h, &legacy) < 0)
			die_err();
		metadata_ok = true;
	} else {
		die_err();
	}
	if (nprobs == 0 && logical_object_problems(st, &h, kind, &dprobs, &ndprobs, &nmissing) < 0)
		die_err();

	if (json) {
		_cleanup_free_ char *j = metadata_ok ? header_to_json(&h) : strdup("{}");
		if (!j)
			die_err();
		if (nprobs + ndprobs == 0) {
			printf("%s\n", j);
		} else {
			/* same object plus the problems */
			j[strlen(j) - 1] = 0;
			printf("%s%s\"problems\":[", j, metadata_ok ? "," : "");
			for (size_t i = 0; i < nprobs + ndprobs; i++) {
				const struct header_problem *p = i < nprobs ? &probs[i] : &dprobs[i - nprobs];
				printf("%s{\"offset\":%llu,\"message\":", i ? "," : "",
				       (unsigned long long)p->offset);
				json_string(stdout, p->msg);
				printf("}");
			}
			printf("]}\n");
		}
	} else {
		print_human(&h, metadata_ok, legacy, buf ? len : 0);
		if (nmissing)
			printf("\n(%zu data object%s of referenced builds not found in storage; not checked)\n",
			       nmissing, nmissing == 1 ? "" : "s");
		if (nprobs + ndprobs) {
			printf("\nPROBLEMS (%zu)\n========\n", nprobs + ndprobs);
			for (size_t i = 0; i < nprobs; i++)
				printf("[offset %llu] %s\n", (unsigned long long)probs[i].offset, probs[i].msg);
			for (size_t i = 0; i < ndprobs; i++)
				printf("[offset %llu] %s\n", (unsigned long long)dprobs[i].offset, dprobs[i].msg);
		}
	}
	fflush(stdout);
	if (nprobs + ndprobs) {
		const struct header_problem *p = nprobs ? &probs[0] : &dprobs[0];
		die("header '%s' in %s is invalid: %zu problem%s, first: [offset %llu] %s", key,
		    storage_describe(st), nprobs + ndprobs, nprobs + ndprobs == 1 ? "" : "s",
		    (unsigned long long)p->offset, p->msg);
	}
	header_release(&h);
	storage_free(st);
	return 0;
}
