/* orders/orders.h: `cmesh orders`, the orders REST service. Checks with the users
 * service (over HTTP, never its database) that an order's user exists. */
#ifndef CMESH_ORDERS_ORDERS_H
#define CMESH_ORDERS_ORDERS_H

#include "core/flags.h"

/* Its command line (options private to orders.c), for main and the help tests. */
extern const cm_cmd_t cm_orders_cmd;
/* Parses flags and serves until drained. Returns the process exit code. */
int cm_orders_main(int argc, char **argv);

#endif
