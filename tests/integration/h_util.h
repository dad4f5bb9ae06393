/* tests/integration/h_util.h: helpers the integration suites share on top of harness.h:
 * a scratch directory, writing and reading files, running `cmesh ...` to its end, tokens
 * (cmesh token, or crafted and signed with openssl), a gateway started on a config text,
 * waiting for a line in a log. Each aborts the test on a failure it cannot report. */
#ifndef CMESH_TESTS_H_UTIL_H
#define CMESH_TESTS_H_UTIL_H

#include "harness.h"

#include <stddef.h>

/* One temp dir per test process (Criterion runs each test in a process of its own), made
 * on first use and removed at exit. */
const char *h_scratch(void);

/* Writes text to path (created or truncated); asserts it can. */
void h_write_text(const char *path, const char *text);
/* Writes text to h_scratch()/name; the file's path goes to out. */
void h_write_file(char *out, size_t cap, const char *name, const char *text);
/* The whole file, NUL-terminated (caller frees); "" when it cannot be read. *len (may be
 * NULL) gets its length. */
char *h_read_file(const char *path, size_t *len);
/* The same, asserting the file can be opened. */
char *h_read_required(const char *path);
/* Polls path (every 20 ms, up to timeout_ms) until it holds what. Returns 1 when it does,
 * 0 when it did not in time; *text (may be NULL) gets the file as last read (caller
 * frees). */
int h_wait_for_text(const char *path, const char *what, int timeout_ms, char **text);

/* Runs `$CMESH_BIN arg0 args...` (NULL-terminated) to its end, at most 15 s (then
 * SIGKILL); stdout and stderr go to *out and *err (caller frees; either may be NULL).
 * Returns the exit status (128 + signal when one ended it), or -1 when it was killed. */
int h_run_cmesh(char **out, char **err, const char *arg0, ...);
/* The same with the arguments as a NULL-terminated array. */
int h_run_cmesh_argv(char **out, char **err, const char *const *args);

/* `cmesh token --sub SUB --scope SCOPE args...` (NULL-terminated, e.g. "--auth-key", KEY,
 * NULL): the token without its newline (caller frees); asserts it exited 0. */
char *h_token(const char *sub, const char *scope, ...);
/* base64url without padding of in[0..len) into out (room for 4 * len / 3 + 4). */
void h_b64url(const void *in, size_t len, char *out);
/* Writes a new private key for alg ("RS256": RSA 2048, "ES256": EC P-256) with `openssl
 * genpkey` to h_scratch()/name; the file's path goes to path. */
void h_make_pem_key(char *path, size_t cap, const char *name, const char *alg);
/* A JWT "H.P.S" of this header and these claims (JSON texts), signed with `openssl dgst`:
 * HS256 with hs_secret when not NULL, else with the PEM private key pem_key (RS256 or
 * ES256 as the key is) when not NULL, else unsigned ("H.P."). For tokens `cmesh token`
 * never makes. Caller frees. */
char *h_jwt_sign(const char *header, const char *claims, const char *hs_secret,
                 const char *pem_key);

/* Writes config_text to a new file in h_scratch() (its path to cfg_path when not NULL)
 * and starts `cmesh gateway --config FILE --workers 1 extra...` on it, with
 * `--access-log off` unless extra names --access-log. extra: NULL or NULL-terminated, at
 * most 8. */
void h_start_gateway(h_proc_t *gw, const char *config_text, char *cfg_path, size_t cap,
                     const char *const *extra);

#endif
