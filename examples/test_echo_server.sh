#!/usr/bin/env bash
# Drives the example echo server with real connections, then stops it with
# SIGTERM (an EVFILT_SIGNAL event), which must end it cleanly.
#   test_echo_server.sh path/to/echo_server bulk
#     20 clients send lines, and 6 clients at once send 64 MB each while
#     reading the echo back: every client must get exactly its bytes back
#     (length and SHA-256).  A server that drops the rest of a short write
#     fails here.
#   test_echo_server.sh path/to/echo_server fdlimit
#     the server runs with 64 descriptors and 150 clients connect at once:
#     while it is out of descriptors it must not spin (its CPU time over 3 s
#     stays small), and every client must be served once others close.
set -euo pipefail
server=$1
mode=$2
fdlimit=64
dir=$(mktemp -d /tmp/echo_server_test.XXXXXX)
pid=
trap 'if [ -n "$pid" ]; then { kill -KILL "$pid"; wait "$pid"; } 2>/dev/null || true; fi; rm -rf "$dir"' EXIT

# The server takes a fixed port: try a few random ones.
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  if [ "$mode" = fdlimit ]; then
    (ulimit -n $fdlimit && exec "$server" -p "$port" -t 4) > "$dir/log" 2>&1 &
  else
    "$server" -p "$port" -t 4 > "$dir/log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 100); do
    grep -q "echo server" "$dir/log" && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  grep -q "echo server" "$dir/log" && break
  kill -KILL $pid 2>/dev/null || true
  pid=
done
[ -n "$pid" ] || { echo "echo server did not start"; cat "$dir/log"; exit 1; }

python3 - "$port" "$pid" "$mode" "$fdlimit" <<'PY'
import hashlib, os, random, select, socket, sys, threading, time
port, pid, mode, fdlimit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
errors = []

def connect():
    return socket.create_connection(("127.0.0.1", port), timeout=20)

def run(fn, n):
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]

def check(what):
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    if what:
        print(what)

def lines(i):
    try:
        s = connect()
        want = b"".join(b"client %d line %d\n" % (i, j) for j in range(200))
        s.sendall(want)
        got = b""
        while len(got) < len(want):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        if got != want:
            errors.append("client %d: got %d of %d bytes" % (i, len(got), len(want)))
    except Exception as e:
        errors.append("client %d: %r" % (i, e))

MB = 1 << 20
BULK = 64 * MB

def bulk(i):
    """Sends 64 MB of random bytes while reading the echo: a stall (no byte
    for 20 s), a short echo or different bytes is an error."""
    try:
        s = connect()
        sent = hashlib.sha256()
        def send():
            rnd = random.Random(i)
            for _ in range(BULK // MB):
                chunk = rnd.randbytes(MB)
                sent.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)  # the server closes after the echo
        t = threading.Thread(target=send)
        t.start()
        got, n, buf = hashlib.sha256(), 0, bytearray(MB)
        view = memoryview(buf)
        while True:
            k = s.recv_into(buf)
            if k == 0:
                break
            got.update(view[:k])
            n += k
        t.join()
        s.close()
        if n != BULK or got.digest() != sent.digest():
            errors.append("bulk client %d: got %d of %d bytes%s" %
                          (i, n, BULK, ", differing" if n == BULK else ""))
    except Exception as e:
        errors.append("bulk client %d: %r" % (i, e))

def cpu_seconds():
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

if mode == "bulk":
    run(lines, 20)
    check("20 clients echoed correctly")
    t0 = time.monotonic()
    run(bulk, 6)
    check("6 clients x 64 MB at once echoed byte for byte in %.1f s" % (time.monotonic() - t0))
    sys.exit(0)

# fdlimit: more clients than the server has descriptors.
N = 150
socks = [connect() for _ in range(N)]  # the kernel queues them in the backlog
msg = [b"hello %d\n" % i for i in range(N)]
for i, s in enumerate(socks):
    s.sendall(msg[i])
got = [b""] * N

def collect(timeout):
    """Reads what the server echoed; returns the indexes fully echoed."""
    pending = {s: i for i, s in enumerate(socks) if s and got[i] != msg[i]}
    if pending:
        ready, _, _ = select.select(list(pending), [], [], timeout)
        for s in ready:
            i = pending[s]
            chunk = s.recv(4096)
            if not chunk:
                errors.append("client %d: closed after %r" % (i, got[i]))
                socks[i] = None
                s.close()
            got[i] += chunk
    return [i for i in range(N) if socks[i] and got[i] == msg[i]]

# Let the server take what it can: it stops at its descriptor limit.
end, served = time.monotonic() + 3, []
while time.monotonic() < end:
    served = collect(0.2)
check("%d of %d clients served with %d descriptors" % (len(served), N, fdlimit))
if len(served) >= N or len(served) > fdlimit:
    print("the server never ran out of descriptors: the test proves nothing")
    sys.exit(1)

# Out of descriptors, with connections waiting: the server must be idle.
c0, t0 = cpu_seconds(), time.monotonic()
time.sleep(3)
cpu, wall = cpu_seconds() - c0, time.monotonic() - t0
print("server CPU time while out of descriptors: %.2f s in %.1f s" % (cpu, wall))
if cpu > 0.5:
    print("the server spins while it cannot accept")
    sys.exit(1)

# Free descriptors: close the served clients; the waiting ones must be served.
done = 0
while done < N:
    for i in served:
        socks[i].close()
        socks[i] = None
        done += 1
    if done >= N:
        break
    t = time.monotonic()
    served = []
    while not served and time.monotonic() - t < 20:
        served = collect(1)
    check("")
    if not served:
        print("%d clients never served after others closed" % (N - done))
        sys.exit(1)
print("all %d clients served as descriptors came free" % N)
PY

kill -TERM $pid
for _ in $(seq 100); do
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
if kill -0 $pid 2>/dev/null; then echo "server did not stop on SIGTERM"; exit 1; fi
status=0
wait $pid || status=$?
pid=
if [ $status -ne 0 ] || ! grep -q stopped "$dir/log" || grep -q Sanitizer "$dir/log"; then
  echo "server did not exit cleanly (status $status):"
  cat "$dir/log"
  exit 1
fi
echo "server stopped cleanly"
