#!/bin/sh
# libbaton must export the kqueue API and the close()/dup()/fcntl() family it
# interposes (SEMANTICS I4), and sigaction()/signal() & co. (EVFILT_SIGNAL), nothing else: each as name@@BATON_0, and each interposer
# also under libc's own version of the name (close@GLIBC_2.2.5 on x86-64),
# which is what code linked against libc alone refers to.
set -eu
lib=$1
api="kevent kqueue kqueue1 kqueuex"
hooks="close close_range closefrom dup dup2 dup3 fcntl fcntl64 sigaction signal bsd_signal sysv_signal siginterrupt sigignore sigset"
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWiV]$/ {print $3}')
got=$(echo "$syms" | sed 's/@.*//' | sort -u | tr '\n' ' ')
want="bsd_signal close close_range closefrom dup dup2 dup3 fcntl fcntl64 kevent kqueue kqueue1 kqueuex sigaction sigignore siginterrupt signal sigset sysv_signal "
if [ "$got" != "$want" ]; then
  echo "exports differ: got [$got] want [$want]"
  exit 1
fi
for f in $api $hooks; do
  if ! echo "$syms" | grep -qx "$f@@BATON_0"; then
    echo "$f is not exported as $f@@BATON_0"
    exit 1
  fi
done
for f in $api; do
  if [ "$(echo "$syms" | grep -c "^$f@")" != 1 ]; then
    echo "$f is exported under more than BATON_0"
    exit 1
  fi
done
for f in $hooks; do
  if ! echo "$syms" | grep -q "^$f@GLIBC_"; then
    echo "$f is not exported under libc's version: code linked against libc alone misses it"
    exit 1
  fi
done
echo "exports ok: $got"
