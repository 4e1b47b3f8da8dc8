/*
 * flags.h - the one flag parser every command uses, Go `flag` style:
 *   -name value, -name=value, --name value, --name=value; booleans as -name or -name=true|false.
 *   -h / --help / -help: usage on stdout, exit 0. Unknown flag, missing value or missing
 *   required flag: message + usage on stderr, exit 2 (CONTRACTS §1). "--" ends the flags.
 */
#ifndef ORCH_FLAGS_H
#define ORCH_FLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum flag_type {
	FLAG_BOOL,     /* bool *           */
	FLAG_STRING,   /* const char **    */
	FLAG_INT,      /* int64_t *        */
	FLAG_U64,      /* uint64_t *; accepts K/M/G/T (binary) suffixes */
	FLAG_DURATION, /* uint64_t * nanoseconds; Go syntax "1m30s", "500ms"; bare number = seconds */
};

struct flag {
	const char *name;
	enum flag_type type;
	void *dest;
	const char *help;
	bool required;
	bool seen; /* set by flags_parse */
};

#define FLAG_DEF(n, t, d, h) { .name = (n), .type = (t), .dest = (d), .help = (h) }
#define FLAG_REQ(n, t, d, h) { .name = (n), .type = (t), .dest = (d), .help = (h), .required = true }

struct flagset {
	const char *prog;     /* command name */
	const char *synopsis; /* e.g. "-build ID -kind memfile|rootfs [-json]" */
	const char *about;    /* one paragraph, may be NULL */
	struct flag *flags;
	size_t nflags;
};

/* Parse argv; defaults are whatever *dest holds before the call. Returns the index of the
 * first positional argument. Exits as described above for -h and usage errors. */
int flags_parse(struct flagset *fs, int argc, char **argv);
void flags_usage(const struct flagset *fs, FILE *out);
bool flags_seen(const struct flagset *fs, const char *name);
/* Exit 2 with "<prog>: <msg>" + usage on stderr (for cross-flag validation in commands). */
__attribute__((noreturn)) void flags_usage_error(const struct flagset *fs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Parse helpers shared with env-var handling. 0/-1 (err set). */
int parse_u64_size(const char *s, uint64_t *out);
int parse_duration_ns(const char *s, uint64_t *out);

#endif
