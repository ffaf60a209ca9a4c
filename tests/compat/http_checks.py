#!/usr/bin/env python3
"""Functional checks of a static HTTP/1.1 server (nginx here), run the same way
against its epoll and its kqueue (libbaton) build: curl for the plain requests,
raw sockets for what curl cannot do (pipelining, resets, idle connections,
reloads under a connection).

Prints one line per check, "ok NAME" or "FAIL NAME: why", and a last line
"checks: PASSED/RUN"; exits 1 when a check failed.  The server must serve
--root (made by nginx.sh) and keep its pid in --pidfile."""

import argparse
import hashlib
import os
import signal
import socket
import struct
import subprocess
import time

ARGS = None


def connect(timeout=10.0):
    s = socket.create_connection(("127.0.0.1", ARGS.port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def req(path, method="GET", extra=""):
    return ("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (method, path, extra)).encode()


class Reader:
    """Reads HTTP/1.1 responses (Content-Length framed) off one socket."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""  # small replies only: the large files go through curl

    def fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed by the server")
        self.buf += d

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdr = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdr[k.strip().lower()] = v.strip()
        n = 0 if head_only else int(hdr.get("content-length", "0"))
        while len(self.buf) < n:
            self.fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdr, body


def file_bytes(name):
    with open(os.path.join(ARGS.root, name), "rb") as f:
        return f.read()


def get_once(path):
    s = connect()
    try:
        s.sendall(req(path, extra="Connection: close\r\n"))
        return Reader(s).response()
    finally:
        s.close()


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "30"] + list(args),
                          capture_output=True, timeout=60)


def url(path):
    return "http://127.0.0.1:%d%s" % (ARGS.port, path)


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


def check_get():
    r = curl("-o", "-", "-w", "%{http_code}", url("/small.txt"))
    want = file_bytes("small.txt")
    expect(r.returncode == 0, "curl: %s" % r.stderr.decode().strip())
    expect(r.stdout == want + b"200", "body or status differ")


def check_head():
    r = curl("-I", url("/small.txt"))
    out = r.stdout.decode("latin-1")
    expect(out.startswith("HTTP/1.1 200"), "status line %r" % out[:40])
    size = len(file_bytes("small.txt"))
    expect("Content-Length: %d" % size in out, "no Content-Length %d" % size)
    # curl -I would not show a body; a raw HEAD must get none before the next reply
    s = connect()
    s.sendall(req("/small.txt", "HEAD") + req("/small.txt"))
    rd = Reader(s)
    st, _, _ = rd.response(head_only=True)
    st2, _, body = rd.response()
    s.close()
    expect(st == 200 and st2 == 200 and body == file_bytes("small.txt"),
           "HEAD sent a body or the next reply is wrong")


def check_not_found():
    st, _, _ = get_once("/no-such-file")
    expect(st == 404, "status %d" % st)


def check_keepalive():
    r = curl("-v", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
             url("/small.txt"), url("/1k.bin"), url("/small.txt"))
    expect(r.returncode == 0, "curl failed")
    err = r.stderr.decode("latin-1")
    expect(err.count("Re-using existing connection") >= 2, "curl did not reuse the connection")
    s = connect()
    rd = Reader(s)
    for i in range(20):
        s.sendall(req("/1k.bin"))
        st, _, body = rd.response()
        expect(st == 200 and body == file_bytes("1k.bin"), "request %d on one connection" % i)
    s.close()


def check_pipelining():
    s = connect()
    paths = ["/small.txt", "/1k.bin", "/no-such-file", "/small.txt"] * 8
    s.sendall(b"".join(req(p) for p in paths))
    rd = Reader(s)
    for i, p in enumerate(paths):
        st, _, body = rd.response()
        if p == "/no-such-file":
            expect(st == 404, "pipelined reply %d status %d" % (i, st))
        else:
            expect(st == 200 and body == file_bytes(p[1:]), "pipelined reply %d" % i)
    s.close()


def sha_of_url(path):
    r = subprocess.run("curl -sS --max-time 60 %s | sha256sum" % url(path), shell=True,
                       capture_output=True, timeout=90)
    return r.stdout.split()[0].decode()


def check_large(path="/big.bin"):
    want = hashlib.sha256(file_bytes("big.bin")).hexdigest()
    expect(sha_of_url(path) == want, "%s: digest differs" % path)


def check_slow_reader():
    """The server fills the socket and must wait for write readiness, again and again."""
    s = connect(timeout=30)
    s.sendall(req("/4m.bin", extra="Connection: close\r\n"))
    data = bytearray()
    pauses = 0
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
        if len(data) > (pauses + 1) * 512 * 1024 and pauses < 6:
            pauses += 1
            time.sleep(0.15)
    s.close()
    body = bytes(data).split(b"\r\n\r\n", 1)[1]
    expect(body == file_bytes("4m.bin"), "got %d bytes" % len(body))


def check_aio_sendfile():
    check_large("/aio/big.bin")
    check_slow_reader_path("/aio/4m.bin")


def check_aio_read():
    check_large("/aio-read/big.bin")
    check_slow_reader_path("/aio-read/4m.bin")


def check_slow_reader_path(path):
    s = connect(timeout=30)
    s.sendall(req(path, extra="Connection: close\r\n"))
    data = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
        if len(data) < 1 << 20:
            time.sleep(0.01)
    s.close()
    body = bytes(data).split(b"\r\n\r\n", 1)[1]
    expect(body == file_bytes("4m.bin"), "%s: body differs" % path)


def check_post_discard():
    """A body to a static file: 405, the body read and dropped, the connection kept."""
    s = connect()
    body = b"x" * (256 * 1024)
    s.sendall(req("/small.txt", "POST", "Content-Length: %d\r\n" % len(body)))
    for i in range(0, len(body), 32768):
        s.sendall(body[i:i + 32768])
        time.sleep(0.005)
    rd = Reader(s)
    st, _, _ = rd.response()
    expect(st == 405, "POST status %d" % st)
    s.sendall(req("/small.txt"))
    st, _, b = rd.response()
    expect(st == 200 and b == file_bytes("small.txt"), "request after the discarded body")
    s.close()


def check_concurrency():
    socks = [connect() for _ in range(200)]
    for s in socks:
        s.sendall(req("/1k.bin"))
    want = file_bytes("1k.bin")
    for i, s in enumerate(socks):
        st, _, body = Reader(s).response()
        expect(st == 200 and body == want, "connection %d" % i)
    for s in socks:
        s.close()


def check_half_close():
    """A client shuts its sending side after the request: the server sees EOF on read
    (EV_EOF in kqueue, EPOLLRDHUP in epoll).  A reply written at once arrives whole; a
    long one nginx stops as "client prematurely closed", and closes: no hang."""
    for path in ("/small.txt", "/4m.bin"):
        s = connect(timeout=10)
        s.sendall(req(path))
        s.shutdown(socket.SHUT_WR)
        data = bytearray()
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        body = bytes(data).split(b"\r\n\r\n", 1)[-1]
        if path == "/small.txt":
            expect(body == file_bytes("small.txt"), "%d bytes after a half-close" % len(body))


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def check_resets():
    """Clients that reset mid-header, mid-body (sendfile and aio) and while idle."""
    for i in range(30):
        s = connect()
        kind = i % 4
        if kind == 0:
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHo")
        else:
            path = ["/big.bin", "/aio/big.bin", "/aio-read/big.bin"][kind - 1]
            s.sendall(req(path))
            s.recv(4096)
        rst_close(s)
    time.sleep(0.3)
    check_keepalive_quick()


def check_keepalive_quick():
    s = connect()
    rd = Reader(s)
    for _ in range(3):
        s.sendall(req("/small.txt"))
        st, _, body = rd.response()
        expect(st == 200 and body == file_bytes("small.txt"), "server unwell after resets")
    s.close()


def wait_close(s, limit):
    """Seconds until the server closes s (EOF or reset), or None after limit."""
    t0 = time.monotonic()
    s.settimeout(limit)
    try:
        while True:
            if not s.recv(4096):
                break
    except (ConnectionResetError, socket.timeout) as e:
        if isinstance(e, socket.timeout):
            return None
    return time.monotonic() - t0


def check_keepalive_timeout():
    s = connect()
    s.sendall(req("/small.txt"))
    Reader(s).response()
    t = wait_close(s, 5)
    s.close()
    expect(t is not None, "idle keep-alive connection not closed in 5 s")
    expect(t >= 0.7, "closed after %.2f s, before keepalive_timeout 1s" % t)


def check_header_timeout():
    s = connect()
    s.sendall(b"GET /small.txt HTTP/1.1\r\n")
    t = wait_close(s, 5)
    s.close()
    expect(t is not None, "half a request header not timed out in 5 s")
    expect(t >= 0.7, "closed after %.2f s, before client_header_timeout 1s" % t)


def workers():
    master = open(ARGS.pidfile).read().strip()
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", master], capture_output=True)
    return int(master), set(out.stdout.split())


def check_reload():
    """SIGHUP: new workers serve, old ones close their idle keep-alive connection and exit."""
    master, old = workers()
    s = connect()
    s.sendall(req("/small.txt"))
    Reader(s).response()
    os.kill(master, signal.SIGHUP)
    t = wait_close(s, 5)
    s.close()
    expect(t is not None, "old worker kept its idle connection open")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, now = workers()
        if now and not (now & old):
            break
        time.sleep(0.05)
    expect(now and not (now & old), "old workers still there: %s" % (now & old))
    check_keepalive_quick()


def check_file_cache_events():
    """open_file_cache_events: a cached file replaced by rename is seen at once (kqueue's
    EVFILT_VNODE); the control location without events still serves the old file.
    nginx trusts the event only after one revalidation, hence two reads before the rename;
    when the event cannot be added (EV_ERROR) it keeps the stale file."""
    for name in ("v.txt", "c.txt"):
        with open(os.path.join(ARGS.root, "ofc", name), "wb") as f:
            f.write(b"one\n")
    s = connect()
    rd = Reader(s)
    for p in ("/ofc/v.txt", "/ofc-noevents/c.txt") * 2:
        s.sendall(req(p))
        expect(rd.response()[2] == b"one\n", "first read of %s" % p)
    for name in ("v.txt", "c.txt"):
        tmp = os.path.join(ARGS.root, "ofc", name + ".new")
        with open(tmp, "wb") as f:
            f.write(b"two\n")
        os.rename(tmp, os.path.join(ARGS.root, "ofc", name))
    deadline = time.monotonic() + 2
    body = b""
    while time.monotonic() < deadline:
        s.sendall(req("/ofc/v.txt"))
        body = rd.response()[2]
        if body == b"two\n":
            break
        time.sleep(0.05)
    s.sendall(req("/ofc-noevents/c.txt"))
    ctl = rd.response()[2]
    s.close()
    expect(ctl == b"one\n", "control without events not cached: the check proves nothing")
    expect(body == b"two\n", "replaced file not noticed in 2 s (served %r)" % body)


def check_log_clean():
    """No worker crashed and nothing reached [alert]/[emerg] in the error log."""
    log = open(ARGS.errlog, encoding="latin-1").read()
    bad = [ln for ln in log.splitlines()
           if "[alert]" in ln or "[emerg]" in ln or "exited on signal" in ln]
    expect(not bad, "error log: %s" % bad[:3])


CHECKS = [
    ("get", check_get), ("head", check_head), ("not-found", check_not_found),
    ("keep-alive", check_keepalive), ("pipelining", check_pipelining),
    ("large-file", check_large), ("slow-reader", check_slow_reader),
    ("aio-threads-sendfile", check_aio_sendfile), ("aio-threads-read", check_aio_read),
    ("post-discard", check_post_discard), ("200-connections", check_concurrency),
    ("half-close", check_half_close),
    ("resets", check_resets), ("keepalive-timeout", check_keepalive_timeout),
    ("header-timeout", check_header_timeout), ("reload", check_reload),
    ("open-file-cache-events", check_file_cache_events), ("error-log-clean", check_log_clean),
]


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("--errlog", required=True)
    ap.add_argument("--skip", action="append", default=[])
    ap.add_argument("--only", action="append", default=[], help="run these checks alone")
    ARGS = ap.parse_args()
    passed = run = 0
    for name, fn in CHECKS:
        if name in ARGS.skip or (ARGS.only and name not in ARGS.only):
            continue
        run += 1
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            print("ok %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
        except Exception as e:  # a check's failure, whatever raised it
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
    print("checks: %d/%d" % (passed, run))
    return 0 if passed == run else 1


if __name__ == "__main__":
    raise SystemExit(main())
