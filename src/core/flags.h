/* core/flags.h: the command line of every subcommand, as tables (nginx's ngx_command_t):
 * one row per flag with its name, value placeholder, help text, type (parser + how its
 * value is shown) and where it is stored. Parsing and --help both read the rows, so the
 * help always names every flag with the default the code really starts from. Also the
 * value parsers (durations, sizes, host:port) behind the rows. */
#ifndef CMESH_CORE_FLAGS_H
#define CMESH_CORE_FLAGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cm_flag cm_flag_t;

/* A kind of value: how it is parsed into its field and shown back. */
typedef struct cm_flag_type {
    /* Parses v into field (f's storage). Returns 0, or -EINVAL/-ENOMEM with err filled
     * (the parser prefixes "--name: "). */
    int (*parse)(const cm_flag_t *f, void *field, const char *v, char *err, size_t cap);
    /* Writes field as a value parse() accepts back to the same field, or "" when there
     * is nothing to show as a default (an empty path, no routes yet). */
    void (*show)(const cm_flag_t *f, const void *field, char *out, size_t cap);
    size_t field_size; /* sizeof the field it stores into; 0 = any (strings, custom) */
    const char *note;  /* what its values look like, printed once under the help; or NULL */
} cm_flag_type_t;

/* One value of a CM_FLAG_CHOICE row; a row's list ends with a NULL name. */
typedef struct cm_flag_choice {
    const char *name;
    int value;
} cm_flag_choice_t;

#define CM_FLAG_REQUIRED 1u /* the command refuses to start without it */
#define CM_FLAG_REPEAT   2u /* may be given more than once (each one adds) */

struct cm_flag {
    const char *name;                /* without "--"; NULL ends a table */
    const char *arg;                 /* value placeholder in the help: "DUR", "PATH" */
    const cm_flag_type_t *type;      /* parser and renderer */
    size_t offset;                   /* of the field, from the table's struct */
    size_t size;                     /* sizeof the field (string capacity) */
    long long min, max;              /* int/duration(ms)/size(bytes) range; max 0 = none */
    const cm_flag_choice_t *choices; /* CM_FLAG_CHOICE rows only */
    unsigned flags;                  /* CM_FLAG_REQUIRED, CM_FLAG_REPEAT */
    const char *help;                /* one sentence, wrapped by the renderer */
};

/* Row builders: ST is the struct the table describes, FIELD a member of it. */
#define CM_FLAG__ROW(NAME, ARG, TYPE, ST, FIELD, MIN, MAX, CHOICES, FL, HELP)                      \
    {                                                                                              \
        .name = NAME, .arg = ARG, .type = &(TYPE), .offset = offsetof(ST, FIELD),                  \
        .size = sizeof(((ST *)0)->FIELD), .min = MIN, .max = MAX, .choices = CHOICES, .flags = FL, \
        .help = HELP                                                                               \
    }
#define CM_FLAG_STR(NAME, ARG, ST, FIELD, FL, HELP)                                                \
    CM_FLAG__ROW(NAME, ARG, cm_flag_str, ST, FIELD, 0, 0, NULL, FL, HELP)
#define CM_FLAG_INT(NAME, ARG, ST, FIELD, MIN, MAX, HELP)                                          \
    CM_FLAG__ROW(NAME, ARG, cm_flag_int, ST, FIELD, MIN, MAX, NULL, 0, HELP)
#define CM_FLAG_DURATION(NAME, ST, FIELD, MIN_MS, HELP)                                            \
    CM_FLAG__ROW(NAME, "DUR", cm_flag_duration, ST, FIELD, MIN_MS, 0, NULL, 0, HELP)
#define CM_FLAG_SIZE(NAME, ST, FIELD, MIN, HELP)                                                   \
    CM_FLAG__ROW(NAME, "SIZE", cm_flag_size, ST, FIELD, MIN, 0, NULL, 0, HELP)
#define CM_FLAG_CHOICE(NAME, ARG, ST, FIELD, CHOICES, HELP)                                        \
    CM_FLAG__ROW(NAME, ARG, cm_flag_choice, ST, FIELD, 0, 0, CHOICES, 0, HELP)
/* A row of a custom type; FIELD may be a whole sub-struct (host + port). */
#define CM_FLAG_CUSTOM(NAME, ARG, TYPE, ST, FIELD, FL, HELP)                                       \
    CM_FLAG__ROW(NAME, ARG, TYPE, ST, FIELD, 0, 0, NULL, FL, HELP)
#define CM_FLAG_END                                                                                \
    {                                                                                              \
        .name = NULL                                                                               \
    }

extern const cm_flag_type_t cm_flag_str;      /* char[size], not empty */
extern const cm_flag_type_t cm_flag_int;      /* int in [min, max] */
extern const cm_flag_type_t cm_flag_duration; /* uint64_t ms, >= min */
extern const cm_flag_type_t cm_flag_size;     /* size_t bytes, >= min */
extern const cm_flag_type_t cm_flag_choice;   /* int, one of choices (an enum) */

/* A table placed in a command's options: its rows' offsets count from base. */
typedef struct cm_flag_table {
    const char *title;     /* "server flags" */
    const cm_flag_t *rows; /* ends with CM_FLAG_END */
    size_t base;           /* offset of the table's struct in the command's options */
} cm_flag_table_t;

/* A command's whole command line. Tables are searched in order and the first row of a
 * name wins, so a command may give a shared flag its own row (the gateway's --listen). */
typedef struct cm_cmd {
    const char *name;              /* "users" */
    const char *usage;             /* "cmesh users --db PATH [flags]" */
    const char *about;             /* what the command does, wrapped */
    const cm_flag_table_t *tables; /* ends with a NULL rows */
    size_t opts_size;              /* sizeof the options struct */
    void (*defaults)(void *opts);  /* fills every default; parsing starts from them */
    void (*release)(void *opts);   /* frees what parsing allocated; may be NULL */
} cm_cmd_t;

/* Parses argv[1..argc) into opts (already holding cmd->defaults). "--help" or "-h"
 * anywhere a flag may stand prints the help (with opts' values before any flag was
 * applied) to stdout and returns 1. Any other problem prints one line "cmesh CMD: ..."
 * to stderr and returns -EINVAL (exit 2): unknown flag (with or without a value), a
 * missing or bad value, a required flag not given. A flag given twice keeps the last
 * value (REPEAT flags add each). Returns 0. */
int cm_flags_parse(const cm_cmd_t *cmd, int argc, char **argv, void *opts);
/* Writes the help of cmd, showing opts' values as the defaults. */
void cm_flags_help(const cm_cmd_t *cmd, const void *opts, FILE *out);
/* The row cmd parses --name with (first in table order), or NULL; *base gets its table's
 * base. */
const cm_flag_t *cm_flags_find(const cm_cmd_t *cmd, const char *name, size_t len, size_t *base);

/* "10s", "250ms", "2m", "1h"; a bare number means seconds. Returns 0 or -EINVAL. */
int cm_parse_duration_ms(const char *s, uint64_t *ms);
/* "1048576", "16k", "1m", "1g" (KiB/MiB/GiB, case-insensitive). Returns 0 or -EINVAL. */
int cm_parse_size(const char *s, size_t *bytes);
/* "HOST:PORT" or ":PORT" (then host is 0.0.0.0); port 0..65535. Returns 0 or -EINVAL. */
int cm_parse_hostport(const char *s, char *host, size_t host_cap, int *port);
/* A whole decimal number within [min, max]. Returns 0 or -EINVAL. */
int cm_parse_int(const char *s, long min, long max, long *out);

#endif
