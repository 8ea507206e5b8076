/* The template's start command (envd/boot.c): envd runs startCmd at boot under the tag "start-cmd"
 * with its output in envd's log, and reports ready only once readyPort accepts (here a second envd
 * that the start command launches after a delay), or after readyTimeoutMs when it never does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <time.h>

#include "envd_harness.h"

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int port_accepts(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

static int log_contains(const struct envd_proc *e, const char *needle)
{
	size_t len;
	FILE *f = fopen(e->log, "r");
	if (!f)
		return 0;
	char *buf = calloc(1, 1 << 20);
	len = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[len] = '\0';
	int hit = strstr(buf, needle) != NULL;
	free(buf);
	return hit;
}

static void test_ready_waits_for_port(void **state)
{
	(void)state;
	int inner = harness_free_port();
	char config[1024];
	snprintf(config, sizeof config,
		 "{\"accessToken\":\"tok\",\"defaultUser\":\"root\",\"envVars\":{\"BOOT_MARK\":\"from-env\"},"
		 "\"startCmd\":\"echo start-cmd-says-$BOOT_MARK; sleep 0.4; exec %s --port %d --host 127.0.0.1\","
		 "\"startUser\":\"root\",\"readyPort\":%d}",
		 getenv("CUBE_ENVD_BIN"), inner, inner);
	struct envd_proc e = {0};
	long long t0 = now_ms();
	assert_int_equal(envd_start(&e, config), 0);
	long long waited = now_ms() - t0;
	/* ready came only after the start command's service listened */
	assert_true(waited >= 400);
	assert_true(port_accepts(inner));
	assert_true(log_contains(&e, "start-cmd-says-from-env"));

	long st;
	json_t *list = envd_unary(&e, "/process.Process/List", "{}", &st, NULL);
	assert_int_equal(st, 200);
	json_t *procs = json_object_get(list, "processes"), *p;
	size_t i;
	int found = 0;
	json_array_foreach (procs, i, p)
		if (json_is_string(json_object_get(p, "tag")) &&
		    strcmp(json_string_value(json_object_get(p, "tag")), "start-cmd") == 0)
			found = 1;
	assert_true(found);
	json_decref(list);
	/* stopping envd stops the start command and what it runs */
	assert_int_equal(envd_stop(&e), 0);
	for (int k = 0; k < 100 && port_accepts(inner); k++)
		usleep(20000);
	assert_false(port_accepts(inner));
}

static void test_ready_timeout(void **state)
{
	(void)state;
	int never = harness_free_port();
	char config[512];
	snprintf(config, sizeof config,
		 "{\"defaultUser\":\"root\",\"startCmd\":\"sleep 30\",\"readyPort\":%d,\"readyTimeoutMs\":300}", never);
	struct envd_proc e = {0};
	long long t0 = now_ms();
	assert_int_equal(envd_start(&e, config), 0);
	long long waited = now_ms() - t0;
	assert_true(waited >= 300);
	assert_true(waited < 5000);
	assert_true(log_contains(&e, "did not accept"));
	assert_int_equal(envd_stop(&e), 0);
}

static void test_bad_start_command_still_ready(void **state)
{
	(void)state;
	struct envd_proc e = {0};
	assert_int_equal(envd_start(&e, "{\"defaultUser\":\"root\",\"startCmd\":\"true\",\"startUser\":\"nobody-here\","
					"\"readyPort\":1}"),
			 0);
	assert_true(log_contains(&e, "start command failed"));
	assert_int_equal(envd_stop(&e), 0);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_ALL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_waits_for_port),
		cmocka_unit_test(test_ready_timeout),
		cmocka_unit_test(test_bad_start_command_still_ready),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
