/* Table-driven tests of the data-plane routing rules (proxy/route.c, e2b-protocol §2.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/route.h"

struct route_case {
	const char *host, *hdr_id, *hdr_port;
	int ok;
	const char *id;        /* expected on success */
	int port;
	const char *message;   /* expected on failure */
};

static const struct route_case cases[] = {
	/* Host form */
	{"49983-abc123.localhost", NULL, NULL, 1, "abc123", 49983, NULL},
	{"49983-abc123.localhost:3001", NULL, NULL, 1, "abc123", 49983, NULL},
	{"8080-isbx2.e2b.app", NULL, NULL, 1, "isbx2", 8080, NULL},
	{"49999-abc123-6532622b.my.dom", NULL, NULL, 1, "abc123", 49999, NULL},   /* legacy clientID */
	{"1-a-b-c.x", NULL, NULL, 1, "a", 1, NULL},
	{"65535-z.x", NULL, NULL, 1, "z", 65535, NULL},
	{"localhost", NULL, NULL, 0, NULL, 0, "Invalid host"},
	{"localhost:3001", NULL, NULL, 0, NULL, 0, "Invalid host"},
	{"127.0.0.1:3001", NULL, NULL, 0, NULL, 0, "Invalid host"},
	{"sandbox.e2b.app", NULL, NULL, 0, NULL, 0, "Invalid host"},
	{"8080-abc", NULL, NULL, 0, NULL, 0, "Invalid host"},
	{"8080-.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox ID"},
	{"8080-a/b.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox ID"},
	{"x80-abc.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox port"},
	{"-abc.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox port"},
	{"0-abc.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox port"},
	{"65536-abc.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox port"},
	{"123456-abc.localhost", NULL, NULL, 0, NULL, 0, "Invalid sandbox port"},
	{NULL, NULL, NULL, 0, NULL, 0, "missing header"},
	{"", NULL, NULL, 0, NULL, 0, "missing header"},
	/* Header form wins when both headers are present, whatever the Host */
	{"localhost:3001", "abc123", "49983", 1, "abc123", 49983, NULL},
	{"8080-other.localhost", "abc123", "49999", 1, "abc123", 49999, NULL},
	{NULL, "abc123", "49983", 1, "abc123", 49983, NULL},
	{"localhost", "abc123", "port", 0, NULL, 0, "Invalid sandbox port"},
	{"localhost", "abc123", "", 0, NULL, 0, "Invalid sandbox port"},
	{"localhost", "", "49983", 0, NULL, 0, "Invalid sandbox ID"},
	{"localhost", "a b", "49983", 0, NULL, 0, "Invalid sandbox ID"},
	{"localhost", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1", 0, NULL, 0,
	 "Invalid sandbox ID"},
	/* Only one header: fall back to the Host */
	{"8080-abc.localhost", "other", NULL, 1, "abc", 8080, NULL},
	{"8080-abc.localhost", NULL, "49983", 1, "abc", 8080, NULL},
	{"localhost", "abc", NULL, 0, NULL, 0, "Invalid host"},
};

static void test_route_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct route_case *c = &cases[i];
		struct proxy_route r;
		cube_err err = {0};
		memset(&r, 0, sizeof r);
		int rc = proxy_route_parse(c->host, c->hdr_id, c->hdr_port, &r, &err);
		print_message("case %zu: host=%s id=%s port=%s -> rc=%d %s\n", i, c->host ? c->host : "(null)",
			      c->hdr_id ? c->hdr_id : "(null)", c->hdr_port ? c->hdr_port : "(null)", rc, err.msg);
		if (c->ok) {
			assert_int_equal(rc, 0);
			assert_string_equal(r.sandbox_id, c->id);
			assert_int_equal(r.port, c->port);
		} else {
			assert_true(rc < 0);
			assert_int_equal(err.status, 400);
			assert_string_equal(err.msg, c->message);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
