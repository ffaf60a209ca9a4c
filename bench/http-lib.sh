# Shell functions shared by bench/http-bench (B5–B8) and tests/load/run.sh:
# a generated docroot, baton-httpd, nginx and lighttpd started from a temporary prefix,
# and /proc readings of a server (its processes: nginx's master and workers).
# Source it; it needs $HTTP_TMP (a private temporary directory).

# http_docroot DIR: the files every server serves (random bytes, so a
# byte-for-byte check means something): 1k.bin, 8k.bin, 1m.bin.
http_docroot() {
	mkdir -p "$1"
	head -c 1024 /dev/urandom >"$1/1k.bin"
	head -c 8192 /dev/urandom >"$1/8k.bin"
	head -c 1048576 /dev/urandom >"$1/1m.bin"
	chmod 755 "$1"
	chmod 644 "$1"/*.bin
}

# http_free_port: a TCP port nobody listens on (random in 20000-29999).
http_free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 10000))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# http_wait_port PORT [SECONDS]: wait until something listens on PORT.
http_wait_port() {
	local i
	for ((i = 0; i < ${2:-10} * 20; i++)); do
		ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# http_nginx_conf NAME WORKERS PORT DOCROOT [UPSTREAM_PORT]: writes
# $HTTP_TMP/NAME/nginx.conf.  Static files (sendfile on, access log off,
# keep-alive requests without limit) or, with UPSTREAM_PORT, proxy_pass to it
# with an upstream keep-alive pool.  Timeouts (seconds): $HTTP_IDLE for
# keep-alive (default 120), $HTTP_HEADER for a request head (default: the same).  Under $HTTP_PRLIMIT
# the workers keep the limit they are given (no worker_rlimit_nofile).
http_nginx_conf() {
	local name=$1 workers=$2 port=$3 root=$4 up=${5:-} d=$HTTP_TMP/$1 idle=${HTTP_IDLE:-120}
	local loc
	mkdir -p "$d/tmp"
	if [ -n "$up" ]; then
		loc="location / { proxy_pass http://upstream_$name; proxy_http_version 1.1;
			proxy_set_header Connection \"\"; proxy_buffering on; }"
	else
		loc="location / { root $root; }"
	fi
	cat >"$d/nginx.conf" <<EOF
user root;
worker_processes $workers;
$([ -z "${HTTP_PRLIMIT:-}" ] && echo "worker_rlimit_nofile 20000;")
pid $d/nginx.pid;
error_log $d/error.log;
daemon off;
events { worker_connections 20000; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000000;
	keepalive_timeout ${idle}s;
	client_header_timeout ${HTTP_HEADER:-$idle}s;
	default_type application/octet-stream;
	client_body_temp_path $d/tmp/body;
	proxy_temp_path $d/tmp/proxy;
	fastcgi_temp_path $d/tmp/fastcgi;
	uwsgi_temp_path $d/tmp/uwsgi;
	scgi_temp_path $d/tmp/scgi;
	$([ -n "$up" ] && echo "upstream upstream_$name { server 127.0.0.1:$up; keepalive 256; }")
	server {
		listen 127.0.0.1:$port backlog=4096;
		$loc
	}
}
EOF
}

# http_start_nginx NAME WORKERS PORT DOCROOT [UPSTREAM_PORT]: starts nginx in
# the foreground (its master is our child); prints the master's pid.
# $HTTP_PRLIMIT (e.g. "--nofile=300:300") runs it under prlimit.
http_start_nginx() {
	http_nginx_conf "$@" || return 1
	local d=$HTTP_TMP/$1
	# shellcheck disable=SC2086
	${HTTP_PRLIMIT:+prlimit $HTTP_PRLIMIT} nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
		</dev/null >"$d/stdout" 2>&1 &
	local pid=$!
	if ! http_wait_port "$3" 10; then
		echo "nginx $1 did not start:" >&2
		cat "$d/error.log" "$d/stdout" >&2 2>/dev/null
		kill "$pid" 2>/dev/null
		return 1
	fi
	echo "$pid"
}

# http_start_baton NAME THREADS PORT DOCROOT [UPSTREAM_PORT]: starts
# $BATON_HTTPD; waits for its "serving" line; prints its pid.
http_start_baton() {
	local name=$1 threads=$2 port=$3 root=$4 up=${5:-} d=$HTTP_TMP/$1 idle=${HTTP_IDLE:-120}
	local args=(-p "$port" -b 127.0.0.1 -r "$root" -t "$threads" --access-log off
		--idle-timeout "$idle" --header-timeout "${HTTP_HEADER:-$idle}" --max-conns 19000)
	[ -n "$up" ] && args+=(--proxy "/=127.0.0.1:$up")
	mkdir -p "$d"
	# shellcheck disable=SC2086
	${HTTP_PRLIMIT:+prlimit $HTTP_PRLIMIT} env BATON_URING_WAIT="${HTTP_BATON_WAIT:-0}" \
		"$BATON_HTTPD" "${args[@]}" </dev/null \
		>"$d/stdout" 2>"$d/stderr" &
	local pid=$! i
	for ((i = 0; i < 200; i++)); do
		grep -q '^baton-httpd: serving' "$d/stdout" 2>/dev/null && { echo "$pid"; return 0; }
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "baton-httpd $name did not start (${args[*]}):" >&2
	cat "$d/stdout" "$d/stderr" >&2 2>/dev/null
	kill "$pid" 2>/dev/null
	return 1
}

# http_start_lighttpd NAME WORKERS PORT DOCROOT: lighttpd for static files
# only (a B5 peer): WORKERS processes (server.max-worker; 1: the master
# serves), sendfile, no access log (mod_accesslog not loaded), keep-alive
# requests up to lighttpd's maximum, the same idle and head timeouts as the
# others; -D keeps the master our child (in a session of its own); prints
# its pid.
http_start_lighttpd() {
	local name=$1 workers=$2 port=$3 root=$4 d=$HTTP_TMP/$1 idle=${HTTP_IDLE:-120} mw=0
	[ "$workers" -gt 1 ] && mw=$workers
	mkdir -p "$d"
	printf '%s\n' \
		"server.document-root = \"$root\"" \
		'server.bind = "127.0.0.1"' \
		"server.port = $port" \
		"server.pid-file = \"$d/lighttpd.pid\"" \
		"server.errorlog = \"$d/error.log\"" \
		"server.max-worker = $mw" \
		'server.network-backend = "sendfile"' \
		'server.max-fds = 20000' \
		'server.max-connections = 19000' \
		'server.listen-backlog = 4096' \
		'server.max-keep-alive-requests = 65535' \
		"server.max-keep-alive-idle = $idle" \
		"server.max-read-idle = ${HTTP_HEADER:-$idle}" \
		'mimetype.assign = ( "" => "application/octet-stream" )' >"$d/lighttpd.conf"
	# setsid: lighttpd's master passes a stop signal on with kill(0, ...),
	# to its whole process group, which would otherwise be ours (it killed
	# the benchmark scripts); not a group leader here, setsid execs in place
	# shellcheck disable=SC2086
	${HTTP_PRLIMIT:+prlimit $HTTP_PRLIMIT} setsid lighttpd -D -f "$d/lighttpd.conf" \
		</dev/null >"$d/stdout" 2>&1 &
	local pid=$!
	if ! http_wait_port "$port" 10; then
		echo "lighttpd $name did not start:" >&2
		cat "$d/error.log" "$d/stdout" >&2 2>/dev/null
		kill "$pid" 2>/dev/null
		return 1
	fi
	echo "$pid"
}

# http_start IMPL NAME THREADS PORT DOCROOT [UPSTREAM_PORT]; IMPL = baton | nginx | lighttpd
http_start() {
	local impl=$1
	shift
	case $impl in
	baton) HTTP_BATON_WAIT=0 http_start_baton "$@" ;;
	baton_uring) HTTP_BATON_WAIT=1 http_start_baton "$@" ;;
	nginx) http_start_nginx "$@" ;;
	lighttpd) http_start_lighttpd "$@" ;;
	*) echo "http_start: unknown server $impl" >&2; return 1 ;;
	esac
}

# http_stop PID: SIGTERM, then SIGKILL after 5 s; reaps it.
http_stop() {
	local i
	kill -TERM "$1" 2>/dev/null || return 0
	for ((i = 0; i < 100; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# http_pids PID: the server's processes (PID and its children: nginx workers).
http_pids() {
	echo "$1"
	pgrep -P "$1" 2>/dev/null
}

# http_rss PID: VmRSS in bytes, summed over the server's processes.
http_rss() {
	local p s=0 kb
	for p in $(http_pids "$1"); do
		kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		s=$((s + ${kb:-0}))
	done
	echo $((s * 1024))
}

# http_cpu_ticks PID: utime + stime in clock ticks, summed over the processes.
http_cpu_ticks() {
	local p s=0 t
	for p in $(http_pids "$1"); do
		# fields after the ")" of comm: state is $1, utime $12, stime $13
		t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
		s=$((s + ${t:-0}))
	done
	echo "$s"
}

# http_fds PID: open fds, summed over the server's processes.
http_fds() {
	local p s=0 n
	for p in $(http_pids "$1"); do
		n=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		s=$((s + n))
	done
	echo "$s"
}

# http_ring_fds PID: how many of those fds are io_uring instances (libbaton
# makes one per thread that waits in a ring, lazily, and keeps it)
http_ring_fds() {
	local p s=0 n
	for p in $(http_pids "$1"); do
		n=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 -lname 'anon_inode:*io_uring*' 2>/dev/null | wc -l)
		s=$((s + n))
	done
	echo "$s"
}

# http_threads PID: threads, summed over the server's processes.
http_threads() {
	local p s=0 n
	for p in $(http_pids "$1"); do
		n=$(awk '/^Threads:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
		s=$((s + ${n:-0}))
	done
	echo "$s"
}
