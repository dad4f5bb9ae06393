/* core/client.c: non-blocking HTTP GET client (see client.h). libcurl's multi-socket API
 * tells us which sockets to watch (socket callback -> one uv_poll_t each) and when to
 * wake it (timer callback -> one uv_timer_t); we call curl_multi_socket_action back and
 * read completions with curl_multi_info_read. The multi handle owns the keep-alive cache. */
#include "core/client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "core/buf.h"

#define CLIENT_MAX_BODY    (1024 * 1024) /* bytes; answers past this are refused (-EIO) */
#define CLIENT_CONNECT_CAP 1000          /* ms; a loopback/LAN peer that is up connects fast */
#define CLIENT_FREE_MAX    16            /* idle easy handles kept for reuse per client */
#define CLIENT_BUF_KEEP    16384         /* bytes of body buffer an idle request keeps */

typedef struct req req_t;

struct cm_client {
    uv_loop_t *loop;
    CURLM *multi;      /* NULL once cm_client_free() ran */
    uv_timer_t timer;  /* curl's single timeout */
    req_t *pending;    /* added to multi, callback not yet fired; doubly linked */
    req_t *idle;       /* recycled requests (easy handle kept); singly linked */
    unsigned nidle;    /* length of idle */
    unsigned nhandles; /* uv handles not yet closed: the struct lives while > 0 */
    int closing;       /* cm_client_free() was called */
    CURL *answering;   /* the easy handle whose callback runs now (cm_client_header) */
};

struct req {
    cm_client_t *c;
    CURL *easy;
    struct curl_slist *headers; /* sent headers; curl borrows them until done */
    cm_buf_t body;
    int too_big; /* the body passed CLIENT_MAX_BODY */
    cm_client_cb cb;
    void *data;
    req_t *prev, *next;
};

typedef struct sock {
    uv_poll_t poll;
    cm_client_t *c;
    curl_socket_t fd;
} sock_t;

static const char empty_body[] = "";

/* ---------------------------------------------------------------------------
 * Low level: handle lifetime
 * ------------------------------------------------------------------------- */

