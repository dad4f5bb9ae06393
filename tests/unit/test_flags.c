/* tests/unit/test_flags.c: value parsers behind every command-line flag. */
#include <errno.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "core/flags.h"

Test(flags, durations_take_units_and_bare_seconds)
{
    uint64_t ms;
    cr_assert_eq(cm_parse_duration_ms("10s", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(cm_parse_duration_ms("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(cm_parse_duration_ms("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(cm_parse_duration_ms("3", &ms), 0);
    cr_assert_eq(ms, 3000);
    cr_assert_eq(cm_parse_duration_ms("x", &ms), -EINVAL);
    cr_assert_eq(cm_parse_duration_ms("-1s", &ms), -EINVAL);
    cr_assert_eq(cm_parse_duration_ms("5d", &ms), -EINVAL);
}

Test(flags, sizes_take_k_m_and_g)
{
    size_t b;
    cr_assert_eq(cm_parse_size("16k", &b), 0);
    cr_assert_eq(b, 16384);
    cr_assert_eq(cm_parse_size("1m", &b), 0);
    cr_assert_eq(b, 1048576);
    cr_assert_eq(cm_parse_size("100", &b), 0);
    cr_assert_eq(b, 100);
    cr_assert_eq(cm_parse_size("1g", &b), 0);
    cr_assert_eq(b, (size_t)1 << 30);
    cr_assert_eq(cm_parse_size("1t", &b), -EINVAL);
}

Test(flags, hostport_forms)
{
    char host[64];
    int port;
    cr_assert_eq(cm_parse_hostport("127.0.0.1:8080", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "127.0.0.1");
    cr_assert_eq(port, 8080);
    cr_assert_eq(cm_parse_hostport(":9", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "0.0.0.0");
    cr_assert_eq(cm_parse_hostport("[::1]:80", host, sizeof host, &port), 0);
    cr_assert_str_eq(host, "::1");
    cr_assert_eq(cm_parse_hostport("host:8o80", host, sizeof host, &port), -EINVAL);
    cr_assert_eq(cm_parse_hostport("host:70000", host, sizeof host, &port), -EINVAL);
    cr_assert_eq(cm_parse_hostport("host", host, sizeof host, &port), -EINVAL);
}

/* ------------------------------------------------------------------------- */
/* command tables and the help rendered from them                             */

#include <stdlib.h>
#include <string.h>

#include "gateway/auth.h"
#include "gateway/gateway.h"
#include "orders/orders.h"
#include "users/users.h"

static const cm_cmd_t *const commands[] = {&cm_users_cmd, &cm_orders_cmd, &gw_gateway_cmd,
                                           &gw_token_cmd};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* A value for each required flag, so parsing needs nothing else. */
static const char *required_value(const char *name)
{
    if (strcmp(name, "users-url") == 0)
        return "http://127.0.0.1:1";
    return "x";
}

/* Options as the command starts with them: defaults, then a parse of argv holding only
 * the required flags. Caller frees (and releases). */
static void *parsed_without_flags(const cm_cmd_t *cmd)
{
    char *argv[16] = {(char *)cmd->name};
    int argc = 1;
    for (const cm_flag_table_t *t = cmd->tables; t->rows; t++)
        for (const cm_flag_t *f = t->rows; f->name; f++)
            if (f->flags & CM_FLAG_REQUIRED) {
                char *a = malloc(strlen(f->name) + 3);
                sprintf(a, "--%s", f->name);
                argv[argc++] = a;
                argv[argc++] = (char *)required_value(f->name);
            }
    void *opts = calloc(1, cmd->opts_size);
    cmd->defaults(opts);
    cr_assert_eq(cm_flags_parse(cmd, argc, argv, opts), 0, "cmesh %s with required flags only",
                 cmd->name);
    for (int i = 1; i < argc; i += 2)
        free(argv[i]);
    return opts;
}

static char *render_help(const cm_cmd_t *cmd, const void *opts)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    cm_flags_help(cmd, opts, f);
    fclose(f);
    return text;
}

/* The help entry of --name: its line and the continuation lines, whitespace collapsed.
 * NULL when absent; asserts it appears only once. Caller frees. */
static char *help_entry(const char *help, const char *name, const char *arg)
{
    char head[128];
    snprintf(head, sizeof head, "  --%s %s", name, arg);
    char *out = NULL;
    for (const char *line = help; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        size_t hl = strlen(head);
        if (n >= hl && memcmp(line, head, hl) == 0 && (n == hl || line[hl] == ' ')) {
            cr_assert_null(out, "--%s is listed twice:\n%s", name, help);
            out = calloc(1, 4096);
            const char *p = line;
            for (;;) { /* this line and those indented past the flag column */
                const char *e = strchr(p, '\n');
                size_t ln = e ? (size_t)(e - p) : strlen(p);
                strncat(out, " ", 4095 - strlen(out));
                strncat(out, p, ln < 4000 - strlen(out) ? ln : 4000 - strlen(out));
                if (!e || strncmp(e + 1, "                    ", 20) != 0)
                    break;
                p = e + 1;
            }
            char *w = out; /* collapse runs of spaces */
            for (char *r = out; *r; r++)
                if (*r != ' ' || (w > out && w[-1] != ' '))
                    *w++ = *r;
            *w = '\0';
        }
        line += n + (end ? 1 : 0);
    }
    return out;
}

Test(flags, every_row_fits_its_field_type)
{
    for (size_t c = 0; c < NCOMMANDS; c++)
        for (const cm_flag_table_t *t = commands[c]->tables; t->rows; t++)
            for (const cm_flag_t *f = t->rows; f->name; f++) {
                cr_assert(f->arg && *f->arg && f->help && *f->help, "--%s", f->name);
                cr_assert(!f->type->field_size || f->size == f->type->field_size,
                          "cmesh %s --%s: field of %zu bytes, type wants %zu", commands[c]->name,
                          f->name, f->size, f->type->field_size);
                cr_assert_leq(t->base + f->offset + f->size, commands[c]->opts_size, "--%s",
                              f->name);
            }
}

Test(flags, help_lists_every_flag_with_the_default_parsing_yields)
{
    for (size_t c = 0; c < NCOMMANDS; c++) {
        const cm_cmd_t *cmd = commands[c];
        void *opts = parsed_without_flags(cmd);
        void *fresh = calloc(1, cmd->opts_size);
        cmd->defaults(fresh);
        char *help = render_help(cmd, fresh); /* what --help prints: defaults, nothing parsed */
        for (const cm_flag_table_t *t = cmd->tables; t->rows; t++)
            for (const cm_flag_t *f = t->rows; f->name; f++) {
                size_t base;
                if (cm_flags_find(cmd, f->name, strlen(f->name), &base) != f)
                    continue; /* shadowed: the command's own row is checked instead */
                char *entry = help_entry(help, f->name, f->arg);
                cr_assert_not_null(entry, "cmesh %s --help lacks --%s %s:\n%s", cmd->name, f->name,
                                   f->arg, help);
                char def[256], want[300];
                f->type->show(f, (char *)opts + base + f->offset, def, sizeof def);
                if (f->flags & CM_FLAG_REQUIRED) {
                    cr_assert_not_null(strstr(entry, "(required)"), "%s", entry);
                } else if (def[0]) {
                    snprintf(want, sizeof want, "(default %s)", def);
                    cr_assert_not_null(strstr(entry, want), "cmesh %s: %s is not in '%s'",
                                       cmd->name, want, entry);
                } else {
                    cr_assert_null(strstr(entry, "(default"), "%s", entry);
                }
                free(entry);
            }
        cr_assert_not_null(strstr(help, "  -h, --help"), "%s", help);
        free(help);
        if (cmd->release) {
            cmd->release(opts);
            cmd->release(fresh);
        }
        free(opts);
        free(fresh);
    }
}

Test(flags, shown_defaults_parse_back_to_the_same_value)
{
    for (size_t c = 0; c < NCOMMANDS; c++) {
        const cm_cmd_t *cmd = commands[c];
        for (const cm_flag_table_t *t = cmd->tables; t->rows; t++)
            for (const cm_flag_t *f = t->rows; f->name; f++) {
                char *a = calloc(1, cmd->opts_size), *b = calloc(1, cmd->opts_size);
                cmd->defaults(a);
                cmd->defaults(b);
                char def[256], err[256], back[256];
                void *fa = a + t->base + f->offset, *fb = b + t->base + f->offset;
                f->type->show(f, fa, def, sizeof def);
                if (def[0]) {
                    cr_assert_eq(f->type->parse(f, fb, def, err, sizeof err), 0,
                                 "cmesh %s --%s %s: %s", cmd->name, f->name, def, err);
                    f->type->show(f, fb, back, sizeof back);
                    cr_assert_str_eq(back, def, "cmesh %s --%s", cmd->name, f->name);
                    if (f->type->field_size) /* the built-in types: the very same bytes */
                        cr_assert_eq(memcmp(fa, fb, f->size), 0, "cmesh %s --%s %s", cmd->name,
                                     f->name, def);
                }
                if (cmd->release) {
                    cmd->release(a);
                    cmd->release(b);
                }
                free(a);
                free(b);
            }
    }
}

Test(flags, gateway_help_says_what_the_gateway_does)
{
    void *opts = calloc(1, gw_gateway_cmd.opts_size);
    gw_gateway_cmd.defaults(opts);
    char *help = render_help(&gw_gateway_cmd, opts);
    char *body = help_entry(help, "max-body", "SIZE");
    cr_assert_not_null(body);
    cr_assert_not_null(strstr(body, "(default 1g)"), "%s", body); /* a proxy streams bodies */
    char *listen = help_entry(help, "listen", "HOST:PORT");       /* and only once */
    cr_assert_not_null(listen);
    cr_assert_not_null(strstr(listen, "(default 127.0.0.1:8080)"), "%s", listen);
    free(body);
    free(listen);
    free(help);
    free(opts);
}

Test(flags, unknown_flag_is_unknown_with_or_without_a_value, .init = cr_redirect_stderr)
{
    void *opts = calloc(1, cm_users_cmd.opts_size);
    cm_users_cmd.defaults(opts);
    char *last[] = {"users", "--db", "x", "--bogus"};
    cr_assert_eq(cm_flags_parse(&cm_users_cmd, 4, last, opts), -EINVAL);
    char *valued[] = {"users", "--bogus", "1", "--db", "x"};
    cr_assert_eq(cm_flags_parse(&cm_users_cmd, 5, valued, opts), -EINVAL);
    char *eq[] = {"users", "--db", "x", "--bogus=1"};
    cr_assert_eq(cm_flags_parse(&cm_users_cmd, 4, eq, opts), -EINVAL);
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert_not_null(strstr(line, "unknown flag '--bogus'"), "%s", line);
        n++;
    }
    cr_assert_eq(n, 3);
    free(opts);
}

Test(flags, a_required_flag_missing_is_refused, .init = cr_redirect_stderr)
{
    void *opts = calloc(1, cm_orders_cmd.opts_size);
    cm_orders_cmd.defaults(opts);
    /* --users-url is no longer required (--users-registry may stand for it): --db is */
    char *argv[] = {"orders", "--users-url", "http://127.0.0.1:1"};
    cr_assert_eq(cm_flags_parse(&cm_orders_cmd, 3, argv, opts), -EINVAL);
    fflush(stderr);
    char line[256] = "";
    cr_assert_not_null(fgets(line, sizeof line, cr_get_redirected_stderr()));
    cr_assert_not_null(strstr(line, "--db PATH|URL is required"), "%s", line);
    free(opts);
}
