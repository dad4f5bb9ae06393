/* gateway/gateway.h: the `cmesh gateway` command (gateway.c). */
#ifndef CMESH_GATEWAY_GATEWAY_H
#define CMESH_GATEWAY_GATEWAY_H

#include "core/flags.h"

/* Runs the gateway until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code:
 * 0 after a drain, 2 for bad flags or config (FILE:LINE: why), 1 when it cannot start. */
int gw_gateway_main(int argc, char **argv);

/* Its command line (options private to gateway.c), for main and the help tests. */
extern const cm_cmd_t gw_gateway_cmd;

#endif
