/* `vdit tokenize MODEL_FILE`: SentencePiece ids of each standard-input line,
 * for checking the tokenizer against SentencePiece itself. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "text/text.h"

static void usage(FILE *o)
{
    fprintf(o, "usage: vdit tokenize MODEL_FILE < text\n"
               "  MODEL_FILE: spiece.model or tokenizer.json (SentencePiece unigram)\n"
               "  Each input line ('\\n'-separated, any bytes) gives one output line: its\n"
               "  token ids, space-separated, ending with the end-of-sequence id. No padding,\n"
               "  no prompt cleaning: SentencePiece's own normalisation only.\n"
               "Exit status: 0 done, 1 the model could not be read, 2 bad usage.\n");
}

int cmd_tokenize(int argc, char **argv)
{
    if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc == 2 ? stdout : stderr);
        return argc == 2 ? 0 : 2;
    }
    if (argv[1][0] == '-' && argv[1][1]) {
        fprintf(stderr, "vdit tokenize: unknown option '%s' (see vdit tokenize --help)\n",
                argv[1]);
        return 2;
    }
    vd_log lg = { 0 };
    vd_tok *t = NULL;
    if (vd_tok_load(argv[1], &lg, &t)) {
        fprintf(stderr, "vdit tokenize: %s\n", lg.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int max = 256, rc = 0;
    int32_t *ids = malloc((size_t)max * sizeof(int32_t));
    ssize_t n;
    while (ids && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            n--;
        int k = vd_tok_encode(t, line, (size_t)n, ids, max);
        if (k > max) {
            int32_t *q = realloc(ids, (size_t)k * sizeof(int32_t));
            if (!q)
                break;
            ids = q;
            max = k;
            k = vd_tok_encode(t, line, (size_t)n, ids, max);
        }
        if (k < 0) {
            fprintf(stderr, "vdit tokenize: encoding failed (%d)\n", k);
            rc = 1;
            break;
        }
        for (int i = 0; i < k; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    if (!ids) {
        fprintf(stderr, "vdit tokenize: out of memory\n");
        rc = 1;
    }
    free(ids);
    free(line);
    vd_tok_free(&t);
    if (fflush(stdout))
        rc = 1;
    return rc;
}
