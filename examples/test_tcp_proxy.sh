#!/usr/bin/env bash
# Drives the example TCP proxy in front of the example echo server, on
# loopback: 50 concurrent clients send ~100 KB each in random-sized chunks and
# must get every byte back; a half-closed client gets its echo and then EOF;
# an idle client is disconnected by the idle timer while a slow but active one
# is not; new clients are served afterwards; a proxy whose upstream refuses
# closes its clients; a proxy out of descriptors (64) neither spins on accept
# nor drops the clients waiting in its backlog, and serves them once others
# close; SIGTERM (an EVFILT_SIGNAL event) stops the proxy cleanly.
#   test_tcp_proxy.sh path/to/tcp_proxy path/to/echo_server
set -euo pipefail
proxy=$1
echo_server=$2
idle_ms=1500
dir=$(mktemp -d /tmp/tcp_proxy_test.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do { kill -KILL "$p"; wait "$p"; } 2>/dev/null || true; done; rm -rf "$dir"' EXIT

# Waits for a line matching $2 in log $1 while process $3 lives.
wait_for() {
  for _ in $(seq 100); do
    grep -qs "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# The echo server takes a fixed port: try a few random ones.
for _ in 1 2 3 4 5; do
  eport=$((20000 + RANDOM % 20000))
  "$echo_server" -p "$eport" -t 4 > "$dir/echo.log" 2>&1 &
  epid=$!
  if wait_for "$dir/echo.log" "echo server" $epid; then break; fi
  epid=
done
[ -n "$epid" ] || { echo "echo server did not start"; cat "$dir/echo.log"; exit 1; }
pids+=("$epid")

# The proxy listens on a port of the kernel's choosing and prints it.
"$proxy" -l 0 -u "127.0.0.1:$eport" -t 4 -i $idle_ms > "$dir/proxy.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
wait_for "$dir/proxy.log" "tcp proxy on" $proxy_pid || { echo "proxy did not start"; cat "$dir/proxy.log"; exit 1; }
pport=$(sed -n 's/^tcp proxy on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/proxy.log")

python3 - "$pport" "$idle_ms" "$proxy" "$eport" <<'PY'
import os, random, select, signal, socket, subprocess, sys, threading, time
port, idle, proxy, eport = int(sys.argv[1]), int(sys.argv[2]) / 1000.0, sys.argv[3], int(sys.argv[4])
errors = []

def connect(p=port):
    return socket.create_connection(("127.0.0.1", p), timeout=20)

def echo_check(s, want, what):
    got = bytearray()
    while len(got) < len(want):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    if got != want:
        errors.append("%s: got %d of %d bytes%s" % (what, len(got), len(want),
                      ", differing" if len(got) == len(want) else ""))

def bulk(i):
    try:
        rnd = random.Random(i)
        want = rnd.randbytes(100 * 1024 + rnd.randrange(4096))
        s = connect()
        def send():
            off = 0
            while off < len(want):
                n = rnd.randrange(1, 16384)
                s.sendall(want[off:off + n])
                off += n
                if rnd.random() < 0.05:
                    time.sleep(0.001)
        t = threading.Thread(target=send)
        t.start()
        echo_check(s, want, "client %d" % i)
        t.join()
        s.close()
    except Exception as e:
        errors.append("client %d: %r" % (i, e))

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

t0 = time.monotonic()
run(bulk, 50)
check("50 clients x ~100 KB echoed byte for byte in %.1f s" % (time.monotonic() - t0))

# Half close: the client's EOF reaches the echo server, whose EOF comes back.
s = connect()
s.sendall(b"half close " * 1000)
s.shutdown(socket.SHUT_WR)
echo_check(s, b"half close " * 1000, "half-closed client")
if s.recv(1) != b"":
    errors.append("half-closed client: no EOF after the echo")
s.close()
check("half-closed client got its echo, then EOF")

def idle_client(_):
    s = connect()
    s.sendall(b"ping")
    echo_check(s, b"ping", "idle client")
    t = time.monotonic()
    s.settimeout(idle + 1)
    try:
        r = s.recv(1)
        dt = time.monotonic() - t
        if r != b"" or dt < idle / 2:
            errors.append("idle client: recv gave %r after %.2f s" % (r, dt))
    except socket.timeout:
        errors.append("idle client: still connected after %.1f s" % (idle + 1))
    s.close()

def slow_client(_):
    s = connect()
    for k in range(8):  # one byte every idle/3: never idle that long
        s.sendall(b"%d" % k)
        echo_check(s, b"%d" % k, "slow client, byte %d" % k)
        time.sleep(idle / 3)
    s.close()

def both(i):
    (idle_client if i == 0 else slow_client)(i)

run(both, 2)
check("idle client disconnected by the timer; slow active client kept")

def late(i):
    s = connect()
    s.sendall(b"again %d\n" % i * 500)
    echo_check(s, b"again %d\n" % i * 500, "late client %d" % i)
    s.close()

run(late, 10)
check("10 new clients served afterwards")

# Upstream refusing: a bound socket that does not listen holds a closed port.
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
p = subprocess.Popen([proxy, "-l", "0", "-u", "127.0.0.1:%d" % closed.getsockname()[1],
                      "-t", "2"], stdout=subprocess.PIPE, text=True)
try:
    banner = p.stdout.readline()
    s = connect(int(banner.split(":")[1].split()[0]))
    s.settimeout(5)
    if s.recv(1) != b"":
        errors.append("refused upstream: client got data")
    s.close()
finally:
    p.send_signal(signal.SIGTERM)
    rest = p.communicate(timeout=10)[0]
if p.returncode != 0 or "stopped" not in rest:
    errors.append("second proxy: exit %d, output %r" % (p.returncode, rest))
check("client closed when the upstream refuses")

# Out of descriptors: a proxy with 64 fds and 100 clients at once must not
# spin on accept (its CPU time stays small) and must serve every client once
# others close; none may be dropped.
import resource
N, LIMIT = 100, 64
p = subprocess.Popen([proxy, "-l", "0", "-u", "127.0.0.1:%d" % eport, "-t", "4", "-i", "60000"],
                     stdout=subprocess.PIPE, text=True,
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT)))
try:
    lport = int(p.stdout.readline().split(":")[1].split()[0])
    socks = [connect(lport) for _ in range(N)]
    msg = [b"limited %d\n" % i for i in range(N)]
    got = [b""] * N
    for i, s in enumerate(socks):
        s.sendall(msg[i])
    def collect(timeout):
        pending = {s: i for i, s in enumerate(socks) if s and got[i] != msg[i]}
        if pending:
            for s in select.select(list(pending), [], [], timeout)[0]:
                i = pending[s]
                chunk = s.recv(4096)
                if not chunk:
                    errors.append("limited client %d: closed after %r" % (i, got[i]))
                    socks[i] = None
                    s.close()
                got[i] += chunk
        return [i for i in range(N) if socks[i] and got[i] == msg[i]]
    end, served = time.monotonic() + 3, []
    while time.monotonic() < end:
        served = collect(0.2)
    check("%d of %d clients served by a proxy with %d descriptors" % (len(served), N, LIMIT))
    if len(served) >= N:
        errors.append("the proxy never ran out of descriptors: the test proves nothing")
    def cpu():
        with open("/proc/%d/stat" % p.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    time.sleep(3)
    c = cpu() - c0
    print("proxy CPU time while out of descriptors: %.2f s in 3 s" % c)
    if c > 0.5:
        errors.append("the proxy spins while it cannot accept")
    check("")
    done = 0
    while done < N:
        for i in served:
            socks[i].close()
            socks[i] = None
            done += 1
        if done >= N:
            break
        t, served = time.monotonic(), []
        while not served and time.monotonic() - t < 20:
            served = collect(1)
        check("")
        if not served:
            errors.append("%d limited clients never served after others closed" % (N - done))
        check("")
    # Let the proxy see the last EOFs and tear down before it is stopped.
    end = time.monotonic() + 10
    while len(os.listdir("/proc/%d/fd" % p.pid)) > 16 and time.monotonic() < end:
        time.sleep(0.05)
finally:
    p.send_signal(signal.SIGTERM)
    rest = p.communicate(timeout=10)[0]
if p.returncode != 0 or "stopped" not in rest:
    errors.append("limited proxy: exit %d, output %r" % (p.returncode, rest))
check("all %d clients served as descriptors came free" % N)
PY

kill -TERM "$proxy_pid"
for _ in $(seq 100); do
  kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$proxy_pid" 2>/dev/null; then echo "proxy did not stop on SIGTERM"; exit 1; fi
status=0
wait "$proxy_pid" || status=$?
if [ $status -ne 0 ] || ! grep -q stopped "$dir/proxy.log" || grep -q ThreadSanitizer "$dir/proxy.log"; then
  echo "proxy did not exit cleanly (status $status):"
  cat "$dir/proxy.log"
  exit 1
fi
echo "proxy stopped cleanly"
kill -TERM "$epid"
wait "$epid" 2>/dev/null || true
