/* cli/main.c: busybox-style entry point: `cmesh SUB [flags]` runs subcommand SUB.
 * Every process of the system is this one binary. Also `cmesh version`: the cmesh
 * version and those of the libraries it runs on, asked of the libraries themselves. */
#include "cmesh_version.h" /* generated: build/generated/ */

#include <libfyaml.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <uv.h>

#include "cli/ctl.h"
#include "control/up.h"
#include "core/client.h"
#include "core/parser.h"
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
                            "  up        run the whole system of cmesh.yaml (cmesh up --help)\n"
                            "  down      stop it gracefully              (cmesh down --help)\n"
                            "  status    its instances, like kubectl get (cmesh status --help)\n"
                            "  scale     set a service's instance count  (cmesh scale --help)\n"
                            "  logs      an instance's output            (cmesh logs --help)\n"
                            "  rollout   replace a service's instances   (cmesh rollout --help)\n"
                            "  reload    apply a changed cmesh.yaml      (cmesh reload --help)\n"
                            "  version   print the versions of cmesh and its libraries\n"
                            "            (also cmesh --version)\n"
                            "\n"
                            "cmesh COMMAND --help describes every flag of a command.\n";

/* The run-time versions: the library that is loaded, which may differ from the headers
 * cmesh was built with. */
static int print_version(void)
{
    const curl_version_info_data *curl = curl_version_info(CURLVERSION_NOW);
    printf("cmesh %s\n", CMESH_VERSION);
    printf("  libuv        %s\n", uv_version_string());
    printf("  llhttp       %s (built in, strict mode)\n", cm_parser_version());
    printf("  SQLite       %s\n", sqlite3_libversion());
    printf("  jansson      %s\n", jansson_version_str());
    printf("  libcurl      %s\n", curl ? curl->version : "unknown");
    printf("  OpenSSL      %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("  libfyaml     %s\n", fy_library_version());
    printf("  libjwt       %s (built with; it reports none at run time)\n", CMESH_LIBJWT_VERSION);
    return fflush(stdout) == 0 ? 0 : 1;
}

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
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        if (argc > 2) {
            fprintf(stderr, "cmesh: %s takes no arguments; see cmesh --help\n", cmd);
            return 2;
        }
        return print_version();
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
    if (strcmp(cmd, "up") == 0)
        return cm_up_main(argc - 1, argv + 1);
    if (strcmp(cmd, "down") == 0)
        return cm_down_main(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cm_ctl_status_main(argc - 1, argv + 1);
    if (strcmp(cmd, "scale") == 0)
        return cm_ctl_scale_main(argc - 1, argv + 1);
    if (strcmp(cmd, "rollout") == 0)
        return cm_ctl_rollout_main(argc - 1, argv + 1);
    if (strcmp(cmd, "reload") == 0)
        return cm_ctl_reload_main(argc - 1, argv + 1);
    if (strcmp(cmd, "logs") == 0)
        return cm_ctl_logs_main(argc - 1, argv + 1);
    if (strcmp(cmd, "token") == 0) {
        int rc = cm_ctl_token_main(argc - 1, argv + 1); /* the running system's key */
        return rc >= 0 ? rc : gw_token_main(argc - 1, argv + 1);
    }
    fprintf(stderr, "cmesh: unknown command '%s'; see cmesh --help\n", cmd);
    return 2;
}
