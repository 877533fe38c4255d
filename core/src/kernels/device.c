/* Where computation runs: the CPU, or a CUDA device (kernels/cuda/, built
 * when meson's `cuda` option finds the toolkit: VK_HAVE_CUDA). The only file
 * outside kernels/cuda/ that calls the CUDA backend's context functions, so
 * a build without CUDA compiles the same sources. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impl.h"
#if VK_HAVE_CUDA
#include "cuda/vkc.h"
#endif

int vk_have_cuda(void)
{
    return VK_HAVE_CUDA;
}

int vk_device_parse(const char *s, vk_device *d, vd_log *lg)
{
    memset(d, 0, sizeof(*d));
    if (!s || !*s || !strcmp(s, "cpu"))
        return 0;
    if (!strcmp(s, "auto")) {
        d->is_auto = 1;
        d->cuda = 1;
        return 0;
    }
    if (!strcmp(s, "cuda")) {
        d->cuda = 1;
        return 0;
    }
    if (!strncmp(s, "cuda:", 5) && s[5] >= '0' && s[5] <= '9') {
        char *end;
        long v = strtol(s + 5, &end, 10);
        if (!*end && v >= 0 && v < 1024) {
            d->cuda = 1;
            d->index = (int)v;
            return 0;
        }
    }
    return vd_err(lg, VDIT_ERR_INVALID_ARG,
                  "device '%s': expected cpu, cuda, cuda:N (N = 0, 1, ...) or auto", s);
}

const char *vk_device_name(const vk_device *d, char *buf, size_t n)
{
    if (!d->cuda)
        snprintf(buf, n, "cpu");
    else
        snprintf(buf, n, "cuda:%d", d->index);
    return buf;
}

int vk_device_open(vk_device *d, void **vc, vd_log *lg)
{
    *vc = NULL;
    if (!d->cuda)
        return 0;
#if VK_HAVE_CUDA
    char why[256] = "";
    int n = vkc_device_count(why, sizeof(why));
    if (n <= 0 || d->index >= n) {
        if (d->is_auto) { /* auto: the CPU when no device can be used */
            vd_logf(lg, VDIT_LOG_INFO, "device auto: no CUDA device (%s); using the CPU",
                    n < 0 ? why : "none found");
            memset(d, 0, sizeof(*d));
            return 0;
        }
        if (n < 0)
            return vd_err(lg, VDIT_ERR_UNSUPPORTED, "device cuda:%d: CUDA cannot be used: %s",
                          d->index, why);
        return vd_err(lg, VDIT_ERR_UNSUPPORTED,
                      "device cuda:%d: no such CUDA device (%d found)", d->index, n);
    }
    vkc_ctx *c = NULL;
    if (vkc_ctx_new(d->index, &c, why, sizeof(why)))
        return vd_err(lg, VDIT_ERR_UNSUPPORTED, "device cuda:%d: %s", d->index, why);
    d->is_auto = 0;
    *vc = c;
    return 0;
#else
    if (d->is_auto) {
        memset(d, 0, sizeof(*d));
        return 0;
    }
    return vd_err(lg, VDIT_ERR_UNSUPPORTED,
                  "device cuda:%d: this build of vdit has no CUDA backend (build it where "
                  "the CUDA toolkit is installed: meson option cuda)",
                  d->index);
#endif
}

void vk_device_close(void **vc)
{
#if VK_HAVE_CUDA
    if (vc && *vc) {
        vkc_ctx *c = *vc;
        vkc_ctx_free(&c);
    }
#endif
    if (vc)
        *vc = NULL;
}

const char *vk_device_describe(void *vc)
{
#if VK_HAVE_CUDA
    if (vc)
        return vkc_device_name(vc);
#endif
    (void)vc;
    return "cpu";
}
