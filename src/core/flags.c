/* core/flags.c: the one command-line parser of cmesh (see flags.h). Every subcommand
 * passes its own setter, so help text and validation live next to the options. */
#include "core/flags.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int cm_flags_parse(int argc, char **argv, const char *cmd, const char *help, cm_flag_set_fn set,
                   void *ctx)
{
    char err[256];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(help, stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(stderr, "cmesh %s: unexpected argument '%s'; see cmesh %s --help\n", cmd, arg,
                    cmd);
            return -EINVAL;
        }
        char name[64];
        const char *value;
        const char *eq = strchr(arg + 2, '=');
        size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (nlen >= sizeof name) {
            fprintf(stderr, "cmesh %s: unknown flag '%s'; see cmesh %s --help\n", cmd, arg, cmd);
            return -EINVAL;
        }
        memcpy(name, arg + 2, nlen);
        name[nlen] = '\0';
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "cmesh %s: flag --%s needs a value; see cmesh %s --help\n", cmd, name,
                    cmd);
            return -EINVAL;
        }
        err[0] = '\0';
        int rc = set(ctx, name, value, err, sizeof err);
        if (rc == 0) {
            fprintf(stderr, "cmesh %s: unknown flag --%s; see cmesh %s --help\n", cmd, name, cmd);
            return -EINVAL;
        }
        if (rc < 0) {
            fprintf(stderr, "cmesh %s: %s\n", cmd, err);
            return -EINVAL;
        }
    }
    return 0;
}

int cm_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Parses a non-negative number followed by a unit from units[] (longest first). */
static int number_with_unit(const char *s, unsigned long long *v, const char **unit)
{
    char *end;
    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    *v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    *unit = end;
    return 0;
}

int cm_parse_duration_ms(const char *s, uint64_t *ms)
{
    unsigned long long v;
    const char *u;
    if (number_with_unit(s, &v, &u) < 0)
        return -EINVAL;
    unsigned long long mult;
    if (*u == '\0' || strcmp(u, "s") == 0)
        mult = 1000;
    else if (strcmp(u, "ms") == 0)
        mult = 1;
    else if (strcmp(u, "m") == 0)
        mult = 60000;
    else if (strcmp(u, "h") == 0)
        mult = 3600000;
    else
        return -EINVAL;
    if (v > UINT64_MAX / mult)
        return -EINVAL;
    *ms = v * mult;
    return 0;
}

int cm_parse_size(const char *s, size_t *bytes)
{
    unsigned long long v;
    const char *u;
    if (number_with_unit(s, &v, &u) < 0)
        return -EINVAL;
    unsigned long long mult;
    if (*u == '\0' || strcasecmp(u, "b") == 0)
        mult = 1;
    else if (strcasecmp(u, "k") == 0 || strcasecmp(u, "kib") == 0)
        mult = 1024;
    else if (strcasecmp(u, "m") == 0 || strcasecmp(u, "mib") == 0)
        mult = 1024 * 1024;
    else
        return -EINVAL;
    if (v > SIZE_MAX / mult)
        return -EINVAL;
    *bytes = (size_t)(v * mult);
    return 0;
}

int cm_parse_hostport(const char *s, char *host, size_t host_cap, int *port)
{
    const char *colon = strrchr(s, ':');
    long p;
    if (!colon || cm_parse_int(colon + 1, 0, 65535, &p) < 0)
        return -EINVAL;
    size_t hlen = (size_t)(colon - s);
    if (hlen == 0) {
        snprintf(host, host_cap, "0.0.0.0");
    } else {
        if (s[0] == '[' && colon[-1] == ']') { /* [::1]:80 */
            s++;
            hlen -= 2;
        }
        if (hlen >= host_cap)
            return -EINVAL;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
    }
    *port = (int)p;
    return 0;
}
