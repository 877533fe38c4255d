/* GstHarness tests of the vdit elements on a tiny random-weight model
 * (path in VDIT_TEST_MODEL). The plugin is loaded from GST_PLUGIN_PATH. */
#include <glib/gstdio.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "t.h"

#define W 64
#define H 48
#define FPS 25
#define FRAME_DUR (GST_SECOND / FPS)

static const char *model;

static GstHarness *make(const char *extra, int w, int h)
{
    char desc[1024];
    snprintf(desc, sizeof(desc), "vdit model=\"%s\" steps=2 guidance=1 threads=1 window=5 %s",
             model, extra ? extra : "");
    GstHarness *hr = gst_harness_new_parse(desc);
    char caps[256];
    snprintf(caps, sizeof(caps), "video/x-raw,format=RGB,width=%d,height=%d,framerate=%d/1", w, h,
             FPS);
    gst_harness_set_src_caps_str(hr, caps);
    return hr;
}

static GstBuffer *frame(int i, int w, int h)
{
    GstBuffer *b = gst_buffer_new_allocate(NULL, (gsize)w * h * 3, NULL);
    GstMapInfo m;
    gst_buffer_map(b, &m, GST_MAP_WRITE);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            guint8 *p = m.data + ((gsize)y * w + x) * 3;
            p[0] = (guint8)(x * 4 + i * 3);
            p[1] = (guint8)(y * 5);
            p[2] = (guint8)((x + y + i) * 2);
        }
    gst_buffer_unmap(b, &m);
    GST_BUFFER_PTS(b) = (GstClockTime)i * FRAME_DUR;
    GST_BUFFER_DURATION(b) = FRAME_DUR;
    if (i == 0)
        GST_BUFFER_FLAG_SET(b, GST_BUFFER_FLAG_DISCONT);
    return b;
}

static double buf_diff(GstBuffer *a, GstBuffer *b)
{
    GstMapInfo ma, mb;
    gst_buffer_map(a, &ma, GST_MAP_READ);
    gst_buffer_map(b, &mb, GST_MAP_READ);
    double d = 0;
    gsize n = MIN(ma.size, mb.size);
    for (gsize i = 0; i < n; i++)
        d += abs((int)ma.data[i] - (int)mb.data[i]);
    gst_buffer_unmap(a, &ma);
    gst_buffer_unmap(b, &mb);
    return n ? d / (double)n : 0;
}

/* Pulls every buffer the harness has; returns the count, stores up to max. */
static int pull_all(GstHarness *hr, GstBuffer **out, int max)
{
    int n = 0;
    GstBuffer *b;
    while ((b = gst_harness_try_pull(hr))) {
        if (n < max)
            out[n] = b;
        else
            gst_buffer_unref(b);
        n++;
    }
    return n;
}

static void unref_all(GstBuffer **b, int n)
{
    for (int i = 0; i < n; i++)
        gst_buffer_unref(b[i]);
}

static void test_in_equals_out(void)
{
    GstHarness *hr = make("strength=0.8", W, H);
    GstBuffer *in[12];
    for (int i = 0; i < 12; i++) {
        in[i] = frame(i, W, H);
        T_CHECK(gst_harness_push(hr, gst_buffer_ref(in[i])) == GST_FLOW_OK, "push %d", i);
    }
    T_CHECK(gst_harness_push_event(hr, gst_event_new_eos()), "eos");
    GstBuffer *out[16];
    int n = pull_all(hr, out, 16);
    T_CHECK(n == 12, "12 buffers in, %d out", n);
    double change = 0;
    for (int i = 0; i < n && i < 12; i++) {
        T_CHECK(GST_BUFFER_PTS(out[i]) == GST_BUFFER_PTS(in[i]), "pts of %d", i);
        T_CHECK(GST_BUFFER_DURATION(out[i]) == FRAME_DUR, "duration of %d", i);
        T_CHECK(gst_buffer_get_size(out[i]) == (gsize)W * H * 3, "size of %d", i);
        change += buf_diff(out[i], in[i]);
    }
    if (n > 0)
        T_CHECK(GST_BUFFER_FLAG_IS_SET(out[0], GST_BUFFER_FLAG_DISCONT), "DISCONT kept");
    T_CHECK(change / 12 > 1.0, "content changed (mean abs diff %.2f)", change / 12);
    unref_all(out, MIN(n, 16));
    unref_all(in, 12);
    gst_harness_teardown(hr);
}

static void test_latency(void)
{
    GstHarness *hr = make(NULL, W, H);
    gst_harness_set_upstream_latency(hr, 0);
    gst_harness_play(hr);
    /* push one frame so caps are applied and the stream exists */
    gst_harness_push(hr, frame(0, W, H));
    GstQuery *q = gst_query_new_latency();
    gboolean ok = gst_pad_peer_query(hr->sinkpad, q);
    GstClockTime min = 0, max = 0;
    gboolean live = FALSE;
    gst_query_parse_latency(q, &live, &min, &max);
    T_CHECK(ok, "latency query answered");
    T_CHECK(min >= 5 * FRAME_DUR - GST_MSECOND, "latency %" GST_TIME_FORMAT " covers a window",
            GST_TIME_ARGS(min));
    gst_query_unref(q);
    gst_harness_teardown(hr);
}

static void test_eos_flushes_partial_window(void)
{
    GstHarness *hr = make(NULL, W, H);
    for (int i = 0; i < 3; i++)
        gst_harness_push(hr, frame(i, W, H));
    T_CHECK(gst_harness_buffers_in_queue(hr) == 0, "partial window held back (%u out)",
            gst_harness_buffers_in_queue(hr));
    gst_harness_push_event(hr, gst_event_new_eos());
    GstBuffer *out[8];
    int n = pull_all(hr, out, 8);
    T_CHECK(n == 3, "EOS flushed the partial window: %d of 3", n);
    unref_all(out, MIN(n, 8));
    gst_harness_teardown(hr);
}

static void test_flushing_seek(void)
{
    GstHarness *hr = make(NULL, W, H);
    for (int i = 0; i < 3; i++)
        gst_harness_push(hr, frame(i, W, H));
    T_CHECK(gst_harness_push_event(hr, gst_event_new_flush_start()), "flush start");
    T_CHECK(gst_harness_push_event(hr, gst_event_new_flush_stop(TRUE)), "flush stop");
    GstSegment seg;
    gst_segment_init(&seg, GST_FORMAT_TIME);
    gst_harness_push_event(hr, gst_event_new_segment(&seg));
    for (int i = 10; i < 15; i++)
        T_CHECK(gst_harness_push(hr, frame(i, W, H)) == GST_FLOW_OK, "push after flush");
    gst_harness_push_event(hr, gst_event_new_eos());
    GstBuffer *out[16];
    int n = pull_all(hr, out, 16);
    T_CHECK(n == 5, "flushed frames dropped, new ones all out: %d of 5", n);
    if (n >= 1)
        T_CHECK(GST_BUFFER_PTS(out[0]) == 10 * FRAME_DUR, "first output is the first new frame");
    unref_all(out, MIN(n, 16));
    gst_harness_teardown(hr);
}

