/* api/list_query.c and api/log_query.c: query strings of the list and logs endpoints, the SDK's
 * triple-encoded metadata filter, RFC 3339 times, the pagination cursor and log selection; plus a
 * fuzz-ish pass over random query strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/list_query.h"
#include "api/log_query.h"
#include "common/http_server.h"

static void test_query_get(void **state)
{
	(void)state;
	char *v = http_query_get("a=1&b=x+y%21&c&d=", "b");
	assert_string_equal(v, "x y!");
	free(v);
	v = http_query_get("a=1&b=2", "a");
	assert_string_equal(v, "1");
	free(v);
	v = http_query_get("a=1&b=x&c&d=", "c");
	assert_string_equal(v, "");
	free(v);
	v = http_query_get("a=1&b=x&c&d=", "d");
	assert_string_equal(v, "");
	free(v);
	assert_null(http_query_get("a=1", "b"));
	assert_null(http_query_get("", "a"));
	assert_null(http_query_get(NULL, "a"));
	assert_null(http_query_get("ab=1", "a"));
	v = http_query_get("%61=enc", "a"); /* names are decoded too */
	assert_string_equal(v, "enc");
	free(v);
}

/* The two examples of §1.9, as the raw query string the SDK sends. */
static void test_metadata_filter_examples(void **state)
{
	(void)state;
	struct api_list_query q;
	cube_err err = {0};
	assert_int_equal(api_parse_list_query("metadata=user%3Dabc", 1, &q, &err), 0);
	assert_int_equal(json_object_size(q.metadata), 1);
	assert_string_equal(json_string_value(json_object_get(q.metadata, "user")), "abc");
	api_list_query_free(&q);

	assert_int_equal(api_parse_list_query("metadata=k%252520y%3Da%252520b%252526c%25253Dd", 1, &q, &err), 0);
	assert_int_equal(json_object_size(q.metadata), 1);
	assert_string_equal(json_string_value(json_object_get(q.metadata, "k y")), "a b&c=d");
	api_list_query_free(&q);

	/* two pairs: {owner:'e2e', run:'ab12'} */
	assert_int_equal(api_parse_list_query("metadata=owner%3De2e%26run%3Dab12&limit=10", 1, &q, &err), 0);
	assert_int_equal(json_object_size(q.metadata), 2);
	assert_string_equal(json_string_value(json_object_get(q.metadata, "run")), "ab12");
	assert_int_equal(q.limit, 10);
	api_list_query_free(&q);
}

static void test_metadata_filter_bad_pairs(void **state)
{
	(void)state;
	const char *bad[] = {"metadata=user", "metadata=a%3Db%3Dc", "metadata=%3Dv", "metadata=a%3Db%26c"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct api_list_query q;
		cube_err err = {0};
		if (api_parse_list_query(bad[i], 1, &q, &err) != -1)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(err.status, 400);
		assert_non_null(strstr(err.msg, "metadata"));
	}
}

static void test_metadata_matches(void **state)
{
	(void)state;
	json_t *meta = json_pack("{s:s,s:s}", "a", "1", "b", "2");
	json_t *f1 = json_pack("{s:s}", "a", "1"), *f2 = json_pack("{s:s,s:s}", "a", "1", "b", "3");
	json_t *f3 = json_pack("{s:s}", "c", "1"), *empty = json_object();
	assert_true(api_metadata_matches(meta, NULL));
	assert_true(api_metadata_matches(meta, empty));
	assert_true(api_metadata_matches(meta, f1));
	assert_false(api_metadata_matches(meta, f2));
	assert_false(api_metadata_matches(meta, f3));
	json_decref(meta);
	json_decref(f1);
	json_decref(f2);
	json_decref(f3);
	json_decref(empty);
}

static void test_list_query_fields(void **state)
{
	(void)state;
	struct api_list_query q;
	cube_err err = {0};
	assert_int_equal(api_parse_list_query("", 1, &q, &err), 0);
	assert_true(q.running && q.paused);
	assert_int_equal(q.limit, 100);
	assert_false(q.ascending);
	assert_false(q.has_cursor);
	assert_null(q.metadata);
	api_list_query_free(&q);

	assert_int_equal(api_parse_list_query("state=running,paused&limit=10&startedAfter=1970-01-01T00%3A00%3A00.000Z",
					      1, &q, &err), 0);
	assert_true(q.running && q.paused);
	assert_int_equal(q.started_after_ms, 0);
	api_list_query_free(&q);

	assert_int_equal(api_parse_list_query("state=paused&order=asc&template=base", 1, &q, &err), 0);
	assert_false(q.running);
	assert_true(q.paused);
	assert_true(q.ascending);
	assert_string_equal(q.template_ref, "base");
	api_list_query_free(&q);

	/* v1: running only, no paging, other parameters ignored */
	assert_int_equal(api_parse_list_query("limit=0&state=paused&metadata=a%3Db", 0, &q, &err), 0);
	assert_true(q.running);
	assert_false(q.paused);
	assert_int_equal(q.limit, 0);
	assert_non_null(q.metadata);
	api_list_query_free(&q);

	const char *bad[] = {"limit=0", "limit=101", "limit=-1", "limit=abc", "limit=", "limit=1e2",
			     "state=sleeping", "state=running,zombie", "order=up", "template=base:v1",
			     "startedAfter=yesterday", "startedAfter=2026-13-01T00:00:00Z", "nextToken=%%%",
			     "nextToken=bm90LWEtY3Vyc29y"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err.status = 0;
		if (api_parse_list_query(bad[i], 1, &q, &err) != -1)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(err.status, 400);
	}
}

