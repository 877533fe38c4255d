/* OpenMP's idle threads must not spin away a loaded machine.
 *
 * libgomp's workers, when they run out of work, spin for GOMP_SPINCOUNT
 * iterations (300000 by default: about a millisecond) before they sleep.
 * vdit's kernels are hundreds of parallel regions per step, and on a machine
 * whose cores are shared (an FFmpeg job next to others, a transcoding farm)
 * a spinning worker holds a core while the teammate it waits for is not
 * running: the same job was measured 2-7x slower (docs/precision.md,
 * "Threads"). A short spin (1000 iterations, a few microseconds) keeps the
 * quiet-machine speed and gives the core back under load.
 *
 * libgomp reads its settings once, in its own constructor, so the value
 * must be in the environment before that runs. This file is a library of its
 * own, libvdit-ompenv, which libvdit lists last among the libraries it needs,
 * after libgomp (core/src/meson.build): glibc initialises an object's
 * needed libraries in the reverse of that order, dependencies first, so this
 * constructor runs before libgomp's, at program start (ffmpeg) as when a
 * plugin is dlopen()ed (GStreamer). An application that started OpenMP
 * before loading libvdit keeps its settings. The vdit command links the
 * engine statically and re-executes itself with the setting instead
 * (core/cli/vdit.c). A setting the user made
 * (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is left alone, and VDIT_OMP_SPIN=0
 * turns this off. */
#include "omp_env.h"

__attribute__((constructor)) static void omp_env_ctor(void)
{
    vdit_limit_omp_spin();
}
