#!/usr/bin/env bash
# Builds the HTTP parser fuzzer with clang (libFuzzer, ASan, UBSan) and runs
# it for a bounded time from a seed corpus: CI runs it for ~60 s.
#   httpd/tests/fuzz.sh [seconds]     (default 60)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed" >&2; exit 1; }
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DBATON_FUZZ=ON -DBATON_BUILD_TESTS=OFF \
  -DBATON_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/fuzz -j"$(nproc)" --target httpd_fuzz_parse
corpus=build/fuzz/corpus
mkdir -p "$corpus"
printf 'GET / HTTP/1.1\r\nHost: a\r\n\r\n' >"$corpus/get"
printf 'GET /a/../b%%2e%%2e/c?x HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1,-5\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n' >"$corpus/range"
printf 'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' >"$corpus/chunked"
printf 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc' >"$corpus/response"
printf '5;x=y\r\nhello\r\n0\r\nTrailer: v\r\n\r\n' >"$corpus/chunks"
exec build/fuzz/httpd/httpd_fuzz_parse -max_total_time="$secs" -max_len=4096 \
  -print_final_stats=1 "$corpus"
