/* Unit tests of metadata.json: round trip, unknown keys kept, legacy documents. */
#include "storage/metadata.h"
#include "test.h"

static void roundtrip_keeps_unknown_keys(void)
{
	const char *in = "{\"version\":2,\"template\":{\"build_id\":\"b\",\"kernel_version\":\"k\",\"firecracker_version\":\"\"},"
			 "\"vmm\":{\"type\":\"qemu\",\"version\":\"7.2\",\"accel\":\"tcg\",\"cpu\":\"max\",\"machine\":\"microvm\","
			 "\"vcpu\":1,\"memory_mib\":512},\"disk_mib\":1000,\"context\":{\"user\":\"u\",\"workdir\":\"/w\"},"
			 "\"start\":{\"start_command\":\"sc\",\"ready_command\":\"rc\"},\"future\":{\"x\":[1,2]}}";
	struct build_metadata m, m2;
	char *out;
	CHECK(metadata_parse(in, strlen(in), &m) == 0);
	CHECK(m.version == 2);
	CHECK_STR(m.build_id, "b");
	CHECK_STR(m.vmm.machine, "microvm");
	CHECK(m.vmm.memory_mib == 512 && m.vmm.vcpu == 1);
	CHECK(m.disk_mib == 1000);
	CHECK_STR(m.start_cmd, "sc");
	CHECK_STR(m.user, "u");
	snprintf(m.build_id, sizeof(m.build_id), "new");
	out = metadata_serialize(&m);
	CHECK(out && strstr(out, "\"future\"") != NULL);
	CHECK(metadata_parse(out, strlen(out), &m2) == 0);
	CHECK_STR(m2.build_id, "new");
	CHECK_STR(m2.ready_cmd, "rc");
	free(out);
	metadata_release(&m);
	metadata_release(&m2);
}

static void legacy_and_garbage(void)
{
	struct build_metadata m;
	CHECK(metadata_parse("{}", 2, &m) == 0 && m.version == 1);
	metadata_release(&m);
	CHECK(metadata_parse("{\"version\":\"x\"}", 15, &m) == 0 && m.version == 1);
	metadata_release(&m);
	CHECK(metadata_parse("[1]", 3, &m) < 0);
	CHECK(metadata_parse("{\"a\":", 5, &m) < 0);
	CHECK(strstr(err_msg(), "metadata.json") != NULL);
}

int main(void)
{
	RUN(roundtrip_keeps_unknown_keys);
	RUN(legacy_and_garbage);
	TEST_EXIT();
}
