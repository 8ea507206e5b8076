/* Drives the proxy over real loopback sockets: the proxy listener and two upstream HTTP servers
 * (common/http_server) run on one libuv loop in a thread, a raw upstream (blocking sockets) covers
 * close-delimited responses, upstream failures and Upgrade. Sandboxes come from fake_sandboxes.c,
 * whose sockets are plain host sockets. Clients parse responses with http_parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <http_parser.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/http_server.h"
#include "proxy/proxy.h"
#include "tests/unit/proxy/fake_sandboxes.h"

static uv_loop_t loop;
static uv_async_t stop_async, stream_async;
static int proxy_port, port_a, port_b, port_raw, port_closed;
static pthread_t loop_thread, raw_thread;
static int raw_listen_fd;

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i % 251);
}

static unsigned fnv1a(unsigned h, const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)data[i]) * 16777619u;
	return h;
}

/* ---- upstream HTTP servers (loop thread) ---- */

struct count_state {
	size_t len;
	unsigned hash;
	char te[32];
};

static void count_body(http_req *req, const char *data, size_t len)
{
	struct count_state *st = http_req_data(req);
	if (data) {
		st->len += len;
		st->hash = fnv1a(st->hash, data, len);
		return;
	}
	char out[128];
	int n = snprintf(out, sizeof out, "len=%zu hash=%08x te=%s", st->len, st->hash, st->te);
	free(st);
	http_resp_send(req, 200, "text/plain", out, (size_t)n);
}

struct big_state {
	size_t sent, total;
};

static void big_pump(http_req *req)
{
	struct big_state *st = http_req_data(req);
	char chunk[65536];
	while (st->sent < st->total && http_resp_pending(req) < 1024 * 1024) {
		size_t n = st->total - st->sent < sizeof chunk ? st->total - st->sent : sizeof chunk;
		for (size_t i = 0; i < n; i++)
			chunk[i] = (char)pattern(st->sent + i);
		st->sent += n;
		http_resp_write(req, chunk, n);
	}
	if (st->sent == st->total) {
		free(st);
		http_resp_end(req);
	}
}

static void big_closed(http_req *req)
{
	free(http_req_data(req));
}

static http_req *stream_req; /* /stream waits for the test to release its second half */

static void stream_closed(http_req *req)
{
	(void)req;
	stream_req = NULL;
}

static void on_stream_async(uv_async_t *a)
{
	(void)a;
	if (!stream_req)
		return;
	http_resp_write(stream_req, "second", 6);
	http_resp_end(stream_req);
	stream_req = NULL;
}

