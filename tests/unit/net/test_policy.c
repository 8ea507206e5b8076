/* net/policy.c: table-driven parse cases (accepted with the normalised JSON, or 400 naming the
 * entry), domain matching, template merge and header-rule lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/policy.h"

struct parse_case {
	const char *internet;   /* JSON or NULL */
	const char *network;    /* JSON or NULL */
	const char *expect;     /* normalised policy JSON, or NULL when rejected */
	const char *msg_part;   /* error substring when rejected */
};

#define DEF_TAIL "\"allowPublicTraffic\":true,\"rules\":{}}"
static const struct parse_case cases[] = {
	{NULL, NULL, "{\"allow_internet_access\":true,\"allowOut\":[],\"denyOut\":[]," DEF_TAIL, NULL},
	{"false", NULL, "{\"allow_internet_access\":false,\"allowOut\":[],\"denyOut\":[]," DEF_TAIL, NULL},
	{NULL, "{\"allowOut\":[\"1.2.3.4\",\"10.1.2.3/8\",\"Api.Example.COM.\",\"*.x.org\"],\"denyOut\":[\"0.0.0.0/0\"]}",
	 "{\"allow_internet_access\":true,\"allowOut\":[\"1.2.3.4\",\"10.0.0.0/8\",\"api.example.com\",\"*.x.org\"],"
	 "\"denyOut\":[\"0.0.0.0/0\"]," DEF_TAIL, NULL},
	{NULL, "{\"allowOut\":[\"1.2.3.4\",\"1.2.3.4/32\"]}", /* duplicates collapse */
	 "{\"allow_internet_access\":true,\"allowOut\":[\"1.2.3.4\"],\"denyOut\":[]," DEF_TAIL, NULL},
	{NULL, "{\"allowPublicTraffic\":false}",
	 "{\"allow_internet_access\":true,\"allowOut\":[],\"denyOut\":[],\"allowPublicTraffic\":false,\"rules\":{}}", NULL},
	{NULL, "{\"rules\":{\"API.test\":[{\"transform\":{\"headers\":{\"Authorization\":\"Bearer s\"}}}]}}",
	 "{\"allow_internet_access\":true,\"allowOut\":[\"api.test\"],\"denyOut\":[],\"allowPublicTraffic\":true,"
	 "\"rules\":{\"api.test\":[{\"transform\":{\"headers\":{\"Authorization\":\"***\"}}}]}}", NULL},
	{"\"yes\"", NULL, NULL, "allow_internet_access must be a boolean"},
	{NULL, "[]", NULL, "network must be an object"},
	{NULL, "{\"denyOut\":[\"example.com\"]}", NULL, "is not an IPv4 address or CIDR"},
	{NULL, "{\"allowOut\":[\"10.0.0.0/33\"]}", NULL, "allowOut[0]"},
	{NULL, "{\"allowOut\":[\"*.com\"]}", NULL, NULL}, /* accepted: a TLD wildcard is the user's choice */
	{NULL, "{\"allowOut\":[\"bad name\"]}", NULL, "is not an IPv4 address, CIDR, domain"},
	{NULL, "{\"allowOut\":[\"1.2.3\"]}", NULL, "allowOut[0]"},
	{NULL, "{\"allowOut\":[\"2001:db8::/32\"]}", NULL, "allowOut[0]"},
	{NULL, "{\"allowOut\":\"1.2.3.4\"}", NULL, "must be an array"},
	{NULL, "{\"allowOut\":[5]}", NULL, "must be a string"},
	{NULL, "{\"egressProxy\":{\"address\":\"p:1080\"}}", NULL, "egressProxy is not supported"},
	{NULL, "{\"rules\":{\"a.test\":[{\"transform\":{\"headers\":{\"X\":\"a\\r\\nB: c\"}}}]}}", NULL, "not a valid"},
	{NULL, "{\"rules\":{\"a.test\":{}}}", NULL, "must be an array"},
};

static json_t *load(const char *s)
{
	if (!s)
		return NULL;
	json_t *j = json_loads(s, JSON_DECODE_ANY, NULL);
	assert_non_null(j);
	return j;
}

static void test_parse_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const struct parse_case *c = &cases[i];
		json_t *in = load(c->internet), *nw = load(c->network);
		struct net_policy *p = malloc(sizeof *p);
		cube_err err = {0};
		int rc = net_policy_parse(in, nw, p, &err);
		if (c->expect) {
			if (rc != 0)
				fail_msg("case %zu rejected: %s", i, err.msg);
			json_t *out = net_policy_to_json(p, 0);
			char *got = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
			json_t *want = load(c->expect);
			if (!json_equal(out, want))
				fail_msg("case %zu: got %s", i, got);
			free(got);
			json_decref(out);
			json_decref(want);
			net_policy_free(p);
		} else if (c->msg_part) {
			if (rc == 0)
				fail_msg("case %zu accepted", i);
			assert_int_equal(err.status, 400);
			if (!strstr(err.msg, c->msg_part))
				fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, c->msg_part);
		} else {
			assert_int_equal(rc, 0);
			net_policy_free(p);
		}
		free(p);
		json_decref(in);
		json_decref(nw);
	}
}

