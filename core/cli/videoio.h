/* Video and image files for the vdit command, through FFmpeg's libraries
 * (libavformat/libavcodec/libswscale). */
#ifndef VDIT_CLI_VIDEOIO_H
#define VDIT_CLI_VIDEOIO_H

#include <stddef.h>
#include <stdint.h>

#include "vdit/vdit.h"

/* Reads every frame of a video or an image (anything libavformat opens:
 * y4m, mp4, mkv, png, jpg, ...) as packed RGB. *fps receives the frame rate
 * (25 if unknown). Returns 0 or a VDIT_ERR_* code with a message in err. */
int vio_read(const char *path, vdit_video **out, double *fps, char *err, size_t errlen);

/* Writes a clip; the container and codec follow the extension: .y4m
 * (rawvideo yuv444p), .mp4/.mkv/.mov (H.264 if an encoder is available, else
 * MPEG-4 part 2), .png (one frame; several frames need a %d pattern in the
 * name), .gif. */
int vio_write(const char *path, const vdit_video *v, double fps, char *err, size_t errlen);

/* The same, a frame at a time, for output written while it is made: opens
 * `path` for width x height frames (n_frames: how many are expected; it
 * only matters for PNG, whose several frames need a %d pattern). */
typedef struct vio_writer vio_writer;
int vio_writer_open(const char *path, int width, int height, int n_frames, double fps,
                    vio_writer **out, char *err, size_t errlen);
/* Encodes and writes one packed RGB frame (rows of width * 3 bytes). */
int vio_writer_put(vio_writer *w, const uint8_t *rgb, char *err, size_t errlen);
/* Flushes the encoder and finishes the file (also after a failed put: what
 * was written stays playable), frees the writer and sets *w to NULL. */
int vio_writer_close(vio_writer **w, char *err, size_t errlen);
/* Frames written so far. */
int vio_writer_frames(const vio_writer *w);

/* Checks, before any work, that vio_write could write `path`: a known
 * extension (VDIT_ERR_UNSUPPORTED otherwise), a %d pattern for several PNG
 * frames when n_frames > 1 (VDIT_ERR_INVALID_ARG; n_frames 0 = not known
 * yet) and an existing, writable folder (VDIT_ERR_IO). */
int vio_check_output(const char *path, int n_frames, char *err, size_t errlen);

#endif
