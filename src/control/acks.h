/* control/acks.h: the last acknowledgement of every gateway (PUT /v1/gateways/{id}/ack):
 * per service it follows, the registry index whose set it has applied in every worker,
 * and the requests it still has in flight to instances it removed ("HOST:PORT" -> n).
 * The supervisor asks it whether a leaving instance may get its SIGTERM (drain by
 * acknowledgement, not by a sleep: kubernetes#106476). Parsing and the verdict are pure;
 * the store is a small table on the control plane's loop. */
#ifndef CMESH_CONTROL_ACKS_H
#define CMESH_CONTROL_ACKS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CM_ACKS_ID_MAX   96  /* "gateway/0" (a service name, /, an index) */
#define CM_ACKS_SVCS     32  /* services one gateway follows (its routes' services) */
#define CM_ACKS_ADDRS    32  /* removed instances a gateway still reports at once */
#define CM_ACKS_ADDR_MAX 272 /* "[" host (255) "]:" port */
#define CM_ACKS_MAX      16  /* gateways remembered */

typedef struct cm_ack {
    char id[CM_ACKS_ID_MAX];
    int pid;       /* the reporting process, 0 when not given */
    int64_t at_ms; /* wall clock when it arrived (set by cm_acks_put) */
    int nsvcs;
    struct {
        char name[64];
        uint64_t index; /* applied by every worker; 0 = no answer yet */
    } svcs[CM_ACKS_SVCS];
    int naddrs;
    struct {
        char addr[CM_ACKS_ADDR_MAX]; /* "127.0.0.1:7001", "[::1]:7001" */
        int n;                       /* requests in flight (or connections still open) */
    } addrs[CM_ACKS_ADDRS];
} cm_ack_t;

#define CM_ACKS_FIELD_MAX 64

/* Parses {"pid":P,"services":{"NAME":INDEX,...},"inflight":{"HOST:PORT":N,...}} (pid and
 * inflight optional) into *out (id left empty). On -EINVAL field gets the bad member's
 * name ("" when the body is no JSON object) and err says what is wrong. Pure. */
int cm_ack_parse(const char *body, size_t len, cm_ack_t *out, char field[CM_ACKS_FIELD_MAX],
                 char *err, size_t cap);

typedef enum {
    CM_ACK_BEHIND,  /* no acknowledgement, or of an index below the one it left at */
    CM_ACK_BUSY,    /* applied, but still requests in flight to it */
    CM_ACK_DRAINED, /* applied and nothing in flight: the SIGTERM may go */
} cm_ack_verdict_t;

/* What a gateway's last acknowledgement a (NULL: none) says of the instance at addr of
 * service, which left routing at left_index. A gateway that follows no such service
 * has never routed to it: drained. *inflight gets its count (0 when none). Pure. */
cm_ack_verdict_t cm_ack_check(const cm_ack_t *a, const char *service, uint64_t left_index,
                              const char *addr, int *inflight);
/* The index a acknowledged for service, 0 when none. */
uint64_t cm_ack_index(const cm_ack_t *a, const char *service);
/* 1 when a gateway's last acknowledgement a says it routes on service's set at index or
 * later, or that it follows no such service (so it is in no set of its); 0 when a is NULL
 * or behind. Pure. */
int cm_ack_applied(const cm_ack_t *a, const char *service, uint64_t index);

typedef struct cm_acks cm_acks_t; /* opaque */

int cm_acks_new(cm_acks_t **out); /* caller owns *out; 0 or -ENOMEM */
void cm_acks_free(cm_acks_t *t);  /* NULL is a no-op */
/* Keeps a copy of *a as id's last acknowledgement (at_ms stamped). -ENOSPC when
 * CM_ACKS_MAX other gateways are remembered. */
int cm_acks_put(cm_acks_t *t, const char *id, const cm_ack_t *a);
const cm_ack_t *cm_acks_get(const cm_acks_t *t, const char *id); /* borrowed; NULL none */
/* Forgets id's acknowledgement (its process exited or was replaced: a new one starts
 * from nothing). */
void cm_acks_forget(cm_acks_t *t, const char *id);
/* Appends [{"id","pid","age_ms","services":{...},"inflight":{...}},...]. */
void cm_acks_render(const cm_acks_t *t, int64_t now_ms, cm_buf_t *out);

#endif