static void upstream_request(http_req *req, void *ctx)
{
	const char *name = ctx;
	const char *path = http_req_path(req);
	if (strcmp(path, "/who") == 0) {
		char out[1024];
#define H(n) (http_req_header(req, n) ? http_req_header(req, n) : "-")
		int n = snprintf(out, sizeof out, "%s %s %s conn=%s hop=%s custom=%s host=%s expect=%s keepalive=%s",
				 name, http_req_method(req), http_req_target(req), H("Connection"), H("X-Hop"),
				 H("X-Custom"), H("Host"), H("Expect"), H("Keep-Alive"));
#undef H
		http_header h[] = {{"Content-Type", "text/plain"}, {"X-Upstream", name}, {"Keep-Alive", "timeout=5"},
				   {"Connection", "X-Secret"}, {"X-Secret", "drop me"}};
		http_resp_start(req, 200, h, 5, n);
		http_resp_write(req, out, (size_t)n);
		http_resp_end(req);
		return;
	}
	if (strcmp(path, "/count") == 0) {
		struct count_state *st = calloc(1, sizeof *st);
		st->hash = 2166136261u;
		const char *te = http_req_header(req, "Transfer-Encoding");
		snprintf(st->te, sizeof st->te, "%s", te ? te : "-");
		http_req_set_data(req, st);
		http_req_stream_body(req, count_body);
		return;
	}
	if (strcmp(path, "/big") == 0) {
		char *n = http_req_query_param(req, "n"), *chunked = http_req_query_param(req, "chunked");
		struct big_state *st = calloc(1, sizeof *st);
		st->total = strtoull(n, NULL, 10);
		http_req_set_data(req, st);
		http_req_on_close(req, big_closed);
		http_resp_on_drain(req, big_pump);
		http_header h[] = {{"Content-Type", "application/octet-stream"}};
		http_resp_start(req, 200, h, 1, chunked ? -1 : (long long)st->total);
		free(n);
		free(chunked);
		if (strcmp(http_req_method(req), "HEAD") == 0) {
			free(st);
			http_resp_on_drain(req, NULL);
			http_req_on_close(req, NULL);
			http_resp_end(req);
			return;
		}
		big_pump(req);
		return;
	}
	if (strcmp(path, "/stream") == 0) {
		http_header h[] = {{"Content-Type", "application/connect+json"}};
		http_resp_start(req, 200, h, 1, -1);
		http_resp_write(req, "first", 5);
		stream_req = req;
		http_req_on_close(req, stream_closed);
		return;
	}
	if (strcmp(path, "/nocontent") == 0) {
		http_header h[] = {{"X-Upstream", name}};
		http_resp_start(req, 204, h, 1, -1);
		http_resp_end(req);
		return;
	}
	http_resp_error(req, 404, "%s: no route %s", name, path);
}

static void on_proxy_request(http_req *req, void *ctx)
{
	(void)ctx;
	proxy_handle(req);
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

/* ---- raw upstream (own thread, one connection at a time) ---- */

static char raw_last_head[8192];

static void write_str(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
}

static void *raw_serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(raw_listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char buf[8192];
		size_t len = 0;
		char *end = NULL;
		while (!end && len + 1 < sizeof buf) {
			ssize_t n = read(fd, buf + len, sizeof buf - len - 1);
			if (n <= 0)
				break;
			len += (size_t)n;
			buf[len] = '\0';
			end = strstr(buf, "\r\n\r\n");
		}
		if (!end) {
			close(fd);
			continue;
		}
		size_t head_len = (size_t)(end + 4 - buf);
		memcpy(raw_last_head, buf, head_len);
		raw_last_head[head_len] = '\0';
		if (strncmp(buf, "GET /eof ", 9) == 0) {
			/* no length: the body ends when the connection closes */
			write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-");
			usleep(20000);
			write_str(fd, "close");
		} else if (strncmp(buf, "GET /truncated ", 15) == 0) {
			write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
		} else if (strncmp(buf, "GET /continue ", 14) == 0) {
			write_str(fd, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
		} else if (strncmp(buf, "GET /ws ", 8) == 0) {
			write_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				      "Sec-WebSocket-Accept: xyz\r\n\r\nhello|");
			/* echo, starting with whatever followed the request head */
			if (len > head_len)
				assert_int_equal(write(fd, buf + head_len, len - head_len), (ssize_t)(len - head_len));
			for (;;) {
				ssize_t n = read(fd, buf, sizeof buf);
				if (n <= 0)
					break;
				assert_int_equal(write(fd, buf, (size_t)n), n);
			}
		} else if (strncmp(buf, "GET /ws-refused ", 16) == 0) {
			write_str(fd, "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno");
		}
		close(fd);
	}
}

/* ---- client side: blocking sockets, responses parsed with http_parser ---- */

struct client {
	int fd;
	char in[1 << 16];
	size_t in_len;
};

struct response {
	int status;
	char headers[8192]; /* "name: value\n" lines, names lowercased */
	size_t headers_len;
	char *body;
	size_t body_len, body_cap;
	int complete, head_request, last_was_value, eof;
	http_parser parser;
};

