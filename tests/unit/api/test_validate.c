/* api/validate.c: request bodies of the control plane. Table-driven cases for every field rule, then a
 * fuzz-ish pass (random bytes, truncations and byte flips of valid bodies) that must never crash and
 * must always end in success or a 4xx with a message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/validate.h"

#define MAX_T 86400u

struct create_case {
	const char *body;
	int v2;
	int status;            /* 0 = accepted */
	const char *msg_part;  /* substring of the error message, or expected template when accepted */
	int timeout, secure;
};

static const struct create_case create_cases[] = {
	/* accepted: defaults per version, optional fields, unimplemented fields ignored */
	{"{\"templateID\":\"base\"}", 0, 0, "base", 15, 0},
	{"{\"templateID\":\"base\"}", 1, 0, "base", 300, 1},
	{"{\"templateID\":\"base\",\"timeout\":300,\"secure\":true,\"allow_internet_access\":true}", 0, 0, "base", 300, 1},
	{"{\"templateID\":\"base\",\"secure\":false}", 0, 0, "base", 15, 0},
	{"{\"templateID\":\"base\",\"secure\":false}", 1, 0, "base", 300, 1},
	{"{\"templateID\":\"code-interpreter-v1\",\"metadata\":{\"user\":\"abc\"}}", 1, 0, "code-interpreter-v1", 300, 1},
	{"{\"templateID\":\"base\",\"envVars\":{\"FOO\":\"bar\"},\"timeout\":120}", 1, 0, "base", 120, 1},
	{"{\"templateID\":\"base\",\"timeout\":0}", 1, 0, "base", 0, 1},
	{"{\"templateID\":\"base\",\"timeout\":86400}", 1, 0, "base", 86400, 1},
	{"{\"templateID\":\"base\",\"network\":{\"denyOut\":[\"0.0.0.0/0\"]},\"autoPause\":false,\"mcp\":null,"
	 "\"volumeMounts\":[],\"autoResume\":{\"enabled\":false},\"unknownField\":[1,2]}", 1, 0, "base", 300, 1},
	{"{\"templateID\":\"base\",\"metadata\":null,\"envVars\":null,\"timeout\":null}", 1, 0, "base", 300, 1},
	{"  {\"templateID\":\"ns/name:tag\"}\n", 1, 0, "ns/name:tag", 300, 1},
	/* malformed JSON */
	{"", 1, 400, "malformed JSON", 0, 0},
	{"{", 1, 400, "malformed JSON", 0, 0},
	{"{\"templateID\":\"base\",}", 1, 400, "malformed JSON", 0, 0},
	{"{\"templateID\":\"base\"} trailing", 1, 400, "malformed JSON", 0, 0},
	{"{\"templateID\":\"a\\u0000b\"}", 1, 400, "malformed JSON", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":99999999999999999999999}", 1, 400, "malformed JSON", 0, 0},
	{"null", 1, 400, "JSON object", 0, 0},
	{"[1]", 1, 400, "JSON object", 0, 0},
	{"\"str\"", 1, 400, "JSON object", 0, 0},
	/* wrong types and values, each naming the field */
	{"{}", 1, 400, "templateID is required", 0, 0},
	{"{\"templateID\":null}", 1, 400, "templateID is required", 0, 0},
	{"{\"templateID\":42}", 1, 400, "templateID", 0, 0},
	{"{\"templateID\":\"\"}", 1, 400, "templateID", 0, 0},
	{"{\"templateID\":[\"base\"]}", 1, 400, "templateID", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":\"300\"}", 1, 400, "timeout", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":1.5}", 1, 400, "timeout", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":300.0}", 1, 400, "timeout", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":true}", 1, 400, "timeout", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":-1}", 1, 400, "timeout must not be negative", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":86401}", 1, 400, "Timeout cannot be greater than 24 hours", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":9223372036854775807}", 1, 400, "Timeout cannot be greater", 0, 0},
	{"{\"templateID\":\"base\",\"timeout\":-9223372036854775807}", 1, 400, "negative", 0, 0},
	{"{\"templateID\":\"base\",\"metadata\":[]}", 1, 400, "metadata", 0, 0},
	{"{\"templateID\":\"base\",\"metadata\":\"a=b\"}", 1, 400, "metadata", 0, 0},
	{"{\"templateID\":\"base\",\"metadata\":{\"n\":1}}", 1, 400, "metadata.n must be a string", 0, 0},
	{"{\"templateID\":\"base\",\"metadata\":{\"n\":null}}", 1, 400, "metadata.n", 0, 0},
	{"{\"templateID\":\"base\",\"envVars\":{\"A\":{\"b\":\"c\"}}}", 1, 400, "envVars.A", 0, 0},
	{"{\"templateID\":\"base\",\"envVars\":5}", 1, 400, "envVars", 0, 0},
	{"{\"templateID\":\"base\",\"secure\":\"yes\"}", 0, 400, "secure must be a boolean", 0, 0},
	{"{\"templateID\":\"base\",\"allow_internet_access\":1}", 0, 400, "allow_internet_access", 0, 0},
	{"{\"templateID\":\"base\",\"autoPause\":\"no\"}", 1, 400, "autoPause", 0, 0},
	{"{\"templateID\":\"base\",\"network\":[]}", 1, 400, "network", 0, 0},
	{"{\"templateID\":\"base\",\"volumeMounts\":{}}", 1, 400, "volumeMounts", 0, 0},
};

