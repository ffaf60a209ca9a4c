#!/usr/bin/env bash
# Drop-in proof: Debian's Redis 7.0 source, unchanged, built twice in a temp dir:
# as Debian builds it (ae_epoll.c) and with ae_kqueue.c on libbaton, chosen from
# the build command alone: make --eval gives ae.o (and no other object) a forced
# header, tests/compat/redis-ae-kqueue.h, and links libbaton into the programs.
# Then Redis's own test units on both builds, and redis-benchmark with the
# server's CPU per request (utime+stime from /proc/PID/stat) on both.
# Prints one result line; exits non-zero when a unit passes on epoll and not on
# kqueue.
#   tests/compat/redis.sh [--full]
#     --full   Redis's whole test suite instead of the representative units
# COMPAT_KEEP=1 leaves the temp dir for a look.  Not in CI (tests/compat/run-all).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
full=0
for a in "$@"; do
	case $a in
	--full) full=1 ;;
	*) echo "usage: $0 [--full]" >&2; exit 2 ;;
	esac
done
# shellcheck source=tests/compat/common.sh
. "$here/common.sh"

compat_init redis
work=$COMPAT_DIR
servers=()
cleanup() {
	local p
	for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
	[ "${COMPAT_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
log="$work/logs"
mkdir -p "$log"

compat_debsrc
compat_build_deps redis tcl tcl-tls procps
compat_baton
src=$(compat_source redis)
version=$(sed -n 's/^#define REDIS_VERSION "\(.*\)"/\1/p' "$src/src/version.h")
COMPAT_NAME="redis-$version kqueue"
case $version in 7.0.*) ;; *) compat_die "not Redis 7.0: $src" ;; esac
prefix=$BATON_PREFIX

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Debian's own build flags (debian/rules): the system's jemalloc.
cp -a "$src" "$work/epoll"
cp -a "$src" "$work/kqueue"
compat_run 1800 make -C "$work/epoll/src" -j"$COMPAT_JOBS" USE_SYSTEM_JEMALLOC=yes ||
	compat_die "redis epoll build failed"
compat_run 1800 make -C "$work/kqueue/src" -j"$COMPAT_JOBS" USE_SYSTEM_JEMALLOC=yes \
	--eval "ae.o: REDIS_CFLAGS += -I. $(pkg-config --cflags baton) -include $here/redis-ae-kqueue.h" \
	--eval "redis-server redis-cli redis-benchmark: FINAL_LIBS += $(pkg-config --libs baton) -Wl,-rpath,$prefix/lib" \
	|| compat_die "redis kqueue build failed"
# the proof that the switch took: ae.o calls kevent() and not epoll
nm "$work/kqueue/src/ae.o" | grep -q ' U kevent$' || compat_die "kqueue ae.o does not call kevent"
! nm "$work/kqueue/src/ae.o" | grep -q epoll_wait || compat_die "kqueue ae.o still uses epoll"
nm "$work/epoll/src/ae.o" | grep -q epoll_wait || compat_die "epoll ae.o does not use epoll"
ldd "$work/kqueue/src/redis-server" | grep -q libbaton || compat_die "redis-server not linked to libbaton"

# A representative set: the first five units (server basics, the protocol,
# keyspace) and those that lean on the event loop: timers (expire), blocking
# commands and their timeouts (list-3... type/list), pub/sub, client output
# limits and kills (obuf-limits, introspection), MULTI, networking.
units=(unit/printver unit/dump unit/auth unit/protocol unit/keyspace unit/expire unit/multi
	unit/pubsub unit/type/list unit/introspection unit/obuf-limits unit/networking)
unit_args=()
if [ "$full" = 0 ]; then
	for u in "${units[@]}"; do unit_args+=(--single "$u"); done
fi

