/* cube-envd's router and Connect layer over real HTTP: /health, the access token (exact 401 body),
 * CORS preflight, /envs, /metrics, /init, unknown paths and methods, broken envelopes and bad JSON
 * (answered through the right channel: unary status table, or 200 + EOS error for streams),
 * content types, and that envd keeps serving after all of it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "envd_harness.h"


static const char unauthorized_body[] =
	"{\"code\":401,\"message\":\"unauthorized access, please provide a valid access token or method signing if "
	"supported\"}";

static void test_health(void **state)
{
	(void)state;
	struct http_result r = envd_http(&envd_p, "GET", "/health", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.len, 0);
	assert_non_null(strcasestr(r.headers, "Cache-Control: no-store"));
	assert_non_null(strcasestr(r.headers, "Access-Control-Allow-Origin: *"));
	http_result_free(&r);
}

static void test_token_required(void **state)
{
	(void)state;
	const char *none[] = {"Content-Type: application/json", NULL};
	struct http_result r = envd_http(&envd_p, "POST", "/process.Process/List", none, "{}", 2, 0);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.content_type, "application/json; charset=utf-8");
	assert_string_equal(r.body, unauthorized_body);
	http_result_free(&r);
	const char *wrong[] = {"Content-Type: application/json", "X-Access-Token: tok2", NULL};
	r = envd_http(&envd_p, "POST", "/process.Process/List", wrong, "{}", 2, 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	r = envd_http(&envd_p, "GET", "/envs", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.body, unauthorized_body);
	http_result_free(&r);
	/* /init is no way around the token once one is set. */
	r = envd_http(&envd_p, "POST", "/init", none, "{\"accessToken\":\"mine\"}", 22, 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	const char *ok[] = {"Content-Type: application/json", "X-Access-Token: tok", NULL};
	r = envd_http(&envd_p, "POST", "/process.Process/List", ok, "{}", 2, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.content_type, "application/json");
	http_result_free(&r);
}

static void test_cors_preflight(void **state)
{
	(void)state;
	const char *h[] = {"Origin: https://example.com", "Access-Control-Request-Method: POST",
			   "Access-Control-Request-Headers: x-access-token, content-type", NULL};
	struct http_result r = envd_http(&envd_p, "OPTIONS", "/process.Process/Start", h, NULL, 0, 0);
	assert_true(r.status == 204 || r.status == 200);
	assert_non_null(strcasestr(r.headers, "Access-Control-Allow-Origin: *"));
	assert_non_null(strcasestr(r.headers, "Access-Control-Allow-Methods: HEAD, GET, POST, PUT, PATCH, DELETE"));
	assert_non_null(strcasestr(r.headers, "Access-Control-Allow-Headers: x-access-token, content-type"));
	assert_non_null(strcasestr(r.headers, "Access-Control-Max-Age: 7200"));
	http_result_free(&r);
	/* Every response carries CORS, also those the /files facility builds (here: a 401 for a bad signature). */
	r = envd_http(&envd_p, "GET", "/files?path=/nope&signature=v1_x&signature_expiration=1", NULL, NULL, 0, 0);
	assert_true(r.status >= 400);
	assert_non_null(strcasestr(r.headers, "Access-Control-Allow-Origin: *"));
	http_result_free(&r);
}

static void test_envs(void **state)
{
	(void)state;
	const char *h[] = {"X-Access-Token: tok", NULL};
	struct http_result r = envd_http(&envd_p, "GET", "/envs", h, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	json_t *j = json_loadb(r.body, r.len, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "GLOBAL_A")), "1");
	assert_string_equal(json_string_value(json_object_get(j, "E2B_SANDBOX")), "true");
	assert_string_equal(json_string_value(json_object_get(j, "E2B_SANDBOX_ID")), "sbx-test");
	assert_string_equal(json_string_value(json_object_get(j, "E2B_TEMPLATE_ID")), "base");
	json_decref(j);
	http_result_free(&r);
}