static void test_create_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof create_cases / sizeof create_cases[0]; i++) {
		const struct create_case *c = &create_cases[i];
		struct api_create_body b;
		cube_err err = {0};
		int rc = api_parse_create(c->body, strlen(c->body), c->v2, MAX_T, &b, &err);
		if (c->status == 0) {
			if (rc != 0)
				fail_msg("case %zu (%s) rejected: %s", i, c->body, err.msg);
			assert_string_equal(b.template_id, c->msg_part);
			assert_int_equal(b.timeout_s, c->timeout);
			assert_int_equal(b.secure, c->secure);
			assert_true(json_is_object(b.metadata));
			assert_true(json_is_object(b.env_vars));
			api_create_body_free(&b);
		} else {
			if (rc != -1)
				fail_msg("case %zu (%s) accepted", i, c->body);
			assert_int_equal(err.status, c->status);
			if (!strstr(err.msg, c->msg_part))
				fail_msg("case %zu (%s): message '%s' lacks '%s'", i, c->body, err.msg, c->msg_part);
			assert_null(b.template_id);
		}
	}
}

static void test_create_copies_maps(void **state)
{
	(void)state;
	const char *body = "{\"templateID\":\"base\",\"metadata\":{\"k y\":\"a b&c=d\"},\"envVars\":{\"FOO\":\"bar\"}}";
	struct api_create_body b;
	cube_err err = {0};
	assert_int_equal(api_parse_create(body, strlen(body), 1, MAX_T, &b, &err), 0);
	assert_string_equal(json_string_value(json_object_get(b.metadata, "k y")), "a b&c=d");
	assert_string_equal(json_string_value(json_object_get(b.env_vars, "FOO")), "bar");
	assert_int_equal(b.metadata->refcount, 1); /* an owned copy */
	api_create_body_free(&b);
}

static void test_timeout_message_not_whole_hours(void **state)
{
	(void)state;
	const char *body = "{\"templateID\":\"base\",\"timeout\":91}";
	struct api_create_body b;
	cube_err err = {0};
	assert_int_equal(api_parse_create(body, strlen(body), 1, 90, &b, &err), -1);
	assert_string_equal(err.msg, "Timeout cannot be greater than 90 seconds");
	assert_int_equal(api_parse_create(body, strlen(body), 1, 7200, &b, &err), 0);
	api_create_body_free(&b);
}

