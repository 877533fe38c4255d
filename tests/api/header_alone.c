/* The public header compiles on its own, in C99, with no other include. */
#include "vdit/vdit.h"

int vdit_header_alone_ok(void);
int vdit_header_alone_ok(void)
{
    return VDIT_ERR_COUNT;
}
