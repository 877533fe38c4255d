#!/usr/bin/env bash
# Installs dependencies, builds vdit and runs the whole test suite twice:
# a release build (every suite) and an AddressSanitizer + UndefinedBehavior-
# Sanitizer build (the 'unit' and 'conform' suites, the GStreamer harness included;
# any report fails); then
# the concurrency test under ThreadSanitizer.
# Ends with the line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."

# Each phase's wall time, printed at the end (CI has 90 minutes for all).
timings=()
t0=$(date +%s)
phase_done() { local now; now=$(date +%s); timings+=("$1 $((now - t0))s"); t0=$now; }

bash scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }
phase_done install-deps

JOBS=${JOBS:-$(nproc)}
status=0
logs=()

setup() { # dir, extra args...
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

echo "== release build (build/)"
if setup build && ninja -C build -j "$JOBS" >build-ninja.log 2>&1; then
  phase_done release-build
  meson test -C build --num-processes "$JOBS" --print-errorlogs --no-suite open ${VDIT_TEST_ARGS:-} || status=1
  logs+=(build/meson-logs/testlog.json)
  phase_done release-tests
else
  tail -50 build-ninja.log; echo "release build failed"; status=1
fi

if [ "${VDIT_NO_SANITIZE:-0}" != 1 ]; then
  echo "== sanitizer build (build-san/)"
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
  # Leak reports from inside third-party libraries only (see the file).
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
  if setup build-san -Db_sanitize=address,undefined -Dbuildtype=debugoptimized \
       -Dc_args=-fno-sanitize-recover=undefined \
     && ninja -C build-san -j "$JOBS" >build-san-ninja.log 2>&1; then
    phase_done sanitizer-build
    meson test -C build-san --num-processes "$JOBS" --print-errorlogs --suite unit --suite conform \
      --timeout-multiplier 4 || status=1
    logs+=(build-san/meson-logs/testlog.json)
    phase_done sanitizer-tests
  else
    tail -50 build-san-ninja.log; echo "sanitizer build failed"; status=1
  fi
fi

if [ "${VDIT_NO_SANITIZE:-0}" != 1 ]; then
  # ThreadSanitizer on the concurrency test (one model, four contexts on four
  # threads, cancel from another thread). Its contexts run one OpenMP thread
  # each, so the only threads are the test's own (libgomp is not
  # instrumented, and needs no suppression this way).
  echo "== thread sanitizer (build-tsan/: pipeline_concurrency)"
  export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
  if setup build-tsan -Db_sanitize=thread -Dbuildtype=debugoptimized -Dgst_plugin=disabled \
     && ninja -C build-tsan -j "$JOBS" tests/pipeline/test_concurrency tests/pipeline/tiny_model \
          >build-tsan-ninja.log 2>&1; then
    meson test -C build-tsan --no-rebuild --print-errorlogs pipeline_concurrency \
      --timeout-multiplier 4 || status=1
    logs+=(build-tsan/meson-logs/testlog.json)
    phase_done tsan
  else
    tail -50 build-tsan-ninja.log; echo "thread sanitizer build failed"; status=1
  fi
fi

echo "timings: ${timings[*]}"
/usr/bin/python3 - "${logs[@]}" <<'PY'
import json, sys
p = f = s = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        res = r.get("result", "")
        if res in ("OK", "EXPECTEDFAIL"):
            p += 1
        elif res == "SKIP":
            s += 1
        else:
            f += 1
            print("failed:", r.get("name"), res)
print(f"{p} passed, {f} failed" + (f", {s} skipped" if s else ""))
sys.exit(1 if f else 0)
PY
py=$?
[ $py -ne 0 ] && status=1
exit $status
