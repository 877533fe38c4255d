#!/bin/sh
# Every conformance folder at every instruction-set level the CPU has
# (VDIT_CPU lowers the level, checkasm style: the AVX2 and plain C paths stay
# tested on an AVX-512 machine), in fp32 with the folders' own bounds, then
# in bf16 with the bf16 bounds where the CPU computes bf16 natively.
# usage: conform_levels.sh VDIT CONFORMANCE_DIR...
vdit=$1
shift
folders=""
for dir in "$@"; do folders="$folders $dir/*/"; done
fail=0
for level in c avx2 avx512 avx512_bf16; do
    out=$(VDIT_CPU=$level "$vdit" conform --threads 2 $folders 2>&1)
    rc=$?
    echo "$out" | grep -E "^# |conform:" | head -1
    echo "$out" | tail -1
    case "$out" in *"on $level)"*) ;; *) echo "  (the CPU stops below $level)"; break ;; esac
    [ $rc = 0 ] || { echo "$out" | grep FAIL; fail=1; }
done
out=$("$vdit" conform --threads 2 --precision bf16 $folders 2>&1)
rc=$?
case "$out" in
*"needs a CPU that computes bf16"*) echo "bf16: not native on this CPU, not checked" ;;
*) echo "$out" | tail -1; [ $rc = 0 ] || { echo "$out" | grep FAIL; fail=1; } ;;
esac
exit $fail
