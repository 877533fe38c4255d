/* Fast-versus-reference kernel checks, shared by `vdit selfcheck` and the
 * kernel unit test. */
#ifndef VDIT_KERNELS_SELFCHECK_H
#define VDIT_KERNELS_SELFCHECK_H

#include <stdint.h>

#include "kernels.h"

/* Called once per check: a description of the case, its normalised error,
 * the tolerance, whether the guard values around outputs survived, and the
 * verdict. */
typedef void (*vk_check_fn)(void *user, const char *name, double err, double tol, int guards,
                            int ok);

/* Runs the checks with the table of instruction-set level isa (< 0: the
 * default) and precision prec on n_threads threads. level 0: the quick set
 * (selfcheck command), 1: the thorough set (unit tests). Returns the number
 * of failed checks, or -1 when the context could not be made (memory, a
 * level or precision the CPU lacks). */
int vk_selfcheck_run(int n_threads, int isa, vk_prec prec, int level, uint64_t seed,
                     vk_check_fn cb, void *user);

#endif
