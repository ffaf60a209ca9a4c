#!/bin/sh
# cmake --install puts a usable kqueue on the system: a program written for
# FreeBSD builds unchanged with $(pkg-config --cflags --libs baton), shared and
# static, and runs.
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/baton/sys/event.h"
libdir=$(ls -d "$prefix"/lib*/ | head -n1)
ls "$libdir"libbaton.so.0* >/dev/null
test -f "${libdir}libbaton.a"
objdump -p "${libdir}libbaton.so" | grep -q 'SONAME.*libbaton.so.0'
cat > "$prefix/app.c" <<'C'
#include <sys/types.h>
#include <sys/event.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	int kq = kqueue(), p[2];
	struct kevent ev;
	if (kq < 0 || pipe(p) < 0)
		return 1;
	EV_SET(&ev, p[0], EVFILT_READ, EV_ADD, 0, 0, NULL);
	if (kevent(kq, &ev, 1, NULL, 0, NULL) < 0 || write(p[1], "hi", 2) != 2)
		return 1;
	if (kevent(kq, NULL, 0, &ev, 1, NULL) != 1 || ev.data != 2)
		return 1;
	puts("ok");
	return 0;
}
C
export PKG_CONFIG_PATH="${libdir}pkgconfig"
cc -o "$prefix/app" "$prefix/app.c" $(pkg-config --cflags --libs baton)
LD_LIBRARY_PATH="$libdir" "$prefix/app"
cc -o "$prefix/app_static" "$prefix/app.c" $(pkg-config --cflags baton) "${libdir}libbaton.a" -lpthread
"$prefix/app_static"
echo "install ok"
