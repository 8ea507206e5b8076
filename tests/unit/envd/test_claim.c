/* cube-envd's pool claim (envd/claim.c) over real HTTP: only the key from the boot config works, it
 * works once, the claim replaces env vars and token entirely, and afterwards the route is gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tests/unit/envd/envd_harness.h"

#define KEY "0123456789abcdef0123456789abcdef0123456789abcdef"

static long claim(struct envd_proc *e, const char *key, const char *body)
{
	char hk[128];
	snprintf(hk, sizeof hk, "X-Cube-Claim-Key: %s", key);
	const char *h[] = {"Content-Type: application/json", hk, NULL};
	struct http_result r = envd_http(e, "POST", "/_cube/claim", h, body, strlen(body), 0);
	long st = r.status;
	http_result_free(&r);
	return st;
}

static json_t *envs(struct envd_proc *e, const char *token, long *status)
{
	char ht[128];
	snprintf(ht, sizeof ht, "X-Access-Token: %s", token);
	const char *h[] = {ht, NULL};
	struct http_result r = envd_http(e, "GET", "/envs", token ? h : NULL, NULL, 0, 0);
	*status = r.status;
	json_t *j = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	http_result_free(&r);
	return j;
}

static void test_claim_once(void **state)
{
	(void)state;
	struct envd_proc e = {0};
	assert_int_equal(envd_start(&e, "{\"sandboxID\":\"ipool\",\"templateID\":\"base\",\"envVars\":{\"BOOT\":\"1\"},"
					"\"defaultUser\":\"user\",\"claimKey\":\"" KEY "\"}"),
			 0);
	long st;
	/* before the claim: the boot settings, no token */
	json_t *j = envs(&e, NULL, &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(j, "BOOT")), "1");
	json_decref(j);
	/* a wrong key, a wrong method: indistinguishable from an unknown path */
	assert_int_equal(claim(&e, "x" KEY, "{}"), 404);
	assert_int_equal(claim(&e, "fedcba9876543210fedcba9876543210fedcba9876543210", "{}"), 404);
	/* the claim */
	assert_int_equal(claim(&e, KEY, "{\"envVars\":{\"REQ\":\"2\"},\"accessToken\":\"newtok\",\"defaultUser\":\"user\"}"),
			 204);
	j = envs(&e, NULL, &st);
	assert_int_equal(st, 401); /* the token is enforced now */
	json_decref(j);
	j = envs(&e, "newtok", &st);
	assert_int_equal(st, 200);
	assert_string_equal(json_string_value(json_object_get(j, "REQ")), "2");
	assert_null(json_object_get(j, "BOOT")); /* replaced, not merged */
	assert_string_equal(json_string_value(json_object_get(j, "E2B_SANDBOX_ID")), "ipool");
	assert_string_equal(json_string_value(json_object_get(j, "E2B_SANDBOX")), "true");
	json_decref(j);
	/* once only: the route is gone (401 here only because a token is set; the key no longer matters) */
	long again = claim(&e, KEY, "{\"envVars\":{\"EVIL\":\"1\"},\"accessToken\":null}");
	assert_true(again == 401 || again == 404);
	j = envs(&e, "newtok", &st);
	assert_int_equal(st, 200);
	assert_null(json_object_get(j, "EVIL"));
	json_decref(j);
	envd_stop(&e);
}

static void test_no_key_no_claim(void **state)
{
	(void)state;
	struct envd_proc e = {0};
	assert_int_equal(envd_start(&e, "{\"sandboxID\":\"icold\",\"defaultUser\":\"user\"}"), 0);
	assert_int_equal(claim(&e, KEY, "{\"accessToken\":\"t\"}"), 404); /* a cold envd has no claim route */
	envd_stop(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_claim_once),
		cmocka_unit_test(test_no_key_no_claim),
	};
	return cmocka_run_group_tests(tests, envd_group_setup, envd_group_teardown);
}
