/* process.Process of cube-envd over real HTTP (§3.3, §3.7, §3.8): Start streams (start, data,
 * end, EOS), exit codes, envs and cwd, stdin with SendInput/CloseStdin, Connect to a running
 * process, List, SendSignal, PTYs with resize, users, the Connect-Timeout-Ms deadline, keepalives,
 * disconnects that leave the process running, 10 MB of output, the 30 s end retention, StreamInput. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <time.h>

#include "envd_harness.h"


/* ---- helpers ---- */

struct bg_stream {
	pthread_t thread;
	const char *path;
	char body[1024];
	const char *headers[4];
	long timeout_ms;
	struct stream_result res;
};

static void *bg_run(void *arg)
{
	struct bg_stream *b = arg;
	envd_stream(&envd_p, b->path, b->body, b->headers, b->timeout_ms, &b->res);
	return NULL;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Run a stream in a thread and wait until its first frame (the start event) has arrived. */
static struct bg_stream *bg_start(const char *path, const char *body, const char *header)
{
	struct bg_stream *b = calloc(1, sizeof *b);
	b->path = path;
	snprintf(b->body, sizeof b->body, "%s", body);
	b->headers[0] = header;
	pthread_create(&b->thread, NULL, bg_run, b);
	for (int i = 0; i < 500 && __atomic_load_n(&b->res.received, __ATOMIC_SEQ_CST) == 0; i++)
		sleep_ms(10);
	assert_true(b->res.received > 0);
	return b;
}

static void bg_join(struct bg_stream *b)
{
	pthread_join(b->thread, NULL);
}

static void bg_free(struct bg_stream *b)
{
	stream_result_free(&b->res);
	free(b);
}

static long unary_status(const char *path, const char *body)
{
	long st;
	json_t *j = envd_unary(&envd_p, path, body, &st, NULL);
	json_decref(j);
	return st;
}

/* A successful command stream: start first, end before EOS {}, nothing after. */
static void assert_complete_stream(const struct stream_result *s)
{
	assert_int_equal(s->status, 200);
	assert_string_equal(s->content_type, "application/connect+json");
	assert_false(s->malformed);
	assert_true(s->n >= 3);
	assert_non_null(frame_event(s, 0, "start"));
	assert_true(json_integer_value(json_object_get(frame_event(s, 0, "start"), "pid")) > 0);
	assert_non_null(frame_event(s, s->n - 2, "end"));
	assert_int_equal(s->flags[s->n - 1], 0x02);
	assert_int_equal(json_object_size(s->frames[s->n - 1]), 0);
	for (size_t i = 0; i + 1 < s->n; i++)
		assert_int_equal(s->flags[i], 0x00);
}

static int stream_pid(const struct stream_result *s)
{
	return (int)json_integer_value(json_object_get(frame_event(s, 0, "start"), "pid"));
}

static const char *eos_code(const struct stream_result *s)
{
	if (!s->n || s->flags[s->n - 1] != 0x02)
		return NULL;
	return json_string_value(json_object_get(json_object_get(s->frames[s->n - 1], "error"), "code"));
}

static const char *eos_message(const struct stream_result *s)
{
	return json_string_value(json_object_get(json_object_get(s->frames[s->n - 1], "error"), "message"));
}

/* ---- tests ---- */

static void test_start_echo(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-l\",\"-c\",\"echo hi\"]},\"stdin\":false}", NULL, 0, &s);
	assert_complete_stream(&s);
	char *out = stream_output(&s, "stdout", NULL);
	assert_string_equal(out, "hi\n");
	free(out);
	json_t *end = frame_event(&s, s.n - 2, "end");
	assert_null(json_object_get(end, "exitCode"));          /* 0 is omitted */
	assert_true(json_is_true(json_object_get(end, "exited")));
	assert_string_equal(json_string_value(json_object_get(end, "status")), "exit status 0");
	assert_null(json_object_get(end, "error"));
	stream_result_free(&s);
}

