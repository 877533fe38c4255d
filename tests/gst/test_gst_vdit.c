/* GstHarness tests of the vdit elements on a tiny random-weight model
 * (path in VDIT_TEST_MODEL). The plugin is loaded from GST_PLUGIN_PATH. */
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
    T_DONE();
}
