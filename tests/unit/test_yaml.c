/* tests/unit/test_yaml.c: core/yaml, the helpers config_yaml.c and spec.c share: the line
 * of a scalar, of a mapping (its first key) and of an empty collection (the fallback),
 * and the "FILE:LINE: " message, cut to fit its buffer. */
#include <libfyaml.h>
#include <stdarg.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/yaml.h"

static const char doc_text[] = "a: 1\n"
                               "b:\n"
                               "  c: 2\n"
                               "  d: 3\n"
                               "e: []\n"
                               "f: {}\n"
                               "g:\n"
                               "  - 7\n";

static struct fy_document *doc;

static void setup(void)
{
    doc = fy_document_build_from_string(NULL, doc_text, FY_NT);
    cr_assert_not_null(doc);
}

static void teardown(void)
{
    fy_document_destroy(doc);
}

static struct fy_node *at(const char *path)
{
    struct fy_node *n = fy_node_by_path(fy_document_root(doc), path, FY_NT, FYNWF_DONT_FOLLOW);
    cr_assert_not_null(n, "%s", path);
    return n;
}

TestSuite(yaml, .init = setup, .fini = teardown);

Test(yaml, a_scalar_is_on_its_own_line)
{
    cr_assert_eq(cm_yaml_line(at("/a"), 99), 1);
    cr_assert_eq(cm_yaml_line(at("/b/d"), 99), 4);
}

Test(yaml, a_mapping_is_at_its_first_key_a_list_at_its_first_item)
{
    cr_assert_eq(cm_yaml_line(at("/b"), 99), 3);
    cr_assert_eq(cm_yaml_line(at("/g"), 99), 8);
    cr_assert_eq(cm_yaml_line(fy_document_root(doc), 99), 1);
}

Test(yaml, an_empty_collection_or_no_node_is_at_the_fallback)
{
    cr_assert_eq(cm_yaml_line(at("/e"), 42), 42);
    cr_assert_eq(cm_yaml_line(at("/f"), 43), 43);
    cr_assert_eq(cm_yaml_line(NULL, 44), 44);
}

static void msg(char *buf, size_t cap, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void msg(char *buf, size_t cap, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cm_yaml_vmsg(buf, cap, file, line, fmt, ap);
    va_end(ap);
}

Test(yaml, a_message_starts_with_file_and_line)
{
    char buf[128];
    msg(buf, sizeof(buf), "cmesh.yaml", 12, "%s must be %d", "port", 5);
    cr_assert_str_eq(buf, "cmesh.yaml:12: port must be 5");
}

Test(yaml, a_message_is_cut_to_its_buffer)
{
    char buf[16];
    memset(buf, 'x', sizeof(buf));
    msg(buf, sizeof(buf), "f.yaml", 3, "%s", "a long message that does not fit");
    cr_assert_str_eq(buf, "f.yaml:3: a lon"); /* 15 bytes and the NUL */

    memset(buf, 'x', sizeof(buf));
    msg(buf, 8, "a-long-file-name.yaml", 3, "%s", "lost"); /* even the prefix is cut */
    cr_assert_str_eq(buf, "a-long-");
    cr_assert_eq(buf[8], 'x'); /* nothing written past cap */
}