static int c_header_field(http_parser *p, const char *at, size_t len)
{
	struct response *r = p->data;
	if (r->last_was_value || r->headers_len == 0) {
		if (r->headers_len)
			r->headers[r->headers_len++] = '\n';
	}
	for (size_t i = 0; i < len && r->headers_len + 4 < sizeof r->headers; i++)
		r->headers[r->headers_len++] = (char)((at[i] >= 'A' && at[i] <= 'Z') ? at[i] + 32 : at[i]);
	r->last_was_value = 0;
	r->headers[r->headers_len] = '\0';
	return 0;
}

static int c_header_value(http_parser *p, const char *at, size_t len)
{
	struct response *r = p->data;
	if (!r->last_was_value) {
		memcpy(r->headers + r->headers_len, ": ", 2);
		r->headers_len += 2;
	}
	for (size_t i = 0; i < len && r->headers_len + 4 < sizeof r->headers; i++)
		r->headers[r->headers_len++] = at[i];
	r->last_was_value = 1;
	r->headers[r->headers_len] = '\0';
	return 0;
}

static int c_headers_complete(http_parser *p)
{
	struct response *r = p->data;
	r->status = p->status_code;
	if (r->headers_len + 2 < sizeof r->headers) {
		r->headers[r->headers_len++] = '\n';
		r->headers[r->headers_len] = '\0';
	}
	return r->head_request ? 1 : 0;
}

static int c_body(http_parser *p, const char *at, size_t len)
{
	struct response *r = p->data;
	if (r->body_len + len + 1 > r->body_cap) {
		r->body_cap = (r->body_len + len + 1) * 2;
		r->body = realloc(r->body, r->body_cap);
	}
	memcpy(r->body + r->body_len, at, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return 0;
}

static int c_complete(http_parser *p)
{
	struct response *r = p->data;
	r->complete = 1;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings client_settings = {
	.on_header_field = c_header_field,
	.on_header_value = c_header_value,
	.on_headers_complete = c_headers_complete,
	.on_body = c_body,
	.on_message_complete = c_complete,
};

static void client_open(struct client *c)
{
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	c->in_len = 0;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)proxy_port)};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	struct timeval tv = {.tv_sec = 10};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static void response_init(struct response *r, int head_request)
{
	memset(r, 0, sizeof *r);
	r->head_request = head_request;
	http_parser_init(&r->parser, HTTP_RESPONSE);
	r->parser.data = r;
}

static void response_free(struct response *r)
{
	free(r->body);
	r->body = NULL;
}

/* Feed the parser until the response is complete, or (needle) the body contains needle. */
static void response_read(struct client *c, struct response *r, const char *needle)
{
	for (;;) {
		if (c->in_len) {
			size_t used = http_parser_execute(&r->parser, &client_settings, c->in, c->in_len);
			enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
			assert_true(e == HPE_OK || e == HPE_PAUSED);
			memmove(c->in, c->in + used, c->in_len - used);
			c->in_len -= used;
		}
		if (r->complete || (needle && r->body && strstr(r->body, needle)))
			return;
		ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
		if (n <= 0) {
			r->eof = 1;
			http_parser_execute(&r->parser, &client_settings, NULL, 0);
			return;
		}
		c->in_len += (size_t)n;
	}
}

static void request(struct client *c, struct response *r, const char *text)
{
	write_str(c->fd, text);
	response_init(r, strncmp(text, "HEAD ", 5) == 0);
	response_read(c, r, NULL);
	assert_true(r->complete);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!hay || !strstr(hay, needle))
		fail_msg("expected '%s' in '%s'", needle, hay ? hay : "(null)");
}

/* ---- tests ---- */

