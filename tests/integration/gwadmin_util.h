/* tests/integration/gwadmin_util.h: the gateway serves its admin API (/_cmesh/...) only on
 * a listener of its own (--admin-listen), never on the traffic port. adm_prepare() picks a
 * free loopback port for it and fills an h_proc_t that names it (port and url only, no
 * process), so a test talks to the admin API with h_req(&admin, ...) as to any process.
 * Header-only (static inline), on top of harness.h. */
#ifndef CMESH_TESTS_GWADMIN_UTIL_H
#define CMESH_TESTS_GWADMIN_UTIL_H

#include "harness.h"

#include <stdio.h>
#include <string.h>

/* Fills adm for a new admin listener and arg (cap >= 32) with its --admin-listen value. */
static inline void adm_prepare(h_proc_t *adm, char *arg, size_t cap)
{
    memset(adm, 0, sizeof *adm);
    adm->pid = -1;
    adm->port = h_free_port();
    snprintf(adm->url, sizeof adm->url, "http://127.0.0.1:%d", adm->port);
    snprintf(arg, cap, "127.0.0.1:%d", adm->port);
}

#endif
