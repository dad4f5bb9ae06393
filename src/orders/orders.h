/* orders/orders.h: `cmesh orders`, the orders REST service. Checks with the users
 * service (over HTTP, never its database) that an order's user exists. */
#ifndef CMESH_ORDERS_ORDERS_H
#define CMESH_ORDERS_ORDERS_H

/* Parses flags and serves until drained. Returns the process exit code. */
int cm_orders_main(int argc, char **argv);

#endif