static void test_nonzero_exit(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/bash\",\"args\":[\"-c\",\"echo err >&2; exit 3\"]},\"stdin\":false}", NULL, 0,
		    &s);
	assert_complete_stream(&s);
	char *err = stream_output(&s, "stderr", NULL);
	assert_string_equal(err, "err\n");
	free(err);
	json_t *end = frame_event(&s, s.n - 2, "end");
	assert_int_equal(json_integer_value(json_object_get(end, "exitCode")), 3);
	assert_string_equal(json_string_value(json_object_get(end, "status")), "exit status 3");
	assert_string_equal(json_string_value(json_object_get(end, "error")), "exit status 3");
	stream_result_free(&s);
}

static void test_envs_and_cwd(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"echo $GLOBAL_A $E2B_SANDBOX $E2B_SANDBOX_ID "
		    "$E2B_TEMPLATE_ID $REQ $HOME $USER $LOGNAME; pwd\"],\"envs\":{\"REQ\":\"r\",\"GLOBAL_A\":\"2\"},"
		    "\"cwd\":\"/tmp\"},\"stdin\":false}",
		    NULL, 0, &s);
	assert_complete_stream(&s);
	char *out = stream_output(&s, "stdout", NULL);
	assert_string_equal(out, "2 true sbx-test base r /root root root\n/tmp\n");
	free(out);
	stream_result_free(&s);
}

static void test_cwd_missing(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/true\",\"cwd\":\"/nonexistent-dir\"},\"stdin\":false}", NULL, 0, &s);
	assert_int_equal(s.status, 200);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "invalid_argument");
	assert_string_equal(eos_message(&s), "cwd '/nonexistent-dir' does not exist");
	stream_result_free(&s);
}

static void test_exec_failure(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start", "{\"process\":{\"cmd\":\"/nonexistent-binary\"}}", NULL, 0, &s);
	assert_int_equal(s.status, 200);
	assert_int_equal(s.n, 1);
	assert_non_null(eos_code(&s));
	assert_string_equal(eos_code(&s), "internal");
	stream_result_free(&s);
}

static void test_stdin_send_input_close(void **state)
{
	(void)state;
	struct bg_stream *b = bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"cat\"},\"tag\":\"catter\"}", NULL);
	/* List shows it with its config and tag. */
	long st;
	json_t *list = envd_unary(&envd_p, "/process.Process/List", "{}", &st, NULL);
	assert_int_equal(st, 200);
	json_t *procs = json_object_get(list, "processes");
	int pid = 0;
	for (size_t i = 0; i < json_array_size(procs); i++) {
		json_t *p = json_array_get(procs, i);
		if (json_is_string(json_object_get(p, "tag")) &&
		    !strcmp(json_string_value(json_object_get(p, "tag")), "catter")) {
			pid = (int)json_integer_value(json_object_get(p, "pid"));
			assert_string_equal(json_string_value(json_object_get(json_object_get(p, "config"), "cmd")), "cat");
		}
	}
	json_decref(list);
	assert_true(pid > 0);
	char body[256];
	snprintf(body, sizeof body, "{\"process\":{\"pid\":%d},\"input\":{\"stdin\":\"aGVsbG8K\"}}", pid);
	assert_int_equal(unary_status("/process.Process/SendInput", body), 200);
	snprintf(body, sizeof body, "{\"process\":{\"pid\":%d}}", pid);
	assert_int_equal(unary_status("/process.Process/CloseStdin", body), 200);
	bg_join(b);
	assert_complete_stream(&b->res);
	assert_int_equal(stream_pid(&b->res), pid);
	char *out = stream_output(&b->res, "stdout", NULL);
	assert_string_equal(out, "hello\n");
	free(out);
	bg_free(b);
	/* Gone from List; input to it is not_found. */
	snprintf(body, sizeof body, "{\"process\":{\"pid\":%d},\"input\":{\"stdin\":\"eA==\"}}", pid);
	assert_int_equal(unary_status("/process.Process/SendInput", body), 404);
}

static void test_stdin_false_is_dev_null(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start", "{\"process\":{\"cmd\":\"cat\"},\"stdin\":false}", NULL, 0, &s);
	assert_complete_stream(&s);   /* cat sees EOF at once */
	stream_result_free(&s);
}

