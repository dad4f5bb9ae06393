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
 * nothing is written (updatedAt stays) and the order as it is goes to out. */
int cm_orders_update(cm_db_t *db, int64_t id, int64_t user_id, const char *status, cm_buf_t *out);
int cm_orders_delete(cm_db_t *db, int64_t id);

#endif