static void test_caps_change(void)
{
    GstHarness *hr = make(NULL, W, H);
    for (int i = 0; i < 3; i++)
        gst_harness_push(hr, frame(i, W, H));
    char caps[128];
    snprintf(caps, sizeof(caps), "video/x-raw,format=RGB,width=%d,height=%d,framerate=%d/1", 40,
             24, FPS);
    gst_harness_set_src_caps_str(hr, caps);
    for (int i = 3; i < 5; i++)
        gst_harness_push(hr, frame(i, 40, 24));
    gst_harness_push_event(hr, gst_event_new_eos());
    GstBuffer *out[8];
    int n = pull_all(hr, out, 8);
    T_CHECK(n == 5, "caps change keeps every frame: %d of 5", n);
    for (int i = 0; i < n && i < 5; i++) {
        gsize want = i < 3 ? (gsize)W * H * 3 : (gsize)40 * 24 * 3;
        T_CHECK(gst_buffer_get_size(out[i]) == want, "frame %d has the size of its caps", i);
    }
    unref_all(out, MIN(n, 8));
    gst_harness_teardown(hr);
}

static void test_other_formats(void)
{
    const char *fmts[] = { "I420", "NV12", "RGBA" };
    for (int k = 0; k < 3; k++) {
        char desc[512];
        snprintf(desc, sizeof(desc), "vdit model=\"%s\" steps=2 guidance=1 threads=1 window=5",
                 model);
        GstHarness *hr = gst_harness_new_parse(desc);
        char caps[256];
        snprintf(caps, sizeof(caps), "video/x-raw,format=%s,width=%d,height=%d,framerate=%d/1",
                 fmts[k], 66, 38, FPS);
        gst_harness_set_src_caps_str(hr, caps);
        GstVideoInfo vi;
        GstCaps *c = gst_caps_from_string(caps);
        gst_video_info_from_caps(&vi, c);
        gst_caps_unref(c);
        for (int i = 0; i < 4; i++) {
            GstBuffer *b = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(&vi), NULL);
            gst_buffer_memset(b, 0, (guint8)(40 + i * 20), GST_VIDEO_INFO_SIZE(&vi));
            GST_BUFFER_PTS(b) = (GstClockTime)i * FRAME_DUR;
            gst_harness_push(hr, b);
        }
        gst_harness_push_event(hr, gst_event_new_eos());
        GstBuffer *out[8];
        int n = pull_all(hr, out, 8);
        T_CHECK(n == 4, "%s: %d of 4 frames", fmts[k], n);
        for (int i = 0; i < n && i < 4; i++)
            T_CHECK(gst_buffer_get_size(out[i]) == GST_VIDEO_INFO_SIZE(&vi), "%s size", fmts[k]);
        unref_all(out, MIN(n, 8));
        gst_harness_teardown(hr);
    }
}

/* Runs 10 frames (2 windows) through `hr`; if prompt2, changes the prompt
 * after the first window. Returns the outputs in out[10]. */
static int run_two_windows(const char *prompt2, GstBuffer **out)
{
    GstHarness *hr = make("prompt=\"a red circle\" strength=0.9", W, H);
    for (int i = 0; i < 10; i++) {
        if (i == 5 && prompt2)
            g_object_set(gst_harness_find_element(hr, "vdit"), "prompt", prompt2, NULL);
        gst_harness_push(hr, frame(i, W, H));
    }
    gst_harness_push_event(hr, gst_event_new_eos());
    int n = pull_all(hr, out, 10);
    gst_harness_teardown(hr);
    return n;
}

static void test_property_change(void)
{
    GstBuffer *a[10], *b[10];
    int na = run_two_windows(NULL, a);
    int nb = run_two_windows("a blue square on a green background", b);
    T_CHECK(na == 10 && nb == 10, "both runs complete (%d, %d)", na, nb);
    if (na == 10 && nb == 10) {
        double first = 0, second = 0;
        for (int i = 0; i < 5; i++)
            first += buf_diff(a[i], b[i]);
        for (int i = 5; i < 10; i++)
            second += buf_diff(a[i], b[i]);
        T_CHECK(first == 0, "window before the change is unchanged (diff %.3f)", first);
        T_CHECK(second > 0, "window after the change differs (diff %.3f)", second);
    }
    unref_all(a, MIN(na, 10));
    unref_all(b, MIN(nb, 10));
}

typedef struct pusher {
    GstHarness *hr;
    gint64 done_at;
} pusher;

static gpointer push_window(gpointer data)
{
    pusher *p = data;
    for (int i = 0; i < 5; i++)
        gst_harness_push(p->hr, frame(i, 128, 96));
    p->done_at = g_get_monotonic_time();
    return NULL;
}

