/*
 * proc.h - running helper programs (mkfs.ext4, tar, umoci, ...) without a shell: argv
 * arrays only, so no quoting bugs and no injection through user-supplied names.
 */
#ifndef ORCH_PROC_H
#define ORCH_PROC_H

#include <stddef.h>

/* Run argv[0] (PATH lookup) with stdin from /dev/null and stdout+stderr to out_fd (-1 =
 * /dev/null). Returns the exit status (0-255), 128+N if killed by signal N, or -1 + err when
 * it could not be started. */
int run_argv(const char *const argv[], int out_fd);
/* Same, capturing stdout (up to cap-1 bytes, NUL-terminated, trailing newline removed) into
 * out; stderr goes to err_fd (-1 = /dev/null). */
int run_capture(const char *const argv[], char *out, size_t cap, int err_fd);
/* Render argv as a single line for messages (static buffer, not thread-safe). */
const char *argv_str(const char *const argv[]);

#endif
