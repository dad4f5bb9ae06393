/* tests/unit/test_json.c: the JSON string writer and the strict object parser. */
#include <string.h>

#include <criterion/criterion.h>

#include "core/json.h"

Test(json, str_escapes_quotes_backslash_and_controls)
{
    cm_buf_t b = CM_BUF_INIT;
    const char in[] = "a\"b\\c\n\x01\x7f\xc3\xa9";
    cm_json_str(&b, in, sizeof in - 1);
    cr_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\u0001\\u007f\xc3\xa9\"");
    json_t *back = json_loads(b.data, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(back);
    cr_assert_str_eq(json_string_value(back), in);
    json_decref(back);
    cm_buf_free(&b);
}

Test(json, parse_object_accepts_objects_only)
{
    char err[128];
    json_t *o = cm_json_parse_object("{\"a\":1}", 7, err, sizeof err);
    cr_assert_not_null(o);
    json_decref(o);
    cr_assert_null(cm_json_parse_object("[1]", 3, err, sizeof err));
    cr_assert(strstr(err, "object"));
    cr_assert_null(cm_json_parse_object("", 0, err, sizeof err));
}

Test(json, parse_object_names_the_position_of_malformed_input)
{
    char err[128];
    cr_assert_null(cm_json_parse_object("{\"a\":}", 6, err, sizeof err));
    cr_assert(strstr(err, "line 1 column"), "%s", err);
}

Test(json, parse_object_refuses_duplicate_keys)
{
    char err[128];
    cr_assert_null(cm_json_parse_object("{\"a\":1,\"a\":2}", 13, err, sizeof err));
}

Test(json, str_keeps_output_valid_for_invalid_utf8)
{
    cm_buf_t b = CM_BUF_INIT;
    const char in[] = "a\xff\xc3";
    cm_json_str(&b, in, sizeof in - 1);
    cr_assert_str_eq(b.data, "\"a\\u00ff\\u00c3\"");
    json_t *back = json_loads(b.data, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(back);
    json_decref(back);
    cm_buf_free(&b);
}
