/*
 * bucket_tool.c - test helper: the storage interface from the shell, for any location
 * (local directory, s3://, gs://). One operation per run; errors go to stderr, exit 1.
 *   bucket_tool put   LOC KEY FILE      storage_write_file
 *   bucket_tool putb  LOC KEY TEXT      storage_write_buf
 *   bucket_tool get   LOC KEY FILE      storage_download
 *   bucket_tool cat   LOC KEY           storage_read_all to stdout
 *   bucket_tool stat  LOC KEY           "<size> <crc32c hex|unknown>"
 *   bucket_tool read  LOC KEY OFF LEN   storage_object_read to stdout (ranged)
 *   bucket_tool list  LOC [PREFIX]      one key per line
 *   bucket_tool rm    LOC PREFIX        storage_delete_prefix
 */
#include <errno.h>
#include <string.h>

#include "storage/storage.h"

static void usage(void)
{
	fprintf(stderr, "usage: bucket_tool put|putb|get|cat|stat|read|list|rm LOC ...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct storage *st;
	const char *op;
	int rc = 0;
	log_set_prog("bucket_tool");
	if (argc < 3)
		usage();
	op = argv[1];
	st = storage_open(argv[2], true);
	if (!st)
		die_err();
	if (!strcmp(op, "put") && argc == 5) {
		rc = storage_write_file(st, argv[3], argv[4]);
	} else if (!strcmp(op, "putb") && argc == 5) {
		rc = storage_write_buf(st, argv[3], argv[4], strlen(argv[4]));
	} else if (!strcmp(op, "get") && argc == 5) {
		rc = storage_download(st, argv[3], argv[4]);
	} else if (!strcmp(op, "cat") && argc == 4) {
		size_t len;
		void *buf = storage_read_all(st, argv[3], &len);
		if (!buf)
			rc = -1;
		else {
			rc = full_write(1, buf, len);
			free(buf);
		}
	} else if (!strcmp(op, "stat") && argc == 4) {
		uint64_t size;
		uint32_t crc;
		bool known;
		rc = storage_size(st, argv[3], &size);
		if (rc == 0)
			rc = storage_crc32c(st, argv[3], &crc, &known);
		if (rc == 0) {
			if (known)
				printf("%llu %08x\n", (unsigned long long)size, crc);
			else
				printf("%llu unknown\n", (unsigned long long)size);
		}
	} else if (!strcmp(op, "read") && argc == 6) {
		struct storage_object *o = storage_object_open(st, argv[3]);
		uint64_t off = strtoull(argv[4], NULL, 0);
		size_t len = (size_t)strtoull(argv[5], NULL, 0);
		char *buf = malloc(len ? len : 1);
		if (!o || !buf)
			rc = -1;
		else if ((rc = storage_object_read(o, buf, len, off)) == 0)
			rc = full_write(1, buf, len);
		free(buf);
		storage_object_close(o);
	} else if (!strcmp(op, "list") && (argc == 3 || argc == 4)) {
		char **keys;
		size_t n;
		rc = storage_list(st, argc == 4 ? argv[3] : "", &keys, &n);
		if (rc == 0) {
			for (size_t i = 0; i < n; i++)
				printf("%s\n", keys[i]);
			storage_list_free(keys, n);
		}
	} else if (!strcmp(op, "rm") && argc == 4) {
		rc = storage_delete_prefix(st, argv[3]);
	} else {
		usage();
	}
	if (rc < 0) {
		const char *msg = err_msg();
		int e = errno;
		fprintf(stderr, "bucket_tool: error: %s\n", msg);
		storage_free(st);
		return e == ENOENT ? 3 : 1;
	}
	storage_free(st);
	return 0;
}
