/* cli/main.c: busybox-style entry point: `cmesh SUB [flags]` runs subcommand SUB.
 * Every process of the system is this one binary. */
#include <stdio.h>
#include <string.h>

#include "core/client.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"
#include "orders/orders.h"
#include "store/db.h"
#include "users/users.h"

static const char usage[] = "usage: cmesh COMMAND [flags]\n"
                            "\n"
                            "commands:\n"
                            "  users     serve the users REST API        (cmesh users --help)\n"
                            "  orders    serve the orders REST API       (cmesh orders --help)\n"
                            "  gateway   load-balancing reverse proxy    (cmesh gateway --help)\n"
                            "  token     print a signed gateway JWT      (cmesh token --help)\n"
                            "\n"
                            "cmesh COMMAND --help describes every flag of a command.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    /* libcurl's and SQLite's global state must be set up before any thread starts */
    if (cm_client_global_init() < 0 || cm_db_global_init() < 0) {
        fprintf(stderr, "cmesh: libcurl or SQLite failed to initialise\n");
        return 1;
    }
    if (strcmp(cmd, "users") == 0)
        return cm_users_main(argc - 1, argv + 1);
    if (strcmp(cmd, "orders") == 0)
        return cm_orders_main(argc - 1, argv + 1);
    if (strcmp(cmd, "gateway") == 0)
        return gw_gateway_main(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0)
        return gw_token_main(argc - 1, argv + 1);
    fprintf(stderr, "cmesh: unknown command '%s'; see cmesh --help\n", cmd);
    return 2;
}
