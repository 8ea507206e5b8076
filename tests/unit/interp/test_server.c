/* cube-interp over real HTTP, outside a sandbox: the HTTP surface (/health, /contexts, /execute
 * errors), the NDJSON stream of JavaScript and bash contexts through the real node driver
 * (interp/driver.js), per-execution envs, interrupts on client disconnect, restart and removal, and
 * the access-token check against a real cube-envd. Python contexts need ipykernel, which only the
 * code-interpreter template has: the end-to-end tests cover them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "../envd/envd_harness.h"

static struct envd_proc interp;   /* only .port, .pid and .dir/.log are used */
static struct envd_proc envd_e;   /* a real envd holding the token "tok" */

static int start_interp(void)
{
	const char *bin = getenv("CUBE_INTERP_BIN"), *driver = getenv("CUBE_INTERP_DRIVER");
	if (!bin || !driver)
		return -1;
	snprintf(interp.dir, sizeof interp.dir, "/tmp/interp-test-XXXXXX");
	if (!mkdtemp(interp.dir))
		return -1;
	snprintf(interp.log, sizeof interp.log, "%s/interp.log", interp.dir);
	interp.port = harness_free_port();
	interp.pid = fork();
	if (interp.pid == 0) {
		char port[16], envd_url[64];
		snprintf(port, sizeof port, "%d", interp.port);
		snprintf(envd_url, sizeof envd_url, "http://127.0.0.1:%d", envd_e.port);
		int log = open(interp.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		execl(bin, bin, "--port", port, "--host", "127.0.0.1", "--no-defaults", "--driver", driver, "--cwd",
		      interp.dir, "--envd", envd_url, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct http_result r = envd_http(&interp, "GET", "/health", NULL, NULL, 0, 1000);
		long st = r.status;
		http_result_free(&r);
		if (st == 200)
			return 0;
		usleep(20000);
	}
	return -1;
}

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_ALL);
	if (envd_start(&envd_e, NULL) < 0)
		return -1;
	return start_interp();
}

static int teardown(void **state)
{
	(void)state;
	int rc = envd_stop(&envd_e);
	if (envd_stop(&interp) < 0)
		rc = -1;
	return rc;
}

/* POST with the token; returns the result (caller frees). */
static struct http_result post(const char *path, const char *body, const char *token, long timeout_ms)
{
	char tok[64];
	snprintf(tok, sizeof tok, "X-Access-Token: %s", token ? token : "");
	const char *h[] = {"Content-Type: application/json", token ? tok : NULL, NULL};
	return envd_http(&interp, "POST", path, h, body, strlen(body), timeout_ms);
}

/* The NDJSON lines of an /execute response as a JSON array. */
static json_t *lines_of(const struct http_result *r)
{
	json_t *arr = json_array();
	const char *p = r->body;
	while (p && *p) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl); /* every line ends with \n */
		json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
		assert_non_null(j);   /* and is JSON: no blank lines */
		json_array_append_new(arr, j);
		p = nl + 1;
	}
	return arr;
}

static const char *type_at(json_t *lines, size_t i)
{
	return json_string_value(json_object_get(json_array_get(lines, i), "type"));
}

static char *new_context(const char *language)
{
	char body[128];
	snprintf(body, sizeof body, "{\"language\":\"%s\"}", language);
	struct http_result r = post("/contexts", body, NULL, 0);
	assert_int_equal(r.status, 200);
	json_t *j = json_loads(r.body, 0, NULL);
	char *id = strdup(json_string_value(json_object_get(j, "id")));
	json_decref(j);
	http_result_free(&r);
	return id;
}

static json_t *run(const char *ctx, const char *code_json, const char *extra)
{
	char body[4096];
	snprintf(body, sizeof body, "{\"code\":%s,\"context_id\":\"%s\"%s}", code_json, ctx, extra ? extra : "");
	struct http_result r = post("/execute", body, "tok", 0);
	assert_int_equal(r.status, 200);
	json_t *lines = lines_of(&r);
	http_result_free(&r);
	assert_string_equal(type_at(lines, json_array_size(lines) - 1), "end_of_execution");
	return lines;
}

