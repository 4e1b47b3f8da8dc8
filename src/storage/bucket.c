/*
 * bucket.c - s3:// and gs:// locations. Placeholder until the bucket-storage issue lands:
 * refuses with a clear message instead of pretending.
 */
#include <errno.h>

#include "internal.h"

struct storage *bucket_storage_open(const char *url)
{
	err_set_errno(ENOTSUP, "cannot open '%s': bucket storage is not built yet", url);
	return NULL;
}
