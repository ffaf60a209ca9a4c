#!/usr/bin/env bash
# libev 4.33 (Debian's source package, unchanged) with its shared library
# built against `pkg-config baton`, and our test program libev_watchers.c
# linked the usual way (-lev only: its close() binds to libc's, so closes
# libbaton does not see are part of the test).  io, timer, periodic, signal,
# child, async, stat and fork watchers and fd reuse must behave on
# EVBACKEND_KQUEUE as on EVBACKEND_EPOLL.
#   tests/compat/libev.sh           prints one result line, exit 1 on failure
# compat: quick
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"

compat_init libev-4.33
compat_debsrc
compat_build_deps libev autoconf automake libtool pkg-config cmake gcc make
compat_baton
src=$(compat_source libev)
cd "$src"

prefix=$COMPAT_DIR/libev
compat_run 600 ./configure --prefix="$prefix" CPPFLAGS="$(pkg-config --cflags baton)" \
	LIBS="$(pkg-config --libs baton)" LDFLAGS="-Wl,-rpath,$BATON_LIBDIR" ||
	compat_die "configure failed"
grep -q '^#define HAVE_KQUEUE 1' config.h || compat_die "configure found no kqueue in libbaton"
compat_run 900 make -j"$COMPAT_JOBS" || compat_die "make failed"
compat_run 300 make install || compat_die "make install failed"
readelf -d "$prefix/lib/libev.so" | grep -q 'NEEDED.*libbaton' ||
	compat_die "libev.so is not linked against libbaton"

prog=$COMPAT_DIR/libev_watchers
compat_run 120 cc -O2 -fno-strict-aliasing -o "$prog" "$here/libev_watchers.c" \
	-I"$prefix/include" -L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -lev ||
	compat_die "libev_watchers did not build"
# linked the usual way: libev and libc, libbaton only through libev
if readelf -d "$prog" | grep -q 'NEEDED.*libbaton'; then
	compat_die "libev_watchers links libbaton itself"
fi

ep=$(timeout -k 10 180 "$prog" epoll 2>>"$COMPAT_LOG") || true
kq=$(timeout -k 10 180 "$prog" kqueue 2>>"$COMPAT_LOG") || kq_rc=$?
echo "$ep" >>"$COMPAT_LOG"
echo "$kq" >>"$COMPAT_LOG"
if [ "${kq_rc:-0}" -eq 0 ] && [ -n "$kq" ]; then
	compat_result PASS "${kq#libev_watchers } (${ep#libev_watchers })"
fi
compat_die "${kq:-libev_watchers kqueue: no result (exit ${kq_rc:-?})} (${ep#libev_watchers })"
