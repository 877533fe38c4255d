/*
 * Long-stream soak of the GStreamer `vdit` element (issue 26).
 *
 *     soak_gst FRAMES [MODEL_DIR]     (GST_PLUGIN_PATH: the plugin's folder)
 *
 * Pushes FRAMES I420 frames (67x45, 8 fps, a moving pattern) through `vdit`
 * in a GstHarness, on the bundled model unless MODEL_DIR is given, with the
 * prompt changed every 500 frames, caps changes (to 45x67 at 5% of the
 * stream, back to 67x45 at 40%) and a flushing seek (FLUSH_START / FLUSH_STOP
 * and a new segment) at 70%. Checks: every frame that went in comes out (frames dropped by the
 * flush excepted, as GStreamer's flush semantics want, and counted), each
 * with its own pts, in strictly increasing order, none twice; and the peak
 * RSS (VmHWM) once 1,000 frames are out is within 2% of the peak at the end.
 * (A frame shape seen for the first time costs a few MB once: oneDNN's
 * kernels and buffers for it. The first caps change comes before frame 1,000
 * so that the check measures growth with length; the second one, back to the
 * first shape, shows that a caps change itself leaks nothing.)
 * Prints one line per check and a summary line; exits 1 when one fails.
 */
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static GstCaps *caps_of(int w, int h)
{
    return gst_caps_new_simple("video/x-raw", "format", G_TYPE_STRING, "I420", "width",
                               G_TYPE_INT, w, "height", G_TYPE_INT, h, "framerate",
                               GST_TYPE_FRACTION, 8, 1, NULL);
}

static GstBuffer *frame(const GstVideoInfo *vi, int i)
{
    GstBuffer *b = gst_buffer_new_allocate(NULL, GST_VIDEO_INFO_SIZE(vi), NULL);
    GstMapInfo m;
    gst_buffer_map(b, &m, GST_MAP_WRITE);
    for (gsize k = 0; k < m.size; k++)
        m.data[k] = (guint8)((k * 3 + (gsize)i * 5 + k / 41) & 0xff);
    gst_buffer_unmap(b, &m);
    GST_BUFFER_PTS(b) = gst_util_uint64_scale_int((guint64)i, GST_SECOND, 8);
    GST_BUFFER_DURATION(b) = GST_SECOND / 8;
    return b;
}

/* What came out so far, against what went in. */
typedef struct tally {
    GstClockTime *in_pts; /* pts of each frame pushed; NONE: dropped by the flush */
    int n_in, next;       /* frames pushed; index of the next one expected out */
    int n_out, order_ok, pts_ok;
    GstClockTime last;
} tally;

/* Pulls every buffer the element has pushed: in order, each frame's own pts. */
static void pull_all(GstHarness *h, tally *t)
{
    GstBuffer *o;
    while ((o = gst_harness_try_pull(h))) {
        GstClockTime p = GST_BUFFER_PTS(o);
        t->order_ok &= !GST_CLOCK_TIME_IS_VALID(t->last) || p > t->last;
        while (t->next < t->n_in && t->in_pts[t->next] == GST_CLOCK_TIME_NONE)
            t->next++; /* dropped by the flush */
        t->pts_ok &= t->next < t->n_in && t->in_pts[t->next] == p;
        t->next++;
        t->last = p;
        t->n_out++;
        gst_buffer_unref(o);
    }
}

