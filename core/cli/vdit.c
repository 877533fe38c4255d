/* vdit: command-line front end of the engine. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "kernels/omp_env.h"
#include "vdit/vdit.h"

typedef struct subcmd {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} subcmd;

/* OpenMP's idle workers must not spin away a loaded machine: the settings
 * libvdit-ompenv gives programs that load libvdit (core/src/kernels/
 * omp_env.c) must be in the environment before libgomp starts, which for
 * this statically linked command is before main: so it re-executes itself
 * once with them. The user's own settings are kept; VDIT_OMP_SPIN=0: off. */
static void limit_omp_spin(char **argv)
{
    if (vdit_limit_omp_spin())
        execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
}

int main(int argc, char **argv)
{
    limit_omp_spin(argv);
    /* a file-size limit (ulimit -f) then fails the write with EFBIG, which
     * is reported and the file finished, instead of killing the process */
    signal(SIGXFSZ, SIG_IGN);
    const subcmd cmds[] = {
        { "generate", cmd_generate, "text to video / image (--prompt ...)" },
        { "edit", cmd_edit, "video to video by SDEdit (--input ... --strength ...)" },
        { "extend", cmd_extend, "extend a clip forward or backward in time" },
        { "loop", cmd_loop, "generate a seamless loop" },
        { "bridge", cmd_bridge, "generate frames connecting two clips" },
        { "info", cmd_info, "what a checkpoint holds" },
        { "tokenize", cmd_tokenize, "token ids of each stdin line (SentencePiece model)" },
        { "conform", cmd_conform, "check components against conformance vectors" },
        { "selfcheck", cmd_selfcheck, "every kernel against its reference" },
        { "bench", cmd_bench, "kernel and model benchmarks" },
    };
    const int n = (int)(sizeof(cmds) / sizeof(cmds[0]));
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        FILE *o = argc < 2 ? stderr : stdout;
        fprintf(o, "usage: vdit COMMAND [options]   (vdit COMMAND --help for its options)\n\n");
        for (int i = 0; i < n; i++)
            fprintf(o, "  %-10s %s\n", cmds[i].name, cmds[i].help);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("vdit %s\n", vdit_version());
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(argv[1], cmds[i].name))
            continue;
        return cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "vdit: unknown command '%s' (see vdit --help)\n", argv[1]);
    return 2;
}
