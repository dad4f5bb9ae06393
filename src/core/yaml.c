/* core/yaml.c: node lines and "FILE:LINE: " messages for the YAML readers (see yaml.h). */
#include "core/yaml.h"

#include <libfyaml.h>
#include <stdio.h>

int cm_yaml_line(struct fy_node *n, int fallback)
{
    if (!n)
        return fallback;
    if (fy_node_is_scalar(n)) {
        struct fy_token *t = fy_node_get_scalar_token(n);
        const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
        return m ? m->line + 1 : fallback;
    }
    void *it = NULL;
    if (fy_node_is_sequence(n)) {
        struct fy_node *first = fy_node_sequence_iterate(n, &it);
        return first ? cm_yaml_line(first, fallback) : fallback;
    }
    struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
    return p ? cm_yaml_line(fy_node_pair_key(p), fallback) : fallback;
}

void cm_yaml_vmsg(char *buf, size_t cap, const char *file, int line, const char *fmt, va_list ap)
{
    int n = snprintf(buf, cap, "%s:%d: ", file, line);
    if (n >= 0 && (size_t)n < cap)
        vsnprintf(buf + n, cap - (size_t)n, fmt, ap);
}