static void test_state_change_mid_window(void)
{
    char desc[512];
    snprintf(desc, sizeof(desc), "vdit model=\"%s\" steps=200 guidance=3 threads=1 window=5 "
             "strength=1.0", model);
    GstHarness *hr = gst_harness_new_parse(desc);
    char caps[128];
    snprintf(caps, sizeof(caps), "video/x-raw,format=RGB,width=128,height=96,framerate=%d/1", FPS);
    gst_harness_set_src_caps_str(hr, caps);
    pusher p = { hr, 0 };
    GThread *th = g_thread_new("pusher", push_window, &p);
    g_usleep(G_USEC_PER_SEC * 3 / 2); /* the window is being denoised now */
    gint64 t0 = g_get_monotonic_time();
    GstElement *el = gst_harness_find_element(hr, "vdit");
    gst_element_set_state(el, GST_STATE_NULL);
    g_thread_join(th);
    gint64 t1 = g_get_monotonic_time();
    gst_object_unref(el);
    T_CHECK(t1 - t0 < 2 * G_USEC_PER_SEC, "PLAYING->NULL mid-window took %.2f s",
            (double)(t1 - t0) / 1e6);
    gst_harness_teardown(hr);
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_long_stream_memory(void)
{
    GstHarness *hr = make(NULL, W, H);
    long r10 = 0;
    int n_out = 0;
    for (int i = 0; i < 100; i++) {
        gst_harness_push(hr, frame(i, W, H));
        GstBuffer *b;
        while ((b = gst_harness_try_pull(hr))) {
            gst_buffer_unref(b);
            n_out++;
        }
        if (i == 24)
            r10 = rss_kb();
    }
    long r40 = rss_kb();
    gst_harness_push_event(hr, gst_event_new_eos());
    GstBuffer *b;
    while ((b = gst_harness_try_pull(hr))) {
        gst_buffer_unref(b);
        n_out++;
    }
    T_CHECK(n_out == 100, "100 frames through 20 windows: %d out", n_out);
    /* not under AddressSanitizer, whose quarantine holds freed memory */
    if (!getenv("VDIT_TEST_SANITIZED"))
        T_CHECK(r40 - r10 < 4096, "RSS grew %ld kB from window 5 to window 20", r40 - r10);
    printf("long stream: RSS %ld kB after 5 windows, %ld kB after 20\n", r10, r40);
    gst_harness_teardown(hr);
}

static void test_bad_model(void)
{
    GstElement *el = gst_element_factory_make("vdit", NULL);
    T_CHECK(el != NULL, "element exists");
    if (!el)
        return;
    g_object_set(el, "model", "/nonexistent/model", NULL);
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(el, bus);
    GstStateChangeReturn r = gst_element_set_state(el, GST_STATE_READY);
    T_CHECK(r == GST_STATE_CHANGE_FAILURE, "missing model fails the state change");
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    T_CHECK(m != NULL, "an error message was posted");
    if (m) {
        GError *e = NULL;
        gchar *dbg = NULL;
        gst_message_parse_error(m, &e, &dbg);
        T_CHECK(strstr(e->message, "/nonexistent/model") != NULL, "message names the model: %s",
                e->message);
        g_error_free(e);
        g_free(dbg);
        gst_message_unref(m);
    }
    gst_element_set_state(el, GST_STATE_NULL);
    gst_element_set_bus(el, NULL);
    gst_object_unref(bus);
    gst_object_unref(el);
}

static void test_src(void)
{
    char desc[512];
    snprintf(desc, sizeof(desc), "vditsrc model=\"%s\" steps=2 guidance=1 num-frames=5 threads=1",
             model);
    GstHarness *hr = gst_harness_new_parse(desc);
    gst_harness_set_sink_caps_str(hr, "video/x-raw,format=RGB,width=48,height=32,framerate=8/1");
    gst_harness_play(hr);
    GstBuffer *out[12];
    int n = 0;
    for (; n < 12; n++) {
        out[n] = gst_harness_pull(hr);
        if (!out[n])
            break;
    }
    T_CHECK(n == 12, "12 frames across three clips (%d)", n);
    for (int i = 0; i < n; i++) {
        T_CHECK(GST_BUFFER_PTS(out[i]) == gst_util_uint64_scale_int(i * GST_SECOND, 1, 8),
                "pts of frame %d", i);
        T_CHECK(gst_buffer_get_size(out[i]) == 48 * 32 * 3, "size of frame %d", i);
    }
    unref_all(out, n);
    gst_harness_teardown(hr);
}

/* The caps vditsrc negotiated with the harness, parsed; FALSE if none. */
static gboolean src_caps(GstHarness *hr, GstVideoInfo *vi, const char **colorimetry)
{
    GstCaps *c = gst_pad_get_current_caps(hr->sinkpad);
    gboolean ok = c && gst_video_info_from_caps(vi, c);
    static char col[64];
    col[0] = 0;
    if (c) {
        const char *s = gst_structure_get_string(gst_caps_get_structure(c, 0), "colorimetry");
        g_strlcpy(col, s ? s : "", sizeof(col));
        gst_caps_unref(c);
    }
    *colorimetry = col;
    return ok;
}

/* Without a format from downstream vditsrc gives I420 (BT.709), also at odd
 * sizes; asked for RGB it gives RGB, and it follows a change of format. */
static void test_src_formats(void)
{
    static const int sizes[][2] = { { 48, 32 }, { 130, 74 }, { 129, 73 } };
    for (int k = 0; k < 3; k++) {
        int w = sizes[k][0], h = sizes[k][1];
        char desc[512], caps[256];
        snprintf(desc, sizeof(desc), "vditsrc model=\"%s\" steps=2 guidance=1 num-frames=3 "
                 "threads=1", model);
        GstHarness *hr = gst_harness_new_parse(desc);
        snprintf(caps, sizeof(caps), "video/x-raw,width=%d,height=%d,framerate=8/1", w, h);
        gst_harness_set_sink_caps_str(hr, caps);
        gst_harness_play(hr);
        GstBuffer *b = gst_harness_pull(hr);
        GstVideoInfo vi;
        const char *col;
        T_CHECK(b != NULL, "%dx%d: a frame", w, h);
        T_CHECK(src_caps(hr, &vi, &col), "%dx%d: caps negotiated", w, h);
        T_CHECK(GST_VIDEO_INFO_FORMAT(&vi) == GST_VIDEO_FORMAT_I420, "%dx%d: default format %s",
                w, h, gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vi)));
        T_CHECK(GST_VIDEO_INFO_WIDTH(&vi) == w && GST_VIDEO_INFO_HEIGHT(&vi) == h,
                "%dx%d: size %dx%d", w, h, GST_VIDEO_INFO_WIDTH(&vi), GST_VIDEO_INFO_HEIGHT(&vi));
        T_CHECK(strcmp(col, "bt709") == 0, "%dx%d: colorimetry %s", w, h, col);
        T_CHECK(GST_VIDEO_INFO_COLORIMETRY(&vi).range == GST_VIDEO_COLOR_RANGE_16_235,
                "%dx%d: limited range", w, h);
        if (b) {
            T_CHECK(gst_buffer_get_size(b) == GST_VIDEO_INFO_SIZE(&vi), "%dx%d: I420 size %zu",
                    w, h, (size_t)gst_buffer_get_size(b));
            GstVideoFrame f;
            if (gst_video_frame_map(&f, &vi, b, GST_MAP_READ)) {
                /* limited range: luma in [16, 235], chroma in [16, 240] */
                int lo = 255, hi = 0;
                for (int p = 0; p < 3; p++) {
                    const guint8 *d = GST_VIDEO_FRAME_PLANE_DATA(&f, p);
                    int st = GST_VIDEO_FRAME_PLANE_STRIDE(&f, p);
                    for (int y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT(&f, p); y++)
                        for (int x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH(&f, p); x++) {
                            lo = MIN(lo, d[y * st + x]);
                            hi = MAX(hi, d[y * st + x]);
                        }
                }
                T_CHECK(lo >= 16 && hi <= 240, "%dx%d: samples in [%d, %d]", w, h, lo, hi);
                T_CHECK(hi > lo, "%dx%d: the frame is not flat", w, h);
                gst_video_frame_unmap(&f);
            }
            gst_buffer_unref(b);
        }
        if (k == 0) {
            /* downstream now asks for RGB: vditsrc renegotiates, the stream goes on.
             * Frames made before the change may still be queued in the harness, so
             * pull until an RGB-sized one comes (I420 48x32 is half the size). */
            gst_harness_set_sink_caps_str(hr, "video/x-raw,format=RGB,width=48,height=32,"
                                          "framerate=8/1");
            gboolean rgb = FALSE, pts_ok = TRUE;
            for (int i = 1; i < 10 && !rgb; i++) {
                b = gst_harness_pull(hr);
                if (!b)
                    break;
                rgb = gst_buffer_get_size(b) == 48 * 32 * 3;
                pts_ok &= GST_BUFFER_PTS(b) == gst_util_uint64_scale_int(i * GST_SECOND, 1, 8);
                gst_buffer_unref(b);
            }
            T_CHECK(rgb, "an RGB frame after the caps change");
            T_CHECK(pts_ok, "the stream goes on across the change (pts)");
            T_CHECK(src_caps(hr, &vi, &col), "caps after the change");
            T_CHECK(GST_VIDEO_INFO_FORMAT(&vi) == GST_VIDEO_FORMAT_RGB, "format %s after the "
                    "change", gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vi)));
        }
        gst_harness_teardown(hr);
    }
}

