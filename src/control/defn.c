/* control/defn.c: definition hashes and spec differences (see defn.h). FNV-1a 64 over
 * the fields that make a process what it is, each followed by a separator byte so that
 * ("ab","c") and ("a","bc") differ. */
#include "control/defn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME  1099511628211ull

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return (h ^ 0xff) * FNV_PRIME; /* the separator */
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    return mix(h, s, strlen(s));
}

static uint64_t mix_probe(uint64_t h, const cm_probe_spec_t *p)
{
    h = mix_str(h, p->path);
    uint64_t v[4] = {p->interval_ms, p->timeout_ms, (uint64_t)p->rise, (uint64_t)p->fall};
    return mix(h, v, sizeof v);
}

/* Everything but the binary's identity. */
static uint64_t spec_hash(const cm_svc_spec_t *sp)
{
    uint64_t h = FNV_OFFSET;
    h = mix_str(h, sp->command);
    h = mix(h, &sp->self, sizeof sp->self);
    for (int i = 0; i < sp->nargs; i++)
        h = mix_str(h, sp->args[i]);
    h = mix_str(h, "\x01env");
    for (int i = 0; i < sp->nenv; i++)
        h = mix_str(h, sp->env[i]);
    h = mix_str(h, sp->host);
    h = mix(h, &sp->port, sizeof sp->port);
    h = mix_probe(h, &sp->ready);
    h = mix_probe(h, &sp->live);
    return mix(h, &sp->drain_ms, sizeof sp->drain_ms);
}

/* The executable of sp: this binary, a path (relative to dir), or found in PATH. */
static int exe_path(const cm_svc_spec_t *sp, const char *self, const char *dir, char *out,
                    size_t cap)
{
    if (sp->self)
        return snprintf(out, cap, "%s", self) < (int)cap ? 0 : -ENAMETOOLONG;
    if (strchr(sp->command, '/'))
        return snprintf(out, cap, "%s%s%s", sp->command[0] == '/' ? "" : dir,
                        sp->command[0] == '/' ? "" : "/", sp->command) < (int)cap
                   ? 0
                   : -ENAMETOOLONG;
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(out, cap, "%.*s/%s", (int)len, p, sp->command);
        if (access(out, X_OK) == 0)
            return 0;
        p += len + (colon ? 1 : 0);
    }
    return -ENOENT;
}

void cm_defn_hash(const cm_svc_spec_t *sp, const char *self, const char *dir, char out[CM_DEFN_LEN])
{
    uint64_t h = spec_hash(sp);
    char exe[4096];
    struct stat st;
    if (exe_path(sp, self, dir, exe, sizeof exe) == 0 && stat(exe, &st) == 0) {
        /* a rebuilt binary is a new file (new inode) or at least a new mtime */
        uint64_t id[5] = {(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size,
                          (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec};
        h = mix_str(h, exe);
        h = mix(h, id, sizeof id);
    } else
        h = mix_str(h, "missing");
    snprintf(out, CM_DEFN_LEN, "%016llx", (unsigned long long)h);
}

int cm_defn_same(const cm_svc_spec_t *a, const cm_svc_spec_t *b)
{
    /* a hash compare: two different definitions colliding in 64 bits is not a concern */
    return spec_hash(a) == spec_hash(b);
}

const char *cm_defn_change_name(cm_defn_change_t c)
{
    static const char *const names[] = {"unchanged", "scaled", "rolled out", "started", "stopped"};
    return c <= CM_DEFN_REMOVED ? names[c] : "?";
}

static int one_url(const char *service, char ***urls, int *n, void *arg)
{
    (void)service, (void)arg;
    char **l = calloc(1, sizeof *l);
    if (!l || !(l[0] = strdup("http://127.0.0.1:1"))) {
        free(l);
        return -ENOMEM;
    }
    *urls = l, *n = 1;
    return 0;
}

/* 1 when the gateway: sections render differently (the instance sets left out). */
static int gateway_differs(const cm_spec_t *a, const cm_spec_t *b)
{
    if (a->has_gateway != b->has_gateway)
        return 1;
    if (!a->has_gateway)
        return 0;
    char *ya = NULL, *yb = NULL, err[512];
    int differs = 1;
    if (cm_spec_gateway_yaml(a, one_url, NULL, &ya, err, sizeof err) == 0 &&
        cm_spec_gateway_yaml(b, one_url, NULL, &yb, err, sizeof err) == 0)
        differs = strcmp(ya, yb) != 0;
    free(ya);
    free(yb);
    return differs;
}

int cm_defn_diff(const cm_spec_t *old, const cm_spec_t *new_, cm_defn_diff_t *out,
                 int *gateway_changed)
{
    int n = 0;
    for (int i = 0; i < old->nsvcs; i++) {
        const cm_svc_spec_t *a = &old->svcs[i], *b = cm_spec_service(new_, a->name);
        cm_defn_diff_t *d = &out[n++];
        memset(d, 0, sizeof *d);
        snprintf(d->service, sizeof d->service, "%s", a->name);
        if (!b)
            d->change = CM_DEFN_REMOVED;
        else if (!cm_defn_same(a, b)) {
            d->change = CM_DEFN_DEFINITION;
            d->count_changed = a->instances != b->instances;
        } else
            d->change = a->instances != b->instances ? CM_DEFN_COUNT : CM_DEFN_SAME;
    }
    for (int i = 0; i < new_->nsvcs; i++)
        if (!cm_spec_service(old, new_->svcs[i].name)) {
            cm_defn_diff_t *d = &out[n++];
            memset(d, 0, sizeof *d);
            snprintf(d->service, sizeof d->service, "%s", new_->svcs[i].name);
            d->change = CM_DEFN_ADDED;
        }
    *gateway_changed = gateway_differs(old, new_);
    return n;
}