static void test_set_timeout(void **state)
{
	(void)state;
	cube_err err = {0};
	int t = -5;
	assert_int_equal(api_parse_set_timeout("{\"timeout\":60}", 14, MAX_T, &t, &err), 0);
	assert_int_equal(t, 60);
	const char *neg = "{\"timeout\":-30}";
	assert_int_equal(api_parse_set_timeout(neg, strlen(neg), MAX_T, &t, &err), 0);
	assert_int_equal(t, 0); /* negative = expire now */
	const char *big = "{\"timeout\":86401}";
	assert_int_equal(api_parse_set_timeout(big, strlen(big), MAX_T, &t, &err), -1);
	assert_int_equal(err.status, 400);
	assert_int_equal(api_parse_set_timeout("{}", 2, MAX_T, &t, &err), -1);
	assert_string_equal(err.msg, "timeout is required");
	assert_int_equal(api_parse_set_timeout("", 0, MAX_T, &t, &err), -1);
	assert_int_equal(err.status, 400);
	const char *str = "{\"timeout\":\"60\"}";
	assert_int_equal(api_parse_set_timeout(str, strlen(str), MAX_T, &t, &err), -1);
	assert_non_null(strstr(err.msg, "timeout"));
}

static void test_refresh(void **state)
{
	(void)state;
	cube_err err = {0};
	int d = -1;
	assert_int_equal(api_parse_refresh("", 0, &d, &err), 0);
	assert_int_equal(d, API_REFRESH_DEFAULT_S);
	assert_int_equal(api_parse_refresh("{}", 2, &d, &err), 0);
	assert_int_equal(d, API_REFRESH_DEFAULT_S);
	const char *ok = "{\"duration\":3600}";
	assert_int_equal(api_parse_refresh(ok, strlen(ok), &d, &err), 0);
	assert_int_equal(d, 3600);
	const char *zero = "{\"duration\":0}";
	assert_int_equal(api_parse_refresh(zero, strlen(zero), &d, &err), 0);
	assert_int_equal(d, 0);
	const char *big = "{\"duration\":3601}", *neg = "{\"duration\":-1}", *typ = "{\"duration\":\"1\"}";
	assert_int_equal(api_parse_refresh(big, strlen(big), &d, &err), -1);
	assert_non_null(strstr(err.msg, "duration"));
	assert_int_equal(api_parse_refresh(neg, strlen(neg), &d, &err), -1);
	assert_int_equal(api_parse_refresh(typ, strlen(typ), &d, &err), -1);
	assert_int_equal(err.status, 400);
}

static void test_connect(void **state)
{
	(void)state;
	cube_err err = {0};
	int t = -1, m = -1;
	/* v2: body optional, default 300; memory defaults to true */
	assert_int_equal(api_parse_connect("", 0, 1, MAX_T, &t, &m, &err), 0);
	assert_int_equal(t, 300);
	assert_int_equal(m, 1);
	assert_int_equal(api_parse_connect("{}", 2, 1, MAX_T, &t, &m, &err), 0);
	assert_int_equal(t, 300);
	const char *mem = "{\"timeout\":30,\"memory\":false}";
	assert_int_equal(api_parse_connect(mem, strlen(mem), 1, MAX_T, &t, &m, &err), 0);
	assert_int_equal(t, 30);
	assert_int_equal(m, 0);
	/* v1: timeout required */
	const char *v1 = "{\"timeout\":300}";
	assert_int_equal(api_parse_connect(v1, strlen(v1), 0, MAX_T, &t, &m, &err), 0);
	assert_int_equal(t, 300);
	assert_int_equal(api_parse_connect("{}", 2, 0, MAX_T, &t, &m, &err), -1);
	assert_string_equal(err.msg, "timeout is required");
	assert_int_equal(api_parse_connect("", 0, 0, MAX_T, &t, &m, &err), -1);
	const char *big = "{\"timeout\":100000}", *neg = "{\"timeout\":-1}", *badmem = "{\"memory\":1}";
	assert_int_equal(api_parse_connect(big, strlen(big), 1, MAX_T, &t, &m, &err), -1);
	assert_non_null(strstr(err.msg, "Timeout cannot be greater than"));
	assert_int_equal(api_parse_connect(neg, strlen(neg), 1, MAX_T, &t, &m, &err), -1);
	assert_int_equal(api_parse_connect(badmem, strlen(badmem), 1, MAX_T, &t, &m, &err), -1);
	assert_non_null(strstr(err.msg, "memory"));
}

