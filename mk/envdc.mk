# host-side envd client uses libcurl; resume-sandbox statistics use libm
LDLIBS += -lcurl
LDLIBS += -lm
