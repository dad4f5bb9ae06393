/* gateway/admin.h: the admin API (admin.c). */
#ifndef CMESH_GATEWAY_ADMIN_H
#define CMESH_GATEWAY_ADMIN_H

#include "core/http.h"

/* The admin listener's handler (cm_service_t.admin): /_cmesh/... and 404 for the rest. */
void gw_admin_serve(cm_req_t *req);

#endif