static void test_health_and_errors(void **state)
{
	(void)state;
	struct http_result r = envd_http(&interp, "GET", "/health", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "\"OK\"");
	assert_non_null(strstr(r.headers, "Access-Control-Allow-Origin: *"));
	http_result_free(&r);

	r = post("/execute", "{\"code\":1}", "tok", 0);
	assert_int_equal(r.status, 422);
	http_result_free(&r);
	r = post("/execute", "not json", "tok", 0);
	assert_int_equal(r.status, 422);
	http_result_free(&r);
	r = post("/execute", "{\"code\":\"1\",\"context_id\":\"a\",\"language\":\"js\"}", "tok", 0);
	assert_int_equal(r.status, 400);
	assert_string_equal(r.body, "Only one of context_id or language can be provided");
	http_result_free(&r);
	r = post("/execute", "{\"code\":\"1\",\"context_id\":\"nope\"}", "tok", 0);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "Context nope not found");
	http_result_free(&r);
	r = post("/contexts", "{\"language\":\"cobol\"}", NULL, 0);
	assert_int_equal(r.status, 500);
	http_result_free(&r);
	r = envd_http(&interp, "POST", "/contexts/nope/restart", NULL, NULL, 0, 0);
	assert_int_equal(r.status, 404);
	http_result_free(&r);
}

