/* tests/integration/h_util.c: scratch files, cmesh runs, tokens and a gateway on a config
 * text, shared by the integration suites (see h_util.h). */
#include "h_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

const char *h_scratch(void)
{
    static char dir[256];
    if (!dir[0])
        h_tempdir(dir, sizeof dir);
    return dir;
}

void h_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0, "cannot write %s", path);
}

void h_write_file(char *out, size_t cap, const char *name, const char *text)
{
    snprintf(out, cap, "%s/%s", h_scratch(), name);
    h_write_text(out, text);
}

char *h_read_file(const char *path, size_t *len)
{
    char *data = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&data, &n);
    cr_assert_not_null(m);
    FILE *f = fopen(path, "rb");
    if (f) {
        char buf[8192];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, got, m);
        fclose(f);
    }
    cr_assert_eq(fclose(m), 0);
    if (len)
        *len = n;
    return data;
}

char *h_read_required(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    fclose(f);
    return h_read_file(path, NULL);
}

int h_wait_for_text(const char *path, const char *what, int timeout_ms, char **text)
{
    char *now = NULL;
    int found = 0;
    for (int waited = 0;; waited += 20) {
        free(now);
        now = h_read_file(path, NULL);
        found = strstr(now, what) != NULL;
        if (found || waited >= timeout_ms)
            break;
        usleep(20 * 1000);
    }
    if (text)
        *text = now;
    else
        free(now);
    return found;
}

int h_run_cmesh_argv(char **out, char **err, const char *const *args)
{
    static int seq;
    const char *bin = getenv("CMESH_BIN");
    cr_assert_not_null(bin, "CMESH_BIN is not set");
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char out_path[300], err_path[300];
    snprintf(out_path, sizeof out_path, "%s/run%d.out", h_scratch(), seq);
    snprintf(err_path, sizeof err_path, "%s/run%d.err", h_scratch(), seq++);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, 1);
        dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = -1, rc = -1;
    for (int waited = 0; waited < 15000; waited += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        usleep(10 * 1000);
    }
    if (rc == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (out)
        *out = h_read_file(out_path, NULL);
    if (err)
        *err = h_read_file(err_path, NULL);
    return rc;
}

int h_run_cmesh(char **out, char **err, const char *arg0, ...)
{
    const char *args[32];
    int n = 0;
    args[n++] = arg0;
    va_list ap;
    va_start(ap, arg0);
    const char *a;
    while (n < 31 && (a = va_arg(ap, const char *)))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return h_run_cmesh_argv(out, err, args);
}

char *h_token(const char *sub, const char *scope, ...)
{
    const char *args[32] = {"token", "--sub", sub, "--scope", scope};
    int n = 5;
    va_list ap;
    va_start(ap, scope);
    const char *a;
    while (n < 31 && (a = va_arg(ap, const char *)))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    char *out, *err;
    int rc = h_run_cmesh_argv(&out, &err, args);
    cr_assert_eq(rc, 0, "cmesh token --sub %s --scope %s %s %s exited %d: %s", sub, scope,
                 n > 5 ? args[5] : "", n > 6 ? args[6] : "", rc, err);
    free(err);
    out[strcspn(out, "\r\n")] = '\0';
    cr_assert(strlen(out) > 20, "cmesh token printed '%s'", out);
    return out;
}

void h_b64url(const void *in, size_t len, char *out)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *s = in;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)s[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)s[i + 1] << 8;
        if (i + 2 < len)
            v |= s[i + 2];
        out[o++] = al[(v >> 18) & 63];
        out[o++] = al[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = al[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = al[v & 63];
    }
    out[o] = '\0';
}

void h_make_pem_key(char *path, size_t cap, const char *name, const char *alg)
{
    snprintf(path, cap, "%s/%s", h_scratch(), name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "openssl genpkey %s -out '%s' 2>/dev/null",
             strcmp(alg, "RS256") == 0 ? "-algorithm RSA -pkeyopt rsa_keygen_bits:2048"
                                       : "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
             path);
    cr_assert_eq(system(cmd), 0, "openssl genpkey failed: %s", cmd);
}

char *h_jwt_sign(const char *header, const char *claims, const char *hs_secret, const char *pem_key)
{
    char *tok = malloc(4096);
    cr_assert_not_null(tok);
    char h64[1400], p64[1400];
    h_b64url(header, strlen(header), h64);
    h_b64url(claims, strlen(claims), p64);
    snprintf(tok, 4096, "%s.%s", h64, p64);
    if (!hs_secret && !pem_key) {
        strcat(tok, ".");
        return tok;
    }
    char in[300], sig_path[300], cmd[2400];
    h_write_file(in, sizeof in, "sign.in", tok);
    snprintf(sig_path, sizeof sig_path, "%s/sign.out", h_scratch());
    if (hs_secret) {
        char hex[600];
        size_t k = strlen(hs_secret);
        cr_assert_lt(2 * k, sizeof hex);
        for (size_t i = 0; i < k; i++)
            snprintf(hex + 2 * i, 3, "%02x", (unsigned char)hs_secret[i]);
        snprintf(cmd, sizeof cmd,
                 "openssl dgst -sha256 -mac HMAC -macopt hexkey:%s -binary -out '%s' '%s'", hex,
                 sig_path, in);
    } else {
        snprintf(cmd, sizeof cmd, "openssl dgst -sha256 -sign '%s' -binary -out '%s' '%s'", pem_key,
                 sig_path, in);
    }
    cr_assert_eq(system(cmd), 0, "openssl dgst failed: %s", cmd);
    size_t n;
    char *sig = h_read_file(sig_path, &n);
    if (hs_secret)
        cr_assert_eq(n, 32, "HMAC-SHA-256 of %zu bytes", n);
    cr_assert_lt(n, 1024, "a %zu-byte signature", n);
    char s64[1400];
    h_b64url(sig, n, s64);
    free(sig);
    size_t l = strlen(tok);
    snprintf(tok + l, 4096 - l, ".%s", s64);
    return tok;
}

void h_start_gateway(h_proc_t *gw, const char *config_text, char *cfg_path, size_t cap,
                     const char *const *extra)
{
    static int seq;
    char name[32], path[300];
    snprintf(name, sizeof name, "gateway%d.yaml", seq++);
    h_write_file(path, sizeof path, name, config_text);
    if (cfg_path)
        snprintf(cfg_path, cap, "%s", path);
    const char *x[9] = {0};
    int has_log = 0;
    for (int i = 0; extra && extra[i] && i < 8; i++) {
        x[i] = extra[i];
        has_log |= strcmp(x[i], "--access-log") == 0;
    }
    if (has_log)
        h_start(gw, "gateway", "--config", path, "--workers", "1", x[0], x[1], x[2], x[3], x[4],
                x[5], x[6], x[7], NULL);
    else
        h_start(gw, "gateway", "--config", path, "--workers", "1", "--access-log", "off", x[0],
                x[1], x[2], x[3], x[4], x[5], x[6], x[7], NULL);
}
