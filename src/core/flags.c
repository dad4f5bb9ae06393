/* core/flags.c: the one command-line parser of cmesh (see flags.h): the value types,
 * the help renderer and the parser, all driven by the commands' flag tables. */
#include "core/flags.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------- */
/* value types                                                                */

static int str_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    size_t len = strlen(v);
    if (len == 0) {
        snprintf(err, cap, "give a value (%s)", f->arg);
        return -EINVAL;
    }
    if (len >= f->size) {
        snprintf(err, cap, "longer than %zu bytes", f->size - 1);
        return -EINVAL;
    }
    memcpy(field, v, len + 1);
    return 0;
}

static void str_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", (int)strnlen(field, f->size), (const char *)field);
}

const cm_flag_type_t cm_flag_str = {str_parse, str_show, 0, NULL};

static int int_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    long n;
    if (cm_parse_int(v, (long)f->min, (long)f->max, &n) < 0) {
        snprintf(err, cap, "'%s' is not a whole number from %lld to %lld", v, f->min, f->max);
        return -EINVAL;
    }
    *(int *)field = (int)n;
    return 0;
}

static void int_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    (void)f;
    snprintf(out, cap, "%d", *(const int *)field);
}

const cm_flag_type_t cm_flag_int = {int_parse, int_show, sizeof(int), NULL};

/* The largest unit that divides ms, so a default reads the way one would type it. */
static void show_ms(uint64_t ms, char *out, size_t cap)
{
    if (ms && ms % 3600000 == 0)
        snprintf(out, cap, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms && ms % 60000 == 0)
        snprintf(out, cap, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(out, cap, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, cap, "%llums", (unsigned long long)ms);
}

static int duration_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    uint64_t ms;
    if (cm_parse_duration_ms(v, &ms) < 0 || ms < (uint64_t)f->min) {
        char min[32];
        show_ms((uint64_t)f->min, min, sizeof min);
        snprintf(err, cap, "'%s' is not a duration%s%s, e.g. 500ms, 10s, 2m or 1h", v,
                 f->min ? " of at least " : "", f->min ? min : "");
        return -EINVAL;
    }
    *(uint64_t *)field = ms;
    return 0;
}

static void duration_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    (void)f;
    show_ms(*(const uint64_t *)field, out, cap);
}

const cm_flag_type_t cm_flag_duration = {duration_parse, duration_show, sizeof(uint64_t),
                                         "DUR is 500ms, 10s, 2m or 1h (a bare number is seconds)."};

static void show_bytes(size_t n, char *out, size_t cap)
{
    static const char units[] = "gmk";
    for (int i = 0; i < 3; i++) {
        size_t u = (size_t)1 << (10 * (3 - i));
        if (n && n % u == 0) {
            snprintf(out, cap, "%zu%c", n / u, units[i]);
            return;
        }
    }
    snprintf(out, cap, "%zu", n);
}

static int size_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    size_t n;
    if (cm_parse_size(v, &n) < 0 || n < (size_t)f->min) {
        char min[32];
        show_bytes((size_t)f->min, min, sizeof min);
        snprintf(err, cap, "'%s' is not a size%s%s, e.g. 512, 16k, 1m or 1g", v,
                 f->min ? " of at least " : "", f->min ? min : "");
        return -EINVAL;
    }
    *(size_t *)field = n;
    return 0;
}

static void size_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    (void)f;
    show_bytes(*(const size_t *)field, out, cap);
}

const cm_flag_type_t cm_flag_size = {size_parse, size_show, sizeof(size_t),
                                     "SIZE is bytes, or KiB, MiB, GiB: 512, 16k, 1m, 1g."};

static int choice_parse(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap)
{
    for (const cm_flag_choice_t *c = f->choices; c->name; c++)
        if (strcmp(c->name, v) == 0) {
            *(int *)field = c->value;
            return 0;
        }
    snprintf(err, cap, "'%s' is not one of %s", v, f->arg);
    return -EINVAL;
}

static void choice_show(const cm_flag_t *f, const void *field, char *out, size_t cap)
{
    out[0] = '\0';
    for (const cm_flag_choice_t *c = f->choices; c->name; c++)
        if (c->value == *(const int *)field) {
            snprintf(out, cap, "%s", c->name);
            return;
        }
}

const cm_flag_type_t cm_flag_choice = {choice_parse, choice_show, sizeof(int), NULL};

/* ------------------------------------------------------------------------- */
/* help                                                                       */

#define HELP_WIDTH 79 /* columns: fits a default terminal with room for the cursor */
#define HELP_COL   27 /* where a flag's help text starts */

/* Writes text word-wrapped from column col (already reached) to HELP_WIDTH, continuation
 * lines indented to indent. Ends with a newline. */
static void wrap(FILE *out, const char *text, int col, int indent)
{
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t w = strcspn(p, " ");
        if (w == 0)
            break;
        if (col > indent && col + 1 + (int)w > HELP_WIDTH) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, w, out);
        col += (int)w;
        p += w;
    }
    fputc('\n', out);
}

