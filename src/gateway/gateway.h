/* gateway/gateway.h: the `cmesh gateway` command (gateway.c). */
#ifndef CMESH_GATEWAY_GATEWAY_H
#define CMESH_GATEWAY_GATEWAY_H

/* Runs the gateway until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code:
 * 0 after a drain, 2 for bad flags or config (FILE:LINE: why), 1 when it cannot start. */
int gw_gateway_main(int argc, char **argv);

#endif
