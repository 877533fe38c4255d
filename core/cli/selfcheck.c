/* vdit selfcheck [--threads N]: every fast kernel against its reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vdit/vdit.h"

static void print_line(void *user, int level, const char *msg)
{
    int *failed_lines = user;
    if (level == VDIT_LOG_ERROR)
        (*failed_lines)++;
    printf("%s\n", msg);
}

int cmd_selfcheck(int argc, char **argv)
{
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1024) {
                fprintf(stderr, "vdit selfcheck: bad --threads '%s'\n", argv[i]);
                return 2;
            }
            threads = (int)v;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vdit selfcheck [--threads N]\n"
                   "Runs every fast kernel against the plain C reference on random data and\n"
                   "prints one line per case with its normalised error and OK/FAIL.\n");
            return 0;
        } else {
            fprintf(stderr, "vdit selfcheck: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    int failed = 0;
    int err = vdit_selfcheck(threads, print_line, &failed);
    printf("selfcheck: %s\n", err ? "FAILED" : "all kernels OK");
    return err ? 1 : 0;
}
