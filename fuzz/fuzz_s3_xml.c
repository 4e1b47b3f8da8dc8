/* libFuzzer harness for the S3 XML scanner (ListObjectsV2 pages, error bodies): any bytes must
 * parse or be refused without a crash, a leak or an out-of-bounds read. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "storage/s3_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *xml = (const char *)data;
	char **keys = NULL, *token = NULL, *v = NULL;
	size_t n = 0, cap = 0, pos = 0;
	bool truncated = false;
	/* success or not, whatever was appended is the caller's */
	(void)s3_list_parse(xml, size, &keys, &n, &cap, &truncated, &token);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(token);
	for (int i = 0; i < 64 && s3_xml_next(xml, size, "Code", &pos, &v) == 1; i++) {
		free(v);
		v = NULL;
	}
	free(v);
	free(s3_xml_first(xml, size, "Message"));
	return 0;
}