static void test_lifecycle_and_pause(void **state)
{
	(void)state;
	struct api_create_body b;
	cube_err err = {0};
	const char *e2b = "{\"templateID\":\"base\",\"autoPause\":true,\"autoResume\":{\"enabled\":true}}";
	assert_int_equal(api_parse_create(e2b, strlen(e2b), 1, MAX_T, &b, &err), 0);
	assert_int_equal(b.auto_pause, 1);
	assert_int_equal(b.auto_resume, 1);
	api_create_body_free(&b);
	const char *cube = "{\"templateID\":\"base\",\"lifecycle\":{\"onTimeout\":\"pause\",\"autoResume\":false}}";
	assert_int_equal(api_parse_create(cube, strlen(cube), 1, MAX_T, &b, &err), 0);
	assert_int_equal(b.auto_pause, 1);
	assert_int_equal(b.auto_resume, 0);
	api_create_body_free(&b);
	const char *disk = "{\"templateID\":\"base\",\"autoPause\":true,\"autoPauseMemory\":false}";
	assert_int_equal(api_parse_create(disk, strlen(disk), 1, MAX_T, &b, &err), 0);
	assert_int_equal(b.auto_pause, API_AUTO_PAUSE_DISK);
	api_create_body_free(&b);
	const char *plain = "{\"templateID\":\"base\"}";
	assert_int_equal(api_parse_create(plain, strlen(plain), 1, MAX_T, &b, &err), 0);
	assert_int_equal(b.auto_pause + b.auto_resume, 0);
	api_create_body_free(&b);
	static const char *const bad[] = {
		"{\"templateID\":\"base\",\"lifecycle\":{\"onTimeout\":\"sleep\"}}",
		"{\"templateID\":\"base\",\"lifecycle\":[]}",
		"{\"templateID\":\"base\",\"autoResume\":{\"enabled\":1}}",
		"{\"templateID\":\"base\",\"autoPauseMemory\":false}",
		"{\"templateID\":\"base\",\"autoPause\":true,\"autoPauseMemory\":false,\"autoResume\":{\"enabled\":true}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(api_parse_create(bad[i], strlen(bad[i]), 1, MAX_T, &b, &err), -1);
		assert_int_equal(err.status, 400);
	}
	int mem = -1;
	assert_int_equal(api_parse_pause("", 0, &mem, &err), 0);
	assert_int_equal(mem, 1);
	assert_int_equal(api_parse_pause("{\"memory\":true}", 15, &mem, &err), 0);
	assert_int_equal(mem, 1);
	assert_int_equal(api_parse_pause("{\"memory\":false}", 16, &mem, &err), 0);
	assert_int_equal(mem, 0);
	assert_int_equal(api_parse_pause("{\"memory\":0}", 12, &mem, &err), -1);
	int t = 0, m = -1;
	assert_int_equal(api_parse_resume("", 0, MAX_T, &t, &m, &err), 0);
	assert_int_equal(t, API_RESUME_DEFAULT_TIMEOUT_S);
	assert_int_equal(m, 1);
	assert_int_equal(api_parse_resume("{\"memory\":false}", 16, MAX_T, &t, &m, &err), 0);
	assert_int_equal(m, 0);
	assert_int_equal(api_parse_resume("{\"timeout\":-1}", 14, MAX_T, &t, &m, &err), -1);
}

static void test_apikey_create_body(void **state)
{
	(void)state;
	cube_err err = {0};
	char *name = NULL;
	const char *ok = "{\"name\":\"ci\"}";
	assert_int_equal(api_parse_apikey_create(ok, strlen(ok), &name, &err), 0);
	assert_string_equal(name, "ci");
	free(name);
	const char *bad[] = {"{}", "{\"name\":\"\"}", "{\"name\":3}", "x", "[]"};
	for (size_t i = 0; i < 5; i++) {
		name = NULL;
		assert_int_equal(api_parse_apikey_create(bad[i], strlen(bad[i]), &name, &err), -1);
		assert_int_equal(err.status, 400);
		assert_null(name);
	}
}

