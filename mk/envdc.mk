# host-side envd client uses libcurl
LDLIBS += -lcurl
