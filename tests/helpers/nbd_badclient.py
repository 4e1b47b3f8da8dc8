#!/usr/bin/env python3
# Raw NBD client for nbd_serve.sh: drives protocol violations and edge cases against our
# server and prints one line "ok NAME" or "bad NAME: why" per case. Usage: SOCKET SIZE
import socket, struct, sys, time

SOCK, SIZE = sys.argv[1], int(sys.argv[2])
NBDMAGIC, IHAVEOPT, REPMAGIC = 0x4e42444d41474943, 0x49484156454F5054, 0x3e889045565a9

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(SOCK)
    return s

def recvn(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError('closed after %d of %d bytes' % (len(b), n))
        b += c
    return b

def closed(s):
    try:
        s.settimeout(5)
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

def hello(s):
    m, o, f = struct.unpack('>QQH', recvn(s, 18))
    assert m == NBDMAGIC and o == IHAVEOPT and f & 1, 'bad greeting'
    s.sendall(struct.pack('>I', 3))

def opt(s, o, data=b''):
    s.sendall(struct.pack('>QII', IHAVEOPT, o, len(data)) + data)

def opt_reply(s):
    m, o, t, l = struct.unpack('>QIII', recvn(s, 20))
    assert m == REPMAGIC, 'bad reply magic'
    return o, t, recvn(s, l)

def go(s):
    opt(s, 7, struct.pack('>I', 0) + struct.pack('>H', 0))
    while True:
        o, t, d = opt_reply(s)
        if t == 1:
            return
        assert t == 3, 'GO failed with %x' % t

def req(s, typ, off, length, payload=b'', flags=0, cookie=7):
    s.sendall(struct.pack('>IHHQQI', 0x25609513, flags, typ, cookie, off, length) + payload)

def reply(s, datalen=0):
    m, err, cookie = struct.unpack('>IIQ', recvn(s, 16))
    assert m == 0x67446698, 'bad simple reply magic'
    data = recvn(s, datalen) if err == 0 and datalen else b''
    return err, cookie, data

results = []
def case(name, fn):
    try:
        fn()
        print('ok', name)
    except Exception as e:
        print('bad %s: %s' % (name, e))

def bad_client_flags():
    s = conn(); recvn(s, 18); s.sendall(struct.pack('>I', 0xfffffff0))
    assert closed(s), 'server kept the connection'

def garbage_handshake():
    s = conn(); recvn(s, 18); s.sendall(b'\0\0\0\1' + b'GARBAGE!' * 4)
    assert closed(s), 'server kept the connection'

def huge_option():
    s = conn(); hello(s); s.sendall(struct.pack('>QII', IHAVEOPT, 7, 0x7fffffff))
    assert closed(s), 'server kept the connection'

def unknown_option():
    s = conn(); hello(s); opt(s, 99, b'hello')
    o, t, d = opt_reply(s)
    assert o == 99 and t == 0x80000001, 'reply %d type %x' % (o, t)
    opt(s, 8)  # structured replies: unsupported too
    o, t, d = opt_reply(s)
    assert t == 0x80000001, 'structured reply answered %x' % t
    opt(s, 3)  # list
    o, t, d = opt_reply(s)
    assert t == 2, 'list answered %x' % t
    o, t, d = opt_reply(s)
    assert t == 1, 'list not acked'
    go(s)
    req(s, 0, 0, 512); err, c, d = reply(s, 512)
    assert err == 0 and len(d) == 512, 'read after options failed'
    req(s, 2, 0, 0)
    assert closed(s), 'DISC did not close'

def unknown_export():
    s = conn(); hello(s)
    opt(s, 7, struct.pack('>I', 4) + b'nope' + struct.pack('>H', 0))
    o, t, d = opt_reply(s)
    assert t == 0x80000006, 'unknown export answered %x' % t
    opt(s, 2); o, t, d = opt_reply(s)
    assert t == 1, 'abort not acked'

def past_end():
    s = conn(); hello(s); go(s)
    req(s, 0, SIZE - 512, 4096); err, c, d = reply(s, 4096)
    assert err == 22, 'read past end: error %d' % err
    req(s, 1, SIZE, 512, b'x' * 512); err, c, d = reply(s)
    assert err == 28, 'write past end: error %d' % err
    req(s, 6, SIZE - 4096, 8192); err, c, d = reply(s)
    assert err == 22, 'zero past end: error %d' % err
    req(s, 0, 2**64 - 512, 1024); err, c, d = reply(s, 1024)
    assert err == 22, 'overflowing offset: error %d' % err
    req(s, 99, 0, 0); err, c, d = reply(s)
    assert err == 22, 'unknown command: error %d' % err
    req(s, 0, 0, 4096, flags=0x40); err, c, d = reply(s, 4096)
    assert err == 22, 'unknown flag: error %d' % err
    req(s, 0, 0, 4096, cookie=99); err, c, d = reply(s, 4096)
    assert err == 0 and c == 99 and len(d) == 4096, 'read after errors failed'

def oversized_read():
    s = conn(); hello(s); go(s)
    req(s, 0, 0, 64 << 20); err, c, d = reply(s, 64 << 20)
    assert err == 22, 'oversized read: error %d' % err
    req(s, 0, 0, 4096); err, c, d = reply(s, 4096)
    assert err == 0, 'read after oversized read failed'

def oversized_write():
    s = conn(); hello(s); go(s)
    req(s, 1, 0, 64 << 20)
    assert closed(s), 'server accepted a 64 MiB write header'

def vanish_mid_write():
    s = conn(); hello(s); go(s)
    req(s, 1, 0, 1 << 20, b'y' * 1000)
    s.close()

def vanish_mid_read():
    # many large reads in flight, then gone: replies hit a closed socket (EPIPE, which for
    # spliced replies also raises SIGPIPE in the server) - the server must survive it
    for _ in range(5):
        s = conn(); hello(s); go(s)
        for i in range(16):
            req(s, 0, (i << 20) % (SIZE - (1 << 20)), 1 << 20, cookie=i)
        s.recv(100)
        s.close()
    time.sleep(0.2)
    s = conn(); hello(s); go(s)
    req(s, 0, 0, 1 << 20); err, c, d = reply(s, 1 << 20)
    assert err == 0 and len(d) == 1 << 20, 'server did not answer after readers vanished'

def bad_request_magic():
    s = conn(); hello(s); go(s)
    s.sendall(b'\xde\xad\xbe\xef' + b'\0' * 24)
    assert closed(s), 'server kept the connection'

def pipelined():
    # many requests in flight on one connection: replies may come in any order
    s = conn(); hello(s); go(s)
    n = 64
    for i in range(n):
        req(s, 0, (i * 4096) % SIZE, 4096, cookie=1000 + i)
    seen = set()
    for i in range(n):
        err, c, d = reply(s, 4096)
        assert err == 0, 'pipelined read failed'
        seen.add(c)
    assert seen == set(range(1000, 1000 + n)), 'cookies do not match'

for name, fn in [('bad_client_flags', bad_client_flags), ('garbage_handshake', garbage_handshake),
                 ('huge_option', huge_option), ('unknown_option', unknown_option),
                 ('unknown_export', unknown_export), ('past_end', past_end),
                 ('oversized_read', oversized_read), ('oversized_write', oversized_write),
                 ('vanish_mid_write', vanish_mid_write), ('vanish_mid_read', vanish_mid_read),
                 ('bad_request_magic', bad_request_magic),
                 ('pipelined', pipelined)]:
    case(name, fn)