static void test_header_routing(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[1024];
	client_open(&c);
	snprintf(req, sizeof req,
		 "GET /who?x=1 HTTP/1.1\r\nHost: localhost:%d\r\nE2b-Sandbox-Id: sbxa\r\nE2b-Sandbox-Port: %d\r\n"
		 "Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-Custom: yes\r\n"
		 "Proxy-Authorization: Basic eA==\r\n\r\n",
		 proxy_port, port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	char want[256];
	snprintf(want, sizeof want, "A GET /who?x=1 conn=close hop=- custom=yes host=localhost:%d expect=- keepalive=-",
		 proxy_port);
	assert_string_equal(r.body, want);
	assert_contains(r.headers, "x-upstream: A\n");
	assert_contains(r.headers, "content-length: ");
	assert_null(strstr(r.headers, "keep-alive"));
	assert_null(strstr(r.headers, "x-secret"));
	assert_null(strstr(r.headers, "connection"));
	response_free(&r);
	close(c.fd);
}

static void test_host_routing(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[512];
	client_open(&c);
	snprintf(req, sizeof req, "GET /who HTTP/1.1\r\nHost: %d-sbxb.localhost:%d\r\n\r\n", port_b, proxy_port);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_contains(r.body, "B GET /who");
	response_free(&r);
	/* legacy -<clientID> suffix, and only one routing header present: Host decides */
	snprintf(req, sizeof req, "GET /who HTTP/1.1\r\nHost: %d-sbxa-6532622b.localhost\r\nE2b-Sandbox-Port: 1\r\n\r\n",
		 port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_contains(r.body, "A GET /who");
	response_free(&r);
	close(c.fd);
}

static void test_keepalive_many_sandboxes(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[512];
	client_open(&c);
	int before = fake_socket_count();
	const char *ids[] = {"sbxa", "sbxb", "sbxa", "sbxb"};
	int ports[] = {port_a, port_b, port_a, port_b};
	for (int i = 0; i < 4; i++) {
		if (i % 2)
			snprintf(req, sizeof req, "GET /who?i=%d HTTP/1.1\r\nHost: %d-%s.localhost\r\n\r\n", i, ports[i],
				 ids[i]);
		else
			snprintf(req, sizeof req,
				 "GET /who?i=%d HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: %s\r\nE2b-Sandbox-Port: %d\r\n\r\n",
				 i, ids[i], ports[i]);
		request(&c, &r, req);
		assert_int_equal(r.status, 200);
		char want[64];
		snprintf(want, sizeof want, "%s GET /who?i=%d ", i % 2 ? "B" : "A", i);
		assert_contains(r.body, want);
		response_free(&r);
	}
	assert_int_equal(fake_socket_count() - before, 4);
	for (int i = 0; i < 4; i++)
		assert_string_equal(fake_socket_id(before + i), ids[i]);
	/* pipelined: both requests in one write */
	snprintf(req, sizeof req,
		 "GET /who?p=1 HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\nGET /who?p=2 HTTP/1.1\r\nHost: %d-sbxb.localhost\r\n\r\n",
		 port_a, port_b);
	write_str(c.fd, req);
	response_init(&r, 0);
	response_read(&c, &r, NULL);
	assert_contains(r.body, "A GET /who?p=1 ");
	response_free(&r);
	response_init(&r, 0);
	response_read(&c, &r, NULL);
	assert_contains(r.body, "B GET /who?p=2 ");
	response_free(&r);
	close(c.fd);
}

static void send_upload(struct client *c, size_t total, int chunked)
{
	char head[512];
	if (chunked)
		snprintf(head, sizeof head,
			 "POST /count HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nTransfer-Encoding: chunked\r\n\r\n", port_a);
	else
		snprintf(head, sizeof head, "POST /count HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nContent-Length: %zu\r\n\r\n",
			 port_a, total);
	write_str(c->fd, head);
	static char piece[70000];
	size_t sent = 0;
	while (sent < total) {
		size_t n = 1000 + (sent / 7) % 60000; /* irregular piece sizes */
		if (n > total - sent)
			n = total - sent;
		for (size_t i = 0; i < n; i++)
			piece[i] = (char)pattern(sent + i);
		if (chunked) {
			char size[32];
			snprintf(size, sizeof size, "%zx\r\n", n);
			write_str(c->fd, size);
		}
		assert_int_equal(write(c->fd, piece, n), (ssize_t)n);
		if (chunked)
			write_str(c->fd, "\r\n");
		sent += n;
	}
	if (chunked)
		write_str(c->fd, "0\r\n\r\n");
}

static unsigned pattern_hash(size_t total)
{
	unsigned h = 2166136261u;
	for (size_t i = 0; i < total; i++) {
		char ch = (char)pattern(i);
		h = fnv1a(h, &ch, 1);
	}
	return h;
}

static void check_upload(size_t total, int chunked)
{
	struct client c;
	struct response r;
	client_open(&c);
	send_upload(&c, total, chunked);
	response_init(&r, 0);
	response_read(&c, &r, NULL);
	assert_true(r.complete);
	assert_int_equal(r.status, 200);
	char want[128];
	snprintf(want, sizeof want, "len=%zu hash=%08x te=%s", total, pattern_hash(total), chunked ? "chunked" : "-");
	assert_string_equal(r.body, want);
	response_free(&r);
	/* the connection is still usable */
	char req[256];
	snprintf(req, sizeof req, "GET /who HTTP/1.1\r\nHost: %d-sbxb.localhost\r\n\r\n", port_b);
	request(&c, &r, req);
	assert_contains(r.body, "B GET /who");
	response_free(&r);
	close(c.fd);
}

static void test_chunked_upload(void **state)
{
	(void)state;
	check_upload(5 * 1024 * 1024 + 3, 1);
	check_upload(0, 1);
}

static void test_large_upload(void **state)
{
	(void)state;
	check_upload(20 * 1024 * 1024 + 17, 0);
}

static void check_download(size_t total, int chunked)
{
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "GET /big?n=%zu%s HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", total,
		 chunked ? "&chunked=1" : "", port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_contains(r.headers, chunked ? "transfer-encoding: chunked\n" : "content-length: ");
	assert_int_equal(r.body_len, total);
	for (size_t i = 0; i < total; i++)
		if ((unsigned char)r.body[i] != pattern(i))
			fail_msg("byte %zu differs", i);
	response_free(&r);
	close(c.fd);
}

static void test_large_download(void **state)
{
	(void)state;
	check_download(20 * 1024 * 1024 + 5, 0);
	check_download(3 * 1024 * 1024 + 1, 1);
}

static void test_head_and_204(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "HEAD /big?n=12345 HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_contains(r.headers, "content-length: 12345\n");
	assert_int_equal(r.body_len, 0);
	response_free(&r);
	snprintf(req, sizeof req, "GET /nocontent HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 204);
	assert_contains(r.headers, "x-upstream: A\n");
	response_free(&r);
	/* nothing stray was left on the connection */
	snprintf(req, sizeof req, "GET /who HTTP/1.1\r\nHost: %d-sbxb.localhost\r\n\r\n", port_b);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_contains(r.body, "B GET /who");
	response_free(&r);
	close(c.fd);
}

/* A long-lived stream must reach the client piece by piece, not when it ends. */
static void test_stream_flushes(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "POST /stream HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nContent-Length: 0\r\n\r\n", port_a);
	write_str(c.fd, req);
	response_init(&r, 0);
	response_read(&c, &r, "first");
	assert_false(r.complete);
	assert_false(r.eof);
	assert_string_equal(r.body, "first");
	uv_async_send(&stream_async);
	response_read(&c, &r, NULL);
	assert_true(r.complete);
	assert_string_equal(r.body, "firstsecond");
	response_free(&r);
	close(c.fd);
}

static void test_close_delimited_and_interim(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "GET /eof HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nExpect: 100-continue\r\n\r\n", port_raw);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "until-close");
	assert_contains(r.headers, "transfer-encoding: chunked\n");
	assert_contains(raw_last_head, "Connection: close\r\n");
	assert_null(strstr(raw_last_head, "Expect"));
	response_free(&r);
	snprintf(req, sizeof req, "GET /continue HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", port_raw);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "ok");
	response_free(&r);
	close(c.fd);
}

