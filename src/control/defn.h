/* control/defn.h: what an instance runs, as one short hash (its "definition"), and the
 * difference between two specs (what `cmesh reload` applies). The hash covers the
 * service's command, args, env, listen address, probes and drain timeout, and the
 * identity of the executable (path, device, inode, size, mtime): a new binary or a changed
 * definition gives a new hash, so a rollout replaces exactly the stale instances. The
 * instance count and rollout_timeout are not part of it (they change no process).
 * Called by the supervisor at every spawn and by up.c at reload. */
#ifndef CMESH_CONTROL_DEFN_H
#define CMESH_CONTROL_DEFN_H

#include "control/spec.h"

#define CM_DEFN_LEN 17 /* 16 hex digits + NUL */

/* The definition hash of sp as run by exe (this binary for cmesh commands, else the
 * command found in PATH or relative to dir). An executable that cannot be found hashes
 * as "missing" (its spawn fails and says why). Writes CM_DEFN_LEN bytes to out. */
void cm_defn_hash(const cm_svc_spec_t *sp, const char *self, const char *dir,
                  char out[CM_DEFN_LEN]);

/* 1 when a and b run the same process (every field of the hash but the binary's). */
int cm_defn_same(const cm_svc_spec_t *a, const cm_svc_spec_t *b);

typedef enum {
    CM_DEFN_SAME,       /* nothing to do */
    CM_DEFN_COUNT,      /* only instances changed: scaled */
    CM_DEFN_DEFINITION, /* what it runs changed: rolled out (and scaled when the count did) */
    CM_DEFN_ADDED,      /* new in the file: started */
    CM_DEFN_REMOVED,    /* gone from the file: stopped */
} cm_defn_change_t;

const char *cm_defn_change_name(cm_defn_change_t c); /* "rolled out" */

typedef struct cm_defn_diff {
    char service[CM_SPEC_NAME_MAX];
    cm_defn_change_t change;
    int count_changed; /* with CM_DEFN_DEFINITION: the file's count changed too */
} cm_defn_diff_t;

/* The per-service differences from old to new (every service of either, old's order
 * first), at most CM_SPEC_MAX_SVCS * 2 rows into out; gateway_changed is 1 when the
 * gateway: section's text (its routes, auth, ...) differs. Pure. Returns the row count. */
int cm_defn_diff(const cm_spec_t *old, const cm_spec_t *new_, cm_defn_diff_t *out,
                 int *gateway_changed);

#endif