static void test_connect_running(void **state)
{
	(void)state;
	struct bg_stream *a = bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"cat\"},\"tag\":\"shared\"}", NULL);
	int pid = 0;
	/* Connect by tag; its first frame is the same pid's start event. */
	struct bg_stream *c = bg_start("/process.Process/Connect", "{\"process\":{\"tag\":\"shared\"}}", NULL);
	long st;
	json_t *list = envd_unary(&envd_p, "/process.Process/List", "{}", &st, NULL);
	json_t *procs = json_object_get(list, "processes");
	for (size_t i = 0; i < json_array_size(procs); i++)
		if (json_is_string(json_object_get(json_array_get(procs, i), "tag")))
			pid = (int)json_integer_value(json_object_get(json_array_get(procs, i), "pid"));
	json_decref(list);
	char body[256];
	snprintf(body, sizeof body, "{\"process\":{\"tag\":\"shared\"},\"input\":{\"stdin\":\"b25lCg==\"}}");
	assert_int_equal(unary_status("/process.Process/SendInput", body), 200);
	snprintf(body, sizeof body, "{\"process\":{\"pid\":%d}}", pid);
	assert_int_equal(unary_status("/process.Process/CloseStdin", body), 200);
	bg_join(a);
	bg_join(c);
	assert_complete_stream(&a->res);
	assert_complete_stream(&c->res);
	assert_int_equal(stream_pid(&a->res), pid);
	assert_int_equal(stream_pid(&c->res), pid);
	char *oa = stream_output(&a->res, "stdout", NULL), *oc = stream_output(&c->res, "stdout", NULL);
	assert_string_equal(oa, "one\n");
	assert_string_equal(oc, "one\n");
	free(oa);
	free(oc);
	bg_free(a);
	bg_free(c);

	/* Within 30 s of the end, a late Connect still gets start + end. */
	struct stream_result s;
	snprintf(body, sizeof body, "{\"process\":{\"pid\":%d}}", pid);
	envd_stream(&envd_p, "/process.Process/Connect", body, NULL, 0, &s);
	assert_complete_stream(&s);
	assert_int_equal(s.n, 3);
	stream_result_free(&s);
}

static void test_connect_unknown(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Connect", "{\"process\":{\"pid\":999999}}", NULL, 0, &s);
	assert_int_equal(s.status, 200);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "not_found");
	assert_string_equal(eos_message(&s), "process with pid 999999 not found");
	stream_result_free(&s);
	envd_stream(&envd_p, "/process.Process/Connect", "{\"process\":{\"tag\":\"nope\"}}", NULL, 0, &s);
	assert_string_equal(eos_message(&s), "process with tag nope not found");
	stream_result_free(&s);
	envd_stream(&envd_p, "/process.Process/Connect", "{\"process\":{}}", NULL, 0, &s);
	assert_string_equal(eos_code(&s), "unimplemented");
	stream_result_free(&s);
}

static void test_send_signal(void **state)
{
	(void)state;
	struct bg_stream *b =
		bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"sleep\",\"args\":[\"30\"]},\"tag\":\"sleeper\"}", NULL);
	assert_int_equal(unary_status("/process.Process/SendSignal",
				      "{\"process\":{\"tag\":\"sleeper\"},\"signal\":\"SIGNAL_UNSPECIFIED\"}"),
			 501);
	assert_int_equal(unary_status("/process.Process/SendSignal",
				      "{\"process\":{\"tag\":\"sleeper\"},\"signal\":\"SIGNAL_SIGKILL\"}"),
			 200);
	bg_join(b);
	assert_complete_stream(&b->res);
	json_t *end = frame_event(&b->res, b->res.n - 2, "end");
	assert_int_equal(json_integer_value(json_object_get(end, "exitCode")), -1);
	assert_null(json_object_get(end, "exited"));
	assert_string_equal(json_string_value(json_object_get(end, "status")), "signal: killed");
	bg_free(b);
	/* Unknown process: not_found (the SDK's kill() then returns false). */
	long st;
	json_t *j = envd_unary(&envd_p, "/process.Process/SendSignal",
			       "{\"process\":{\"pid\":999999},\"signal\":\"SIGNAL_SIGKILL\"}", &st, NULL);
	assert_int_equal(st, 404);
	assert_string_equal(json_string_value(json_object_get(j, "code")), "not_found");
	json_decref(j);
	/* SIGTERM by number. */
	b = bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"sleep\",\"args\":[\"30\"]},\"tag\":\"sleeper2\"}", NULL);
	assert_int_equal(unary_status("/process.Process/SendSignal", "{\"process\":{\"tag\":\"sleeper2\"},\"signal\":15}"), 200);
	bg_join(b);
	end = frame_event(&b->res, b->res.n - 2, "end");
	assert_string_equal(json_string_value(json_object_get(end, "status")), "signal: terminated");
	bg_free(b);
}