/* ---- formats: the conversion to the engine's RGB and back (bypass) ---- */

/* Tolerance of a round trip at `depth` bits: 1 code value at 8 bits, 4 at
 * 10, 16 at 12 (the same share of the range). */
static int tolerance(int depth)
{
    return depth <= 8 ? 1 : 1 << (depth - 8);
}

/* Largest difference between two frames of `vi`, per component (alpha, then
 * Y U V or R G B) in code values of the format's depth. Lines are unpacked
 * by GStreamer's own unpackers, so v210's 10-bit words and the semi-planar
 * and packed layouts are read as they are; subsampled chroma is compared
 * once per pixel it covers. */
static int frame_diff(const GstVideoInfo *vi, GstBuffer *a, GstBuffer *b, int maxd[4])
{
    const GstVideoFormatInfo *fi = vi->finfo;
    const GstVideoFormatInfo *ui = gst_video_format_get_info(fi->unpack_format);
    gboolean u16 = GST_VIDEO_FORMAT_INFO_DEPTH(ui, 0) > 8;
    /* n-bit samples unpack to 16 bits as v << (16 - n) with the top bits
     * repeated below: the shift gives the sample back exactly */
    int shift = u16 ? 16 - GST_VIDEO_FORMAT_INFO_DEPTH(fi, 0) : 0;
    int w = GST_VIDEO_INFO_WIDTH(vi), h = GST_VIDEO_INFO_HEIGHT(vi);
    GstVideoFrame fa, fb;
    memset(maxd, 0, 4 * sizeof(int));
    if (!gst_video_frame_map(&fa, vi, a, GST_MAP_READ))
        return 1 << 16;
    if (!gst_video_frame_map(&fb, vi, b, GST_MAP_READ)) {
        gst_video_frame_unmap(&fa);
        return 1 << 16;
    }
    gsize line = (gsize)w * 4 * (u16 ? 2 : 1);
    guint8 *la = g_malloc(line), *lb = g_malloc(line);
    for (int y = 0; y < h; y++) {
        fi->unpack_func(fi, GST_VIDEO_PACK_FLAG_NONE, la, fa.data, fa.info.stride, 0, y, w);
        fi->unpack_func(fi, GST_VIDEO_PACK_FLAG_NONE, lb, fb.data, fb.info.stride, 0, y, w);
        for (int i = 0; i < w * 4; i++) {
            int va = u16 ? ((guint16 *)la)[i] >> shift : la[i];
            int vb = u16 ? ((guint16 *)lb)[i] >> shift : lb[i];
            maxd[i & 3] = MAX(maxd[i & 3], abs(va - vb));
        }
    }
    g_free(la);
    g_free(lb);
    gst_video_frame_unmap(&fa);
    gst_video_frame_unmap(&fb);
    return MAX(MAX(maxd[0], maxd[1]), MAX(maxd[2], maxd[3]));
}

/* Frames of videotestsrc `pattern` in `caps`; with `via_rgb`, painted in
 * 16-bit RGB and converted, so that YUV frames hold only colours RGB has
 * (videotestsrc paints YUV formats directly, its SMPTE bars with
 * out-of-gamut -I, +Q and super-black, its every-colour pattern over the
 * whole YUV cube: no round trip through RGB keeps those). */
static void test_frames(const char *pattern, gboolean via_rgb, const char *caps, GstBuffer **out,
                        int n)
{
    char desc[512];
    snprintf(desc, sizeof(desc), "videotestsrc pattern=%s num-buffers=%d %s ! capsfilter "
             "caps=\"%s\"", pattern, n, via_rgb ? "! video/x-raw,format=RGBA64_LE ! videoconvert"
             : "", caps);
    GstHarness *hr = gst_harness_new_parse(desc);
    gst_harness_play(hr);
    for (int i = 0; i < n; i++)
        out[i] = gst_harness_pull(hr);
    gst_harness_teardown(hr);
}

/* Pushes `in` through `desc` (a bin taking and giving `caps`); returns the
 * output, NULL if none came. */
static GstBuffer *through(const char *desc, const char *caps, GstBuffer *in)
{
    GstHarness *hr = gst_harness_new_parse(desc);
    gst_harness_set_src_caps_str(hr, caps);
    gst_harness_set_sink_caps_str(hr, caps);
    GstBuffer *out = NULL;
    if (gst_harness_push(hr, gst_buffer_ref(in)) == GST_FLOW_OK)
        out = gst_harness_try_pull(hr);
    gst_harness_teardown(hr);
    return out;
}

/* `vdit bypass=true`: model=/nonexistent shows that bypass loads no model. */
#define BYPASS "vdit bypass=true model=/nonexistent"

/* Every format of the vdit caps through `vdit bypass=true` (to 8-bit RGB, or
 * 16-bit RGB for deeper formats, and back) against videoconvert's own round
 * trip of the same frame through RGB or RGBA64_LE; formats without chroma
 * subsampling also against the input itself, where it has only colours RGB
 * has. Frames: videotestsrc's SMPTE bars and every-colour pattern as it
 * paints them, its SMPTE bars and moving ball converted from RGB; 64x48, and
 * an odd size for 4:2:0 (and v210, whose rows then end inside a 6-pixel
 * group). */