void cm_flags_help(const cm_cmd_t *cmd, const void *opts, FILE *out)
{
    fprintf(out, "usage: %s\n\n", cmd->usage);
    wrap(out, cmd->about, 0, 0);
    const char *notes[8];
    int nnotes = 0;
    for (const cm_flag_table_t *t = cmd->tables; t->rows; t++) {
        fprintf(out, "\n%s:\n", t->title);
        for (const cm_flag_t *f = t->rows; f->name; f++) {
            size_t base = 0;
            if (cm_flags_find(cmd, f->name, strlen(f->name), &base) != f)
                continue; /* shadowed by an earlier table's row */
            char head[64], def[256], text[1024];
            int n = snprintf(head, sizeof head, "  --%s %s", f->name, f->arg);
            fputs(head, out);
            if (n >= HELP_COL - 1) {
                fprintf(out, "\n%*s", HELP_COL, "");
            } else {
                fprintf(out, "%*s", HELP_COL - n, "");
            }
            f->type->show(f, (const char *)opts + base + f->offset, def, sizeof def);
            snprintf(text, sizeof text, "%s%s%s%s%s", f->help,
                     f->flags & CM_FLAG_REQUIRED ? " (required)" : "",
                     f->flags & CM_FLAG_REPEAT ? " (repeatable)" : "", def[0] ? " (default " : "",
                     def[0] ? def : "");
            if (def[0])
                strncat(text, ")", sizeof text - strlen(text) - 1);
            wrap(out, text, HELP_COL, HELP_COL);
            int seen = 0;
            for (int i = 0; i < nnotes; i++)
                seen |= notes[i] == f->type->note;
            if (f->type->note && !seen && nnotes < 8)
                notes[nnotes++] = f->type->note;
        }
    }
    fprintf(out, "  -h, --help%*sprint this help and exit\n", HELP_COL - 12, "");
    if (nnotes)
        fputc('\n', out);
    for (int i = 0; i < nnotes; i++)
        wrap(out, notes[i], 0, 0);
}

/* ------------------------------------------------------------------------- */
/* parsing                                                                    */

#define MAX_ROWS 128 /* rows of one command, for the "given" marks; far above any today */

const cm_flag_t *cm_flags_find(const cm_cmd_t *cmd, const char *name, size_t len, size_t *base)
{
    for (const cm_flag_table_t *t = cmd->tables; t->rows; t++)
        for (const cm_flag_t *f = t->rows; f->name; f++)
            if (strlen(f->name) == len && memcmp(f->name, name, len) == 0) {
                *base = t->base;
                return f;
            }
    return NULL;
}

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int cm_flags_parse(const cm_cmd_t *cmd, int argc, char **argv, void *opts)
{
    const char *c = cmd->name;
    size_t base;
    /* --help first, so it shows the defaults whatever flags stand before it; a flag's
     * value that happens to read "--help" is a value, as the parse below sees it */
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            cm_flags_help(cmd, opts, stdout);
            return 1;
        }
        if (strncmp(argv[i], "--", 2) == 0 && !strchr(argv[i], '=') &&
            cm_flags_find(cmd, argv[i] + 2, strlen(argv[i] + 2), &base))
            i++;
    }
    const cm_flag_t *given[MAX_ROWS];
    int ngiven = 0;
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(stderr, "cmesh %s: unexpected argument '%s'; see cmesh %s --help\n", c, arg, c);
            return -EINVAL;
        }
        const char *eq = strchr(arg + 2, '=');
        size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        const cm_flag_t *f = cm_flags_find(cmd, arg + 2, nlen, &base);
        if (!f) { /* whether or not a value follows: the name is what is wrong */
            fprintf(stderr, "cmesh %s: unknown flag '--%.*s'; see cmesh %s --help\n", c, (int)nlen,
                    arg + 2, c);
            return -EINVAL;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "cmesh %s: flag --%s needs a value (%s); see cmesh %s --help\n", c,
                    f->name, f->arg, c);
            return -EINVAL;
        }
        err[0] = '\0';
        if (f->type->parse(f, (char *)opts + base + f->offset, value, err, sizeof err) < 0) {
            fprintf(stderr, "cmesh %s: --%s: %s\n", c, f->name, err[0] ? err : "bad value");
            return -EINVAL;
        }
        if (ngiven < MAX_ROWS)
            given[ngiven++] = f;
    }
    for (const cm_flag_table_t *t = cmd->tables; t->rows; t++)
        for (const cm_flag_t *f = t->rows; f->name; f++) {
            if (!(f->flags & CM_FLAG_REQUIRED) ||
                cm_flags_find(cmd, f->name, strlen(f->name), &base) != f)
                continue;
            int seen = 0;
            for (int i = 0; i < ngiven; i++)
                seen |= given[i] == f;
            if (!seen) {
                fprintf(stderr, "cmesh %s: --%s %s is required; see cmesh %s --help\n", c, f->name,
                        f->arg, c);
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
    else if (strcasecmp(u, "g") == 0 || strcasecmp(u, "gib") == 0)
        mult = 1024 * 1024 * 1024;
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
