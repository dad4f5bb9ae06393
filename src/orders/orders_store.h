/* orders/orders_store.h: the orders table through store/db.h (portable SQL); each
 * call writes the item's JSON straight into the answer buffer. Used by orders.c. */
#ifndef CMESH_ORDERS_ORDERS_STORE_H
#define CMESH_ORDERS_ORDERS_STORE_H

#include <stdint.h>

#include "core/buf.h"
#include "store/db.h"

extern const cm_migration_t cm_orders_migrations[];
extern const int cm_orders_nmigrations;

#define CM_ORDER_STATUS_MAX 16 /* bytes of the longest status name, with the NUL */

/* Each returns 0, -ENOENT when the order does not exist, or the store's error.
 * status, when not NULL, gets the order's current status. */
int cm_orders_get(cm_db_t *db, int64_t id, cm_buf_t *out, char status[CM_ORDER_STATUS_MAX]);
/* A JSON array of at most limit orders with id > after (and userId = user_id when
 * user_id > 0); *more tells whether further rows exist, *last is the last id written. */
int cm_orders_list(cm_db_t *db, int64_t user_id, int64_t after, int limit, cm_buf_t *out,
                   int64_t *last, int *more);
int cm_orders_insert(cm_db_t *db, int64_t user_id, const char *status, int64_t *id, cm_buf_t *out);
/* user_id 0 and status NULL leave those columns as they are. When nothing would change,
 * nothing is written (updatedAt stays), the order as it is goes to out and 1 is returned. */
int cm_orders_update(cm_db_t *db, int64_t id, int64_t user_id, const char *status, cm_buf_t *out);
int cm_orders_delete(cm_db_t *db, int64_t id);

/* What the users feed told of a user (the local set). */
#define CM_USER_UNSEEN 0 /* nothing yet: ask the users service */
#define CM_USER_KNOWN  1 /* created (or updated) */
#define CM_USER_GONE   2 /* deleted */
/* CM_USER_UNSEEN/KNOWN/GONE, or the store's error. */
int cm_orders_user_state(cm_db_t *db, int64_t user_id);
/* Inside a unit: the user was created or updated (known). 0 or the store's error. */
int cm_orders_user_seen(cm_db_t *db, int64_t user_id);
/* Inside a unit: the user was deleted: gone from the local set, every order of theirs says
 * userGone, and each pending or paid one is cancelled with its order.status_changed
 * event (scratch: a buffer for the representations). Returns how many were cancelled, or
 * the store's error. */
int cm_orders_user_gone(cm_db_t *db, int64_t user_id, cm_buf_t *scratch);
/* The open (pending, paid) orders whose user is gone: how many (*count), and the ids of
 * the first limit as a JSON array appended to ids. 0 or the store's error. */
int cm_orders_gone_open(cm_db_t *db, int limit, cm_buf_t *ids, int64_t *count);

#endif