static void test_bypass_formats(void)
{
    GstElement *el = gst_element_factory_make("vdit", NULL);
    GstCaps *tmpl = gst_pad_get_pad_template_caps(gst_element_get_static_pad(el, "sink"));
    const GValue *fl = gst_structure_get_value(gst_caps_get_structure(tmpl, 0), "format");
    guint n_fmt = gst_value_list_get_size(fl);
    T_CHECK(n_fmt >= 27, "the caps list %u formats", n_fmt);
    static const struct {
        const char *pattern;
        gboolean via_rgb;
    } inputs[] = { { "smpte", FALSE }, { "colors", FALSE }, { "smpte", TRUE }, { "ball", TRUE } };
    for (guint k = 0; k < n_fmt; k++) {
        const char *fmt = g_value_get_string(gst_value_list_get_value(fl, k));
        const GstVideoFormatInfo *fi = gst_video_format_get_info(gst_video_format_from_string(fmt));
        int depth = GST_VIDEO_FORMAT_INFO_DEPTH(fi, 0), tol = tolerance(depth);
        /* 8-bit YUV through 8-bit RGB: GstVideoConverter's 8-bit matrices
         * (videoconvert's too) are coarser than a code value; videoconvert's
         * own round trip of these frames is 3 off */
        int in_tol = depth == 8 && GST_VIDEO_FORMAT_INFO_IS_YUV(fi)
                             && GST_VIDEO_FORMAT_INFO_N_COMPONENTS(fi) > 1 ? 3 : tol;
        gboolean full_chroma = TRUE, is_420 = FALSE;
        for (guint c = 0; c < GST_VIDEO_FORMAT_INFO_N_COMPONENTS(fi); c++) {
            full_chroma &= fi->w_sub[c] == 0 && fi->h_sub[c] == 0;
            is_420 |= fi->h_sub[c] == 1;
        }
        const char *ref = depth > 8 ? "videoconvert ! capsfilter caps=video/x-raw,format=RGBA64_LE "
                                      "! videoconvert"
                                    : "videoconvert ! capsfilter caps=video/x-raw,format=RGB "
                                      "! videoconvert";
        static const int sizes[][2] = { { 64, 48 }, { 66, 50 } };
        int n_sizes = is_420 || strcmp(fmt, "v210") == 0 ? 2 : 1;
        for (int s = 0; s < n_sizes; s++) {
            int w = sizes[s][0], h = sizes[s][1];
            char caps[256];
            snprintf(caps, sizeof(caps), "video/x-raw,format=%s,width=%d,height=%d,framerate=%d/1",
                     fmt, w, h, FPS);
            GstVideoInfo vi;
            GstCaps *c = gst_caps_from_string(caps);
            gst_video_info_from_caps(&vi, c);
            gst_caps_unref(c);
            int worst_ref = 0, worst_in = 0;
            for (guint p = 0; p < G_N_ELEMENTS(inputs); p++) {
                const char *pat = inputs[p].pattern;
                GstBuffer *in;
                test_frames(pat, inputs[p].via_rgb, caps, &in, 1);
                GstBuffer *out = through(BYPASS, caps, in);
                GstBuffer *exp = through(ref, caps, in);
                T_CHECK(out && exp, "%s %dx%d %s: a frame out of both", fmt, w, h, pat);
                if (out && exp) {
                    int d[4], di[4];
                    T_CHECK(gst_buffer_get_size(out) == GST_VIDEO_INFO_SIZE(&vi), "%s size", fmt);
                    int dr = frame_diff(&vi, out, exp, d);
                    T_CHECK(dr <= tol, "%s %dx%d %s: %d (A %d, %d %d %d) from videoconvert's round "
                            "trip, over %d", fmt, w, h, pat, dr, d[0], d[1], d[2], d[3], tol);
                    worst_ref = MAX(worst_ref, dr);
                    if (full_chroma && inputs[p].via_rgb) {
                        int dn = frame_diff(&vi, out, in, di);
                        T_CHECK(dn <= in_tol, "%s %dx%d %s: %d (A %d, %d %d %d) from the input, "
                                "over %d", fmt, w, h, pat, dn, di[0], di[1], di[2], di[3], in_tol);
                        worst_in = MAX(worst_in, dn);
                    }
                }
                if (out)
                    gst_buffer_unref(out);
                if (exp)
                    gst_buffer_unref(exp);
                gst_buffer_unref(in);
            }
            if (full_chroma)
                printf("  %-10s %dx%d (%2d-bit): max diff %d from videoconvert, %d from the "
                       "input\n", fmt, w, h, depth, worst_ref, worst_in);
            else
                printf("  %-10s %dx%d (%2d-bit): max diff %d from videoconvert\n", fmt, w, h, depth,
                       worst_ref);
        }
    }
    gst_caps_unref(tmpl);
    gst_object_unref(el);
}

/* A frame of the eight 100% colour bars (white, yellow, cyan, green,
 * magenta, red, blue, black) in `vi` (Y444 or Y444_10LE), encoded with the
 * matrix and range of `col`. */
static GstBuffer *bars(const GstVideoInfo *vi, const GstVideoColorimetry *col)
{
    static const double rgb[8][3] = { { 1, 1, 1 }, { 1, 1, 0 }, { 0, 1, 1 }, { 0, 1, 0 },
                                      { 1, 0, 1 }, { 1, 0, 0 }, { 0, 0, 1 }, { 0, 0, 0 } };
    gdouble kr, kb;
    gst_video_color_matrix_get_Kr_Kb(col->matrix, &kr, &kb);
    gint off[4], scale[4];
    gst_video_color_range_offsets(col->range, vi->finfo, off, scale);
    GstBuffer *b = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(vi), NULL);
    GstVideoFrame f;
    gst_video_frame_map(&f, vi, b, GST_MAP_WRITE);
    gboolean deep = GST_VIDEO_INFO_COMP_DEPTH(vi, 0) > 8;
    int w = GST_VIDEO_INFO_WIDTH(vi), h = GST_VIDEO_INFO_HEIGHT(vi);
    for (int x = 0; x < w; x++) {
        const double *c = rgb[x * 8 / w];
        double y = kr * c[0] + (1 - kr - kb) * c[1] + kb * c[2];
        double yuv[3] = { y, (c[2] - y) / (2 * (1 - kb)), (c[0] - y) / (2 * (1 - kr)) };
        for (int p = 0; p < 3; p++) {
            int v = CLAMP((int)lround(off[p] + yuv[p] * scale[p]), 0,
                          (1 << GST_VIDEO_INFO_COMP_DEPTH(vi, p)) - 1);
            for (int r = 0; r < h; r++) {
                guint8 *row = (guint8 *)GST_VIDEO_FRAME_COMP_DATA(&f, p)
                              + (gsize)r * GST_VIDEO_FRAME_COMP_STRIDE(&f, p);
                if (deep)
                    GST_WRITE_UINT16_LE(row + 2 * x, (guint16)v);
                else
                    row[x] = (guint8)v;
            }
        }
    }
    gst_video_frame_unmap(&f);
    return b;
}

/* The conversion uses the matrix and range of the caps: 100% bars encoded
 * with BT.709, BT.601 or full-range BT.601 come back through bypass as
 * through videoconvert with the same caps, near the input, when the caps say
 * so, and clip visibly when the caps name another matrix or range (the
 * saturated colours of one matrix are out of gamut in the other, full-range
 * black is below limited range's). An element with a fixed matrix or range
 * would keep one of the two labels' bars where it should clip them. */