static void test_access_token(void **state)
{
	(void)state;
	const char *code = "{\"code\":\"1\",\"language\":\"js\"}";
	struct http_result r = post("/execute", code, NULL, 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	r = post("/execute", code, "wrong", 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	r = post("/execute", code, "to\r\nX-Evil: 1", 0);
	assert_int_equal(r.status, 401);
	http_result_free(&r);
	r = post("/execute", code, "tok", 0);
	assert_int_equal(r.status, 200);
	http_result_free(&r);
	r = post("/execute", code, "tok", 0);   /* now remembered */
	assert_int_equal(r.status, 200);
	http_result_free(&r);
}

static void test_javascript(void **state)
{
	(void)state;
	char *ctx = new_context("js");
	json_t *l = run(ctx, "\"const a = 20;\\nconsole.log('out', a); console.error('err');\\na + 22\"", NULL);
	assert_string_equal(type_at(l, 0), "number_of_executions");
	int saw_out = 0, saw_err = 0, saw_result = 0;
	size_t i;
	json_t *v;
	json_array_foreach (l, i, v) {
		const char *t = type_at(l, i), *text = json_string_value(json_object_get(v, "text"));
		if (!strcmp(t, "stdout") && !strcmp(text, "out 20\n"))
			saw_out = 1;
		if (!strcmp(t, "stderr") && !strcmp(text, "err\n"))
			saw_err = 1;
		if (!strcmp(t, "result")) {
			assert_string_equal(text, "42");
			assert_true(json_is_true(json_object_get(v, "is_main_result")));
			saw_result = 1;
		}
	}
	assert_true(saw_out && saw_err && saw_result);
	json_decref(l);

	/* errors, then state is still there */
	l = run(ctx, "\"null.x\"", NULL);
	json_t *err = json_array_get(l, json_array_size(l) - 2);
	assert_string_equal(json_string_value(json_object_get(err, "type")), "error");
	assert_string_equal(json_string_value(json_object_get(err, "name")), "TypeError");
	json_decref(l);
	l = run(ctx, "\"process.env.ONE_SHOT || 'unset'\"", ",\"env_vars\":{\"ONE_SHOT\":\"here\"}");
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "here");
	json_decref(l);
	l = run(ctx, "\"process.env.ONE_SHOT || 'unset'\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "unset");
	json_decref(l);

	/* a client that leaves interrupts the cell; the context keeps its state */
	char body[256];
	snprintf(body, sizeof body, "{\"code\":\"while (true) {}\",\"context_id\":\"%s\"}", ctx);
	struct http_result r = post("/execute", body, "tok", 400);
	assert_int_equal(r.curl_rc, CURLE_OPERATION_TIMEDOUT);
	http_result_free(&r);
	l = run(ctx, "\"a\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "20");
	json_decref(l);

	/* restart clears, removal removes */
	snprintf(body, sizeof body, "/contexts/%s/restart", ctx);
	r = envd_http(&interp, "POST", body, NULL, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "null");
	http_result_free(&r);
	l = run(ctx, "\"typeof a\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "undefined");
	json_decref(l);
	snprintf(body, sizeof body, "/contexts/%s", ctx);
	r = envd_http(&interp, "DELETE", body, NULL, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	http_result_free(&r);
	r = envd_http(&interp, "GET", "/contexts", NULL, NULL, 0, 0);
	assert_null(strstr(r.body, ctx));
	http_result_free(&r);
	free(ctx);
}

static void test_bash(void **state)
{
	(void)state;
	char *ctx = new_context("bash");
	json_t *l = run(ctx, "\"cd /tmp\\nX=kept\\necho \\\"$X in $(pwd) $ONE\\\"\"", ",\"env_vars\":{\"ONE\":\"1\"}");
	assert_string_equal(type_at(l, 1), "stdout");
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "kept in /tmp 1\n");
	json_decref(l);
	l = run(ctx, "\"echo \\\"$X $(pwd) [$ONE]\\\"; false\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "kept /tmp []\n");
	assert_string_equal(type_at(l, 2), "error");
	json_decref(l);

	char body[256];
	snprintf(body, sizeof body, "{\"code\":\"sleep 30\",\"context_id\":\"%s\"}", ctx);
	struct http_result r = post("/execute", body, "tok", 400);
	http_result_free(&r);
	l = run(ctx, "\"echo $X\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "kept\n");
	json_decref(l);
	free(ctx);
}

struct bg_exec {
	pthread_t thread;
	char body[256];
	struct http_result r;
};

static void *bg_run(void *arg)
{
	struct bg_exec *b = arg;
	b->r = post("/execute", b->body, "tok", 30000);
	return NULL;
}

/* A quiet cell gets keepalive lines every 5 s; restarting its context ends it with ContextRestarting. */
static void test_keepalive_and_restart_mid_execution(void **state)
{
	(void)state;
	char *ctx = new_context("javascript");
	struct bg_exec b;
	memset(&b, 0, sizeof b);
	snprintf(b.body, sizeof b.body, "{\"code\":\"await new Promise((r) => setTimeout(r, 60000))\",\"context_id\":\"%s\"}", ctx);
	pthread_create(&b.thread, NULL, bg_run, &b);
	sleep(6);
	char path[128];
	snprintf(path, sizeof path, "/contexts/%s/restart", ctx);
	struct http_result r = envd_http(&interp, "POST", path, NULL, NULL, 0, 0);
	assert_int_equal(r.status, 200);
	http_result_free(&r);
	pthread_join(b.thread, NULL);
	assert_int_equal(b.r.status, 200);
	json_t *l = lines_of(&b.r);
	size_t n = json_array_size(l);
	assert_true(n >= 4);
	assert_string_equal(type_at(l, 0), "number_of_executions");
	assert_string_equal(type_at(l, 1), "keepalive");
	assert_string_equal(type_at(l, n - 2), "error");
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, n - 2), "name")), "ContextRestarting");
	assert_string_equal(type_at(l, n - 1), "end_of_execution");
	json_decref(l);
	http_result_free(&b.r);
	/* the restarted context runs the next cell */
	l = run(ctx, "\"1 + 1\"", NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "text")), "2");
	json_decref(l);
	free(ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_and_errors),
		cmocka_unit_test(test_access_token),
		cmocka_unit_test(test_javascript),
		cmocka_unit_test(test_bash),
		cmocka_unit_test(test_keepalive_and_restart_mid_execution),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
