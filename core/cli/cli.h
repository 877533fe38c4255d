/* The `vdit` command: one function per subcommand. Subcommands other than
 * conform live in their own files and are weak here so that partial builds
 * link; a missing one reports that it is not built. */
#ifndef VDIT_CLI_H
#define VDIT_CLI_H

int cmd_conform(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv) __attribute__((weak));
int cmd_bench(int argc, char **argv) __attribute__((weak));
int cmd_tokenize(int argc, char **argv) __attribute__((weak));
int cmd_info(int argc, char **argv) __attribute__((weak));
int cmd_generate(int argc, char **argv) __attribute__((weak));
int cmd_edit(int argc, char **argv) __attribute__((weak));
int cmd_extend(int argc, char **argv) __attribute__((weak));
int cmd_loop(int argc, char **argv) __attribute__((weak));
int cmd_bridge(int argc, char **argv) __attribute__((weak));

#endif
