/* cube-envd's pure helpers: path resolution (§3.8), user lookup from passwd/group files with
 * supplementary groups, and the base64 codec accepting every form §3.5 allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envd/envd.h"

struct envd_state envd;

static const struct envd_user user = {.uid = 1000, .gid = 1000, .name = "user", .home = "/home/user"};

static void expect_path(const char *in, const char *want)
{
	char out[4096];
	cube_err err = {0};
	assert_int_equal(envd_resolve_path(in, &user, out, sizeof out, &err), 0);
	assert_string_equal(out, want);
}

static void test_resolve_path(void **state)
{
	(void)state;
	expect_path("", "/home/user");
	expect_path(NULL, "/home/user");
	expect_path("~", "/home/user");
	expect_path("~/", "/home/user");
	expect_path("~/a/b", "/home/user/a/b");
	expect_path("/tmp/x", "/tmp/x");
	expect_path("/tmp//x/./y/", "/tmp/x/y");
	expect_path("/tmp/../etc", "/etc");
	expect_path("/../../x", "/x");
	expect_path("rel/file", "/home/user/rel/file");
	expect_path("../../../etc", "/etc");
	expect_path("/", "/");
	envd.default_workdir = "/work";
	expect_path("", "/work");
	expect_path("x", "/home/user/x");   /* relative paths still join the home */
	envd.default_workdir = NULL;

	char out[64];
	cube_err err = {0};
	assert_int_equal(envd_resolve_path("~root/x", &user, out, sizeof out, &err), -1);
	assert_int_equal(err.status, 400);
	char longp[200];
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	assert_int_equal(envd_resolve_path(longp, &user, out, sizeof out, &err), -1);
}

static void test_user_lookup(void **state)
{
	(void)state;
	char dir[] = "/tmp/envd-users-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char pw[64], gr[64];
	snprintf(pw, sizeof pw, "%s/passwd", dir);
	snprintf(gr, sizeof gr, "%s/group", dir);
	FILE *f = fopen(pw, "w");
	fputs("root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nweird:x:5:5::::\n", f);
	fclose(f);
	f = fopen(gr, "w");
	fputs("root:x:0:\nuser:x:1000:\nsudo:x:27:user,other\ndocker:x:999:other\nextra:x:4242:other,user\n", f);
	fclose(f);
	envd_users_set_files(pw, gr);

	struct envd_user u;
	cube_err err = {0};
	assert_int_equal(envd_user_lookup("user", &u, &err), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 1000);
	assert_string_equal(u.home, "/home/user");
	assert_string_equal(u.shell, "/bin/bash");
	assert_int_equal(u.ngroups, 3);
	assert_int_equal(u.groups[0], 1000);
	assert_int_equal(u.groups[1], 27);
	assert_int_equal(u.groups[2], 4242);

	assert_int_equal(envd_user_lookup("root", &u, &err), 0);
	assert_int_equal(u.uid, 0);
	assert_int_equal(u.ngroups, 1);

	assert_int_equal(envd_user_lookup("weird", &u, &err), 0);
	assert_string_equal(u.home, "/");

	assert_int_equal(envd_user_lookup("nobody", &u, &err), -1);
	assert_int_equal(err.status, 401);
	assert_string_equal(err.msg, "invalid username: 'nobody'");
	assert_int_equal(envd_user_lookup("", &u, &err), -1);

	unlink(pw);
	unlink(gr);
	rmdir(dir);
}

static void expect_b64(const char *in, const char *want, size_t want_len)
{
	size_t len = 0;
	unsigned char *out = envd_base64_decode(in, &len);
	assert_non_null(out);
	assert_int_equal(len, want_len);
	assert_memory_equal(out, want, want_len);
	free(out);
}

static void test_base64(void **state)
{
	(void)state;
	expect_b64("aGkK", "hi\n", 3);
	expect_b64("aGk=", "hi", 2);
	expect_b64("aGk", "hi", 2);          /* no padding */
	expect_b64("aA==", "h", 1);
	expect_b64("aA", "h", 1);
	expect_b64("", "", 0);
	expect_b64("-_8=", "\xfb\xff", 2);   /* URL-safe */
	expect_b64("+/8=", "\xfb\xff", 2);
	size_t len;
	assert_null(envd_base64_decode("a", &len));
	assert_null(envd_base64_decode("a=b=", &len));
	assert_null(envd_base64_decode("a*bc", &len));
	assert_null(envd_base64_decode(" aGk=", &len));

	char *enc = envd_base64_encode("\xfb\xff", 2);
	assert_string_equal(enc, "+/8=");
	free(enc);
	enc = envd_base64_encode("", 0);
	assert_string_equal(enc, "");
	free(enc);
	/* round trip of every byte value */
	unsigned char all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	enc = envd_base64_encode(all, sizeof all);
	unsigned char *dec = envd_base64_decode(enc, &len);
	assert_int_equal(len, 256);
	assert_memory_equal(dec, all, 256);
	free(enc);
	free(dec);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resolve_path),
		cmocka_unit_test(test_user_lookup),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
