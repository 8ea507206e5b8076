/* common/metrics: label escaping, counter and histogram exposition, collectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

static void test_label_escaping(void **state)
{
	(void)state;
	char buf[128] = "";
	metrics_label(buf, sizeof buf, "a", "x\"y\\z\nw");
	metrics_label(buf, sizeof buf, "b", "2");
	assert_string_equal(buf, "a=\"x\\\"y\\\\z\\nw\",b=\"2\"");
	char tiny[8] = "";
	metrics_label(tiny, sizeof tiny, "key", "longvalue");
	assert_true(strlen(tiny) < sizeof tiny);
}

static void test_counter_and_histogram(void **state)
{
	(void)state;
	metrics_reset();
	metrics_counter_add("t_total", "A counter.", "k=\"v\"", 2);
	metrics_counter_add("t_total", "A counter.", "k=\"v\"", 3);
	metrics_observe("t_seconds", "A histogram.", "", 0.0003);
	metrics_observe("t_seconds", "A histogram.", "", 20);
	size_t len;
	char *text = metrics_render(&len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "# TYPE t_total counter\nt_total{k=\"v\"} 5\n"));
	assert_non_null(strstr(text, "# TYPE t_seconds histogram\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.00025\"} 0\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{le=\"0.0005\"} 1\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{le=\"10\"} 1\n"));
	assert_non_null(strstr(text, "t_seconds_bucket{le=\"+Inf\"} 2\n"));
	assert_non_null(strstr(text, "t_seconds_count 2\n"));
	assert_non_null(strstr(text, "t_seconds_sum 20.0003"));
	free(text);
	metrics_reset();
}

static void collect(FILE *out, void *arg)
{
	fputs("# TYPE g gauge\n", out);
	metrics_sample(out, "g", "x=\"1\"", *(double *)arg);
}

static void test_collector(void **state)
{
	(void)state;
	metrics_reset();
	double v = 7;
	metrics_add_collector(collect, &v);
	char *text = metrics_render(NULL);
	assert_string_equal(text, "# TYPE g gauge\ng{x=\"1\"} 7\n");
	free(text);
	metrics_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_counter_and_histogram),
		cmocka_unit_test(test_collector),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
