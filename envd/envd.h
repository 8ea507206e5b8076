/* cube-envd: the agent inside every sandbox (PID 1). Shared state and helpers used by the
 * process service, the filesystem service and the plain HTTP endpoints. */
#ifndef CUBE_ENVD_ENVD_H
#define CUBE_ENVD_ENVD_H

#include <jansson.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"
#include "common/http_server.h"

struct envd_state {
	uv_loop_t *loop;
	json_t *env_vars;          /* global envs: create's envVars (+ E2B_SANDBOX*, set at init) */
	char *access_token;        /* NULL = no token enforced */
	char *default_user;        /* "user" unless /init says otherwise */
	char *default_workdir;     /* NULL = the user's home */
	char *sandbox_id, *template_id;
	unsigned long long max_upload_bytes;
	long long started_ms;
};
extern struct envd_state envd;

struct envd_user {
	uid_t uid;
	gid_t gid;
	char name[64];
	char home[512];
	char shell[256];
	gid_t groups[64];
	int ngroups;
};

/* Look a user up in the sandbox's /etc/passwd and /etc/group (no NSS: envd is static).
 * Unknown user -> status 401 with "invalid username: '<name>'". */
int envd_user_lookup(const char *name, struct envd_user *out, cube_err *err);
/* Path rules of the protocol (§3.8): empty -> default workdir or home; ~ and ~/x -> home;
 * ~name -> error; relative -> joined with home and cleaned. */
int envd_resolve_path(const char *in, const struct envd_user *u, char *out, size_t outlen, cube_err *err);
/* X-Access-Token check: 1 if no token is configured or the header matches (constant time). */
int envd_token_ok(http_req *req);

/* Plain HTTP handlers implemented by the files facility (files_http.c). token_ok tells whether
 * X-Access-Token already authorised the request; otherwise a valid signature is required. */
void envd_files_get(http_req *req, int token_ok);
void envd_files_post(http_req *req, int token_ok);

/* ---- helpers of the core (http_misc.c, users.c), usable by every envd facility ---- */

/* CORS headers envd puts on every response it builds itself (§2.7). */
extern const http_header envd_cors_headers[];
extern const size_t envd_cors_header_count;
/* 200/other JSON response with the CORS headers and Cache-Control: no-store (steals body). */
void envd_send_json(http_req *req, int status, json_t *body);
/* Plain-HTTP error {"code":status,"message":...} (application/json; charset=utf-8) with CORS. */
void envd_send_error(http_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Standard base64 with padding; malloc'd and NUL-terminated, NULL on allocation failure. */
char *envd_base64_encode(const void *data, size_t len);
/* Standard or URL-safe base64, padding optional (§3.5). malloc'd; NULL if malformed. */
unsigned char *envd_base64_decode(const char *s, size_t *len_out);
/* Files envd_user_lookup reads (default /etc/passwd, /etc/group); tests use a scratch copy. */
void envd_users_set_files(const char *passwd, const char *group);

#endif