static void test_metrics(void **state)
{
	(void)state;
	const char *h[] = {"X-Access-Token: tok", NULL};
	struct http_result r = envd_http(&envd_p, "GET", "/metrics", h, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	json_t *j = json_loadb(r.body, r.len, 0, NULL);
	assert_non_null(j);
	const char *ints[] = {"ts", "cpu_count", "mem_total", "mem_used", "disk_used", "disk_total"};
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
		assert_true(json_is_integer(json_object_get(j, ints[i])));
	assert_true(json_integer_value(json_object_get(j, "cpu_count")) >= 1);
	assert_true(json_integer_value(json_object_get(j, "mem_total")) > 0);
	assert_true(json_integer_value(json_object_get(j, "disk_total")) > 0);
	assert_true(json_is_number(json_object_get(j, "cpu_used_pct")));
	json_decref(j);
	http_result_free(&r);
}

static void test_init(void **state)
{
	(void)state;
	const char *h[] = {"Content-Type: application/json", "X-Access-Token: tok", NULL};
	const char *body = "{\"envVars\":{\"FROM_INIT\":\"yes\"},\"accessToken\":\"tok\",\"defaultUser\":\"root\","
			   "\"timestamp\":\"2030-01-01T00:00:00.000Z\"}";
	struct http_result r = envd_http(&envd_p, "POST", "/init", h, body, strlen(body), 0);
	assert_int_equal(r.status, 204);
	assert_non_null(strcasestr(r.headers, "X-Envd-Version: "));
	http_result_free(&r);
	r = envd_http(&envd_p, "GET", "/envs", h + 1, NULL, 0, 0);
	assert_non_null(strstr(r.body, "\"FROM_INIT\":\"yes\""));
	http_result_free(&r);
	/* A stale request (older timestamp) changes nothing. */
	body = "{\"envVars\":{\"STALE\":\"1\"},\"timestamp\":\"2029-01-01T00:00:00Z\"}";
	r = envd_http(&envd_p, "POST", "/init", h, body, strlen(body), 0);
	assert_int_equal(r.status, 204);
	http_result_free(&r);
	r = envd_http(&envd_p, "GET", "/envs", h + 1, NULL, 0, 0);
	assert_null(strstr(r.body, "STALE"));
	http_result_free(&r);
	/* The token cannot be swapped. */
	body = "{\"accessToken\":\"other\"}";
	r = envd_http(&envd_p, "POST", "/init", h, body, strlen(body), 0);
	assert_int_equal(r.status, 409);
	http_result_free(&r);
	r = envd_http(&envd_p, "POST", "/init", h, "{", 1, 0);
	assert_int_equal(r.status, 400);
	http_result_free(&r);
}

static void test_unknown_routes(void **state)
{
	(void)state;
	const char *h[] = {"Content-Type: application/json", "X-Access-Token: tok", NULL};
	struct http_result r = envd_http(&envd_p, "GET", "/nope", h, NULL, 0, 0);
	assert_int_equal(r.status, 404);
	json_t *j = json_loadb(r.body, r.len, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 404);
	assert_true(json_is_string(json_object_get(j, "message")));
	json_decref(j);
	http_result_free(&r);
	/* Unknown RPC: a Connect body, so the client sees "unimplemented". */
	r = envd_http(&envd_p, "POST", "/process.Process/Nope", h, "{}", 2, 0);
	assert_int_equal(r.status, 404);
	j = json_loadb(r.body, r.len, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "code")), "unimplemented");
	json_decref(j);
	http_result_free(&r);
}

static void test_unary_errors(void **state)
{
	(void)state;
	long st;
	json_t *j = envd_unary(&envd_p, "/process.Process/List", "{", &st, NULL);
	assert_int_equal(st, 400);
	assert_string_equal(json_string_value(json_object_get(j, "code")), "invalid_argument");
	json_decref(j);
	j = envd_unary(&envd_p, "/process.Process/List", "[1]", &st, NULL);
	assert_int_equal(st, 400);
	json_decref(j);
	j = envd_unary(&envd_p, "/process.Process/SendInput", "{\"process\":{\"pid\":\"x\"}}", &st, NULL);
	assert_int_equal(st, 400);
	json_decref(j);
	/* charset parameter accepted */
	const char *h[] = {"Content-Type: application/json; charset=utf-8", "X-Access-Token: tok", NULL};
	struct http_result r = envd_http(&envd_p, "POST", "/process.Process/List", h, "{}", 2, 0);
	assert_int_equal(r.status, 200);
	http_result_free(&r);
	const char *bad_ct[] = {"Content-Type: application/proto", "X-Access-Token: tok", NULL};
	r = envd_http(&envd_p, "POST", "/process.Process/List", bad_ct, "{}", 2, 0);
	assert_int_equal(r.status, 415);
	http_result_free(&r);
}

