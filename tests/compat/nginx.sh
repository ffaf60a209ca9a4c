#!/usr/bin/env bash
# Drop-in proof: Debian's nginx 1.22.1 source, unchanged, built twice in a temp
# dir — once as usual (epoll) and once against `pkg-config baton` so that its
# own ngx_kqueue_module is compiled in — then the same functional checks
# (tests/compat/http_checks.py) against `use epoll;` and `use kqueue;`, and a
# short wrk comparison.  Prints one result line; exits non-zero when a check
# fails on the kqueue build (or on the epoll one: then the checks are wrong).
#   tests/compat/nginx.sh [--quick]
#     --quick  functional checks only, no wrk (what CI runs; also COMPAT_QUICK=1);
#              without it, also system calls per request of each build (strace -c)
# COMPAT_KEEP=1 leaves the temp dir for a look.
# compat: quick
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
quick=${COMPAT_QUICK:-0}
for a in "$@"; do
	case $a in
	--quick) quick=1 ;;
	*) echo "usage: $0 [--quick]" >&2; exit 2 ;;
	esac
done
# shellcheck source=tests/compat/common.sh
. "$here/common.sh"

compat_init nginx
COMPAT_NAME="nginx-1.22.1 kqueue"
work=$COMPAT_DIR
chmod 755 "$work" # nginx's workers run as nobody when the master is root
masters=()
cleanup() {
	local m
	for m in "${masters[@]}"; do kill -QUIT "$m" 2>/dev/null || true; done
	[ "${COMPAT_KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
log="$work/logs"
mkdir -p "$log"

compat_debsrc
deps=(curl wrk python3 procps)
[ "$quick" = 1 ] || deps+=(strace)
compat_build_deps nginx "${deps[@]}"
compat_baton
src=$(compat_source nginx)
grep -q 'NGINX_VERSION *"1.22.1"' "$src/src/core/nginx.h" || compat_die "not nginx 1.22.1: $src"
prefix=$BATON_PREFIX

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# nginx's Linux configuration assumes epoll: the kqueue build needs the header
# included everywhere, NGX_EXCLUSIVE_EVENT (defined only for epoll), and the
# feature macros nginx's Linux config sets itself.  Build flags, no source edit.
common_opts=(--with-threads --without-http_rewrite_module --without-http_gzip_module)
build_nginx() { # name cc-opt ld-opt
	local name=$1
	(cd "$src" && compat_run 600 ./configure --builddir="$work/$name" \
		--prefix="$work/run-$name" "${common_opts[@]}" --with-cc-opt="$2" --with-ld-opt="$3" &&
		compat_run 1200 make -j"$COMPAT_JOBS" -f "$work/$name/Makefile") ||
		compat_die "nginx $name build failed"
}
build_nginx epoll "-O2" ""
build_nginx kqueue "$(pkg-config --cflags baton) -include sys/event.h -DNGX_EXCLUSIVE_EVENT=0 \
-D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -O2" "$(pkg-config --libs baton) -Wl,-rpath,$prefix/lib"
grep -q '^#define NGX_HAVE_KQUEUE  1' "$work/kqueue/ngx_auto_config.h" ||
	compat_die "configure did not find kqueue in libbaton"
ldd "$work/kqueue/nginx" | grep -q libbaton || compat_die "kqueue nginx not linked to libbaton"

# The documents the checks fetch.
root="$work/root"
mkdir -p "$root/aio" "$root/aio-read" "$root/ofc"
printf 'hello from nginx over %s\n' "the network" >"$root/small.txt"
head -c 1024 /dev/urandom >"$root/1k.bin"
head -c $((4 << 20)) /dev/urandom >"$root/4m.bin"
head -c $((48 << 20)) /dev/urandom >"$root/big.bin"
for d in aio aio-read; do ln "$root/big.bin" "$root/4m.bin" "$root/$d/"; done

write_conf() { # name port workers
	local dir="$work/run-$1"
	mkdir -p "$dir/logs" "$dir/conf"
	sed -e "s|@USE@|$1|; s|@PORT@|$2|; s|@ROOT@|$root|; s|@WORKERS@|$3|" \
		"$here/nginx.conf.in" >"$dir/conf/nginx.conf"
}

start_nginx() { # name
	local dir="$work/run-$1"
	rm -f "$dir/logs/error.log"
	"$work/$1/nginx" -p "$dir" -c conf/nginx.conf || compat_die "nginx $1 did not start"
	for _ in $(seq 50); do
		[ -s "$dir/logs/nginx.pid" ] && break
		sleep 0.1
	done
	masters+=("$(cat "$dir/logs/nginx.pid")")
}

stop_nginx() { # name: graceful quit, true when the master left within 10 s
	local dir="$work/run-$1" pid
	pid=$(cat "$dir/logs/nginx.pid")
	kill -QUIT "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	return 1
}

# Runs the checks on one build; sets res_NAME to "passed/run".
run_checks() { # name skip...
	local name=$1 port dir rc=0 skips=()
	shift
	for s in "$@"; do skips+=(--skip "$s"); done
	port=$(free_port)
	dir="$work/run-$name"
	write_conf "$name" "$port" 2
	start_nginx "$name"
	python3 "$here/http_checks.py" --port "$port" --root "$root" \
		--pidfile "$dir/logs/nginx.pid" --errlog "$dir/logs/error.log" "${skips[@]}" \
		>"$log/checks-$name" 2>&1 || rc=1
	local quit=1
	stop_nginx "$name" || quit=0
	local p r
	p=$(sed -n 's/^checks: \([0-9]*\)\/.*/\1/p' "$log/checks-$name")
	r=$(sed -n 's/^checks: [0-9]*\/\([0-9]*\)/\1/p' "$log/checks-$name")
	[ "$quit" = 1 ] || echo "FAIL graceful-quit: master still there after 10 s" >>"$log/checks-$name"
	p=$((${p:-0} + quit)) r=$((${r:-0} + 1))
	printf -v "res_$name" '%s/%s' "$p" "$r" # res_epoll, res_kqueue
	grep FAIL "$log/checks-$name" | sed "s/^/nginx $name: /" >&2 || true
	[ "$rc" = 0 ] && [ "$quit" = 1 ]
}

ok=1
# EVFILT_VNODE behind open_file_cache_events exists only for kqueue: the epoll
# build skips that check (nginx silently falls back to periodic rechecks).
run_checks epoll open-file-cache-events || ok=0
run_checks kqueue || ok=0

bench=""
if [ "$quick" = 0 ]; then
	# One worker each, wrk in one thread: on two cores the pair gets one core each.
	# Rounds alternate the builds; the ratio is the median of per-round ratios.
	ratios=()
	for name in epoll kqueue; do
		port=$(free_port)
		eval "port_$name=$port"
		write_conf "$name" "$port" 1
		start_nginx "$name"
	done
	for round in 0 1 2 3; do
		for name in epoll kqueue; do
			eval "port=\$port_$name"
			wrk -t1 -c50 -d5s "http://127.0.0.1:$port/1k.bin" >"$log/wrk-$name-$round" 2>&1
			eval "rps_$name=$(awk '/^Requests\/sec/ {print $2}' "$log/wrk-$name-$round")"
		done
		# round 0 warms up and is discarded
		[ "$round" = 0 ] && continue
		ratios+=("$(awk -v k="${rps_kqueue:-0}" -v e="${rps_epoll:-0}" \
			'BEGIN {printf "%.3f", (e > 0 ? k / e : 0)}')")
	done
	# System calls per request of each worker (strace -c on all its threads),
	# keep-alive and Connection: close: what the kqueue build costs the kernel
	# on top of epoll's (counts, not time: strace slows both alike).
	sys=""
	for mode in keepalive close; do
		hdr=()
		[ "$mode" = close ] && hdr=(-H "Connection: close")
		for name in epoll kqueue; do
			eval "port=\$port_$name"
			wpid=$(pgrep -P "$(cat "$work/run-$name/logs/nginx.pid")" | head -1)
			strace -c -f -p "$wpid" -o "$log/strace-$name-$mode" 2>/dev/null &
			spid=$!
			sleep 0.5
			wrk -t1 -c20 -d3s "${hdr[@]}" "http://127.0.0.1:$port/1k.bin" >"$log/wrk-sys-$name-$mode" 2>&1
			sleep 0.2
			kill -INT "$spid" 2>/dev/null || true
			wait "$spid" 2>/dev/null || true
			n=$(awk '/requests in/ {print $1}' "$log/wrk-sys-$name-$mode")
			eval "sys_$name=$(awk -v r="${n:-0}" '$NF == "total" && r > 0 {printf "%.2f", $4 / r}' \
				"$log/strace-$name-$mode" 2>/dev/null)"
		done
		sys+="; syscalls/request $mode: kqueue ${sys_kqueue:-?} vs epoll ${sys_epoll:-?}"
	done
	stop_nginx epoll || true
	stop_nginx kqueue || true
	ratio=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)
	bench="; wrk 1KiB c=50 5s x3: kqueue ${ratio}x epoll (${rps_kqueue%.*} vs ${rps_epoll%.*} req/s last round)$sys"
fi

verdict=PASS
[ "$ok" = 1 ] || verdict=FAIL
compat_result "$verdict" \
	"${res_kqueue} checks (epoll ${res_epoll}, open_file_cache_events kqueue-only)$bench"
