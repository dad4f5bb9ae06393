/* core/timeout.h: a one-shot timeout that is cheap to move. Connections and proxied
 * exchanges re-arm their timeouts on every request; a libuv timer restart is a heap
 * removal plus an insertion each time. A cm_timeout_t only notes the new due time and
 * touches the timer heap when the due time moves earlier than the armed one, or when
 * an early firing finds the due time still ahead (it then re-arms for the rest).
 * Times are the loop's millisecond clock (uv_now); callbacks run from the loop. */
#ifndef CMESH_CORE_TIMEOUT_H
#define CMESH_CORE_TIMEOUT_H

#include <stdint.h>

#include <uv.h>

typedef struct cm_timeout cm_timeout_t;
typedef void (*cm_timeout_cb)(cm_timeout_t *t);

struct cm_timeout {
    uv_timer_t timer; /* closed with cm_timeout_close(); timer.data is the timeout */
    uint64_t due;     /* loop ms the callback is owed at; 0: none owed */
    uint64_t armed;   /* loop ms the libuv timer fires at; 0: not armed */
    cm_timeout_cb cb;
    void *data; /* the owner's */
};

void cm_timeout_init(uv_loop_t *loop, cm_timeout_t *t, cm_timeout_cb cb, void *data);
/* The callback runs once, ms from now (loop time), unless set again or cleared first. */
void cm_timeout_set(cm_timeout_t *t, uint64_t ms);
void cm_timeout_clear(cm_timeout_t *t);
/* Closes the libuv timer; close_cb gets the timer's handle (its data is t). */
void cm_timeout_close(cm_timeout_t *t, uv_close_cb close_cb);

#endif