static void test_upstream_dies_mid_response(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "GET /truncated HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", port_raw);
	write_str(c.fd, req);
	response_init(&r, 0);
	response_read(&c, &r, NULL);
	/* the status went out already; the only signal left is the closed connection */
	assert_int_equal(r.status, 200);
	assert_false(r.complete);
	assert_true(r.eof);
	assert_string_equal(r.body, "short");
	response_free(&r);
	close(c.fd);
}

static void check_502(const char *req_fmt, int port, const char *id, const char *message, int want_port)
{
	struct client c;
	struct response r;
	char req[512];
	client_open(&c);
	snprintf(req, sizeof req, req_fmt, port);
	request(&c, &r, req);
	assert_int_equal(r.status, 502);
	assert_contains(r.headers, "content-type: application/json");
	char want[256];
	if (want_port)
		snprintf(want, sizeof want, "{\"sandboxId\":\"%s\",\"message\":\"%s\",\"port\":%d,\"code\":502}", id, message,
			 want_port);
	else
		snprintf(want, sizeof want, "{\"sandboxId\":\"%s\",\"message\":\"%s\",\"code\":502}", id, message);
	assert_string_equal(r.body, want);
	response_free(&r);
	close(c.fd);
}

static void test_errors(void **state)
{
	(void)state;
	check_502("GET / HTTP/1.1\r\nHost: %d-nosuch.localhost\r\n\r\n", 49983, "nosuch", "The sandbox was not found", 0);
	check_502("GET / HTTP/1.1\r\nHost: %d-sbxgone.localhost\r\n\r\n", 49983, "sbxgone", "The sandbox was not found", 0);
	check_502("GET / HTTP/1.1\r\nHost: h\r\nE2b-Sandbox-Id: sbxa\r\nE2b-Sandbox-Port: %d\r\n\r\n", port_closed, "sbxa",
		  "The sandbox is running but port is not open", port_closed);
	/* unknown sandbox with a body that is never read: answered, then the connection closes */
	check_502("POST / HTTP/1.1\r\nHost: %d-nosuch.localhost\r\nContent-Length: 5\r\n\r\nhello", 1, "nosuch",
		  "The sandbox was not found", 0);

	struct client c;
	struct response r;
	client_open(&c);
	request(&c, &r, "GET / HTTP/1.1\r\nHost: localhost:3001\r\n\r\n");
	assert_int_equal(r.status, 400);
	assert_string_equal(r.body, "{\"code\":400,\"message\":\"Invalid host\"}");
	response_free(&r);
	request(&c, &r, "GET / HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: sbxa\r\nE2b-Sandbox-Port: nope\r\n\r\n");
	assert_int_equal(r.status, 400);
	assert_string_equal(r.body, "{\"code\":400,\"message\":\"Invalid sandbox port\"}");
	response_free(&r);
	close(c.fd);
}