static void test_pty(void **state)
{
	(void)state;
	struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"stty size; test -t 0 && echo tty\"]},"
		    "\"pty\":{\"size\":{\"cols\":100,\"rows\":30}}}",
		    NULL, 0, &s);
	assert_complete_stream(&s);
	char *out = stream_output(&s, "pty", NULL);
	assert_non_null(strstr(out, "30 100"));
	assert_non_null(strstr(out, "tty"));
	free(out);
	char *so = stream_output(&s, "stdout", NULL);
	assert_string_equal(so, "");
	free(so);
	stream_result_free(&s);

	/* Resize with Update, then let the shell report the new size through pty input. */
	struct bg_stream *b = bg_start("/process.Process/Start",
				       "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"read line; stty size\"]},"
				       "\"tag\":\"ptyproc\",\"pty\":{\"size\":{\"cols\":80,\"rows\":24}}}",
				       NULL);
	assert_int_equal(unary_status("/process.Process/Update",
				      "{\"process\":{\"tag\":\"ptyproc\"},\"pty\":{\"size\":{\"cols\":50,\"rows\":20}}}"),
			 200);
	/* stdin input to a pty process is refused; pty input goes to the terminal. */
	assert_int_equal(unary_status("/process.Process/SendInput",
				      "{\"process\":{\"tag\":\"ptyproc\"},\"input\":{\"stdin\":\"Z28K\"}}"),
			 400);
	assert_int_equal(unary_status("/process.Process/SendInput",
				      "{\"process\":{\"tag\":\"ptyproc\"},\"input\":{\"pty\":\"Z28K\"}}"),
			 200);
	bg_join(b);
	assert_complete_stream(&b->res);
	out = stream_output(&b->res, "pty", NULL);
	assert_non_null(strstr(out, "20 50"));
	free(out);
	bg_free(b);
}

static void test_update_not_pty(void **state)
{
	(void)state;
	struct bg_stream *b = bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"cat\"},\"tag\":\"plain\"}", NULL);
	assert_int_equal(unary_status("/process.Process/Update",
				      "{\"process\":{\"tag\":\"plain\"},\"pty\":{\"size\":{\"cols\":50,\"rows\":20}}}"),
			 400);
	assert_int_equal(unary_status("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"plain\"}}"), 200);
	bg_join(b);
	bg_free(b);
}

static void test_deadline_kills(void **state)
{
	(void)state;
	struct stream_result s;
	const char *h[] = {"Connect-Timeout-Ms: 300", NULL};
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"sleep\",\"args\":[\"30\"]},\"tag\":\"doomed\",\"stdin\":false}", h, 0, &s);
	assert_int_equal(s.status, 200);
	assert_true(s.n >= 2);
	assert_non_null(frame_event(&s, 0, "start"));
	json_t *end = frame_event(&s, s.n - 2, "end");
	assert_non_null(end);
	assert_string_equal(json_string_value(json_object_get(end, "status")), "signal: killed");
	assert_string_equal(eos_code(&s), "deadline_exceeded");
	stream_result_free(&s);
	/* The process really died. */
	sleep_ms(200);
	long st;
	json_t *j = envd_unary(&envd_p, "/process.Process/SendSignal",
			       "{\"process\":{\"tag\":\"doomed\"},\"signal\":\"SIGNAL_SIGKILL\"}", &st, NULL);
	assert_int_equal(st, 404);
	json_decref(j);
}

static void test_bad_timeout_header(void **state)
{
	(void)state;
	struct stream_result s;
	const char *h[] = {"Connect-Timeout-Ms: soon", NULL};
	envd_stream(&envd_p, "/process.Process/Start", "{\"process\":{\"cmd\":\"true\"}}", h, 0, &s);
	assert_int_equal(s.status, 200);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "invalid_argument");
	stream_result_free(&s);
}

