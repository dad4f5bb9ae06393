/* tests/integration/test_gwbalance.c: the default balancer (peak EWMA) over real sockets:
 * a real `cmesh gateway` in front of two scripted upstreams in this process, one made slow
 * for a while and then fast again, must give the recovered one its share back. */
#include "harness.h"
#include "scripted_upstream.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <curl/curl.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t drop(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* Sends GET url one after another on one keep-alive connection for `seconds`; every answer
 * must be 200. Returns how many were sent. */
static int drive(CURL *c, double seconds)
{
    int sent = 0;
    for (double end = now_s() + seconds; now_s() < end; sent++) {
        long status = 0;
        cr_assert_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        cr_assert_eq(status, 200);
    }
    return sent;
}

Test(gwbalance, peak_ewma_gives_a_recovered_instance_its_share_back, .timeout = 60)
{
    us_scripted_t *fast = us_start(), *slow = us_start();
    char dir[256], path[300], cfg[1024];
    h_tempdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/gateway.yaml", dir);
    snprintf(cfg, sizeof cfg,
             "routes:\n"
             "  - prefix: /s\n"
             "    upstreams: [%s, %s]\n"
             "    health: off\n", /* balancer: the default, peak_ewma */
             us_url(fast), us_url(slow));
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(cfg, f);
    fclose(f);
    h_proc_t gw;
    h_start(&gw, "gateway", "--config", path, "--workers", "1", "--access-log", "off", NULL);

    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/s/x", gw.url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, drop);

    /* a slow spell: 20 ms answers, about 100x the other's; it is soon left alone */
    us_set_reply(slow, &(us_reply_t){.status = 200, .delay_ms = 20});
    drive(c, 2.0);
    int slow_in_spell = us_count(slow);
    cr_assert_gt(slow_in_spell, 0, "the slow instance was never tried");

    /* fast again. Before the fix it got 0 requests from here on. */
    us_set_reply(slow, &(us_reply_t){.status = 200});
    drive(c, 7.0);
    us_clear(fast);
    us_clear(slow);
    int sent = drive(c, 3.0);
    int got = us_count(slow);
    cr_log_info("recovered instance: %d of %d requests in the 3 s window (%d in its slow spell)",
                got, sent, slow_in_spell);
    cr_assert_eq(got + us_count(fast), sent);
    cr_assert_gt(got * 100, sent * 5, "the recovered instance got %d of %d requests (< 5%%)", got,
                 sent);

    curl_easy_cleanup(c);
    cr_assert_eq(h_stop(&gw), 0);
    us_stop(fast);
    us_stop(slow);
}
