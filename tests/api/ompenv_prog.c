/* Linked against the shared libvdit only (no OpenMP of its own), as an
 * FFmpeg build is: tests/api/ompenv.sh reads what libgomp started with. */
#include <stdio.h>

#include "vdit/vdit.h"

int main(void)
{
    printf("libvdit %s\n", vdit_version());
    return 0;
}