static void assert_eos_error(const struct stream_result *s, const char *code)
{
	assert_int_equal(s->status, 200);
	assert_string_equal(s->content_type, "application/connect+json");
	assert_int_equal(s->n, 1);
	assert_int_equal(s->flags[0], 0x02);
	assert_string_equal(json_string_value(json_object_get(json_object_get(s->frames[0], "error"), "code")), code);
}

static void test_bad_envelopes(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream_raw(&envd_p, "/process.Process/Start", "\x00\x00", 2, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
	/* declared length longer than the body */
	envd_stream_raw(&envd_p, "/process.Process/Start", "\x00\x00\x00\x00\x40{}", 7, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
	/* trailing bytes after the message */
	envd_stream_raw(&envd_p, "/process.Process/Start", "\x00\x00\x00\x00\x02{}xx", 9, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
	/* compressed flag */
	envd_stream_raw(&envd_p, "/process.Process/Start", "\x01\x00\x00\x00\x02{}", 7, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
	/* not JSON */
	envd_stream_raw(&envd_p, "/process.Process/Start", "\x00\x00\x00\x00\x03{{{", 8, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
	/* empty body */
	envd_stream_raw(&envd_p, "/process.Process/Connect", "", 0, NULL, 0, &s);
	assert_eos_error(&s, "invalid_argument");
	stream_result_free(&s);
}

static void test_still_serving(void **state)
{
	(void)state;
	struct http_result r = envd_http(&envd_p, "GET", "/health", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 204);
	http_result_free(&r);
	int status;
	assert_int_equal(waitpid(envd_p.pid, &status, WNOHANG), 0);   /* envd is alive */
}

/* The production hand-over: config on fd 3, no ready fd, nothing else inherited. envd must not
 * confuse descriptors libuv opened with fd 3/4 (it once closed libuv's signal lock that way and
 * stopped hearing SIGCHLD), must reap its children and must stop on SIGTERM. */
static void test_config_on_fd3(void **state)
{
	(void)state;
	struct envd_proc e = envd_p;
	e.port = harness_free_port();
	char cfg[256];
	snprintf(cfg, sizeof cfg, "%s/config.json", envd_p.dir);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(cfg, O_RDONLY);
		if (fd < 0 || dup2(fd, 3) < 0)
			_exit(126);
		close_range(4, ~0U, 0);
		char port[16];
		snprintf(port, sizeof port, "%d", e.port);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(devnull, 2);
		close(devnull);
		execl(getenv("CUBE_ENVD_BIN"), "cube-envd", "--port", port, "--host", "127.0.0.1", (char *)NULL);
		_exit(127);
	}
	struct http_result r = {0};
	for (int i = 0; i < 200 && r.status != 204; i++) {
		usleep(20000);
		http_result_free(&r);
		r = envd_http(&e, "GET", "/health", NULL, NULL, 0, 1000);
	}
	assert_int_equal(r.status, 204);
	http_result_free(&r);
	for (int i = 0; i < 3; i++) {
		struct stream_result s;
		envd_stream(&e, "/process.Process/Start", "{\"process\":{\"cmd\":\"/bin/echo\",\"args\":[\"x\"]}}", NULL,
			    5000, &s);
		assert_int_equal(s.curl_rc, CURLE_OK);
		assert_true(s.n >= 3);
		assert_non_null(frame_event(&s, s.n - 2, "end"));
		stream_result_free(&s);
	}
	/* The token came from fd 3. */
	r = envd_http(&e, "GET", "/envs", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	kill(pid, SIGTERM);
	int st = 0, waited = 0;
	for (int i = 0; i < 300 && !(waited = waitpid(pid, &st, WNOHANG)); i++)
		usleep(10000);
	if (!waited) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
	}
	assert_true(waited > 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_token_required),
		cmocka_unit_test(test_cors_preflight),
		cmocka_unit_test(test_envs),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_unknown_routes),
		cmocka_unit_test(test_unary_errors),
		cmocka_unit_test(test_bad_envelopes),
		cmocka_unit_test(test_still_serving),
		cmocka_unit_test(test_config_on_fd3),
	};
	return cmocka_run_group_tests(tests, envd_group_setup, envd_group_teardown);
}
