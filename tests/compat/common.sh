# shellcheck shell=bash
# Shared by the drop-in proofs in tests/compat/: each script fetches a Debian
# source package, builds it unchanged against `pkg-config baton` (libbaton
# built and installed from this checkout) and prints one result line.
#
# Source it from a script (bash, `set -euo pipefail`) and call:
#
#   compat_init NAME      work directory $COMPAT_DIR under ${TMPDIR:-/tmp}
#                         (removed at exit unless COMPAT_KEEP=1); the log of
#                         everything below goes to $COMPAT_LOG
#   compat_debsrc         adds a deb-src entry beside each Debian deb entry
#                         when apt has none, then apt-get update
#   compat_build_deps SRCPKG [PKG...]
#                         apt-get build-dep SRCPKG, then installs PKG...;
#                         nothing when all are there already
#   compat_source SRCPKG  apt-get source into $COMPAT_DIR/src; prints the
#                         unpacked directory (Debian's patches applied); when
#                         the newest revision cannot be fetched, the next one
#   compat_baton          builds libbaton from this checkout (Release) and
#                         installs it under $COMPAT_DIR/baton; exports
#                         BATON_PREFIX, BATON_LIBDIR, PKG_CONFIG_PATH.  With
#                         BATON_PREFIX already set to an install (run-all
#                         builds one for every script) it is reused.
#   compat_run SECONDS CMD...
#                         runs CMD with a timeout, output to $COMPAT_LOG
#   compat_result PASS|FAIL TEXT
#                         prints "compat NAME: PASS|FAIL TEXT" and exits 0
#                         (PASS) or 1 (FAIL)
#   compat_die TEXT       compat_result FAIL, with the log's tail on stderr
#
# A script that CI runs (tests/compat/run-all --quick, scripts/test --compat)
# has the line "# compat: quick".  Each script prints exactly one line
# starting "compat NAME: PASS" or "compat NAME: FAIL" on stdout (details go
# to stderr) and exits non-zero on failure.
#
# Needs root for apt (the scripts run as root in CI).  Environment:
# COMPAT_KEEP=1 keeps the work directory; COMPAT_JOBS (default nproc).

compat_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
COMPAT_JOBS=${COMPAT_JOBS:-$(nproc)}

compat_init() {
	COMPAT_NAME=$1
	COMPAT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/compat-$1.XXXXXX")
	COMPAT_LOG=$COMPAT_DIR/log
	: >"$COMPAT_LOG"
	if [ "${COMPAT_KEEP:-0}" != 1 ]; then
		trap 'rm -rf "$COMPAT_DIR"' EXIT
	else
		echo "compat $COMPAT_NAME: work directory $COMPAT_DIR" >&2
	fi
	export DEBIAN_FRONTEND=noninteractive
}

compat_result() {
	echo "compat $COMPAT_NAME: $1 $2"
	if [ "$1" = PASS ]; then exit 0; fi
	exit 1
}

compat_die() {
	echo "--- last lines of $COMPAT_LOG:" >&2
	tail -n 30 "$COMPAT_LOG" >&2 || true
	compat_result FAIL "$1"
}

compat_debsrc() {
	if grep -rqsE '^(Types:.*deb-src|deb-src[[:space:]])' \
		/etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 0
	fi
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		sed -i 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb deb-src/' "$f"
	done
	if [ -f /etc/apt/sources.list ]; then
		sed -i -n 'p; s/^deb[[:space:]]\+\(.*\)/deb-src \1/p' /etc/apt/sources.list
	fi
	apt-get update -qq >>"$COMPAT_LOG" 2>&1 || compat_die "apt-get update failed"
	COMPAT_UPDATED=1
}

# apt-get update once, and only when something is to be installed.
compat_apt_update() {
	[ -n "${COMPAT_UPDATED:-}" ] && return 0
	apt-get update -qq >>"$COMPAT_LOG" 2>&1 || compat_die "apt-get update failed"
	COMPAT_UPDATED=1
}

compat_build_deps() {
	local src=$1
	shift
	local missing
	missing=$(apt-get -s build-dep "$src" 2>>"$COMPAT_LOG" | grep -c '^Inst ' || true)
	if [ "${missing:-1}" != 0 ]; then
		compat_apt_update
		apt-get build-dep -y -qq "$src" >>"$COMPAT_LOG" 2>&1 ||
			compat_die "apt-get build-dep $src failed"
	fi
	local p need=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
	done
	if [ ${#need[@]} -gt 0 ]; then
		compat_apt_update
		apt-get install -y -qq "${need[@]}" >>"$COMPAT_LOG" 2>&1 ||
			compat_die "apt-get install ${need[*]} failed"
	fi
}

compat_source() {
	local src=$1 dir=$COMPAT_DIR/src v
	mkdir -p "$dir"
	# A mirror may list a revision whose files it no longer serves (nginx's
	# newest security one answers 404 here): then the older ones, newest first.
	if ! (cd "$dir" && apt-get source -qq "$src") >>"$COMPAT_LOG" 2>&1; then
		for v in $(apt-cache showsrc "$src" | sed -n 's/^Version: //p' | sort -u -r -V) ""; do
			[ -n "$v" ] || compat_die "apt-get source $src failed"
			(cd "$dir" && apt-get source -qq "$src=$v") >>"$COMPAT_LOG" 2>&1 && break
		done
	fi
	local d
	for d in "$dir"/*/; do
		[ -d "$d/debian" ] && {
			echo "${d%/}"
			return 0
		}
	done
	compat_die "apt-get source $src: no source tree"
}

compat_baton() {
	if [ -n "${BATON_PREFIX:-}" ] && [ -f "$BATON_PREFIX/lib/pkgconfig/baton.pc" ]; then
		:
	else
		BATON_PREFIX=$COMPAT_DIR/baton
		local b=$COMPAT_DIR/baton-build
		{
			cmake -S "$compat_root" -B "$b" -DCMAKE_BUILD_TYPE=Release \
				-DBATON_BUILD_TESTS=OFF -DBATON_BUILD_EXAMPLES=OFF -DBATON_BUILD_HTTPD=OFF \
				-DCMAKE_INSTALL_LIBDIR=lib &&
				cmake --build "$b" -j"$COMPAT_JOBS" &&
				cmake --install "$b" --prefix "$BATON_PREFIX"
		} >>"$COMPAT_LOG" 2>&1 || compat_die "libbaton did not build"
	fi
	BATON_LIBDIR=$BATON_PREFIX/lib
	PKG_CONFIG_PATH=$BATON_LIBDIR/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
	export BATON_PREFIX BATON_LIBDIR PKG_CONFIG_PATH
	pkg-config --exists baton || compat_die "pkg-config baton: not found"
}

compat_run() {
	local t=$1
	shift
	timeout --kill-after=10 "$t" "$@" >>"$COMPAT_LOG" 2>&1
}
