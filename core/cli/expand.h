/* Prompt expansion through an OpenAI-compatible chat endpoint (optional,
 * off unless the user names an endpoint). */
#ifndef VDIT_CLI_EXPAND_H
#define VDIT_CLI_EXPAND_H

#include <stddef.h>

/* POSTs a chat completion request (temperature 0) to `url`
 * (http://host[:port][/path]; "/" or "" means /v1/chat/completions, ".../v1"
 * gets /chat/completions appended) asking `model` (NULL: "default") to
 * rewrite `prompt` into a detailed video caption. On success returns 0 and
 * *out is a malloc'd caption; on failure returns -1 with a message in err
 * (the caller keeps the original prompt). timeout_ms bounds each socket
 * operation. */
int expand_prompt(const char *url, const char *model, const char *prompt, int timeout_ms,
                  char **out, char *err, size_t errlen);

#endif
