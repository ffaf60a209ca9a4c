#!/usr/bin/env bash
# The load test of baton-httpd (issue 13, item 7), with nginx as the
# baseline in the same run.  Not part of ctest: it needs ~10 000 fds on each
# side and a minute or two.
#
#   tests/load/run.sh [--quick] [--server baton|baton_uring|nginx|both|all]
#                     [--build-dir DIR]
#                     [--conns N] [--duration SEC] [--no-build]
#
# For each server (baton-httpd first, then nginx with the same number of
# workers; "baton_uring" and "all" add baton-httpd with BATON_URING_WAIT=1,
# the io_uring wait):
#   1. two identical passes of bench/http_load: N keep-alive connections
#      (10 000; --quick: 2 000) looping GET /8k.bin, every body compared byte
#      for byte with the file; 50 slowloris clients (one header byte a
#      second, against a request-head timeout of 4 s, 2 s with --quick); 20
#      clients that reset (SO_LINGER 0) in the middle of a 1 MiB
#      body, over and over;
#   2. the server's CPU time over 5 s of idleness after that (no spin), its
#      RSS and fd count before, after pass 1 and after pass 2 (no leak);
#   3. EMFILE: a fresh server under RLIMIT_NOFILE 256 (prlimit), 600 idle
#      connections so accepts fail with EMFILE: its CPU while they wait (no
#      spin), then 100 verified keep-alive connections once they are gone
#      (it recovers), and its fd count back to where it started.
# Pass: no bad, missing or stalled response, no unexpected close, every
# slowloris client closed by the server, fds after = fds before (io_uring
# rings apart: at most one per thread and one more), RSS after
# pass 2 <= RSS after pass 1 + max(4 MiB, 5 %), idle CPU < 50 ms in 5 s,
# CPU while at EMFILE < 10 % of a core, recovery served everything.
# Prints one "LOAD ..." line per server and exits 0 when every server that
# ran passed (1 otherwise; 77 when baton-httpd is not built and --server
# baton was asked for).
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${BENCH_BUILD_DIR:-$REPO/bench/build}
SERVERS="both"
QUICK=0
CONNS=""
DUR=""
BUILD_STEP=1
usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
	case $1 in
	--quick) QUICK=1 ;;
	--server) SERVERS=$2; shift ;;
	--build-dir) BUILD=$2; shift ;;
	--conns) CONNS=$2; shift ;;
	--duration) DUR=$2; shift ;;
	--no-build) BUILD_STEP=0 ;;
	-h | --help) usage 0 ;;
	*) echo "load: unknown option $1" >&2; usage 2 ;;
	esac
	shift
done
if [ $QUICK = 1 ]; then
	CONNS=${CONNS:-2000}; DUR=${DUR:-8}; HEADER=2
else
	CONNS=${CONNS:-10000}; DUR=${DUR:-15}; HEADER=4
fi
SLOW=50
RESETS=20
THREADS=$(nproc)
HZ=$(getconf CLK_TCK)
say() { echo "load: $*" >&2; }

BATON_HTTPD=${BATON_HTTPD:-$BUILD/httpd/baton-httpd}
LOADER=$BUILD/bench/http_load
if [ $BUILD_STEP = 1 ] && { [ ! -x "$LOADER" ] || [ ! -x "$BATON_HTTPD" ]; }; then
	say "building into $BUILD (Release)"
	{ cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBATON_BUILD_BENCH=ON \
		-DBATON_BUILD_TESTS=OFF -DBATON_BUILD_EXAMPLES=OFF &&
		cmake --build "$BUILD" -j2; } >"$BUILD.load-build.log" 2>&1 ||
		{ tail -30 "$BUILD.load-build.log" >&2; say "build failed"; exit 1; }
