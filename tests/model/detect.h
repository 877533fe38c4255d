/* A simple detector for the behaviour tests on the bundled model: the main
 * object's colour and motion in a clip of the procedural generator's kind
 * (one object on a solid background). Same rules as models/detect.py, so the
 * C figures and the PyTorch evaluation agree:
 *   1. background = per-channel median of the frame's border pixels;
 *   2. object mask = pixels farther than 60 (RGB distance) from it;
 *   3. colour = mean RGB of the mask pixels over all frames, named by the
 *      nearest object colour of models/data/gen.py;
 *   4. motion = mask centroid over the last quarter of the frames minus that
 *      over the first quarter; under 6% of min(w, h) it is not a move, and
 *      then the mask area decides growing (x1.4) / shrinking (x0.7) / still;
 *      else the nearest of 8 directions (y grows downwards). */
#ifndef VDIT_TEST_DETECT_H
#define VDIT_TEST_DETECT_H

#include <stdint.h>

enum td_motion {
    TD_RIGHT, TD_DOWN_RIGHT, TD_DOWN, TD_DOWN_LEFT, TD_LEFT, TD_UP_LEFT, TD_UP, TD_UP_RIGHT,
    TD_STILL, TD_GROWING, TD_SHRINKING, TD_NONE, /* no object found */
    TD_MOTION_COUNT
};

typedef struct td_result {
    int colour;       /* index into td_colour_name(), -1 if no object */
    int motion;       /* enum td_motion */
    double dx, dy;    /* centroid displacement (pixels) */
    double area_ratio;/* mask area last quarter / first quarter */
    double coverage;  /* mean mask fraction */
    double rgb[3];    /* mean object colour */
} td_result;

/* rgb: t frames of h rows of w packed RGB pixels. Returns 0, -1 on bad
 * arguments or out of memory. */
int td_detect(const uint8_t *rgb, int w, int h, int t, td_result *r);

/* Object colour names (gen.OBJ_COLOURS order); NULL past the end. */
const char *td_colour_name(int i);
int td_colour_index(const char *name); /* -1 if unknown */
/* "right", "down and right", ..., "still", "growing", "shrinking", "none";
 * underscores match spaces. */
const char *td_motion_name(int m);
int td_motion_index(const char *name);  /* -1 if unknown */

/* Frame distances (mean absolute difference per channel, 0..255). */
double td_frame_diff(const uint8_t *a, const uint8_t *b, int w, int h);
/* Mask centroid of one frame (object = far from the border median);
 * returns the mask's pixel count. */
int td_centroid(const uint8_t *frame, int w, int h, double *cx, double *cy);

#endif
