#!/usr/bin/env bash
# Drives the example echo server with real connections: 20 concurrent
# clients each send lines and must get every byte back; SIGTERM then stops
# the server cleanly (it arrives as an EVFILT_SIGNAL event).
set -euo pipefail
server=$1
port=$((20000 + RANDOM % 20000))
"$server" -p "$port" -t 4 > /tmp/echo_server.$$.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f /tmp/echo_server.$$.log' EXIT
for _ in $(seq 50); do
  grep -q "echo server" /tmp/echo_server.$$.log && break
  sleep 0.1
done
python3 - "$port" <<'PY'
import socket, sys, threading
port = int(sys.argv[1])
errors = []
def client(i):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
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
ts = [threading.Thread(target=client, args=(i,)) for i in range(20)]
[t.start() for t in ts]
[t.join() for t in ts]
if errors:
    print("\n".join(errors)); sys.exit(1)
print("20 clients echoed correctly")
PY
kill -TERM $pid
for _ in $(seq 50); do
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
if kill -0 $pid 2>/dev/null; then echo "server did not stop on SIGTERM"; exit 1; fi
wait $pid
grep -q stopped /tmp/echo_server.$$.log
echo "server stopped cleanly"
