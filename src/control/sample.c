/* control/sample.c: one round of the dashboard's history (see sample.h). */
#include "control/sample.h"

#include <string.h>

#include "control/load.h"

static void sample_service(cm_history_t *h, const char *name, const cm_sup_t *sup,
                           const cm_registry_t *reg, int64_t now_ms)
{
    cm_history_point_t p = {.t_ms = now_ms, .rps = -1, .desired = cm_sup_count(sup, name)};
    cm_load_sample_t sum;
    memset(&sum, 0, sizeof sum);
    int n = cm_registry_ninstances(reg, name);
    for (int i = 0; i < n; i++) {
        const cm_reg_inst_t *in = cm_registry_instance(reg, name, i);
        p.running += in->pid > 0 || in->ext_id[0];
        p.ready += in->state == CM_INST_READY;
        cm_load_sample_t w;
        uint64_t dt;
        if (in->ext_id[0] || cm_sup_window(sup, name, in->index, &w, &dt) < 0 || dt == 0)
            continue; /* hand-registered ones are not scraped */
        /* instances' windows do not line up exactly (each scrape has its own time):
         * their rates add up, their counts merge for the p99 and the error rate */
        p.rps = (p.rps < 0 ? 0 : p.rps) + w.requests * 1000.0 / (double)dt;
        cm_load_window_add(&sum, &w);
    }
    if (p.rps < 0 && p.running == 0)
        p.rps = 0; /* nothing runs: no load, rather than an unknown one */
    p.p99_ms = cm_load_window_p99(&sum);
    p.errors = cm_load_window_errors(&sum);
    cm_history_add(h, name, &p);
}

void cm_sample_round(cm_history_t *h, const cm_spec_t *spec, const cm_sup_t *sup,
                     const cm_registry_t *reg, int64_t now_ms)
{
    for (int i = 0; i < spec->nsvcs; i++)
        sample_service(h, spec->svcs[i].name, sup, reg, now_ms);
}