static void test_cursor_roundtrip(void **state)
{
	(void)state;
	char tok[160], id[64];
	long long ms = 0;
	api_cursor_encode(1763797898025LL, "iabcdefghij0123456789", tok, sizeof tok);
	assert_null(strpbrk(tok, "+/=")); /* base64url without padding: safe in a query */
	assert_int_equal(api_cursor_decode(tok, &ms, id, sizeof id), 0);
	assert_true(ms == 1763797898025LL);
	assert_string_equal(id, "iabcdefghij0123456789");
	for (int n = 1; n < 30; n++) { /* every padding length */
		char sid[32];
		memset(sid, 'a', (size_t)n);
		sid[n] = '\0';
		api_cursor_encode(n, sid, tok, sizeof tok);
		assert_int_equal(api_cursor_decode(tok, &ms, id, sizeof id), 0);
		assert_int_equal(ms, n);
		assert_string_equal(id, sid);
	}
	struct api_list_query q;
	cube_err err = {0};
	char query[200];
	api_cursor_encode(5, "ixyz", tok, sizeof tok);
	snprintf(query, sizeof query, "nextToken=%s&limit=2", tok);
	assert_int_equal(api_parse_list_query(query, 1, &q, &err), 0);
	assert_true(q.has_cursor);
	assert_int_equal(q.cursor_started_ms, 5);
	assert_string_equal(q.cursor_id, "ixyz");
	api_list_query_free(&q);

	const char *bad[] = {"", "a", "!!!!", "MTIz", /* "123": no separator */
			     "X19pYWJj",               /* "__iabc": no time */
			     "MTJfX0lBQkM",            /* "12__IABC": bad id */
			     "MTJfXw"};                /* "12__": empty id */
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (api_cursor_decode(bad[i], &ms, id, sizeof id) != -1)
			fail_msg("cursor '%s' accepted", bad[i]);
}

static void test_list_order(void **state)
{
	(void)state;
	assert_true(api_list_key_cmp(1, "b", 2, "a") < 0);
	assert_true(api_list_key_cmp(2, "a", 2, "b") < 0);
	assert_true(api_list_key_cmp(2, "b", 2, "b") == 0);
	assert_true(api_list_key_cmp(3, "a", 2, "z") > 0);
}

