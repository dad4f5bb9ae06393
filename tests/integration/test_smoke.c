/* tests/integration/test_smoke.c: the users service starts, answers, and drains on
 * SIGTERM with exit code 0. */
#include "harness.h"

#include <criterion/criterion.h>

Test(smoke, users_serves_health_and_drains_with_exit_0)
{
    h_proc_t p;
    h_start(&p, "users", "--db", "{dir}/users.db", NULL);
    h_resp_t r = h_req(&p, "GET", "/readyz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    h_resp_free(&r);
    cr_assert_eq(h_stop(&p), 0);
}