static void test_upgrade_tunnel(void **state)
{
	(void)state;
	struct client c;
	char req[512];
	client_open(&c);
	/* bytes right after the head ("early") must reach the upstream too */
	snprintf(req, sizeof req,
		 "GET /ws HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
		 "Sec-WebSocket-Key: abc\r\n\r\nearly|",
		 port_raw);
	write_str(c.fd, req);
	char buf[4096] = "";
	size_t len = 0;
	while (!strstr(buf, "early|")) {
		ssize_t n = read(c.fd, buf + len, sizeof buf - len - 1);
		assert_true(n > 0);
		len += (size_t)n;
		buf[len] = '\0';
	}
	assert_true(strncmp(buf, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
	assert_contains(buf, "Upgrade: websocket\r\n");
	assert_contains(buf, "Connection: Upgrade\r\n");
	assert_contains(buf, "Sec-WebSocket-Accept: xyz\r\n\r\nhello|early|");
	assert_contains(raw_last_head, "Upgrade: websocket\r\n");
	assert_contains(raw_last_head, "Connection: Upgrade\r\n");
	assert_contains(raw_last_head, "Sec-WebSocket-Key: abc\r\n");
	/* raw both ways, including a large burst */
	static char big[3 << 20];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)pattern(i);
	size_t sent = 0, got = 0;
	static char back[sizeof big];
	while (got < sizeof big) {
		if (sent < sizeof big) {
			ssize_t n = send(c.fd, big + sent, sizeof big - sent > 65536 ? 65536 : sizeof big - sent, MSG_DONTWAIT);
			if (n > 0)
				sent += (size_t)n;
		}
		ssize_t n = recv(c.fd, back + got, sizeof back - got, sent < sizeof big ? MSG_DONTWAIT : 0);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			fail_msg("tunnel closed early");
		else if (errno != EAGAIN && errno != EWOULDBLOCK)
			fail_msg("recv: %s", strerror(errno));
	}
	assert_memory_equal(back, big, sizeof big);
	/* half-close travels through: the upstream sees EOF, closes, and so does the tunnel */
	shutdown(c.fd, SHUT_WR);
	assert_int_equal(read(c.fd, buf, sizeof buf), 0);
	close(c.fd);
}

static void test_upgrade_refused(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[512];
	client_open(&c);
	snprintf(req, sizeof req,
		 "GET /ws-refused HTTP/1.1\r\nHost: %d-sbxa.localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		 port_raw);
	request(&c, &r, req);
	assert_int_equal(r.status, 403);
	assert_string_equal(r.body, "no");
	response_free(&r);
	close(c.fd);
}

/* A client that vanishes mid-download must not disturb the proxy. */
static void test_client_vanishes(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	char req[256];
	client_open(&c);
	snprintf(req, sizeof req, "GET /big?n=%d HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", 50 << 20, port_a);
	write_str(c.fd, req);
	char buf[1024];
	assert_true(read(c.fd, buf, sizeof buf) > 0);
	close(c.fd);
	usleep(100000);
	client_open(&c);
	snprintf(req, sizeof req, "GET /who HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", port_a);
	request(&c, &r, req);
	assert_int_equal(r.status, 200);
	response_free(&r);
	close(c.fd);
}

/* Many clients at once, each mixing uploads, downloads and sandboxes on its connection. */
static void *concurrent_client(void *arg)
{
	long id = (long)arg, errors = 0;
	struct client *c = calloc(1, sizeof *c);
	struct response *r = calloc(1, sizeof *r);
	client_open(c);
	for (int round = 0; round < 6; round++) {
		char req[512];
		size_t n = 100000 + (size_t)id * 1000 + (size_t)round;
		int kind = (int)((id + round) % 3);
		if (kind == 0)
			snprintf(req, sizeof req, "GET /big?n=%zu HTTP/1.1\r\nHost: %d-sbxa.localhost\r\n\r\n", n, port_a);
		else if (kind == 1)
			snprintf(req, sizeof req, "GET /big?n=%zu&chunked=1 HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: sbxb\r\n"
				 "E2b-Sandbox-Port: %d\r\n\r\n", n, port_b);
		else
			snprintf(req, sizeof req, "GET /who?c=%ld HTTP/1.1\r\nHost: %d-sbxb.localhost\r\n\r\n", id, port_b);
		if (write(c->fd, req, strlen(req)) != (ssize_t)strlen(req)) {
			errors++;
			break;
		}
		response_init(r, 0);
		response_read(c, r, NULL);
		if (!r->complete || r->status != 200)
			errors++;
		else if (kind < 2 && r->body_len != n)
			errors++;
		else if (kind < 2)
			for (size_t i = 0; i < n; i++)
				if ((unsigned char)r->body[i] != pattern(i)) {
					errors++;
					break;
				}
		response_free(r);
	}
	close(c->fd);
	free(c);
	free(r);
	return (void *)errors;
}

static void test_concurrent_clients(void **state)
{
	(void)state;
	pthread_t t[16];
	for (long i = 0; i < 16; i++)
		pthread_create(&t[i], NULL, concurrent_client, (void *)i);
	long errors = 0;
	for (int i = 0; i < 16; i++) {
		void *e;
		pthread_join(t[i], &e);
		errors += (long)e;
	}
	assert_int_equal(errors, 0);
}

static void test_connect_method_refused(void **state)
{
	(void)state;
	struct client c;
	struct response r;
	client_open(&c);
	request(&c, &r, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 22-sbxa.localhost\r\n\r\n");
	assert_int_equal(r.status, 405);
	response_free(&r);
	close(c.fd);
}

/* Every exchange owns a timer: none may be left once all clients are gone. */
static uv_async_t count_async;
static volatile int timers_left = -1;

static void count_timer(uv_handle_t *h, void *arg)
{
	if (h->type == UV_TIMER && !uv_is_closing(h))
		(*(int *)arg)++;
}

static void on_count_async(uv_async_t *a)
{
	(void)a;
	int n = 0;
	uv_walk(&loop, count_timer, &n);
	timers_left = n;
}

static void test_no_exchange_left(void **state)
{
	(void)state;
	usleep(300000);
	uv_async_send(&count_async);
	for (int i = 0; i < 100 && timers_left < 0; i++)
		usleep(10000);
	assert_int_equal(timers_left, 0);
}

/* ---- fixture ---- */

static int listen_loopback(int *port_out)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	socklen_t sl = sizeof sa;
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		return -1;
	*port_out = ntohs(sa.sin_port);
	return fd;
}

static int start_server(http_request_cb cb, void *ctx)
{
	cube_err err = {0};
	http_server *srv = http_server_new(&loop, cb, ctx);
	if (http_server_listen_tcp(srv, "127.0.0.1:0", &err) < 0) {
		fprintf(stderr, "listen: %s\n", err.msg);
		return -1;
	}
	return http_server_port(srv);
}

static int setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&loop);
	uv_async_init(&loop, &stop_async, on_stop);
	uv_async_init(&loop, &stream_async, on_stream_async);
	uv_async_init(&loop, &count_async, on_count_async);
	struct proxy_config cfg = {.domain = "localhost"};
	proxy_init(&loop, &cfg);
	proxy_port = start_server(on_proxy_request, NULL);
	port_a = start_server(upstream_request, "A");
	port_b = start_server(upstream_request, "B");
	raw_listen_fd = listen_loopback(&port_raw);
	listen(raw_listen_fd, 16);
	int closed_fd = listen_loopback(&port_closed); /* bound, never listening: connect is refused */
	(void)closed_fd;
	if (proxy_port <= 0 || port_a <= 0 || port_b <= 0 || raw_listen_fd < 0)
		return -1;
	pthread_create(&loop_thread, NULL, serve, NULL);
	pthread_create(&raw_thread, NULL, raw_serve, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uv_async_send(&stop_async);
	pthread_join(loop_thread, NULL);
	shutdown(raw_listen_fd, SHUT_RDWR);
	pthread_join(raw_thread, NULL);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_routing),
		cmocka_unit_test(test_host_routing),
		cmocka_unit_test(test_keepalive_many_sandboxes),
		cmocka_unit_test(test_chunked_upload),
		cmocka_unit_test(test_large_upload),
		cmocka_unit_test(test_large_download),
		cmocka_unit_test(test_head_and_204),
		cmocka_unit_test(test_stream_flushes),
		cmocka_unit_test(test_close_delimited_and_interim),
		cmocka_unit_test(test_upstream_dies_mid_response),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_upgrade_tunnel),
		cmocka_unit_test(test_upgrade_refused),
		cmocka_unit_test(test_client_vanishes),
		cmocka_unit_test(test_concurrent_clients),
		cmocka_unit_test(test_connect_method_refused),
		cmocka_unit_test(test_no_exchange_left),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
