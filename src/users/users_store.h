/* users/users_store.h: the users table, queried through store/db.h (portable SQL),
 * each call writing the item's JSON straight into the answer buffer.
 * Called by users.c on the worker's own connection. */
#ifndef CMESH_USERS_USERS_STORE_H
#define CMESH_USERS_USERS_STORE_H

#include <stdint.h>

#include "core/buf.h"
#include "store/db.h"

extern const cm_migration_t cm_users_migrations[];
extern const int cm_users_nmigrations;

/* Each returns 0, -ENOENT when the user does not exist, -EEXIST when the email is
 * taken (insert/update), or the store's -EBUSY/-EIO. JSON goes to out. */
int cm_users_get(cm_db_t *db, int64_t id, cm_buf_t *out);
/* Appends a JSON array of at most limit users with id > after; *more tells whether
 * further rows exist and *last is the last id written. */
int cm_users_list(cm_db_t *db, int64_t after, int limit, cm_buf_t *out, int64_t *last, int *more);
int cm_users_insert(cm_db_t *db, const char *name, size_t name_len, const char *email,
                    size_t email_len, int64_t *id, cm_buf_t *out);
/* NULL name/email leave the column as it is. When nothing would change, nothing is
 * written (updatedAt stays) and the row as it is goes to out. */
int cm_users_update(cm_db_t *db, int64_t id, const char *name, size_t name_len, const char *email,
                    size_t email_len, cm_buf_t *out);
int cm_users_delete(cm_db_t *db, int64_t id);

#endif