static void client_release_if_done(cm_client_t *c)
{
    if (c->closing && c->nhandles == 0)
        free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    cm_client_t *c = h->data;
    c->nhandles--;
    client_release_if_done(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    sock_t *s = h->data;
    cm_client_t *c = s->c;
    free(s);
    c->nhandles--;
    client_release_if_done(c);
}

static void req_destroy(req_t *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    cm_buf_free(&r->body);
    free(r);
}

/* Returns a finished request to the idle list, or frees it when the list is full or
 * the client is going away. Its easy handle must no longer be in the multi. */
static void req_recycle(req_t *r)
{
    cm_client_t *c = r->c;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    if (c->closing || c->nidle >= CLIENT_FREE_MAX) {
        req_destroy(r);
        return;
    }
    cm_buf_reset(&r->body);
    cm_buf_shrink(&r->body, CLIENT_BUF_KEEP);
    r->cb = NULL;
    r->data = NULL;
    r->prev = NULL;
    r->next = c->idle;
    c->idle = r;
    c->nidle++;
}

static void pending_unlink(req_t *r)
{
    cm_client_t *c = r->c;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->pending = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static int map_result(CURLcode rc, CURL *easy)
{
    long code = 0;
    switch (rc) {
    case CURLE_OK:
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        return code >= 100 && code <= 599 ? (int)code : -EIO;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
        return -EHOSTUNREACH;
    default:
        return -EIO;
    }
}

/* Fires the callback of a request already detached from the multi and the pending list,
 * then recycles it. */
static void req_finish(req_t *r, int status)
{
    const char *body = empty_body;
    size_t len = 0;
    if (status >= 0 && r->body.len) {
        body = r->body.data;
        len = r->body.len;
    }
    cm_client_t *c = r->c;
    c->answering = status >= 0 ? r->easy : NULL;
    r->cb(status, body, len, r->data);
    c->answering = NULL;
    req_recycle(r);
}

/* ---------------------------------------------------------------------------
 * Low level: libcurl <-> libuv glue
 * ------------------------------------------------------------------------- */

static void check_done(cm_client_t *c)
{
    CURLMsg *msg;
    int left;
    /* Callbacks may free the client: c->multi is then NULL and the loop stops.
     * The struct itself survives until its handles close on a later loop turn. */
    while (!c->closing && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result; /* msg dies with the remove below */
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        req_t *r = (req_t *)priv;
        curl_multi_remove_handle(c->multi, easy);
        pending_unlink(r);
        int status = r->too_big ? -EIO : map_result(rc, easy);
        req_finish(r, status);
    }
}

static void on_timer(uv_timer_t *t)
{
    cm_client_t *c = t->data;
    int running;
    if (c->closing)
        return;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

/* CURLMOPT_TIMERFUNCTION. Never drives curl itself: a 0 ms timeout becomes a uv timer
 * that fires on the next loop turn, which is also what keeps completions (even ones
 * curl could report at once, like a refused connect) out of cm_client_get(). */
static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    cm_client_t *c = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    cm_client_t *c = s->c;
    int flags = 0, running;
    if (c->closing)
        return;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    /* s may be closed inside this call (curl drops the socket): touch it no more. */
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_done(c);
}

static void sock_close(sock_t *s)
{
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

/* CURLMOPT_SOCKETFUNCTION. curl calls CURL_POLL_REMOVE before it closes a socket, so
 * the poll is stopped while the fd is still valid (libuv forbids closing a polled fd). */
static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    cm_client_t *c = userp;
    sock_t *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            sock_close(s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->c = c;
        s->fd = fd;
        c->nhandles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&s->poll, events, on_poll) < 0 ? -1 : 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
    req_t *r = userp;
    size_t n = size * nmemb;
    if (r->body.len + n > CLIENT_MAX_BODY) {
        r->too_big = 1;
        return CURL_WRITEFUNC_ERROR;
    }
    if (cm_buf_append(&r->body, ptr, n) < 0)
        return CURL_WRITEFUNC_ERROR;
    return n;
}

/* ---------------------------------------------------------------------------
 * High level: the API
 * ------------------------------------------------------------------------- */

int cm_client_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

int cm_client_new(uv_loop_t *loop, cm_client_t **out)
{
    cm_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return -ENOMEM;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer); /* cannot fail on unix */
    c->timer.data = c;
    c->nhandles = 1;
    *out = c;
    return 0;
}

void cm_client_free(cm_client_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    /* Detach everything first so that a callback calling cm_client_get() sees a
     * closing client (-ECANCELED) and none can observe a half-torn multi. */
    req_t *list = c->pending;
    c->pending = NULL;
    for (req_t *r = list; r; r = r->next)
        curl_multi_remove_handle(c->multi, r->easy);
    while (list) {
        req_t *r = list;
        list = r->next;
        r->prev = r->next = NULL;
        req_finish(r, -ECANCELED); /* closing: frees r */
    }
    while (c->idle) {
        req_t *r = c->idle;
        c->idle = r->next;
        req_destroy(r);
    }
    c->nidle = 0;
    /* Closes the cached keep-alive connections; REMOVE notifications close their polls. */
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Accepts only absolute http(s) URLs with a host, so that a bad URL is -EINVAL now
 * instead of a -EIO callback later. */
static int url_ok(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = 0;
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        ok = !strcmp(scheme, "http") || !strcmp(scheme, "https");
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok ? 0 : -EINVAL;
}

static int build_headers(req_t *r, const char *request_id)
{
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (!h)
        return -ENOMEM;
    r->headers = h;
    if (request_id) {
        cm_buf_t line = CM_BUF_INIT;
        if (cm_buf_appendf(&line, "X-Request-Id: %s", request_id) < 0)
            return -ENOMEM;
        h = curl_slist_append(r->headers, line.data);
        cm_buf_free(&line);
        if (!h)
            return -ENOMEM;
        r->headers = h;
    }
    return 0;
}

static req_t *req_take(cm_client_t *c)
{
    req_t *r = c->idle;
    if (r) {
        c->idle = r->next;
        c->nidle--;
        r->next = NULL;
        curl_easy_reset(r->easy); /* keeps the handle's DNS and session caches */
        r->too_big = 0;
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    return r;
}

/* GET (method "GET", body NULL), POST with an empty body, or PUT of a JSON body
 * (copied by curl). */
static int start(cm_client_t *c, const char *method, const char *url, unsigned timeout_ms,
                 const char *request_id, const char *body, size_t len, cm_client_cb cb, void *data)
{
    if (!c || !url || !cb || timeout_ms == 0)
        return -EINVAL;
    if (c->closing)
        return -ECANCELED;
    if (request_id && strpbrk(request_id, "\r\n"))
        return -EINVAL; /* would split the header: refuse rather than inject */
    int rc = url_ok(url);
    if (rc < 0)
        return rc;

    req_t *r = req_take(c);
    if (!r)
        return -ENOMEM;
    rc = build_headers(r, request_id);
    if (rc == 0 && body) {
        struct curl_slist *h = curl_slist_append(r->headers, "Content-Type: application/json");
        rc = h ? 0 : -ENOMEM;
        r->headers = h ? h : r->headers;
    }
    if (rc < 0)
        goto fail;
    r->cb = cb;
    r->data = data;

    unsigned connect_ms = timeout_ms < CLIENT_CONNECT_CAP ? timeout_ms : CLIENT_CONNECT_CAP;
    CURL *e = r->easy;
    CURLcode set = CURLE_OK;
    /* OR-ing the codes is enough: each is 0 on success and we only ask "all fine?". */
    set |= curl_easy_setopt(e, CURLOPT_URL, url);
    if (body) {
        set |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        set |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
        if (strcmp(method, "POST") != 0)
            set |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    } else
        set |= curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* also undoes an earlier POST */
    set |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    set |= curl_easy_setopt(e, CURLOPT_PROXY, ""); /* ignore http_proxy & co. */
    set |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    set |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    set |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    set |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    set |= curl_easy_setopt(e, CURLOPT_USERAGENT, "cmesh");
    set |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLIENT_MAX_BODY);
    set |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    set |= curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    set |= curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    if (set != CURLE_OK) {
        rc = -ENOMEM; /* every value above is valid: only an allocation can fail */
        goto fail;
    }
    /* Only arms the timer (curl_timer_cb); nothing can complete inside this call. */
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        rc = -ENOMEM;
        goto fail;
    }
    r->prev = NULL;
    r->next = c->pending;
    if (c->pending)
        c->pending->prev = r;
    c->pending = r;
    return 0;

fail:
    r->cb = NULL;
    req_recycle(r);
    return rc;
}

int cm_client_get(cm_client_t *c, const char *url, unsigned timeout_ms, const char *request_id,
                  cm_client_cb cb, void *data)
{
    return start(c, "GET", url, timeout_ms, request_id, NULL, 0, cb, data);
}

int cm_client_post(cm_client_t *c, const char *url, unsigned timeout_ms, cm_client_cb cb,
                   void *data)
{
    return start(c, "POST", url, timeout_ms, NULL, "", 0, cb, data);
}

int cm_client_put_json(cm_client_t *c, const char *url, const char *body, size_t len,
                       unsigned timeout_ms, cm_client_cb cb, void *data)
{
    if (!body)
        return -EINVAL;
    return start(c, "PUT", url, timeout_ms, NULL, body, len, cb, data);
}

int cm_client_header(cm_client_t *c, const char *name, char *out, size_t cap)
{
    struct curl_header *h = NULL;
    if (!c || !c->answering || !name || cap == 0)
        return -ENOENT;
    if (curl_easy_header(c->answering, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return -ENOENT;
    size_t n = strlen(h->value);
    if (n >= cap)
        return -ENAMETOOLONG;
    memcpy(out, h->value, n + 1);
    return 0;
}
