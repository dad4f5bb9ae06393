/* service/rows.h: a resource's rows as JSON, written straight from the statement into
 * the answer buffer (no DOM): one item, or a page of items with the "more" probe.
 * A resource describes its columns once; users and orders share the rest. */
#ifndef CMESH_SERVICE_ROWS_H
#define CMESH_SERVICE_ROWS_H

#include <stdint.h>

#include "core/buf.h"
#include "store/db.h"

typedef enum { CM_COL_INT, CM_COL_TEXT, CM_COL_BOOL /* an integer, 0 false */ } cm_col_type_t;

typedef struct cm_col {
    const char *key; /* "\"createdAt\":" as written; column i of the SELECT */
    cm_col_type_t type;
} cm_col_t;

/* A column entry: CM_COL("createdAt", CM_COL_TEXT). The key is quoted at compile time. */
#define CM_COL(name, type)                                                                         \
    {                                                                                              \
        "\"" name "\":", type                                                                      \
    }

typedef struct cm_row_shape {
    const cm_col_t *cols; /* column 0 must be the integer id */
    int ncols;
} cm_row_shape_t;

/* Steps st once: writes the row as an object to out (and its id to *id when not
 * NULL), then resets st. Returns 0, -ENOENT when there was no row, or the store's
 * error. A NULL st (a failed prepare) gives -EIO. */
int cm_rows_one(cm_stmt_t *st, const cm_row_shape_t *shape, int64_t *id, cm_buf_t *out);

/* Writes a row the caller has by value as an object, exactly as cm_rows_one would write
 * it from the store: id is column 0, text[i] (len[i] bytes) column i + 1, each a
 * CM_COL_TEXT. For an INSERT that names every column and returns nothing. */
void cm_rows_values(const cm_row_shape_t *shape, int64_t id, const char *const *text,
                    const size_t *len, cm_buf_t *out);
/* Writes a JSON array of at most limit rows; st must be bound to return limit + 1
 * rows, the extra one only telling that more exist (*more). *last gets the last id
 * written (unchanged when none). Resets st. Returns 0 or the store's error. */
int cm_rows_page(cm_stmt_t *st, const cm_row_shape_t *shape, int limit, cm_buf_t *out,
                 int64_t *last, int *more);

/* Runs sql, a statement deleting by id (`DELETE ... WHERE id = ?`), for id.
 * Returns 0, -ENOENT when no row had that id, or the store's error. */
int cm_rows_delete(cm_db_t *db, const char *sql, int64_t id);

#endif
