/* users/users.h: `cmesh users`, the users REST service (the seed's API, done right). */
#ifndef CMESH_USERS_USERS_H
#define CMESH_USERS_USERS_H

/* Parses flags and serves until drained. Returns the process exit code. */
int cm_users_main(int argc, char **argv);

#endif