int main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: soak_gst FRAMES [MODEL_DIR]\n");
        return 2;
    }
    int n = atoi(argv[1]);
    GstHarness *h = gst_harness_new("vdit");
    g_object_set(h->element, "strength", 0.5, "seed", (guint64)1, "prompt", "a red ball", NULL);
    if (argc > 2)
        g_object_set(h->element, "model", argv[2], NULL);
    const char *prompts[] = { "a watercolor painting of a city", "snow falls at night",
                              "a bright cartoon of a cat", "a red ball bounces" };
    int w = 67, ht = 45, caps_at1 = n / 20, caps_at = n * 4 / 10, flush_at = n * 7 / 10;
    int thr = n / 2 < 1000 ? n / 2 : 1000; /* frames out when the first peak is taken */
    GstCaps *caps = caps_of(w, ht);
    gst_harness_set_src_caps(h, caps);
    GstVideoInfo vi;
    gst_video_info_set_format(&vi, GST_VIDEO_FORMAT_I420, w, ht);

    tally t = { .in_pts = g_new0(GstClockTime, (gsize)n), .order_ok = 1, .pts_ok = 1,
                .last = GST_CLOCK_TIME_NONE };
    int dropped = 0, prompts_set = 0;
    long hwm_1k = 0;
    GstFlowReturn fr = GST_FLOW_OK;
    time_t t0 = time(NULL);

    for (int i = 0; i <= n; i++) {
        pull_all(h, &t);
        if (!hwm_1k && t.n_out >= thr)
            hwm_1k = hwm_kb();
        if (i == n || fr != GST_FLOW_OK)
            break;
        if (i && i % 500 == 0) {
            g_object_set(h->element, "prompt", prompts[prompts_set++ % 4], NULL);
        }
        if ((i == caps_at1 || i == caps_at) && caps_at > caps_at1) {
            /* the element finishes the old size first */
            int tw = w;
            w = ht;
            ht = tw;
            gst_harness_set_src_caps(h, caps_of(w, ht));
            gst_video_info_set_format(&vi, GST_VIDEO_FORMAT_I420, w, ht);
            pull_all(h, &t); /* drained at the old size */
        }
        if (i == flush_at && flush_at > caps_at) {
            /* a flushing seek: what is queued in the element is dropped */
            gst_harness_push_event(h, gst_event_new_flush_start());
            gst_harness_push_event(h, gst_event_new_flush_stop(TRUE));
            for (int k = t.next; k < t.n_in; k++) {
                t.in_pts[k] = GST_CLOCK_TIME_NONE;
                dropped++;
            }
            t.next = t.n_in;
            GstSegment seg;
            gst_segment_init(&seg, GST_FORMAT_TIME);
            gst_harness_push_event(h, gst_event_new_segment(&seg));
        }
        t.in_pts[t.n_in++] = gst_util_uint64_scale_int((guint64)i, GST_SECOND, 8);
        fr = gst_harness_push(h, frame(&vi, i));
        if (t.n_in % 1000 == 0)
            printf("# %d frames in, %d out, %lds, peak RSS %ld kB\n", t.n_in, t.n_out,
                   (long)(time(NULL) - t0), hwm_kb());
    }
    gst_harness_push_event(h, gst_event_new_eos());
    pull_all(h, &t);
    long hwm_end = hwm_kb();
    double growth = hwm_1k ? 100.0 * (double)(hwm_end - hwm_1k) / (double)hwm_1k : 0;
    int fails = 0;
#define CHECK(ok, ...)                                                                       \
    do {                                                                                     \
        printf((ok) ? "ok: " : "FAILED: ");                                                  \
        printf(__VA_ARGS__);                                                                 \
        printf("\n");                                                                        \
        fails += !(ok);                                                                      \
    } while (0)
    CHECK(fr == GST_FLOW_OK, "every push accepted (%s)", gst_flow_get_name(fr));
    CHECK(t.n_out == t.n_in - dropped, "frames in %d = frames out %d + %d dropped by the flush",
          t.n_in, t.n_out, dropped);
    CHECK(t.order_ok, "timestamps strictly increasing");
    CHECK(t.pts_ok, "each output carries its input's pts (none lost, duplicated or reordered)");
    CHECK(hwm_1k > 0 && growth <= 2.0, "peak RSS %ld kB at frame %d, %ld kB at frame %d (%+.2f%%)",
          hwm_1k, thr, hwm_end, n, growth);
    printf("soak gst: %d frames in %lds, peak RSS %ld kB at frame %d -> %ld kB at the end "
           "(%+.2f%%), %d prompt changes, caps changes at %d and %d, flushing seek at %d "
           "(%d dropped), "
           "%d failed\n",
           n, (long)(time(NULL) - t0), hwm_1k, thr, hwm_end, growth, prompts_set, caps_at1,
           caps_at, flush_at, dropped, fails);
    g_free(t.in_pts);
    gst_harness_teardown(h);
    return fails ? 1 : 0;
}
