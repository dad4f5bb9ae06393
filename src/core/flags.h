/* core/flags.h: `--name value` / `--name=value` command-line parsing shared by every
 * subcommand, and the value parsers (durations, sizes, host:port) behind them. */
#ifndef CMESH_CORE_FLAGS_H
#define CMESH_CORE_FLAGS_H

#include <stddef.h>
#include <stdint.h>

/* Applies one flag; returns 1 when taken, 0 when unknown, -EINVAL with err filled. */
typedef int (*cm_flag_set_fn)(void *ctx, const char *name, const char *value, char *err,
                              size_t err_cap);

/* Parses argv[1..argc). "--help"/"-h" prints help to stdout and returns 1. Any other
 * problem prints one line "cmesh CMD: ..." to stderr and returns -EINVAL (exit 2).
 * Every flag takes a value. Returns 0 when all were applied. */
int cm_flags_parse(int argc, char **argv, const char *cmd, const char *help, cm_flag_set_fn set,
                   void *ctx);

/* "10s", "250ms", "2m", "1h"; a bare number means seconds. Returns 0 or -EINVAL. */
int cm_parse_duration_ms(const char *s, uint64_t *ms);
/* "1048576", "16k", "1m" (KiB/MiB, case-insensitive). Returns 0 or -EINVAL. */
int cm_parse_size(const char *s, size_t *bytes);
/* "HOST:PORT" or ":PORT" (then host is 0.0.0.0); port 0..65535. Returns 0 or -EINVAL. */
int cm_parse_hostport(const char *s, char *host, size_t host_cap, int *port);
/* A whole decimal number within [min, max]. Returns 0 or -EINVAL. */
int cm_parse_int(const char *s, long min, long max, long *out);

#endif