static void test_bypass_colorimetry(void)
{
    /* [i][0]: the encoding, [i][1]: another label */
    static const char *cols[][2] = { { "bt709", "bt601" }, { "bt601", "bt709" },
                                     { "1:4:5:4", "bt601" } };
    static const char *fmts[] = { "Y444", "Y444_10LE" };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++) {
            char caps[256], other[256];
            snprintf(caps, sizeof(caps), "video/x-raw,format=%s,width=64,height=16,framerate=%d/1,"
                     "colorimetry=(string)%s", fmts[k], FPS, cols[i][0]);
            snprintf(other, sizeof(other), "video/x-raw,format=%s,width=64,height=16,"
                     "framerate=%d/1,colorimetry=(string)%s", fmts[k], FPS, cols[i][1]);
            GstVideoInfo vi;
            GstCaps *c = gst_caps_from_string(caps);
            T_CHECK(gst_video_info_from_caps(&vi, c), "%s", caps);
            gst_caps_unref(c);
            int depth = GST_VIDEO_INFO_COMP_DEPTH(&vi, 0), tol = tolerance(depth), d[4];
            /* from the input: at 8 bits the converter's 8-bit matrices (3 on
             * frames inside the gamut) and the bars' rounding at its edge */
            int in_tol = depth == 8 ? 4 : tol, clip = 8 << (depth - 8);
            GstBuffer *in = bars(&vi, &vi.colorimetry);
            GstBuffer *own = through(BYPASS, caps, in);
            GstBuffer *vc = through(depth > 8 ? "videoconvert ! capsfilter caps=video/x-raw,"
                                                "format=RGBA64_LE ! videoconvert"
                                              : "videoconvert ! capsfilter caps=video/x-raw,"
                                                "format=RGB ! videoconvert", caps, in);
            GstBuffer *wrong = through(BYPASS, other, in);
            T_CHECK(own && vc && wrong, "%s %s: frames", fmts[k], cols[i][0]);
            if (own && vc && wrong) {
                int d_own = frame_diff(&vi, own, in, d);
                int d_vc = frame_diff(&vi, own, vc, d);
                int d_wrong = frame_diff(&vi, wrong, in, d);
                T_CHECK(d_own <= in_tol, "%s %s: bars back within %d of the input (%d)", fmts[k],
                        cols[i][0], in_tol, d_own);
                T_CHECK(d_vc <= tol, "%s %s: bars within %d of videoconvert's (%d)", fmts[k],
                        cols[i][0], tol, d_vc);
                T_CHECK(d_wrong > clip, "%s %s bars labelled %s: clipped (%d)", fmts[k],
                        cols[i][0], cols[i][1], d_wrong);
                printf("  %-9s %-7s bars: %d from the input, %d from videoconvert; labelled %s: "
                       "%d\n", fmts[k], cols[i][0], d_own, d_vc, cols[i][1], d_wrong);
            }
            gst_buffer_unref(in);
            if (own)
                gst_buffer_unref(own);
            if (vc)
                gst_buffer_unref(vc);
            if (wrong)
                gst_buffer_unref(wrong);
        }
}

/* Runs `desc` to its end; returns the error message (g_free) or NULL. */
static gchar *run_pipeline(const char *desc)
{
    GError *err = NULL;
    GstElement *pl = gst_parse_launch(desc, &err);
    if (!pl) {
        gchar *m = g_strdup(err ? err->message : "parse error");
        g_clear_error(&err);
        return m;
    }
    gst_element_set_state(pl, GST_STATE_PLAYING);
    GstBus *bus = gst_element_get_bus(pl);
    GstMessage *m = gst_bus_timed_pop_filtered(bus, 30 * GST_SECOND,
                                               GST_MESSAGE_ERROR | GST_MESSAGE_EOS);
    gchar *msg = NULL;
    if (!m) {
        msg = g_strdup("timeout");
    } else if (GST_MESSAGE_TYPE(m) == GST_MESSAGE_ERROR) {
        gst_message_parse_error(m, &err, NULL);
        msg = g_strdup(err->message);
        g_clear_error(&err);
    }
    if (m)
        gst_message_unref(m);
    gst_object_unref(bus);
    gst_element_set_state(pl, GST_STATE_NULL);
    gst_object_unref(pl);
    return msg;
}

/* image=: a missing file fails the start with an error naming the file and
 * the cause; a 2:1 picture gives wide frames when downstream leaves the size
 * open (the size libvdit picks, multiples of the model's 16), the size
 * downstream fixes otherwise. */
static void test_src_image(void)
{
    GstElement *el = gst_element_factory_make("vditsrc", NULL);
    T_CHECK(el != NULL, "element exists");
    if (!el)
        return;
    g_object_set(el, "model", model, "image", "/nonexistent/picture.png", NULL);
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(el, bus);
    GstStateChangeReturn r = gst_element_set_state(el, GST_STATE_PAUSED);
    T_CHECK(r == GST_STATE_CHANGE_FAILURE, "missing image fails the state change");
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    T_CHECK(m != NULL, "an error message was posted");
    if (m) {
        GError *e = NULL;
        gst_message_parse_error(m, &e, NULL);
        T_CHECK(strstr(e->message, "/nonexistent/picture.png") &&
                    strstr(e->message, "No such file or directory"),
                "message names the image and the cause: %s", e->message);
        T_CHECK(g_error_matches(e, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND),
                "a resource not-found error");
        g_error_free(e);
        gst_message_unref(m);
    }
    gst_element_set_state(el, GST_STATE_NULL);
    gst_element_set_bus(el, NULL);
    gst_object_unref(bus);
    gst_object_unref(el);

    gchar *dir = g_dir_make_tmp("vdit-gst-XXXXXX", NULL);
    gchar *png = g_build_filename(dir, "wide.png", NULL);
    char desc[1024];
    snprintf(desc, sizeof(desc), "videotestsrc num-buffers=1 ! video/x-raw,width=128,height=64 "
             "! pngenc ! filesink location=\"%s\"", png);
    gchar *err = run_pipeline(desc);
    T_CHECK(!err, "making a PNG: %s", err ? err : "ok");
    g_free(err);
    static const char *sink_caps[2] = { "video/x-raw,format=RGB,framerate=8/1",
                                        "video/x-raw,format=RGB,width=40,height=24,framerate=8/1" };
    for (int k = 0; k < 2; k++) {
        snprintf(desc, sizeof(desc), "vditsrc model=\"%s\" steps=2 guidance=1 num-frames=5 "
                 "threads=1 image=\"%s\"", model, png);
        GstHarness *hr = gst_harness_new_parse(desc);
        gst_harness_set_sink_caps_str(hr, sink_caps[k]);
        gst_harness_play(hr);
        GstBuffer *out[7];
        int n = 0;
        for (; n < 7; n++)
            if (!(out[n] = gst_harness_pull(hr)))
                break;
        GstVideoInfo vi;
        const char *col;
        gboolean ok = src_caps(hr, &vi, &col);
        int w = ok ? GST_VIDEO_INFO_WIDTH(&vi) : 0, h = ok ? GST_VIDEO_INFO_HEIGHT(&vi) : 0;
        if (k == 0)
            T_CHECK(w > h && w % 16 == 0 && h % 16 == 0, "2:1 image, size left open: %dx%d", w,
                    h);
        else
            T_CHECK(w == 40 && h == 24, "2:1 image, 40x24 downstream: %dx%d", w, h);
        T_CHECK(n == 7, "7 frames (%d)", n);
        for (int i = 0; i < n; i++)
            T_CHECK(gst_buffer_get_size(out[i]) == GST_VIDEO_INFO_SIZE(&vi), "size of frame %d",
                    i);
        unref_all(out, n);
        gst_harness_teardown(hr);
    }
    g_unlink(png);
    g_rmdir(dir);
    g_free(png);
    g_free(dir);
}

