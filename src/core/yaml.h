/* core/yaml.h: the two YAML helpers that gateway/config_yaml.c and control/spec.c share:
 * the 1-based line of a libfyaml node, and the "FILE:LINE: message" text of an error.
 * Each caller keeps its own error buffer (the gateway collects every error with an
 * "(and N more errors)" tail, the spec keeps one) and its own scalar readers, whose
 * messages differ. */
#ifndef CMESH_CORE_YAML_H
#define CMESH_CORE_YAML_H

#include <stdarg.h>
#include <stddef.h>

struct fy_node;

/* 1-based line of n. libfyaml 0.7 exports marks only for tokens, so a mapping or
 * sequence is placed at its first scalar (a mapping at its first key); an empty one,
 * or a NULL node, at fallback (usually its key's line). */
int cm_yaml_line(struct fy_node *n, int fallback);

/* Writes "FILE:LINE: " and then fmt with ap into buf[cap], cut to fit and always
 * NUL-terminated (cap > 0). */
void cm_yaml_vmsg(char *buf, size_t cap, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

#endif