static void test_keepalive(void **state)
{
	(void)state;
	struct stream_result s;
	const char *h[] = {"Keepalive-Ping-Interval: 1", NULL};
	envd_stream(&envd_p, "/process.Process/Start", "{\"process\":{\"cmd\":\"sleep\",\"args\":[\"2.5\"]},\"stdin\":false}",
		    h, 0, &s);
	assert_complete_stream(&s);
	int keepalives = 0;
	for (size_t i = 0; i < s.n; i++)
		keepalives += frame_event(&s, i, "keepalive") != NULL;
	assert_true(keepalives >= 1);
	stream_result_free(&s);
}

static void test_disconnect_keeps_process(void **state)
{
	(void)state;
	struct stream_result s;
	/* The client gives up after 300 ms; the process must keep running. */
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"sleep 1.5; echo late\"]},\"tag\":\"survivor\","
		    "\"stdin\":false}",
		    NULL, 300, &s);
	assert_int_equal(s.curl_rc, CURLE_OPERATION_TIMEDOUT);
	stream_result_free(&s);
	long st;
	json_t *list = envd_unary(&envd_p, "/process.Process/List", "{}", &st, NULL);
	char *dump = json_dumps(list, 0);
	assert_non_null(strstr(dump, "\"survivor\""));
	free(dump);
	json_decref(list);
	envd_stream(&envd_p, "/process.Process/Connect", "{\"process\":{\"tag\":\"survivor\"}}", NULL, 0, &s);
	assert_complete_stream(&s);
	char *out = stream_output(&s, "stdout", NULL);
	assert_string_equal(out, "late\n");
	free(out);
	stream_result_free(&s);
}

static void test_large_output(void **state)
{
	(void)state;
	static struct stream_result s;
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"head -c 10000000 /dev/zero | tr '\\\\000' a\"]},"
		    "\"stdin\":false}",
		    NULL, 60000, &s);
	assert_complete_stream(&s);
	size_t len;
	char *out = stream_output(&s, "stdout", &len);
	assert_int_equal(len, 10000000);
	size_t bad = 0;
	for (size_t i = 0; i < len; i++)
		bad += out[i] != 'a';
	assert_int_equal(bad, 0);
	free(out);
	stream_result_free(&s);
}

static void test_acting_user(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct stream_result s;
	/* Basic base64("user:") selects user 1000 with its supplementary group. */
	const char *h[] = {"Authorization: Basic dXNlcjo=", NULL};
	envd_stream(&envd_p, "/process.Process/Start",
		    "{\"process\":{\"cmd\":\"/bin/sh\",\"args\":[\"-c\",\"id -u; id -G; echo $USER; pwd\"]},\"stdin\":false}", h,
		    0, &s);
	assert_complete_stream(&s);
	char *out = stream_output(&s, "stdout", NULL);
	char want[512];
	snprintf(want, sizeof want, "1000\n1000 4242\nuser\n%s/home\n", envd_p.dir);
	assert_string_equal(out, want);
	free(out);
	stream_result_free(&s);

	const char *bad[] = {"Authorization: Basic bm9ib2R5Og==", NULL};   /* nobody: */
	envd_stream(&envd_p, "/process.Process/Start", "{\"process\":{\"cmd\":\"true\"}}", bad, 0, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "unauthenticated");
	assert_string_equal(eos_message(&s), "invalid username: 'nobody'");
	stream_result_free(&s);
}

static void test_list_shape(void **state)
{
	(void)state;
	struct bg_stream *b = bg_start("/process.Process/Start",
				       "{\"process\":{\"cmd\":\"cat\",\"args\":[\"-\"],\"envs\":{\"K\":\"v\"},\"cwd\":\"/tmp\"},"
				       "\"tag\":\"shape\"}",
				       NULL);
	long st;
	json_t *list = envd_unary(&envd_p, "/process.Process/List", "{}", &st, NULL);
	assert_int_equal(st, 200);
	json_t *found = NULL;
	json_t *procs = json_object_get(list, "processes");
	for (size_t i = 0; i < json_array_size(procs); i++)
		if (json_is_string(json_object_get(json_array_get(procs, i), "tag")) &&
		    !strcmp(json_string_value(json_object_get(json_array_get(procs, i), "tag")), "shape"))
			found = json_array_get(procs, i);
	assert_non_null(found);
	json_t *cfg = json_object_get(found, "config");
	assert_string_equal(json_string_value(json_object_get(cfg, "cmd")), "cat");
	assert_string_equal(json_string_value(json_array_get(json_object_get(cfg, "args"), 0)), "-");
	assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "envs"), "K")), "v");
	assert_string_equal(json_string_value(json_object_get(cfg, "cwd")), "/tmp");
	assert_true(json_integer_value(json_object_get(found, "pid")) > 0);
	json_decref(list);
	assert_int_equal(unary_status("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"shape\"}}"), 200);
	bg_join(b);
	bg_free(b);
}

