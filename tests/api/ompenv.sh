#!/bin/sh
# libvdit-ompenv (core/src/kernels/omp_env.c) must set GOMP_SPINCOUNT before
# libgomp reads it in a program linked against libvdit, and leave the
# user's own setting alone. libgomp prints what it started with when
# OMP_DISPLAY_ENV=verbose. usage: ompenv.sh PROG
prog=$1
fail=0
check() { # expected-value env...
    want=$1; shift
    got=$(env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY -u VDIT_OMP_SPIN "$@" OMP_DISPLAY_ENV=verbose \
          "$prog" 2>&1 | sed -n "s/.*GOMP_SPINCOUNT = '\([0-9]*\)'.*/\1/p" | head -1)
    if [ "$got" = "$want" ]; then echo "ok: $* -> $got"; else echo "FAILED: $* -> '$got', expected $want"; fail=1; fi
}
check 1000
check 7 GOMP_SPINCOUNT=7
check 300000 VDIT_OMP_SPIN=0
check 30000000000 OMP_WAIT_POLICY=active
exit $fail
