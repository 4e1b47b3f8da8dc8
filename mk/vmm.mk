# VMM driver (src/vmm) and network slots (src/network): json-c (already linked by the
# Makefile) and libmnl for rtnetlink (links, addresses, routes).
LDLIBS += -lmnl