/* Interlaced and HDR caps are refused with an error naming the fix;
 * accept= lets them through. */
static void test_refusals(void)
{
    static const struct {
        const char *caps, *accept, *fix;
    } cases[] = {
        { "format=I420,interlace-mode=interleaved", "interlaced", "deinterlace" },
        { "format=I420_10LE,colorimetry=bt2100-pq", "hdr", "tone-map" },
        { "format=P010_10LE,colorimetry=bt2100-hlg", "hdr", "tone-map" },
        { "format=I420_10LE,colorimetry=bt2100-pq,interlace-mode=interleaved", "interlaced+hdr",
          "deinterlace" },
    };
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        char desc[512];
        snprintf(desc, sizeof(desc), "videotestsrc num-buffers=3 ! video/x-raw,%s,width=32,"
                 "height=16 ! vdit bypass=true ! fakesink", cases[i].caps);
        gchar *e = run_pipeline(desc);
        T_CHECK(e && strstr(e, cases[i].fix) && strstr(e, "accept="), "%s: refused naming %s and "
                "accept (%s)", cases[i].caps, cases[i].fix, e ? e : "no error");
        g_free(e);
        snprintf(desc, sizeof(desc), "videotestsrc num-buffers=3 ! video/x-raw,%s,width=32,"
                 "height=16 ! vdit bypass=true accept=%s ! fakesink", cases[i].caps,
                 cases[i].accept);
        e = run_pipeline(desc);
        T_CHECK(!e, "%s with accept=%s: through (%s)", cases[i].caps, cases[i].accept,
                e ? e : "ok");
        g_free(e);
    }
}

/* bypass=true loads no model in NULL->READY; switched off in READY, the model
 * loads in READY->PAUSED (here: fails, naming it). */
static void test_bypass_model(void)
{
    GstElement *el = gst_element_factory_make("vdit", NULL);
    g_object_set(el, "model", "/nonexistent/model", "bypass", TRUE, NULL);
    GstBus *bus = gst_bus_new();
    gst_element_set_bus(el, bus);
    T_CHECK(gst_element_set_state(el, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS,
            "bypass: READY without a model");
    g_object_set(el, "bypass", FALSE, NULL);
    T_CHECK(gst_element_set_state(el, GST_STATE_PAUSED) == GST_STATE_CHANGE_FAILURE,
            "bypass off: READY->PAUSED loads the model");
    GstMessage *m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR);
    T_CHECK(m != NULL, "an error message was posted");
    if (m) {
        GError *e = NULL;
        gst_message_parse_error(m, &e, NULL);
        T_CHECK(strstr(e->message, "/nonexistent/model") != NULL, "it names the model: %s",
                e->message);
        g_error_free(e);
        gst_message_unref(m);
    }
    gst_element_set_state(el, GST_STATE_NULL);
    gst_element_set_bus(el, NULL);
    gst_object_unref(bus);
    gst_object_unref(el);
}

/* The first error a state change posted on bus (NULL if none): its message;
 * the bus is left empty (basesrc follows a failed start with its own). */
static gchar *pop_error(GstBus *bus)
{
    gchar *msg = NULL;
    GstMessage *m;
    while ((m = gst_bus_pop_filtered(bus, GST_MESSAGE_ERROR))) {
        GError *e = NULL;
        gst_message_parse_error(m, &e, NULL);
        if (!msg)
            msg = g_strdup(e->message);
        g_error_free(e);
        gst_message_unref(m);
    }
    return msg;
}

/* device: NULL (the CPU) by default; a bad value fails the load naming it;
 * cuda where it cannot be used fails saying why; auto loads (on the CPU
 * without a usable GPU). Like precision, a new device set while a model is
 * loaded (READY) takes effect at the next load, after NULL. */
static void test_device(void)
{
    const char *names[] = { "vdit", "vditsrc" };
    for (int k = 0; k < 2; k++) {
        GstElement *el = gst_element_factory_make(names[k], NULL);
        T_CHECK(el != NULL, "%s exists", names[k]);
        if (!el)
            continue;
        /* vdit loads in NULL->READY, vditsrc in READY->PAUSED (start) */
        GstState load_to = k == 0 ? GST_STATE_READY : GST_STATE_PAUSED;
        gchar *dev = NULL;
        g_object_get(el, "device", &dev, NULL);
        T_CHECK(dev == NULL, "%s: device NULL by default (%s)", names[k], dev ? dev : "NULL");
        g_free(dev);
        g_object_set(el, "model", model, "threads", 1, "device", "gpu", NULL);
        GstBus *bus = gst_bus_new();
        gst_element_set_bus(el, bus);
        T_CHECK(gst_element_set_state(el, load_to) == GST_STATE_CHANGE_FAILURE,
                "%s device=gpu fails", names[k]);
        gchar *msg = pop_error(bus);
        T_CHECK(msg && strstr(msg, "device 'gpu'"), "%s device=gpu: %s", names[k],
                msg ? msg : "no error posted");
        g_free(msg);
        gst_element_set_state(el, GST_STATE_NULL);

        g_object_set(el, "device", "cuda", NULL);
        GstStateChangeReturn r = gst_element_set_state(el, load_to);
        msg = pop_error(bus);
        gboolean cuda_ok = r != GST_STATE_CHANGE_FAILURE;
        T_CHECK(cuda_ok || (msg && strstr(msg, "device cuda:0: ") != NULL),
                "%s device=cuda: %s", names[k],
                cuda_ok ? "loaded (a GPU answers)" : msg ? msg : "no error posted");
        g_free(msg);
        gst_element_set_state(el, GST_STATE_NULL);

        if (k == 0) {
            /* (vditsrc alone would start streaming in PAUSED: its loads
             * that work are gst_launch's) */
            g_object_set(el, "device", "auto", NULL);
            T_CHECK(gst_element_set_state(el, GST_STATE_READY) == GST_STATE_CHANGE_SUCCESS,
                    "vdit device=auto loads");
            /* changed while the model is loaded: kept for the next load */
            g_object_set(el, "device", "cuda:x", NULL);
            g_object_get(el, "device", &dev, NULL);
            T_CHECK(dev && !strcmp(dev, "cuda:x"), "vdit: device reads back (%s)",
                    dev ? dev : "NULL");
            g_free(dev);
            T_CHECK(gst_element_set_state(el, GST_STATE_PAUSED) != GST_STATE_CHANGE_FAILURE,
                    "vdit: READY->PAUSED keeps the loaded model");
            gst_element_set_state(el, GST_STATE_NULL);
            T_CHECK(gst_element_set_state(el, GST_STATE_READY) == GST_STATE_CHANGE_FAILURE,
                    "vdit: the next load takes the new device");
            msg = pop_error(bus);
            T_CHECK(msg && strstr(msg, "device 'cuda:x'"), "vdit device=cuda:x: %s",
                    msg ? msg : "no error posted");
            g_free(msg);
            gst_element_set_state(el, GST_STATE_NULL);
        }
        gst_element_set_bus(el, NULL);
        gst_object_unref(bus);
        gst_object_unref(el);
    }
}