static void test_sandbox_id(void **state)
{
	(void)state;
	char id[32];
	cube_err err = {0};
	assert_int_equal(api_sandbox_id("iabc123", id, sizeof id, &err), 0);
	assert_string_equal(id, "iabc123");
	assert_int_equal(api_sandbox_id("iabc123-6532622b", id, sizeof id, &err), 0);
	assert_string_equal(id, "iabc123");
	const char *bad[] = {"", "-6532622b", "IABC", "a-b", "a.b", "a b", "a%20b", "abc-6532622c",
			     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "a/b", "\xc3\xa9"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err.status = 0;
		if (api_sandbox_id(bad[i], id, sizeof id, &err) != -1)
			fail_msg("id '%s' accepted", bad[i]);
		assert_int_equal(err.status, 400);
		assert_string_equal(err.msg, "Invalid sandbox ID");
	}
	assert_int_equal(api_sandbox_id(NULL, id, sizeof id, &err), -1);
}

/* Every parser must survive any input: success, or a 4xx with a non-empty message. */
static void check_outcome(int rc, const cube_err *err)
{
	if (rc == 0)
		return;
	assert_int_equal(rc, -1);
	assert_true(err->status >= 400 && err->status < 500);
	assert_true(err->msg[0] != '\0');
}

static void run_all_parsers(const char *buf, size_t len)
{
	cube_err err;
	struct api_create_body b;
	int t, m;
	char *name = NULL;
	for (int v2 = 0; v2 < 2; v2++) {
		memset(&err, 0, sizeof err);
		int rc = api_parse_create(buf, len, v2, MAX_T, &b, &err);
		check_outcome(rc, &err);
		if (rc == 0)
			api_create_body_free(&b);
		memset(&err, 0, sizeof err);
		check_outcome(api_parse_connect(buf, len, v2, MAX_T, &t, &m, &err), &err);
	}
	memset(&err, 0, sizeof err);
	check_outcome(api_parse_set_timeout(buf, len, MAX_T, &t, &err), &err);
	memset(&err, 0, sizeof err);
	check_outcome(api_parse_refresh(buf, len, &t, &err), &err);
	memset(&err, 0, sizeof err);
	int rc = api_parse_apikey_create(buf, len, &name, &err);
	check_outcome(rc, &err);
	if (rc == 0)
		free(name);
}

static void test_fuzz(void **state)
{
	(void)state;
	static const char *const seeds[] = {
		"{\"templateID\":\"base\",\"timeout\":300,\"secure\":true,\"metadata\":{\"a\":\"b\"},\"envVars\":{\"X\":\"y\"}}",
		"{\"timeout\":60}", "{\"duration\":10}", "{\"name\":\"ci\"}", "{\"timeout\":30,\"memory\":false}",
	};
	static const char alphabet[] = "{}[]\":,0123456789-.eEtrufalsn \\u\t\n\x01\x80\xff";
	srand(12345);
	char buf[512];
	for (int iter = 0; iter < 20000; iter++) {
		size_t len;
		const char *seed = seeds[iter % 5];
		size_t sl = strlen(seed);
		switch (iter % 4) {
		case 0: /* random bytes */
			len = (size_t)(rand() % 64);
			for (size_t i = 0; i < len; i++)
				buf[i] = (char)(rand() % 256);
			break;
		case 1: /* truncation */
			len = (size_t)rand() % (sl + 1);
			memcpy(buf, seed, len);
			break;
		case 2: /* flips from a JSON-ish alphabet */
			memcpy(buf, seed, sl);
			len = sl;
			for (int k = 0; k < 1 + rand() % 4; k++)
				buf[rand() % (int)sl] = alphabet[rand() % (int)(sizeof alphabet - 1)];
			break;
		default: /* insertions */
			len = 0;
			for (size_t i = 0; i < sl && len < sizeof buf - 2; i++) {
				buf[len++] = seed[i];
				if (rand() % 8 == 0)
					buf[len++] = alphabet[rand() % (int)(sizeof alphabet - 1)];
			}
			break;
		}
		buf[len] = '\0'; /* the HTTP server NUL-terminates bodies, but len is what counts */
		run_all_parsers(buf, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_table),
		cmocka_unit_test(test_create_copies_maps),
		cmocka_unit_test(test_timeout_message_not_whole_hours),
		cmocka_unit_test(test_set_timeout),
		cmocka_unit_test(test_refresh),
		cmocka_unit_test(test_connect),
		cmocka_unit_test(test_lifecycle_and_pause),
		cmocka_unit_test(test_apikey_create_body),
		cmocka_unit_test(test_sandbox_id),
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
