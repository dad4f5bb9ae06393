/* users/users.h: `cmesh users`, the users REST service (the seed's API, done right). */
#ifndef CMESH_USERS_USERS_H
#define CMESH_USERS_USERS_H

#include "core/flags.h"

/* Its command line (options: cm_svc_opts_t), for main and the help tests. */
extern const cm_cmd_t cm_users_cmd;
/* Parses flags and serves until drained. Returns the process exit code. */
int cm_users_main(int argc, char **argv);

#endif