/* 10-bit video through the model (16-bit RGB to the engine): one out for
 * one in, the caps kept, the content edited. */
static void test_edit_10bit(void)
{
    char desc[512];
    snprintf(desc, sizeof(desc), "vdit model=\"%s\" steps=2 guidance=1 threads=1 window=5 "
             "strength=0.9", model);
    const char *caps = "video/x-raw,format=I420_10LE,width=66,height=50,framerate=25/1,"
                       "colorimetry=bt709";
    GstBuffer *in[7];
    test_frames("ball", FALSE, caps, in, 7);
    GstHarness *hr = gst_harness_new_parse(desc);
    gst_harness_set_src_caps_str(hr, caps);
    for (int i = 0; i < 7; i++)
        gst_harness_push(hr, gst_buffer_ref(in[i]));
    gst_harness_push_event(hr, gst_event_new_eos());
    GstBuffer *out[8];
    int n = pull_all(hr, out, 8);
    T_CHECK(n == 7, "I420_10LE: 7 in, %d out", n);
    GstCaps *oc = gst_pad_get_current_caps(hr->sinkpad);
    GstCaps *ic = gst_caps_from_string(caps);
    T_CHECK(oc && gst_caps_is_subset(oc, ic), "output caps %" GST_PTR_FORMAT, oc);
    GstVideoInfo vi;
    gst_video_info_from_caps(&vi, ic);
    int d[4], changed = 0;
    for (int i = 0; i < n && i < 7; i++) {
        T_CHECK(gst_buffer_get_size(out[i]) == GST_VIDEO_INFO_SIZE(&vi), "size of %d", i);
        changed = MAX(changed, frame_diff(&vi, out[i], in[i], d));
    }
    T_CHECK(changed > 16, "content changed (max %d)", changed);
    if (oc)
        gst_caps_unref(oc);
    gst_caps_unref(ic);
    unref_all(out, MIN(n, 8));
    unref_all(in, 7);
    gst_harness_teardown(hr);
}

/* vditsrc gives a 10-bit format when downstream asks for it, in the
 * colorimetry downstream fixes (bt2020) or BT.709, limited range. */
static void test_src_10bit(void)
{
    static const struct {
        const char *fmt, *col;
    } cases[] = { { "I420_10LE", NULL }, { "P010_10LE", "bt2020" }, { "v210", NULL } };
    for (guint k = 0; k < G_N_ELEMENTS(cases); k++) {
        char desc[512], caps[256];
        snprintf(desc, sizeof(desc), "vditsrc model=\"%s\" steps=2 guidance=1 num-frames=3 "
                 "threads=1", model);
        GstHarness *hr = gst_harness_new_parse(desc);
        snprintf(caps, sizeof(caps), "video/x-raw,format=%s,width=48,height=32,framerate=8/1%s%s",
                 cases[k].fmt, cases[k].col ? ",colorimetry=" : "",
                 cases[k].col ? cases[k].col : "");
        gst_harness_set_sink_caps_str(hr, caps);
        gst_harness_play(hr);
        GstBuffer *b[4];
        int n = 0;
        for (; n < 4 && (b[n] = gst_harness_pull(hr)); n++)
            ;
        T_CHECK(n == 4, "%s: 4 frames (%d)", cases[k].fmt, n);
        GstVideoInfo vi;
        const char *col;
        T_CHECK(src_caps(hr, &vi, &col), "%s: caps", cases[k].fmt);
        T_CHECK(strcmp(gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vi)), cases[k].fmt) == 0,
                "%s: format %s", cases[k].fmt,
                gst_video_format_to_string(GST_VIDEO_INFO_FORMAT(&vi)));
        T_CHECK(strcmp(col, cases[k].col ? cases[k].col : "bt709") == 0, "%s: colorimetry %s",
                cases[k].fmt, col);
        if (n > 0) {
            T_CHECK(gst_buffer_get_size(b[0]) == GST_VIDEO_INFO_SIZE(&vi), "%s: size",
                    cases[k].fmt);
            /* limited range at 10 bits: luma in [64, 940], chroma in [64, 960] */
            const GstVideoFormatInfo *fi = vi.finfo;
            GstVideoFrame f;
            int lo = 1 << 16, hi = 0;
            if (gst_video_frame_map(&f, &vi, b[0], GST_MAP_READ)) {
                guint16 *line = g_new(guint16, 48 * 4);
                for (int y = 0; y < 32; y++) {
                    fi->unpack_func(fi, GST_VIDEO_PACK_FLAG_NONE, line, f.data, f.info.stride, 0,
                                    y, 48);
                    for (int i = 0; i < 48 * 4; i++)
                        if (i % 4) {
                            lo = MIN(lo, line[i] >> 6);
                            hi = MAX(hi, line[i] >> 6);
                        }
                }
                g_free(line);
                gst_video_frame_unmap(&f);
            }
            T_CHECK(lo >= 64 && hi <= 960 && hi > lo, "%s: samples in [%d, %d]", cases[k].fmt,
                    lo, hi);
        }
        unref_all(b, n);
        gst_harness_teardown(hr);
    }
}

#define RUN(fn)                                                                   \
    do {                                                                          \
        gint64 t0_ = g_get_monotonic_time();                                      \
        fn();                                                                     \
        printf("%-36s %.2f s\n", #fn, (double)(g_get_monotonic_time() - t0_) / 1e6); \
    } while (0)

int main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    model = getenv("VDIT_TEST_MODEL");
    if (!model || !*model) {
        fprintf(stderr, "VDIT_TEST_MODEL is not set\n");
        return 1;
    }
    RUN(test_bad_model);
    RUN(test_in_equals_out);
    RUN(test_latency);
    RUN(test_eos_flushes_partial_window);
    RUN(test_flushing_seek);
    RUN(test_caps_change);
    RUN(test_other_formats);
    RUN(test_property_change);
    RUN(test_state_change_mid_window);
    RUN(test_long_stream_memory);
    RUN(test_src);
    RUN(test_src_formats);
    RUN(test_bypass_formats);
    RUN(test_bypass_colorimetry);
    RUN(test_refusals);
    RUN(test_bypass_model);
    RUN(test_device);
    RUN(test_edit_10bit);
    RUN(test_src_10bit);
    RUN(test_src_image);
    T_DONE();
}
