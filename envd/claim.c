/* POST /_cube/claim (envd/claim.h). Only cubed knows the claim key: it is in the boot config on fd 3
 * and in no environment, and nothing runs in a pooled sandbox before its claim. The key works once:
 * after a claim the route is gone (404 like any unknown path), so a claimed sandbox's user cannot
 * replace the token or environment. The new settings replace the boot ones entirely, so nothing of
 * the pool's boot config (or of any earlier request) survives. */
#include "envd/claim.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "envd/core.h"
#include "envd/envd.h"

#define CLAIM_PATH "/_cube/claim"
#define MAX_CLAIM_BYTES (1u << 20)

static char *claim_key;

void envd_claim_config(json_t *cfg)
{
	json_t *k = json_object_get(cfg, "claimKey");
	if (json_is_string(k) && strlen(json_string_value(k)) >= 32) {
		free(claim_key);
		claim_key = strdup(json_string_value(k));
	}
}

static void replace(char **dst, json_t *v)
{
	free(*dst);
	*dst = json_is_string(v) && *json_string_value(v) ? strdup(json_string_value(v)) : NULL;
}

/* The same order as a cold boot: the request's envVars, then E2B_SANDBOX* (main.c). */
static void apply(json_t *cfg)
{
	json_object_clear(envd.env_vars);
	envd_merge_envs(json_object_get(cfg, "envVars"));
	envd_set_env("E2B_SANDBOX", "true");
	if (envd.sandbox_id)
		envd_set_env("E2B_SANDBOX_ID", envd.sandbox_id);
	if (envd.template_id)
		envd_set_env("E2B_TEMPLATE_ID", envd.template_id);
	replace(&envd.access_token, json_object_get(cfg, "accessToken"));
	json_t *user = json_object_get(cfg, "defaultUser");
	if (json_is_string(user) && *json_string_value(user))
		replace(&envd.default_user, user);
	replace(&envd.default_workdir, json_object_get(cfg, "defaultWorkdir"));
	json_t *max = json_object_get(cfg, "maxUploadBytes");
	if (json_is_integer(max) && json_integer_value(max) > 0)
		envd.max_upload_bytes = (unsigned long long)json_integer_value(max);
	envd.started_ms = cube_now_ms();
}

static void on_claim_body(http_req *req, char *body, size_t len, int error_status)
{
	if (error_status) {
		envd_send_error(req, error_status, "claim body");
		return;
	}
	if (!claim_key) { /* a concurrent claim won */
		envd_send_error(req, 404, "path %s not found", CLAIM_PATH);
		return;
	}
	json_error_t jerr;
	json_t *cfg = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(cfg)) {
		json_decref(cfg);
		envd_send_error(req, 400, "claim: %s", jerr.text);
		return;
	}
	apply(cfg);
	json_decref(cfg);
	free(claim_key);
	claim_key = NULL;
	log_info("envd: claimed (sandbox %s, user %s, token %s)", envd.sandbox_id ? envd.sandbox_id : "-",
		 envd.default_user, envd.access_token ? "set" : "none");
	http_resp_start(req, 204, NULL, 0, -1);
	http_resp_end(req);
}

int envd_claim_handle(http_req *req)
{
	if (!claim_key || strcmp(http_req_path(req), CLAIM_PATH) != 0)
		return 0;
	const char *got = http_req_header(req, "X-Cube-Claim-Key");
	size_t lk = strlen(claim_key);
	if (strcmp(http_req_method(req), "POST") != 0 || !got || strlen(got) != lk ||
	    CRYPTO_memcmp(got, claim_key, lk) != 0)
		return 0; /* indistinguishable from an unknown path */
	http_req_read_body(req, MAX_CLAIM_BYTES, on_claim_body);
	return 1;
}
