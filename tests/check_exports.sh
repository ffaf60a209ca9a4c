#!/bin/sh
# libbaton must export the kqueue API and the close() family it interposes
# (SEMANTICS I4), nothing else.
set -eu
lib=$1
got=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWiV]$/ {print $3}' | sed 's/@.*//' | sort -u | tr '\n' ' ')
want="close close_range dup2 dup3 kevent kqueue kqueue1 kqueuex "
if [ "$got" != "$want" ]; then
  echo "exports differ: got [$got] want [$want]"
  exit 1
fi
echo "exports ok: $got"