/* Concatenated envelopes of the given JSON messages (a client-stream request body). */
static size_t envelopes(unsigned char *buf, const char *const *msgs)
{
	size_t n = 0;
	for (const char *const *m = msgs; *m; m++) {
		size_t l = strlen(*m);
		buf[n] = 0;
		buf[n + 1] = (unsigned char)(l >> 24);
		buf[n + 2] = (unsigned char)(l >> 16);
		buf[n + 3] = (unsigned char)(l >> 8);
		buf[n + 4] = (unsigned char)l;
		memcpy(buf + n + 5, *m, l);
		n += 5 + l;
	}
	return n;
}

static void test_stream_input(void **state)
{
	(void)state;
	struct bg_stream *b = bg_start("/process.Process/Start", "{\"process\":{\"cmd\":\"cat\"},\"tag\":\"si\"}", NULL);
	unsigned char body[1024];
	const char *msgs[] = {"{\"start\":{\"process\":{\"tag\":\"si\"}}}", "{\"data\":{\"input\":{\"stdin\":\"YQo=\"}}}",
			      "{\"keepalive\":{}}", "{\"data\":{\"input\":{\"stdin\":\"Ygo=\"}}}", NULL};
	size_t len = envelopes(body, msgs);
	struct stream_result s;
	envd_stream_raw(&envd_p, "/process.Process/StreamInput", body, len, NULL, 0, &s);
	assert_int_equal(s.status, 200);
	assert_string_equal(s.content_type, "application/connect+json");
	assert_int_equal(s.n, 2);
	assert_int_equal(s.flags[0], 0);
	assert_int_equal(s.flags[1], 2);
	assert_int_equal(json_object_size(s.frames[1]), 0);
	stream_result_free(&s);
	assert_int_equal(unary_status("/process.Process/CloseStdin", "{\"process\":{\"tag\":\"si\"}}"), 200);
	bg_join(b);
	assert_complete_stream(&b->res);
	char *out = stream_output(&b->res, "stdout", NULL);
	assert_string_equal(out, "a\nb\n");
	free(out);
	bg_free(b);

	/* data before start */
	const char *bad[] = {"{\"data\":{\"input\":{\"stdin\":\"YQo=\"}}}", NULL};
	len = envelopes(body, bad);
	envd_stream_raw(&envd_p, "/process.Process/StreamInput", body, len, NULL, 0, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "failed_precondition");
	stream_result_free(&s);
	/* truncated frame */
	envd_stream_raw(&envd_p, "/process.Process/StreamInput", "\x00\x00\x00\x00\x09{}", 7, NULL, 0, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(eos_code(&s), "invalid_argument");
	stream_result_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_start_echo),
		cmocka_unit_test(test_nonzero_exit),
		cmocka_unit_test(test_envs_and_cwd),
		cmocka_unit_test(test_cwd_missing),
		cmocka_unit_test(test_exec_failure),
		cmocka_unit_test(test_stdin_send_input_close),
		cmocka_unit_test(test_stdin_false_is_dev_null),
		cmocka_unit_test(test_connect_running),
		cmocka_unit_test(test_connect_unknown),
		cmocka_unit_test(test_send_signal),
		cmocka_unit_test(test_pty),
		cmocka_unit_test(test_update_not_pty),
		cmocka_unit_test(test_deadline_kills),
		cmocka_unit_test(test_bad_timeout_header),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_disconnect_keeps_process),
		cmocka_unit_test(test_large_output),
		cmocka_unit_test(test_acting_user),
		cmocka_unit_test(test_list_shape),
		cmocka_unit_test(test_stream_input),
	};
	return cmocka_run_group_tests(tests, envd_group_setup, envd_group_teardown);
}