run_units() { # name: sets ok_NAME, err_NAME; the failed tests' names in log/failed-NAME
	local name=$1 ok err
	(cd "$work/$name" && TERM=dumb timeout 7200 ./runtest --clients 4 --timeout 600 \
		"${unit_args[@]}") >"$log/tests-$name" 2>&1 || true
	ok=$(grep -a -c '^\[ok\]' "$log/tests-$name" || true)
	grep -a -E '^\[(err|exception)\]' "$log/tests-$name" | sort -u >"$log/failed-$name" || true
	err=$(wc -l <"$log/failed-$name")
	# a suite that stopped early (crash, timeout) has failed whatever it counted
	grep -a -q -E 'All tests passed without errors|The following tests failed' \
		"$log/tests-$name" || { echo "[exception]: the suite did not finish" >>"$log/failed-$name"; err=$((err + 1)); }
	printf -v "ok_$name" '%s' "$ok"
	printf -v "err_$name" '%s' "$err"
}
run_units epoll
run_units kqueue

# redis-benchmark (the epoll build's, the same client for both servers): SET
# and GET, 50 clients; rounds alternate the servers, round 0 warms up.
bench_round() { # name pid port: prints "req/s cpu-us-per-request"
	local stat0 stat1 tck rps n=200000
	stat0=$(awk '{print $14 + $15}' "/proc/$2/stat")
	"$work/epoll/src/redis-benchmark" -p "$3" -c 50 -n "$n" -t set,get -q \
		>"$work/bench.out" 2>&1
	stat1=$(awk '{print $14 + $15}' "/proc/$2/stat")
	tck=$(getconf CLK_TCK)
	rps=$(tr '\r' '\n' <"$work/bench.out" |
		awk '/requests per second/ {s += $2; k++} END {printf "%.0f", k ? s / k : 0}')
	awk -v d=$((stat1 - stat0)) -v t="$tck" -v n=$((2 * n)) -v r="$rps" \
		'BEGIN {printf "%s %.2f\n", r, d / t / n * 1e6}'
}
declare -A pid port
for name in epoll kqueue; do
	port[$name]=$(free_port)
	"$work/$name/src/redis-server" --port "${port[$name]}" --save '' --appendonly no \
		--dir "$work" --logfile "$log/server-$name.log" &
	pid[$name]=$!
	servers+=("${pid[$name]}")
done
for name in epoll kqueue; do
	for _ in $(seq 50); do
		"$work/epoll/src/redis-cli" -p "${port[$name]}" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
done
rr=() cr=()
for round in 0 1 2 3; do
	for name in epoll kqueue; do
		read -r "rps_$name" "cpu_$name" < <(bench_round "$name" "${pid[$name]}" "${port[$name]}")
	done
	[ "$round" = 0 ] && continue
	rr+=("$(awk -v k="$rps_kqueue" -v e="$rps_epoll" 'BEGIN {printf "%.3f", (e > 0 ? k / e : 0)}')")
	cr+=("$(awk -v k="$cpu_kqueue" -v e="$cpu_epoll" 'BEGIN {printf "%.3f", (e > 0 ? k / e : 0)}')")
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

set_name="representative units (${#units[@]})"
[ "$full" = 1 ] && set_name="full suite"
# PASS: every test that passes on epoll passes on kqueue (Debian's patches make a
# few upstream tests fail on both builds; those are named, not hidden).
only_kq=$(comm -23 "$log/failed-kqueue" "$log/failed-epoll" | wc -l)
both=$(comm -12 "$log/failed-kqueue" "$log/failed-epoll" | sed 's/^\[[a-z]*\]: //; s/ in tests.*//' |
	paste -sd ';' -)
verdict=PASS
[ "$only_kq" = 0 ] || verdict=FAIL
comm -23 "$log/failed-kqueue" "$log/failed-epoll" | sed 's/^/redis kqueue only: /' >&2
line="$set_name ${ok_kqueue} ok, ${err_kqueue} failed (epoll ${ok_epoll} ok, ${err_epoll} failed"
line+="${both:+; on both: $both}); redis-benchmark SET+GET c=50 x3: kqueue $(median "${rr[@]}")x"
line+=" epoll req/s, server CPU/request $(median "${cr[@]}")x epoll"
line+=" (last round ${cpu_kqueue} vs ${cpu_epoll} us)"
compat_result "$verdict" "$line"