fi
[ -x "$LOADER" ] || { say "no $LOADER"; exit 1; }
command -v nginx >/dev/null || [ "$SERVERS" = baton ] || { say "nginx missing (apt-get install nginx-light)"; exit 1; }
case $SERVERS in
both) IMPLS="baton nginx" ;;
all) IMPLS="baton baton_uring nginx" ;;
baton | baton_uring | nginx) IMPLS=$SERVERS ;;
*) usage 2 ;;
esac
if [[ " $IMPLS " == *" baton"* ]] && [ ! -x "$BATON_HTTPD" ]; then
	say "no baton-httpd at $BATON_HTTPD"
	[[ "$SERVERS" == baton* ]] && exit 77
	IMPLS=nginx
fi

ulimit -n "$(ulimit -Hn)"
HTTP_TMP=$(mktemp -d /tmp/load.XXXXXX)
# keep-alive timeout long (an overloaded server must not time out a waiting
# request), request-head timeout short (slowloris closed within a pass)
export HTTP_TMP HTTP_IDLE=60 HTTP_HEADER=$HEADER
# shellcheck source=bench/http-lib.sh
. "$REPO/bench/http-lib.sh"
SRV=""
STATUS=0
# on a failure the servers' logs stay in $HTTP_TMP (printed)
trap '[ -n "$SRV" ] && http_stop "$SRV"; if [ $STATUS = 0 ]; then rm -rf "$HTTP_TMP"; else say "logs kept in $HTTP_TMP"; fi' EXIT
trap 'exit 130' INT TERM
DOC=$HTTP_TMP/www
http_docroot "$DOC"

# kv LINE KEY: the value of KEY=value in a RESULT line
kv() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# conn_fds PID: the server's fds but its io_uring rings: libbaton makes one
# per thread that waits in a ring (BATON_URING_WAIT=1) the first time it
# does, and keeps it; they are bounded by rings_ok, not leaks
conn_fds() { echo $(($(http_fds "$1") - $(http_ring_fds "$1"))); }
# rings_ok PID: at most one ring per thread and one for the byte counts
rings_ok() { [ "$(http_ring_fds "$1")" -le $((THREADS + 2)) ]; }

# check_pass LINE: "" when a keep-alive pass was clean, else what was wrong
check_pass() {
	local k why="" v
	for k in bad unexpected_close connect_err stalled reset_err; do
		v=$(kv "$1" $k)
		[ "${v:-x}" = 0 ] || why="$why $k=${v:-?}"
	done
	[ "$(kv "$1" ok_run)" -gt 0 ] 2>/dev/null || why="$why ok_run=0"
	[ "$(kv "$1" slow_closed)" = "$SLOW" ] || why="$why slow_closed=$(kv "$1" slow_closed)/$SLOW"
	[ "$(kv "$1" resets)" -gt 0 ] 2>/dev/null || why="$why resets=0"
	echo "$why"
}

