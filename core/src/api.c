/* Public API: version, errors, parameter defaults, the LoRA list syntax.
 * The model and context entry points live with the pipeline (pipeline/),
 * the self-check with the kernels (kernels/selfcheck.c). */
#include <math.h>

#include "common.h"

const char *vdit_version(void)
{
#define VD_STR2(x) #x
#define VD_STR(x) VD_STR2(x)
    return VD_STR(VDIT_VERSION_MAJOR) "." VD_STR(VDIT_VERSION_MINOR) "." VD_STR(VDIT_VERSION_PATCH);
}

const char *vdit_strerror(int err)
{
    static const char *const msgs[VDIT_ERR_COUNT] = {
        "success",          "invalid argument", "out of memory",
        "input/output error", "malformed file", "unsupported",
        "cancelled",        "try again",        "end of stream",
        "internal error",   "missing tensor or file",
    };
    int i = -err;
    if (i < 0 || i >= VDIT_ERR_COUNT)
        return "unknown error";
    return msgs[i];
}

const char *vdit_stage_name(int stage)
{
    static const char *const names[VDIT_STAGE_COUNT] = {
        "load", "encode text", "encode video", "denoise", "decode",
    };
    if (stage < 0 || stage >= VDIT_STAGE_COUNT)
        return "?";
    return names[stage];
}

void vdit_model_params_default(vdit_model_params *p)
{
    memset(p, 0, sizeof(*p));
    p->log_level = VDIT_LOG_WARNING;
    p->n_threads = VDIT_DEFAULT_THREADS;
    p->precision = VDIT_DEFAULT_PRECISION;
}

void vdit_ctx_params_default(vdit_ctx_params *p)
{
    memset(p, 0, sizeof(*p));
    p->n_threads = VDIT_DEFAULT_THREADS;
    p->log_level = VDIT_LOG_WARNING;
    p->precision = VDIT_DEFAULT_PRECISION;
}

