/* The `vdit` command: one function per subcommand, each in its own file. */
#ifndef VDIT_CLI_H
#define VDIT_CLI_H

int cmd_conform(int argc, char **argv);
int cmd_selfcheck(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_edit(int argc, char **argv);
int cmd_extend(int argc, char **argv);
int cmd_loop(int argc, char **argv);
int cmd_bridge(int argc, char **argv);

#endif
