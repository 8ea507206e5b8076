/* Strict parsing of the JSON request bodies of the control plane. Pure functions (no daemon state), so
 * they are unit-tested and fuzzed on their own. Every failure has status 400 (or 404/413 where noted)
 * and a message naming the offending field. */
#ifndef CUBE_API_VALIDATE_H
#define CUBE_API_VALIDATE_H

#include <jansson.h>
#include <stddef.h>

#include "common/error.h"
#include "net/policy.h"

#define API_V1_DEFAULT_TIMEOUT_S 15
#define API_V2_DEFAULT_TIMEOUT_S 300
#define API_CONNECT_DEFAULT_TIMEOUT_S 300
#define API_RESUME_DEFAULT_TIMEOUT_S 15
#define API_REFRESH_DEFAULT_S 15
#define API_REFRESH_MAX_S 3600

/* NewSandbox (v1) / NewSandboxV2 (v2). */
#define API_AUTO_PAUSE_DISK 2 /* == SBX_PAUSE_TO_DISK (daemon/sandboxes.h) */

struct api_create_body {
	char *template_id;
	json_t *metadata;   /* object string->string, never NULL after success */
	json_t *env_vars;   /* object string->string, never NULL after success */
	int timeout_s;
	int secure;
	struct net_policy *network; /* allow_internet_access + network, never NULL after success */
	int auto_pause;     /* autoPause or lifecycle.onTimeout "pause": 1, or API_AUTO_PAUSE_DISK with
	                     * autoPauseMemory: false */
	int auto_resume;    /* autoResume.enabled or lifecycle.autoResume */
};

int api_parse_create(const char *body, size_t len, int v2, unsigned max_timeout_s, struct api_create_body *out,
		     cube_err *err);
void api_create_body_free(struct api_create_body *b);

/* {"timeout": int} (required). Negative -> 0; above max -> 400. */
int api_parse_set_timeout(const char *body, size_t len, unsigned max_timeout_s, int *timeout_s, cube_err *err);
/* {"duration"?: 0..3600}; default API_REFRESH_DEFAULT_S. */
int api_parse_refresh(const char *body, size_t len, int *duration_s, cube_err *err);
/* ConnectSandbox (v1: timeout required) / ConnectSandboxV2 (body optional, timeout default 300). */
int api_parse_connect(const char *body, size_t len, int v2, unsigned max_timeout_s, int *timeout_s, int *memory,
		      cube_err *err);
/* SandboxNetworkUpdateConfig (PUT /sandboxes/{id}/network): replace semantics, omitted = cleared. */
int api_parse_network_update(const char *body, size_t len, struct net_policy *out, cube_err *err);
/* SandboxPauseRequest {memory?: bool} (body optional); *memory = 0 for a pause to disk (memory: false). */
int api_parse_pause(const char *body, size_t len, int *memory, cube_err *err);
/* ResumedSandbox {timeout?: default 15, autoPause?, memory?} (deprecated resume; body optional). */
int api_parse_resume(const char *body, size_t len, unsigned max_timeout_s, int *timeout_s, int *memory, cube_err *err);
/* AdminAPIKeyCreate {"name": non-empty string}. *name is malloc'd. */
int api_parse_apikey_create(const char *body, size_t len, char **name, cube_err *err);

/* A sandbox id from a path: ^[a-z0-9]+$ after stripping the legacy "-6532622b" client-id suffix.
 * Copies the bare id into out (outlen >= 32). 0 if valid, -1 ("Invalid sandbox ID", 400) if not. */
int api_sandbox_id(const char *raw, char *out, size_t outlen, cube_err *err);

/* "Timeout cannot be greater than N hours" (or "N seconds" when max is not whole hours). */
int api_fail_timeout_too_large(cube_err *err, unsigned max_timeout_s);

#endif
