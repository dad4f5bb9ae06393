/* control/sample.h: one round of the dashboard's history. Per service of the spec: the
 * supervisor's last /metrics window of each supervised instance, summed (rps; p99 of the
 * merged latency buckets; 5xx share), and the registry's counts (desired, running,
 * ready), recorded into history.c. Called by up.c on the supervisor's 2 s tick. */
#ifndef CMESH_CONTROL_SAMPLE_H
#define CMESH_CONTROL_SAMPLE_H

#include <stdint.h>

#include "control/history.h"
#include "control/registry.h"
#include "control/spec.h"
#include "control/supervise.h"

/* Everything is borrowed; now_ms is the wall clock the points carry. */
void cm_sample_round(cm_history_t *h, const cm_spec_t *spec, const cm_sup_t *sup,
                     const cm_registry_t *reg, int64_t now_ms);

#endif