static void test_domain_match(void **state)
{
	(void)state;
	struct net_policy *p = malloc(sizeof *p);
	json_t *nw = load("{\"allowOut\":[\"*.example.test\",\"exact.org\"]}");
	assert_int_equal(net_policy_parse(NULL, nw, p, NULL), 0);
	assert_true(net_policy_domain_allowed(p, "api.example.test"));
	assert_true(net_policy_domain_allowed(p, "a.b.example.test"));
	assert_false(net_policy_domain_allowed(p, "example.test"));       /* wildcard: subdomains only */
	assert_false(net_policy_domain_allowed(p, "badexample.test"));
	assert_true(net_policy_domain_allowed(p, "exact.org"));
	assert_false(net_policy_domain_allowed(p, "www.exact.org"));
	assert_false(net_policy_domain_allowed(p, "org"));
	net_policy_free(p);
	free(p);
	json_decref(nw);
}

static void test_merge(void **state)
{
	(void)state;
	struct net_policy *req = malloc(sizeof *req), *tpl = malloc(sizeof *tpl);
	json_t *a = load("{\"allowOut\":[\"1.1.1.1\"],\"denyOut\":[\"10.0.0.0/8\"]}");
	json_t *b = load("{\"allowOut\":[\"1.1.1.1\",\"x.test\"],\"denyOut\":[\"0.0.0.0/0\"]}");
	json_t *f = load("false");
	assert_int_equal(net_policy_parse(NULL, a, req, NULL), 0);
	assert_int_equal(net_policy_parse(f, b, tpl, NULL), 0);
	assert_int_equal(net_policy_merge(req, tpl, NULL), 0);
	assert_int_equal(req->internet, 0); /* the template's explicit flag applies when the request has none */
	assert_int_equal(req->nallow, 1);
	assert_int_equal(req->ndomains, 1);
	assert_int_equal(req->ndeny, 2);
	json_decref(a);
	json_decref(b);
	json_decref(f);
	free(req);
	free(tpl);
}

static void test_for_create(void **state)
{
	(void)state;
	struct net_policy *req = malloc(sizeof *req), *out = malloc(sizeof *out);
	json_t *t_off = load("false"), *t_net = load("{\"allowOut\":[\"*.pkg.test\"],\"denyOut\":[\"10.0.0.0/8\"]}");
	json_t *on = load("true"), *r_net = load("{\"allowOut\":[\"1.2.3.4\"]}");
	/* no request policy: the template's */
	assert_int_equal(net_policy_for_create(NULL, t_off, t_net, out, NULL), 0);
	assert_int_equal(out->internet, 0);
	assert_true(net_policy_domain_allowed(out, "a.pkg.test"));
	net_policy_free(out);
	/* the request's explicit flag wins, lists are unions */
	assert_int_equal(net_policy_parse(on, r_net, req, NULL), 0);
	assert_int_equal(net_policy_for_create(req, t_off, t_net, out, NULL), 0);
	assert_int_equal(out->internet, 1);
	assert_int_equal(out->nallow, 1);
	assert_int_equal(out->ndeny, 1);
	assert_int_equal(out->ndomains, 1);
	net_policy_free(out);
	/* an invalid template default fails the create with a message */
	json_t *bad = load("{\"denyOut\":[\"x.test\"]}");
	cube_err err = {0};
	assert_int_equal(net_policy_for_create(req, NULL, bad, out, &err), -1);
	assert_non_null(strstr(err.msg, "denyOut"));
	json_decref(bad);
	json_decref(t_off);
	json_decref(t_net);
	json_decref(on);
	json_decref(r_net);
	free(req);
	free(out);
}

static void test_header_rule(void **state)
{
	(void)state;
	struct net_policy *p = malloc(sizeof *p);
	json_t *nw = load("{\"rules\":{\"*.api.test\":[{\"transform\":{\"headers\":{\"Authorization\":\"Bearer k\"}}}]}}");
	assert_int_equal(net_policy_parse(NULL, nw, p, NULL), 0);
	const struct net_header_rule *r = net_policy_header_rule(p, "V1.API.test:8080");
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r->headers, "Authorization")), "Bearer k");
	assert_null(net_policy_header_rule(p, "api.test"));
	assert_true(net_policy_domain_allowed(p, "v1.api.test")); /* a rule's host is reachable */
	json_t *secret = net_policy_to_json(p, 1);
	char *dump = json_dumps(secret, 0);
	assert_non_null(strstr(dump, "Bearer k"));
	free(dump);
	net_policy_free(p);
	free(p);
	json_decref(nw);
	json_decref(secret);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_domain_match),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_header_rule),
		cmocka_unit_test(test_for_create),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
