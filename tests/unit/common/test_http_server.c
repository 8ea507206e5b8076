/* Drives common/http_server over real sockets: keep-alive, pipelining, chunked request bodies,
 * streamed chunked responses, body limits, malformed requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http_server.h"

static int port;
static uv_loop_t loop;
static uv_async_t stop_async;

static void on_body(http_req *req, char *body, size_t len, int status)
{
	if (status) {
		http_resp_error(req, status, "body rejected");
		return;
	}
	char out[64];
	int n = snprintf(out, sizeof out, "len=%zu:", len);
	http_header h[] = {{"Content-Type", "text/plain"}};
	http_resp_start(req, 200, h, 1, -1);
	http_resp_write(req, out, (size_t)n);
	http_resp_write(req, body, len);
	http_resp_end(req);
}

static void on_request(http_req *req, void *ctx)
{
	(void)ctx;
	if (strcmp(http_req_path(req), "/echo") == 0) {
		http_req_read_body(req, 1024, on_body);
		return;
	}
	if (strcmp(http_req_path(req), "/q") == 0) {
		char *v = http_req_query_param(req, "a");
		http_resp_send(req, 200, "text/plain", v ? v : "none", v ? strlen(v) : 4);
		free(v);
		return;
	}
	http_resp_error(req, 404, "no route %s", http_req_path(req));
}

static void on_stop(uv_async_t *a)
{
	(void)a;
	uv_stop(&loop);
}

static void *serve(void *arg)
{
	(void)arg;
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* Read until `needle` has been seen `count` times or the peer closes. */
static size_t read_until(int fd, char *buf, size_t cap, const char *needle, int count)
{
	size_t len = 0;
	for (;;) {
		buf[len] = '\0';
		int seen = 0;
		for (char *p = buf; (p = strstr(p, needle)); p++)
			seen++;
		if (seen >= count || len + 1 >= cap)
			break;
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

static void test_pipelined_keepalive(void **state)
{
	(void)state;
	int fd = dial();
	const char *reqs = "GET /q?a=x%20y+z HTTP/1.1\r\nHost: t\r\n\r\n"
			   "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
			   "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n";
	assert_int_equal(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
	char buf[8192];
	read_until(fd, buf, sizeof buf, "no route /nope\"}", 1);
	char *first = strstr(buf, "x y z");
	char *second = strstr(buf, "6\r\nlen=5:\r\n5\r\nabcde\r\n0\r\n\r\n");
	char *third = strstr(buf, "{\"code\":404,\"message\":\"no route /nope\"}");
	assert_non_null(first);
	assert_non_null(second);
	assert_non_null(third);
	assert_true(first < second && second < third);
	close(fd);
}

static void test_body_limit(void **state)
{
	(void)state;
	int fd = dial();
	char big[3000];
	memset(big, 'x', sizeof big);
	char head[128];
	int hl = snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", sizeof big);
	assert_int_equal(write(fd, head, (size_t)hl), hl);
	assert_int_equal(write(fd, big, sizeof big), (ssize_t)sizeof big);
	char buf[4096];
	read_until(fd, buf, sizeof buf, "}", 1);
	assert_non_null(strstr(buf, "HTTP/1.1 413"));
	close(fd);
}

static void test_malformed(void **state)
{
	(void)state;
	int fd = dial();
	const char *junk = "GARBAGE\x01\x02 / HTTP/9\r\n\r\n";
	assert_int_equal(write(fd, junk, strlen(junk)), (ssize_t)strlen(junk));
	char buf[4096];
	read_until(fd, buf, sizeof buf, "}", 1);
	assert_non_null(strstr(buf, "HTTP/1.1 400"));
	close(fd);
	/* and the server keeps serving */
	fd = dial();
	const char *ok = "GET /q?a=1 HTTP/1.1\r\n\r\n";
	assert_int_equal(write(fd, ok, strlen(ok)), (ssize_t)strlen(ok));
	read_until(fd, buf, sizeof buf, "\r\n\r\n1", 1);
	assert_non_null(strstr(buf, "HTTP/1.1 200"));
	close(fd);
}

int main(void)
{
	uv_loop_init(&loop);
	uv_async_init(&loop, &stop_async, on_stop);
	http_server *srv = http_server_new(&loop, on_request, NULL);
	cube_err err;
	if (http_server_listen_tcp(srv, "127.0.0.1:0", &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	port = http_server_port(srv);
	pthread_t th;
	pthread_create(&th, NULL, serve, NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipelined_keepalive),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_malformed),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	uv_async_send(&stop_async);
	pthread_join(th, NULL);
	return rc;
}
