/* gateway/table.h: building a worker's table from a snapshot, instance availability
 * (health, outlier ejection, slow start) and the pick (table.c). */
#ifndef CMESH_GATEWAY_TABLE_H
#define CMESH_GATEWAY_TABLE_H

#include <stdint.h>

#include "gateway/snapshot.h"
#include "gateway/table_types.h"

/* Builds the worker's table for snap, carrying over instances of old (may be NULL). */
int gw_table_build(gw_worker_t *w, gw_snap_t *snap, gw_table_t *old, gw_table_t **out);
void gw_table_unref(gw_table_t *t);
/* Drops one reference; the last closes its idle connections and frees it. */
void gw_inst_unref(gw_inst_t *in);
/* A removed instance's requests or connections changed: its share of the drain count
 * follows (max of in-flight requests and open connections). Not removed: nothing. */
void gw_inst_drain_note(gw_inst_t *in);
/* Marks every instance of old that table t no longer names as removed, closes its idle
 * connections and counts what it still has open (drain.h). */
void gw_table_mark_removed(gw_table_t *old, gw_table_t *t);
/* Refreshes each host's availability and slow-start weight, then picks; its slot in rt
 * to *slot (when not NULL), for avoid lists and gw_inst_result. */
gw_inst_t *gw_rt_pick(gw_rt_t *rt, const int *avoid, int navoid, uint64_t key_hash, uint64_t now_ns,
                      int *slot);
/* The share of its weight in gets now: ramps from 0.1 to 1 over the route's slow_start
 * after it came back (health, ejection) or was added at run time; 1 otherwise. */
double gw_inst_slow_start(const gw_rt_t *rt, const gw_inst_t *in, uint64_t now_ns);
/* Outcome of one attempt on the instance in slot of rt (the route the attempt picked it
 * from, in a table the caller holds), for outlier ejection and peak EWMA. */
void gw_inst_result(gw_rt_t *rt, int slot, int failed, uint64_t rtt_us, uint64_t now_ns);

#endif