# main_phase IMPL: passes 1 and 2, idle CPU, RSS/fd before and after
main_phase() {
	local impl=$1 p r1 r2 rss0 rss1 rss2 fd0 fd1 fd2 c0 c1 why="" i
	p=$(http_free_port) && SRV=$(http_start "$impl" "main-$impl" "$THREADS" "$p" "$DOC") ||
		{ echo "LOAD impl=$impl verdict=FAIL why=server-did-not-start"; return 1; }
	curl -sf -o /dev/null "http://127.0.0.1:$p/1k.bin"
	sleep 0.5
	rss0=$(http_rss "$SRV"); fd0=$(conn_fds "$SRV")
	local args=(-p "$p" -c "$CONNS" -u /8k.bin -F "$DOC/8k.bin" -s "$SLOW" -r "$RESETS"
		-U /1m.bin -d "$DUR" -l "$impl")
	local t0 t1 t2
	t0=$(http_cpu_ticks "$SRV")
	r1=$(timeout -k 5 $((DUR + 60)) "$LOADER" "${args[@]}" -x load/pass1) || why="$why loader-failed"
	t1=$(http_cpu_ticks "$SRV")
	sleep 2
	rss1=$(http_rss "$SRV"); fd1=$(conn_fds "$SRV")
	t2=$(http_cpu_ticks "$SRV")
	r2=$(timeout -k 5 $((DUR + 60)) "$LOADER" "${args[@]}" -x load/pass2) || why="$why loader-failed"
	t2=$(($(http_cpu_ticks "$SRV") - t2))
	# the server may take a moment to see every close
	for ((i = 0; i < 40; i++)); do
		fd2=$(conn_fds "$SRV")
		[ "$fd2" -le "$fd0" ] && break
		sleep 0.25
	done
	rss2=$(http_rss "$SRV")
	rings_ok "$SRV" || why="$why rings:$(http_ring_fds "$SRV")>$((THREADS + 2))"
	c0=$(http_cpu_ticks "$SRV"); sleep 5; c1=$(http_cpu_ticks "$SRV")
	kill -0 "$SRV" 2>/dev/null || why="$why server-died"
	http_stop "$SRV"; SRV=""
	echo "$r1" >&2
	echo "$r2" >&2
	local w1 w2
	w1=$(check_pass "$r1"); w2=$(check_pass "$r2")
	[ -z "$w1" ] || why="$why pass1:${w1// /,}"
	[ -z "$w2" ] || why="$why pass2:${w2// /,}"
	[ "$fd2" -le "$fd0" ] || why="$why fd-leak:$fd0->$fd2"
	local idle_ms=$(((c1 - c0) * 1000 / HZ)) slack=$((rss1 / 20))
	[ $slack -gt 4194304 ] || slack=4194304
	[ $idle_ms -lt 50 ] || why="$why idle-cpu:${idle_ms}ms"
	[ "$rss2" -le $((rss1 + slack)) ] || why="$why rss-growth:$rss1->$rss2"
	MAIN="conns=$CONNS ok=$(($(kv "$r1" ok) + $(kv "$r2" ok))) req_per_s=$(kv "$r1" req_per_s)/$(kv "$r2" req_per_s)"
	# server CPU per response (connection setup included), both passes
	MAIN="$MAIN cpu_us_per_resp=$(awk -v a=$((t1 - t0)) -v b="$t2" -v n1="$(kv "$r1" ok)" -v n2="$(kv "$r2" ok)" -v hz="$HZ" \
		'BEGIN { printf "%.1f/%.1f", (n1 > 0) ? a * 1e6 / hz / n1 : 0, (n2 > 0) ? b * 1e6 / hz / n2 : 0 }')"
	MAIN="$MAIN bad=$(($(kv "$r1" bad) + $(kv "$r2" bad))) stalled=$(($(kv "$r1" stalled) + $(kv "$r2" stalled)))"
	MAIN="$MAIN unexpected_close=$(($(kv "$r1" unexpected_close) + $(kv "$r2" unexpected_close)))"
	MAIN="$MAIN lat_max_ms=$(kv "$r1" lat_max_ms)/$(kv "$r2" lat_max_ms)"
	MAIN="$MAIN slow_closed=$(kv "$r1" slow_closed)+$(kv "$r2" slow_closed)/$((2 * SLOW))"
	MAIN="$MAIN slow_close_s=$(kv "$r1" slow_close_min_s)-$(kv "$r1" slow_close_max_s)"
	MAIN="$MAIN resets=$(($(kv "$r1" resets) + $(kv "$r2" resets))) reset_err=$(($(kv "$r1" reset_err) + $(kv "$r2" reset_err)))"
	MAIN="$MAIN idle_cpu_ms_5s=$idle_ms rss_mib=$(awk -v a="$rss0" -v b="$rss1" -v c="$rss2" 'BEGIN { printf "%.1f/%.1f/%.1f", a / 1048576, b / 1048576, c / 1048576 }')"
	MAIN="$MAIN fds=$fd0/$fd1/$fd2"
	MAIN_WHY=$why
}

