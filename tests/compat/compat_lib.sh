# Helpers for the drop-in scripts of tests/compat/ (sourced, not run).
# Everything they fetch or build goes to the temp dir the caller names.

compat_die() {
	echo "compat: $*" >&2
	exit 1
}

compat_need() { # command...
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || compat_die "$c not found"
	done
}

# Installs the Debian packages that are missing (as root; otherwise says which).
compat_pkgs() { # package...
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} = 0 ] && return 0
	[ "$(id -u)" = 0 ] || compat_die "missing packages: ${missing[*]} (apt-get install them)"
	apt-get update -qq >/dev/null 2>&1 || true
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
		compat_die "apt-get install ${missing[*]} failed"
}

# apt-get source needs a deb-src entry beside each deb one: adds it when none is there.
compat_debsrc() {
	if grep -rqs -E '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 0
	fi
	[ "$(id -u)" = 0 ] || compat_die "no deb-src in the apt sources (add one, or run as root)"
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && grep -q 'debian' "$f" || continue
		sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
	done
	if [ -f /etc/apt/sources.list ]; then
		sed -i -n 'p; s/^deb \(.*debian.*\)/deb-src \1/p' /etc/apt/sources.list
	fi
	apt-get update -qq >/dev/null 2>&1 || compat_die "apt-get update failed"
}

# Fetches Debian's source package of the upstream version asked for into dir and
# prints the unpacked tree's path.  Tries each Debian revision of that version,
# newest first: a mirror may list a revision whose files it no longer has.
compat_source() { # package upstream-version dir
	local pkg=$1 up=$2 dir=$3 v tree
	compat_debsrc
	for v in $(apt-cache showsrc "$pkg" | sed -n 's/^Version: //p' | sort -u -r -V); do
		case ${v#*:} in "$up"-* | "$up".*-*) ;; *) continue ;; esac
		rm -rf "$dir/src-$pkg" && mkdir -p "$dir/src-$pkg"
		if (cd "$dir/src-$pkg" && apt-get source -qq "$pkg=$v") >"$dir/src-$pkg.log" 2>&1; then
			tree=$(find "$dir/src-$pkg" -mindepth 1 -maxdepth 1 -type d | head -n1)
			[ -n "$tree" ] && { echo "$tree"; return 0; }
		fi
	done
	compat_die "apt-get source $pkg ($up) failed (see $dir/src-$pkg.log)"
}

# Builds libbaton (Release) from the checkout into dir/baton; prints the prefix.
compat_build_baton() { # repo dir
	local b="$2/baton-build" p="$2/baton"
	{ cmake -S "$1" -B "$b" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_LIBDIR=lib &&
		cmake --build "$b" -j2 && cmake --install "$b" --prefix "$p"; } >"$2/baton-build.log" 2>&1 ||
		compat_die "libbaton build failed (see $2/baton-build.log)"
	echo "$p"
}

compat_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

compat_wait_file() { # path: up to 5 s
	local i
	for i in $(seq 50); do
		[ -s "$1" ] && return 0
		sleep 0.1
	done
	compat_die "$1 did not appear"
}
