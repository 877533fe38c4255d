#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and runs
# each for a bounded time on a copy of its seed corpus.
#   scripts/fuzz.sh                 every target, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh pth json
# New corpus entries go to build-fuzz/corpus/<target>/ (the committed seeds in
# tests/fuzz/corpus/ stay small); crashes to build-fuzz/crashes/. Exit status
# is non-zero if any target found a problem.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
JOBS=${JOBS:-$(nproc)}
CC_FUZZ=${CC_FUZZ:-$(command -v clang-14 || command -v clang)}
[ -n "$CC_FUZZ" ] || { echo "fuzz.sh: clang not found (scripts/install-deps.sh installs it)"; exit 1; }

if [ ! -f build-fuzz/build.ninja ]; then
  CC=$CC_FUZZ meson setup build-fuzz -Dfuzzers=true -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" \
    -Dgst_plugin=disabled >/tmp/vdit-fuzz-setup.log 2>&1 \
    || { tail -20 /tmp/vdit-fuzz-setup.log; rm -rf build-fuzz; exit 1; }
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors json pth tokenizer lora options)
ninja -C build-fuzz -j "$JOBS" "${targets[@]/#/tests/fuzz/fuzz_}" >build-fuzz/ninja.log 2>&1 \
  || { tail -30 build-fuzz/ninja.log; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
status=0
mkdir -p build-fuzz/crashes
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz.sh: no target '$t'"; status=1; continue; }
  mkdir -p "build-fuzz/corpus/$t"
  echo "== fuzz_$t for ${SECONDS_EACH}s"
  "$bin" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$t-" \
    "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"build-fuzz/fuzz_$t.log" 2>&1
  rc=$?
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE" "build-fuzz/fuzz_$t.log" | tr '\n' ' '
  echo
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t: FAILED (exit $rc); see build-fuzz/fuzz_$t.log and build-fuzz/crashes/"
    grep -E "ERROR|SUMMARY|runtime error" "build-fuzz/fuzz_$t.log" | head -5
    status=1
  fi
done
exit $status
