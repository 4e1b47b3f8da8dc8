# Bucket storage (src/storage/bucket.c, s3_*.c): libcurl for the S3/GCS XML API.
LDLIBS += -lcurl