static void test_rfc3339(void **state)
{
	(void)state;
	long long ms;
	assert_int_equal(api_parse_rfc3339("1970-01-01T00:00:00.000Z", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(api_parse_rfc3339("2026-11-22T07:51:38.025Z", &ms), 0);
	assert_true(ms == 1795333898025LL);
	assert_int_equal(api_parse_rfc3339("2026-11-22T09:51:38.025+02:00", &ms), 0);
	assert_true(ms == 1795333898025LL);
	assert_int_equal(api_parse_rfc3339("2026-11-22t07:51:38z", &ms), 0);
	assert_true(ms == 1795333898000LL);
	assert_int_equal(api_parse_rfc3339("2026-11-22T07:51:38.123456789Z", &ms), 0);
	assert_true(ms == 1795333898123LL);
	const char *bad[] = {"", "2026-11-22", "2026-11-22T07:51:38", "2026-11-22T07:51:38.Z", "2026-11-22T25:00:00Z",
			     "2026-11-22T07:51:38Zjunk", "2026-1-22T07:51:38Z", "2026-11-22T07:51:38+0200"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (api_parse_rfc3339(bad[i], &ms) != -1)
			fail_msg("'%s' accepted", bad[i]);
}

/* ---- logs ---- */

static json_t *sample_logs(void)
{
	return json_pack("[{s:s,s:s,s:s,s:{}},{s:s,s:s,s:s,s:{}},{s:s,s:s,s:s,s:{}},{s:s,s:s,s:s,s:{}}]",
			 "timestamp", "1970-01-01T00:00:01.000Z", "level", "info", "message", "sandbox started", "fields",
			 "timestamp", "1970-01-01T00:00:02.000Z", "level", "debug", "message", "envd ready", "fields",
			 "timestamp", "1970-01-01T00:00:03.000Z", "level", "warn", "message", "Sandbox slow", "fields",
			 "timestamp", "1970-01-01T00:00:04.000Z", "level", "error", "message", "sandbox killed", "fields");
}

static const char *msg_at(json_t *arr, size_t i)
{
	return json_string_value(json_object_get(json_array_get(arr, i), "message"));
}

static void test_log_select(void **state)
{
	(void)state;
	json_t *logs = sample_logs();
	struct api_log_query q;
	cube_err err = {0};

	assert_int_equal(api_parse_log_query("", 1, &q, &err), 0);
	json_t *sel = api_log_select(logs, &q);
	assert_int_equal(json_array_size(sel), 4);
	assert_string_equal(msg_at(sel, 0), "sandbox started");
	json_decref(sel);
	api_log_query_free(&q);

	assert_int_equal(api_parse_log_query("level=warn", 1, &q, &err), 0);
	sel = api_log_select(logs, &q);
	assert_int_equal(json_array_size(sel), 2);
	json_decref(sel);
	api_log_query_free(&q);

	assert_int_equal(api_parse_log_query("search=sandbox", 1, &q, &err), 0); /* case-sensitive */
	sel = api_log_select(logs, &q);
	assert_int_equal(json_array_size(sel), 2);
	json_decref(sel);
	api_log_query_free(&q);

	assert_int_equal(api_parse_log_query("cursor=2000&limit=1", 1, &q, &err), 0);
	sel = api_log_select(logs, &q);
	assert_int_equal(json_array_size(sel), 1);
	assert_string_equal(msg_at(sel, 0), "envd ready");
	json_decref(sel);
	api_log_query_free(&q);

	assert_int_equal(api_parse_log_query("cursor=3000&direction=backward", 1, &q, &err), 0);
	sel = api_log_select(logs, &q);
	assert_int_equal(json_array_size(sel), 3);
	assert_string_equal(msg_at(sel, 0), "Sandbox slow"); /* newest first */
	json_decref(sel);
	api_log_query_free(&q);

	/* v1: start + limit, and the {logs:[{timestamp,line}], logEntries} shape */
	assert_int_equal(api_parse_log_query("start=3000&limit=5", 0, &q, &err), 0);
	sel = api_log_select(logs, &q);
	json_t *body = api_logs_v1_body(sel);
	assert_int_equal(json_array_size(json_object_get(body, "logs")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(body, "logs"), 0), "line")),
			    "Sandbox slow");
	assert_int_equal(json_array_size(json_object_get(body, "logEntries")), 2);
	json_decref(body);
	json_decref(sel);
	api_log_query_free(&q);

	const char *bad[] = {"cursor=abc", "cursor=-5", "limit=1001", "limit=x", "direction=up", "level=trace"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err.status = 0;
		if (api_parse_log_query(bad[i], 1, &q, &err) != -1)
			fail_msg("'%s' accepted", bad[i]);
		assert_int_equal(err.status, 400);
	}
	json_decref(logs);
}

static void test_log_entries_from_store(void **state)
{
	(void)state;
	json_t *stored = json_pack("[{s:I,s:s,s:s}]", "timestamp", (json_int_t)1795333898025LL, "level", "info",
				   "message", "sandbox killed");
	json_t *e = api_log_entries_from_store(stored);
	json_t *first = json_array_get(e, 0);
	assert_string_equal(json_string_value(json_object_get(first, "timestamp")), "2026-11-22T07:51:38.025Z");
	assert_string_equal(json_string_value(json_object_get(first, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(first, "message")), "sandbox killed");
	assert_true(json_is_object(json_object_get(first, "fields")));
	json_decref(e);
	json_decref(stored);
}

static void test_fuzz_queries(void **state)
{
	(void)state;
	static const char *const parts[] = {"metadata=", "state=", "limit=", "order=", "nextToken=", "startedAfter=",
					    "template=", "cursor=", "direction=", "level=", "search=", "start=",
					    "%", "%25", "%3D", "%26", "=", "&", "+", "a", "1", "-", ",", ":", "\xff"};
	srand(777);
	char q[256];
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = 0;
		int n = rand() % 12;
		for (int k = 0; k < n; k++) {
			const char *p = parts[rand() % (int)(sizeof parts / sizeof parts[0])];
			size_t pl = strlen(p);
			if (len + pl >= sizeof q)
				break;
			memcpy(q + len, p, pl);
			len += pl;
		}
		q[len] = '\0';
		for (int v2 = 0; v2 < 2; v2++) {
			struct api_list_query lq;
			cube_err err = {0};
			if (api_parse_list_query(q, v2, &lq, &err) == 0)
				api_list_query_free(&lq);
			else
				assert_int_equal(err.status, 400);
			struct api_log_query gq;
			if (api_parse_log_query(q, v2, &gq, &err) == 0)
				api_log_query_free(&gq);
			else
				assert_int_equal(err.status, 400);
		}
		char id[64];
		long long ms;
		api_cursor_decode(q, &ms, id, sizeof id);
		api_parse_rfc3339(q, &ms);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_get),
		cmocka_unit_test(test_metadata_filter_examples),
		cmocka_unit_test(test_metadata_filter_bad_pairs),
		cmocka_unit_test(test_metadata_matches),
		cmocka_unit_test(test_list_query_fields),
		cmocka_unit_test(test_cursor_roundtrip),
		cmocka_unit_test(test_list_order),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_log_select),
		cmocka_unit_test(test_log_entries_from_store),
		cmocka_unit_test(test_fuzz_queries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