# emfile_phase IMPL: accepts at EMFILE must not spin; the server recovers
emfile_phase() {
	local impl=$1 p lp r rr fd0 fd1 c0 c1 why="" i
	p=$(http_free_port) &&
		SRV=$(HTTP_IDLE=60 HTTP_PRLIMIT="--nofile=256:256" http_start "$impl" "emfile-$impl" "$THREADS" "$p" "$DOC") ||
		{ EMF="emfile=not-started"; EMF_WHY=" emfile-server-did-not-start"; return; }
	curl -sf -o /dev/null "http://127.0.0.1:$p/1k.bin"
	sleep 0.3
	fd0=$(conn_fds "$SRV")
	"$LOADER" -p "$p" -c 600 -i -u /1k.bin -F "$DOC/1k.bin" -d 60 -C 600 -x load/emfile \
		-l "$impl" >"$HTTP_TMP/emfile.out" &
	lp=$!
	sleep 3
	c0=$(http_cpu_ticks "$SRV"); sleep 3; c1=$(http_cpu_ticks "$SRV")
	kill -TERM "$lp"; wait "$lp"
	r=$(cat "$HTTP_TMP/emfile.out")
	echo "$r" >&2
	sleep 1
	rr=$(timeout -k 5 60 "$LOADER" -p "$p" -c 100 -u /1k.bin -F "$DOC/1k.bin" -d 3 -x load/recovery -l "$impl")
	echo "$rr" >&2
	for ((i = 0; i < 40; i++)); do
		fd1=$(conn_fds "$SRV")
		[ "$fd1" -le "$fd0" ] && break
		sleep 0.25
	done
	rings_ok "$SRV" || why="$why emfile-rings:$(http_ring_fds "$SRV")>$((THREADS + 2))"
	kill -0 "$SRV" 2>/dev/null || why="$why emfile-server-died"
	http_stop "$SRV"; SRV=""
	local ms=$(((c1 - c0) * 1000 / HZ))
	[ $ms -lt 300 ] || why="$why emfile-cpu:${ms}ms/3s"
	# at the fd limit a server may answer 5xx (it cannot open the file); a
	# wrong length or body is never right
	[ "$(kv "$r" bad_len)" = 0 ] && [ "$(kv "$r" bad_body)" = 0 ] ||
		why="$why emfile-bad-response:len=$(kv "$r" bad_len),body=$(kv "$r" bad_body)"
	local w
	w=$(check_pass "$rr" | sed 's/ slow_closed=[^ ]*//; s/ resets=0//')
	[ -z "$w" ] || why="$why recovery:${w// /,}"
	[ "$(kv "$rr" ok)" -gt 0 ] 2>/dev/null || why="$why recovery-served-nothing"
	[ "$fd1" -le "$fd0" ] || why="$why emfile-fd-leak:$fd0->$fd1"
	EMF="emfile_served=$(kv "$r" ok)/600 emfile_5xx=$(kv "$r" status_5xx) emfile_4xx=$(kv "$r" status_4xx)"
	EMF="$EMF emfile_cpu_ms_3s=$ms recovery_ok=$(kv "$rr" ok) emfile_fds=$fd0/$fd1"
	EMF_WHY=$why
}

for impl in $IMPLS; do
	say "$impl: $CONNS keep-alive + $SLOW slowloris + $RESETS resetting clients, 2 x ${DUR}s"
	main_phase "$impl" || { STATUS=1; continue; }
	say "$impl: EMFILE phase"
	emfile_phase "$impl"
	why="$MAIN_WHY$EMF_WHY"
	verdict=PASS
	[ -z "$why" ] || { verdict=FAIL; STATUS=1; }
	echo "LOAD impl=$impl $MAIN $EMF verdict=$verdict${why:+ why=${why# }}"
done
exit $STATUS
