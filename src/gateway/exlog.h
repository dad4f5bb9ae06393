/* gateway/exlog.h: the gateway's part of an access-log line: the route and one JSON
 * object per attempt ("attempts":[{"upstream":..,"status":..,"error":..,"duration_us":..,
 * "retry":..}]) and why a retry was refused. Written by proxy.c into cm_req_t.log_extra. */
#ifndef CMESH_GATEWAY_EXLOG_H
#define CMESH_GATEWAY_EXLOG_H

#include <stdint.h>

#include "core/buf.h"

/* Appends one attempt's object to the array under construction in attempts. status 0,
 * error NULL and retry NULL leave their fields out. */
void gw_exlog_attempt(cm_buf_t *attempts, const char *upstream, int status, const char *error,
                      uint64_t duration_us, const char *retry);

/* Appends ,"route":..,"attempts":[..] and, when refused is not NULL, ,"retry_refused":.. */
void gw_exlog_attach(cm_buf_t *extra, const char *route, const cm_buf_t *attempts,
                     const char *refused);

#endif
