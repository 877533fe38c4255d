/* The spin limit of kernels/omp_env.c, shared with the vdit command (which
 * sets it itself before re-executing, core/cli/vdit.c). */
#ifndef VDIT_KERNELS_OMP_ENV_H
#define VDIT_KERNELS_OMP_ENV_H

#include <stdlib.h>
#include <string.h>

/* Sets GOMP_SPINCOUNT=1000 unless the user chose OpenMP's waiting
 * (OMP_WAIT_POLICY, GOMP_SPINCOUNT) or turned this off (VDIT_OMP_SPIN=0).
 * Returns 1 when it set it. */
static inline int vdit_limit_omp_spin(void)
{
    const char *off = getenv("VDIT_OMP_SPIN");
    if ((off && !strcmp(off, "0")) || getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
        return 0;
    return setenv("GOMP_SPINCOUNT", "1000", 0) == 0;
}

#endif
