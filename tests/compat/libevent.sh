#!/usr/bin/env bash
# libevent 2.1.12 (Debian's source package, unchanged) built against
# `pkg-config baton`: its regression suite with only the kqueue backend
# allowed must pass every test that passes on its epoll backend (same build,
# EVENT_NOKQUEUE).  Each test runs on its own (tinytest forks it) with a
# timeout, so a hang costs one test, not the run.
#   tests/compat/libevent.sh        prints one result line, exit 1 on failure
# COMPAT_KEEP=1 keeps the work directory (the per-test logs are in it).
# compat: quick
set -euo pipefail
. "$(dirname "$0")/common.sh"

compat_init libevent-2.1.12
COMPAT_NAME="libevent-2.1.12 kqueue" # the result line names the backend
compat_debsrc
compat_build_deps libevent autoconf automake libtool pkg-config cmake gcc make
compat_baton
src=$(compat_source libevent)
cd "$src"

cflags=$(pkg-config --cflags baton)
libs=$(pkg-config --libs baton)
compat_run 600 autoreconf -fi || compat_die "autoreconf failed"
compat_run 600 ./configure --disable-samples --disable-doxygen-doc \
	CPPFLAGS="$cflags" LIBS="$libs" LDFLAGS="-Wl,-rpath,$BATON_LIBDIR" ||
	compat_die "configure failed"
grep -q '^#define HAVE_WORKING_KQUEUE 1' config.h ||
	compat_die "configure found no working kqueue in libbaton"
compat_run 900 make -j"$COMPAT_JOBS" || compat_die "make failed"
compat_run 900 make -j"$COMPAT_JOBS" test/regress || compat_die "make test/regress failed"

kq_env=(EVENT_NOEPOLL=1 EVENT_NOPOLL=1 EVENT_NOSELECT=1 EVENT_NODEVPOLL=1 EVENT_NOEVPORT=1)
ep_env=(EVENT_NOKQUEUE=1 EVENT_NOPOLL=1 EVENT_NOSELECT=1 EVENT_NODEVPOLL=1 EVENT_NOEVPORT=1)

# event_base_get_method() with the kqueue environment must say kqueue.
cat >"$COMPAT_DIR/method.c" <<'C'
#include <event2/event.h>
#include <stdio.h>
int main(void)
{
	struct event_base *b = event_base_new();
	puts(b ? event_base_get_method(b) : "none");
	return 0;
}
C
compat_run 120 cc -o "$COMPAT_DIR/method" "$COMPAT_DIR/method.c" -Iinclude \
	.libs/libevent_core.so -Wl,-rpath,"$src/.libs" || compat_die "method probe did not build"
method=$(env "${kq_env[@]}" "$COMPAT_DIR/method")
[ "$method" = kqueue ] || compat_die "event_base_get_method() says $method, not kqueue"

# Every test that is on by default.
mapfile -t tests < <(test/regress --list-tests | awk 'NF == 1 && $1 ~ /\// {print $1}')
[ ${#tests[@]} -gt 300 ] || compat_die "only ${#tests[@]} tests listed"

# run_all NAME ENV...: one line "test pass|fail|skip time" per test in $COMPAT_DIR/NAME
run_all() {
	local name=$1 t out rc
	shift
	mkdir -p "$COMPAT_DIR/$name.logs"
	: >"$COMPAT_DIR/$name"
	for t in "${tests[@]}"; do
		out=$COMPAT_DIR/$name.logs/${t//\//_}
		start=$(date +%s%N)
		# A failure is tried twice more: timing tests (a 200 ms timer
		# allowed 50 ms late) fail on a loaded machine, on either backend.
		# A hang (timeout) is not tried again.
		for try in 1 2 3; do
			rc=0
			env "$@" timeout -k 5 60 test/regress --timeout 50 "$t" >"$out" 2>&1 || rc=$?
			[ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $rc -eq 137 ] && break
			grep -q '^ *\[.* FAILED\]' "$out" || break
			echo "$t $name try $try failed" >>"$COMPAT_DIR/retries"
		done
		ms=$((($(date +%s%N) - start) / 1000000))
		if [ $rc -ne 0 ]; then
			echo "$t fail ${ms}ms" >>"$COMPAT_DIR/$name"
		elif grep -q SKIPPED "$out"; then
			echo "$t skip ${ms}ms" >>"$COMPAT_DIR/$name"
		else
			echo "$t pass ${ms}ms" >>"$COMPAT_DIR/$name"
		fi
	done
}

# The two backends' runs are independent (a test's own process each time,
# its own loopback ports): side by side they take half the wall time.
run_all kqueue "${kq_env[@]}" &
kq_job=$!
run_all epoll "${ep_env[@]}"
wait "$kq_job"

count() { awk -v r="$2" '$2 == r' "$COMPAT_DIR/$1" | wc -l; }
failed() { awk '$2 == "fail" {print $1}' "$COMPAT_DIR/$1" | sort; }
passed() { awk '$2 == "pass" {print $1}' "$COMPAT_DIR/$1" | sort; }
kq_pass=$(count kqueue pass) kq_fail=$(count kqueue fail)
ep_pass=$(count epoll pass) ep_fail=$(count epoll fail)
# tests that pass on epoll: how many pass on kqueue, which do not
kept=$(comm -12 <(passed epoll) <(passed kqueue) | wc -l)
only=$(comm -12 <(passed epoll) <(failed kqueue) | paste -sd, -)
both=$(comm -12 <(failed kqueue) <(failed epoll))
skipped() { awk '$2 == "skip" {print $1}' "$COMPAT_DIR/$1" | sort; }
# libevent itself skips some tests on a backend without a feature (e.g.
# EV_FEATURE_EARLY_CLOSE, which kqueue does not claim): named, not hidden.
kq_skips=$(comm -12 <(passed epoll) <(skipped kqueue))
info="kqueue $kq_pass/$((kq_pass + kq_fail)) overall; epoll baseline $ep_pass/$((ep_pass + ep_fail))"
retried=$(cut -d' ' -f1,2 "$COMPAT_DIR/retries" 2>/dev/null | sort -u | wc -l)
[ "$retried" -gt 0 ] && info+="; $retried retried after a failed assertion"
[ -n "$both" ] && info+="; $(wc -l <<<"$both") fail on both: $(paste -sd, - <<<"$both")"
[ -n "$kq_skips" ] && info+="; $(wc -l <<<"$kq_skips") skipped by libevent on kqueue: $(paste -sd, - <<<"$kq_skips")"
if [ -z "$only" ] && [ "$ep_pass" -gt 0 ]; then
	compat_result PASS "$kept/$ep_pass of epoll's passing tests ($info)"
fi
for t in ${only//,/ }; do
	echo "--- $t (kqueue):" >&2
	tail -n 15 "$COMPAT_DIR/kqueue.logs/${t//\//_}" >&2
done
compat_result FAIL "$kept/$ep_pass of epoll's passing tests ($info); fail on kqueue only: $only"
