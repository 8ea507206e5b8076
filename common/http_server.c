/* HTTP/1.1 server: connections, request parsing with http_parser, streamed bodies, streamed responses.
 * One request is active per connection; pipelined requests wait (the parser is paused) until the
 * active one has both been read and answered. */
#include "common/http_server.h"
#include "common/log.h"
#include "common/util.h"

#include <jansson.h>

#include <ctype.h>
#include <limits.h>
#include <http_parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (64 * 1024)
#define MAX_HEADERS 128

enum body_mode { BODY_NONE, BODY_BUFFER, BODY_STREAM, BODY_DISCARD };

typedef struct http_conn http_conn;

struct http_server {
	uv_loop_t *loop;
	http_request_cb on_request;
	void *ctx;
	uv_stream_t *listeners[4];
	int nlisteners;
	int port;
	const http_header *default_headers; /* added to every response (e.g. envd's CORS headers) */
	size_t ndefault_headers;
	http_response_cb on_response;       /* observer of every response (metrics) */
	void *on_response_ctx;
};

struct http_req {
	http_conn *conn;
	char *target;
	size_t target_len;
	char *path, *query;
	char *names[MAX_HEADERS], *values[MAX_HEADERS];
	size_t nheaders;
	int last_was_value;
	size_t head_bytes;
	int upgrade, http_minor, keep_alive, has_body, is_head;

	enum body_mode mode;
	http_body_cb body_cb;
	http_chunk_cb chunk_cb;
	size_t body_max;
	char *body;
	size_t body_len, body_cap;
	int body_too_large;
	int paused;
	char *held;
	size_t held_len;
	int end_pending;   /* message completed while body delivery was held */
	int end_delivered;

	int msg_complete;
	int resp_started, resp_ended, chunked;
	size_t pending;
	http_req_cb drain_cb, close_cb;
	void *data;
	int in_drain;
	uint64_t t0_ns;    /* first byte of the request (uv_hrtime) */
};

struct http_conn {
	http_server *srv;
	uv_stream_t *stream;
	http_parser parser;
	http_req *req;
	char *in;
	size_t in_len, in_cap;
	int reading, closing, parser_paused, is_unix, processing;
	long peer_uid;
	int close_after;   /* close once the active response is flushed */
	size_t writes_in_flight;
};

typedef struct {
	uv_write_t w;
	http_conn *conn;
	http_req *req;   /* may be NULL when the req is gone */
	size_t len;
	char data[];
} write_op;

static void conn_close(http_conn *c);
static void conn_process(http_conn *c);
static void conn_update_reading(http_conn *c);

/* ---- request helpers ---- */

static void req_free(http_req *r)
{
	if (!r)
		return;
	free(r->target);
	free(r->path);
	free(r->query);
	for (size_t i = 0; i < r->nheaders; i++) {
		free(r->names[i]);
		free(r->values[i]);
	}
	free(r->body);
	free(r->held);
	free(r);
}

static int append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = *cap ? *cap : 256;
		while (nc < *len + n + 1)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static int append_str(char **s, const char *data, size_t n)
{
	size_t len = *s ? strlen(*s) : 0, cap = *s ? len + 1 : 0;
	return append(s, &len, &cap, data, n);
}

/* The active request is finished when it was read completely and answered completely. */
static void req_maybe_finish(http_conn *c)
{
	http_req *r = c->req;
	if (!r || !r->msg_complete || !r->resp_ended || r->pending)
		return;
	c->req = NULL;
	req_free(r);
	if (c->close_after) {
		conn_close(c);
		return;
	}
	if (c->parser_paused) {
		http_parser_pause(&c->parser, 0);
		c->parser_paused = 0;
	}
	conn_process(c);
}

/* ---- parser callbacks ---- */

static http_req *cur(http_parser *p)
{
	return ((http_conn *)p->data)->req;
}

static int on_message_begin(http_parser *p)
{
	http_conn *c = p->data;
	http_req *r = calloc(1, sizeof *r);
	if (!r)
		return -1;
	r->conn = c;
	r->t0_ns = uv_hrtime();
	c->req = r;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	http_req *r = cur(p);
	r->head_bytes += len;
	if (r->head_bytes > MAX_HEAD_BYTES)
		return -1;
	size_t cap = r->target ? r->target_len + 1 : 0;
	return append(&r->target, &r->target_len, &cap, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	http_req *r = cur(p);
	r->head_bytes += len;
	if (r->head_bytes > MAX_HEAD_BYTES)
		return -1;
	if (r->last_was_value || r->nheaders == 0) {
		if (r->nheaders == MAX_HEADERS)
			return -1;
		r->nheaders++;
		r->last_was_value = 0;
	}
	return append_str(&r->names[r->nheaders - 1], at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	http_req *r = cur(p);
	r->head_bytes += len;
	if (r->head_bytes > MAX_HEAD_BYTES || r->nheaders == 0)
		return -1;
	r->last_was_value = 1;
	return append_str(&r->values[r->nheaders - 1], at, len);
}

static int on_headers_complete(http_parser *p)
{
	http_conn *c = p->data;
	http_req *r = c->req;
	for (size_t i = 0; i < r->nheaders; i++)
		if (!r->values[i])
			r->values[i] = strdup("");
	if (!r->target)
		r->target = strdup("/");
	const char *q = strchr(r->target, '?');
	r->path = q ? strndup(r->target, (size_t)(q - r->target)) : strdup(r->target);
	r->query = strdup(q ? q + 1 : "");
	r->upgrade = p->upgrade;
	r->is_head = p->method == HTTP_HEAD;
	r->http_minor = p->http_minor;
	r->keep_alive = http_should_keep_alive(p);
	r->has_body = (p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX);
	if (!r->keep_alive)
		c->close_after = 1;
	c->srv->on_request(r, c->srv->ctx);
	return 0;
}

static void deliver_end(http_req *r)
{
	if (r->end_delivered)
		return;
	r->end_delivered = 1;
	if (r->mode == BODY_STREAM && r->chunk_cb)
		r->chunk_cb(r, NULL, 0);
	else if (r->mode == BODY_BUFFER && r->body_cb && !r->body_too_large) {
		if (!r->body && append(&r->body, &r->body_len, &r->body_cap, "", 0) < 0)
			r->body_cb(r, NULL, 0, 500);
		else
			r->body_cb(r, r->body, r->body_len, 0);
	}
}

static void feed_body(http_req *r, const char *at, size_t len)
{
	switch (r->mode) {
	case BODY_DISCARD:
		return;
	case BODY_BUFFER:
		if (r->body_too_large)
			return;
		if (r->body_len + len > r->body_max) {
			r->body_too_large = 1;
			free(r->body);
			r->body = NULL;
			r->body_len = r->body_cap = 0;
			if (r->body_cb)
				r->body_cb(r, NULL, 0, 413);
			return;
		}
		append(&r->body, &r->body_len, &r->body_cap, at, len);
		return;
	case BODY_STREAM:
		if (!r->paused) {
			r->chunk_cb(r, at, len);
			return;
		}
		/* hold while paused */
		__attribute__((fallthrough));
	case BODY_NONE: {
		size_t cap = r->held ? r->held_len + 1 : 0;
		append(&r->held, &r->held_len, &cap, at, len);
		return;
	}
	}
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	feed_body(cur(p), at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	http_conn *c = p->data;
	http_req *r = c->req;
	r->msg_complete = 1;
	if (r->mode == BODY_NONE || (r->mode == BODY_STREAM && (r->paused || r->held_len)))
		r->end_pending = 1;
	else
		deliver_end(r);
	/* Hold pipelined requests until this one is answered. */
	if (c->req == r && !(r->resp_ended && !r->pending)) {
		http_parser_pause(p, 1);
		c->parser_paused = 1;
	}
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- connection I/O ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[64 * 1024];
	buf->base = slab;
	buf->len = sizeof slab;
}

static void write_raw(http_conn *c, http_req *r, const char *data, size_t len);

static void send_bad_request(http_conn *c, int status, const char *msg)
{
	char body[256], head[512];
	int bl = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", status, msg);
	int hl = snprintf(head, sizeof head,
			  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
			  "Connection: close\r\n\r\n",
			  status, http_status_text(status), bl);
	write_raw(c, NULL, head, (size_t)hl);
	write_raw(c, NULL, body, (size_t)bl);
	c->close_after = 1;
}

static void conn_process(http_conn *c)
{
	if (c->processing || c->closing)
		return;
	c->processing = 1;
	while (c->in_len > 0 && !c->closing && !c->parser_paused) {
		size_t n = http_parser_execute(&c->parser, &parser_settings, c->in, c->in_len);
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
		if (c->closing)
			break;
		if (n > c->in_len)
			n = c->in_len;
		memmove(c->in, c->in + n, c->in_len - n);
		c->in_len -= n;
		if (e == HPE_PAUSED)
			break;
		if (e != HPE_OK) {
			http_req *r = c->req;
			if (r && r->resp_started) {
				conn_close(c);
				break;
			}
			int status = (r && r->head_bytes > MAX_HEAD_BYTES) ? 431 : 400;
			if (r) {
				c->req = NULL;
				if (r->close_cb)
					r->close_cb(r);
				req_free(r);
			}
			send_bad_request(c, status, http_errno_description(e));
			c->in_len = 0;
			break;
		}
		if (c->parser.upgrade && c->req) {
			break; /* the rest belongs to the upgraded protocol; handler detaches */
		}
		if (n == 0)
			break;
	}
	c->processing = 0;
	if (!c->closing)
		conn_update_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	http_conn *c = s->data;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	size_t cap = c->in_cap;
	if (append(&c->in, &c->in_len, &cap, buf->base, (size_t)nread) < 0) {
		conn_close(c);
		return;
	}
	c->in_cap = cap;
	conn_process(c);
}

static void conn_update_reading(http_conn *c)
{
	http_req *r = c->req;
	/* Keep reading while a response is pending (pipelined bytes just queue up, bounded) so a
	 * client that hangs up is noticed and the handler's close callback runs. */
	int want = !c->closing && c->in_len < MAX_HEAD_BYTES * 4;
	if (r && (r->mode == BODY_NONE || r->paused) && !r->msg_complete)
		want = 0;
	if (r && r->upgrade)
		want = 0;
	if (want && !c->reading) {
		if (uv_read_start(c->stream, alloc_cb, on_read) == 0)
			c->reading = 1;
	} else if (!want && c->reading) {
		uv_read_stop(c->stream);
		c->reading = 0;
	}
}

static void on_conn_closed(uv_handle_t *h)
{
	http_conn *c = h->data;
	free(h);
	if (c) {
		free(c->in);
		free(c);
	}
}

static void conn_close(http_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	http_req *r = c->req;
	c->req = NULL;
	if (r) {
		if (!r->resp_ended && r->close_cb)
			r->close_cb(r);
		req_free(r);
	}
	uv_close((uv_handle_t *)c->stream, on_conn_closed);
}

static void on_write_done(uv_write_t *w, int status)
{
	write_op *op = (write_op *)w;
	http_conn *c = op->conn;
	http_req *r = op->req;
	c->writes_in_flight--;
	if (c->closing) {
		free(op);
		return;
	}
	if (status < 0) {
		free(op);
		conn_close(c);
		return;
	}
	if (r && c->req == r) {
		r->pending -= op->len;
		if (r->pending == 0) {
			if (r->resp_ended) {
				free(op);
				req_maybe_finish(c);
				return;
			}
			if (r->drain_cb && !r->in_drain) {
				r->in_drain = 1;
				r->drain_cb(r);
				if (c->req == r)
					r->in_drain = 0;
			}
		}
	} else if (!c->req && c->close_after && c->writes_in_flight == 0) {
		free(op);
		conn_close(c);
		return;
	}
	free(op);
}

static void write_raw(http_conn *c, http_req *r, const char *data, size_t len)
{
	if (c->closing || len == 0)
		return;
	write_op *op = malloc(sizeof *op + len);
	if (!op) {
		conn_close(c);
		return;
	}
	op->conn = c;
	op->req = r;
	op->len = len;
	memcpy(op->data, data, len);
	uv_buf_t b = uv_buf_init(op->data, (unsigned)len);
	if (r)
		r->pending += len;
	c->writes_in_flight++;
	if (uv_write(&op->w, c->stream, &b, 1, on_write_done) < 0) {
		c->writes_in_flight--;
		if (r)
			r->pending -= len;
		free(op);
		conn_close(c);
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	http_server *srv = server->data;
	if (status < 0)
		return;
	int is_unix = server->type == UV_NAMED_PIPE;
	uv_stream_t *client;
	if (is_unix) {
		uv_pipe_t *p = malloc(sizeof *p);
		if (!p)
			return;
		uv_pipe_init(srv->loop, p, 0);
		client = (uv_stream_t *)p;
	} else {
		uv_tcp_t *t = malloc(sizeof *t);
		if (!t)
			return;
		uv_tcp_init(srv->loop, t);
		client = (uv_stream_t *)t;
	}
	http_conn *c = calloc(1, sizeof *c);
	if (!c) {
		client->data = NULL;
		uv_close((uv_handle_t *)client, on_conn_closed);
		return;
	}
	client->data = c;
	c->srv = srv;
	c->stream = client;
	c->is_unix = is_unix;
	c->peer_uid = -1;
	if (uv_accept(server, client) < 0) {
		uv_close((uv_handle_t *)client, on_conn_closed);
		return;
	}
	if (is_unix) {
		uv_os_fd_t fd;
		struct ucred cred;
		socklen_t cl = sizeof cred;
		if (uv_fileno((uv_handle_t *)client, &fd) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
			c->peer_uid = (long)cred.uid;
	} else {
		uv_tcp_nodelay((uv_tcp_t *)client, 1);
	}
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	conn_update_reading(c);
}

/* ---- server ---- */

http_server *http_server_new(uv_loop_t *loop, http_request_cb on_request, void *ctx)
{
	http_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return NULL;
	srv->loop = loop;
	srv->on_request = on_request;
	srv->ctx = ctx;
	return srv;
}

void http_server_on_response(http_server *srv, http_response_cb cb, void *ctx)
{
	srv->on_response = cb;
	srv->on_response_ctx = ctx;
}

static int parse_host_port(const char *hp, struct sockaddr_storage *ss, cube_err *err)
{
	char host[256];
	const char *colon = strrchr(hp, ':');
	if (!colon)
		return cube_fail(err, 400, 0, "address '%s' must be HOST:PORT", hp);
	size_t hl = (size_t)(colon - hp);
	if (hl >= sizeof host)
		return cube_fail(err, 400, 0, "address '%s' too long", hp);
	memcpy(host, hp, hl);
	host[hl] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return cube_fail(err, 400, 0, "bad port in '%s'", hp);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) == 0)
			return 0;
	} else if (uv_ip4_addr(hl ? host : "0.0.0.0", (int)port, (struct sockaddr_in *)ss) == 0) {
		return 0;
	}
	if (strcmp(host, "localhost") == 0 && uv_ip4_addr("127.0.0.1", (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	return cube_fail(err, 400, 0, "bad host in '%s' (use an IP address)", hp);
}

int http_server_listen_tcp(http_server *srv, const char *host_port, cube_err *err)
{
	struct sockaddr_storage ss;
	if (srv->nlisteners == (int)CUBE_ARRAY_LEN(srv->listeners))
		return cube_fail(err, 500, 0, "too many listeners");
	if (parse_host_port(host_port, &ss, err) < 0)
		return -1;
	uv_tcp_t *t = malloc(sizeof *t);
	if (!t)
		return cube_fail(err, 500, ENOMEM, "listen");
	uv_tcp_init(srv->loop, t);
	t->data = srv;
	int rc = uv_tcp_bind(t, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)t, 511, on_connection);
	if (rc < 0) {
		uv_close((uv_handle_t *)t, (uv_close_cb)free);
		return cube_fail(err, 500, 0, "listen on %s: %s", host_port, uv_strerror(rc));
	}
	struct sockaddr_storage bound;
	int blen = sizeof bound;
	if (uv_tcp_getsockname(t, (struct sockaddr *)&bound, &blen) == 0)
		srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
							      : ((struct sockaddr_in *)&bound)->sin_port);
	srv->listeners[srv->nlisteners++] = (uv_stream_t *)t;
	return 0;
}

int http_server_listen_unix(http_server *srv, const char *path, cube_err *err)
{
	if (srv->nlisteners == (int)CUBE_ARRAY_LEN(srv->listeners))
		return cube_fail(err, 500, 0, "too many listeners");
	uv_pipe_t *p = malloc(sizeof *p);
	if (!p)
		return cube_fail(err, 500, ENOMEM, "listen");
	uv_pipe_init(srv->loop, p, 0);
	p->data = srv;
	unlink(path);
	mode_t old = umask(0177);
	int rc = uv_pipe_bind(p, path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)p, 128, on_connection);
	if (rc < 0) {
		uv_close((uv_handle_t *)p, (uv_close_cb)free);
		return cube_fail(err, 500, 0, "listen on %s: %s", path, uv_strerror(rc));
	}
	srv->listeners[srv->nlisteners++] = (uv_stream_t *)p;
	return 0;
}

void http_server_set_default_headers(http_server *srv, const http_header *headers, size_t n)
{
	srv->default_headers = headers;
	srv->ndefault_headers = n;
}

int http_server_port(http_server *srv)
{
	return srv->port;
}

void http_server_close(http_server *srv)
{
	for (int i = 0; i < srv->nlisteners; i++)
		uv_close((uv_handle_t *)srv->listeners[i], (uv_close_cb)free);
	srv->nlisteners = 0;
}

/* ---- request accessors ---- */

const char *http_req_method(http_req *r) { return http_method_str((enum http_method)r->conn->parser.method); }
const char *http_req_target(http_req *r) { return r->target; }
const char *http_req_path(http_req *r) { return r->path; }
const char *http_req_query(http_req *r) { return r->query; }
size_t http_req_header_count(http_req *r) { return r->nheaders; }
int http_req_http_minor(http_req *r) { return r->http_minor; }
int http_req_is_upgrade(http_req *r) { return r->upgrade; }
int http_req_has_body(http_req *r) { return r->has_body; }
void http_req_set_data(http_req *r, void *data) { r->data = data; }
void *http_req_data(http_req *r) { return r->data; }
long http_req_peer_uid(http_req *r) { return r->conn->peer_uid; }

const char *http_req_header(http_req *r, const char *name)
{
	for (size_t i = 0; i < r->nheaders; i++)
		if (r->names[i] && strcasecmp(r->names[i], name) == 0)
			return r->values[i];
	return NULL;
}

void http_req_header_at(http_req *r, size_t i, const char **name, const char **value)
{
	*name = r->names[i];
	*value = r->values[i];
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

char *http_url_decode(const char *s, size_t len, int form)
{
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
		    hexval((unsigned char)s[i + 2]) >= 0) {
			out[o++] = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
			i += 2;
		} else if (form && s[i] == '+') {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

char *http_query_get(const char *query, const char *name)
{
	size_t nl = strlen(name);
	const char *q = query;
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t seg = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', seg);
		size_t kl = eq ? (size_t)(eq - q) : seg;
		char *key = http_url_decode(q, kl, 1);
		int match = key && strlen(key) == nl && memcmp(key, name, nl) == 0;
		free(key);
		if (match)
			return eq ? http_url_decode(eq + 1, seg - kl - 1, 1) : strdup("");
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

char *http_req_query_param(http_req *r, const char *name)
{
	return http_query_get(r->query, name);
}

/* ---- request body ---- */

static void flush_held(http_req *r)
{
	http_conn *c = r->conn;
	while (r->held_len && !r->paused && r->mode != BODY_NONE && c->req == r) {
		char *h = r->held;
		size_t hl = r->held_len;
		r->held = NULL;
		r->held_len = 0;
		feed_body(r, h, hl);
		free(h);
	}
	if (c->req == r && r->end_pending && !r->paused && !r->held_len && r->mode != BODY_NONE) {
		r->end_pending = 0;
		deliver_end(r);
	}
}

static void set_mode(http_req *r, enum body_mode mode)
{
	http_conn *c = r->conn;
	r->mode = mode;
	flush_held(r);
	if (c->req == r && !c->closing)
		conn_update_reading(c);
}

void http_req_read_body(http_req *r, size_t max_bytes, http_body_cb cb)
{
	r->body_max = max_bytes;
	r->body_cb = cb;
	set_mode(r, BODY_BUFFER);
}

void http_req_stream_body(http_req *r, http_chunk_cb cb)
{
	r->chunk_cb = cb;
	set_mode(r, BODY_STREAM);
}

void http_req_pause_body(http_req *r)
{
	r->paused = 1;
	conn_update_reading(r->conn);
}

void http_req_resume_body(http_req *r)
{
	if (!r->paused)
		return;
	r->paused = 0;
	flush_held(r);
	if (r->conn->req == r)
		conn_update_reading(r->conn);
}

/* ---- response ---- */

void http_resp_start(http_req *r, int status, const http_header *headers, size_t n, long long content_length)
{
	http_conn *c = r->conn;
	if (r->resp_started)
		return;
	r->resp_started = 1;
	if (c->srv->on_response)
		c->srv->on_response(r, status, (double)(uv_hrtime() - r->t0_ns) / 1e9, c->srv->on_response_ctx);
	char *head = NULL;
	size_t len = 0, cap = 0;
	char line[512];
	int l = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
	append(&head, &len, &cap, line, (size_t)l);
	const http_server *srv = c->srv;
	for (size_t i = 0; i < n + srv->ndefault_headers; i++) {
		const http_header *h = i < n ? &headers[i] : &srv->default_headers[i - n];
		append(&head, &len, &cap, h->name, strlen(h->name));
		append(&head, &len, &cap, ": ", 2);
		append(&head, &len, &cap, h->value, strlen(h->value));
		append(&head, &len, &cap, "\r\n", 2);
	}
	if (status == 101) {
		/* the upgrade handler owns framing */
	} else if (content_length >= 0) {
		l = snprintf(line, sizeof line, "Content-Length: %lld\r\n", content_length);
		append(&head, &len, &cap, line, (size_t)l);
	} else if (status != 204 && status != 304 && !r->is_head) {
		if (r->http_minor == 0)
			c->close_after = 1; /* HTTP/1.0 has no chunking: the body ends at close */
		else
			r->chunked = 1;
		append(&head, &len, &cap, "Transfer-Encoding: chunked\r\n", 28);
	}
	/* A response that ends before its request body was read closes the connection: simpler than
	 * draining an unbounded body we do not want. */
	if (!r->msg_complete && r->has_body && r->mode != BODY_STREAM)
		c->close_after = 1;
	if (c->close_after)
		append(&head, &len, &cap, "Connection: close\r\n", 19);
	append(&head, &len, &cap, "\r\n", 2);
	write_raw(c, r, head, len);
	free(head);
}

int http_resp_write(http_req *r, const void *data, size_t len)
{
	http_conn *c = r->conn;
	if (!r->resp_started || r->resp_ended || c->closing)
		return -1;
	if (len == 0 || r->is_head)
		return 0;
	if (r->chunked) {
		char sz[32];
		int l = snprintf(sz, sizeof sz, "%zx\r\n", len);
		write_op *op = malloc(sizeof *op + (size_t)l + len + 2);
		if (!op)
			return -1;
		op->conn = c;
		op->req = r;
		op->len = (size_t)l + len + 2;
		memcpy(op->data, sz, (size_t)l);
		memcpy(op->data + l, data, len);
		memcpy(op->data + l + len, "\r\n", 2);
		uv_buf_t b = uv_buf_init(op->data, (unsigned)op->len);
		r->pending += op->len;
		c->writes_in_flight++;
		if (uv_write(&op->w, c->stream, &b, 1, on_write_done) < 0) {
			c->writes_in_flight--;
			r->pending -= op->len;
			free(op);
			conn_close(c);
			return -1;
		}
		return 0;
	}
	write_raw(c, r, data, len);
	return c->closing ? -1 : 0;
}

size_t http_resp_pending(http_req *r)
{
	return r->pending;
}

void http_resp_on_drain(http_req *r, http_req_cb cb)
{
	r->drain_cb = cb;
}

void http_req_on_close(http_req *r, http_req_cb cb)
{
	r->close_cb = cb;
}

void http_resp_end(http_req *r)
{
	http_conn *c = r->conn;
	if (r->resp_ended)
		return;
	if (!r->resp_started)
		http_resp_start(r, 204, NULL, 0, 0);
	if (r->chunked)
		write_raw(c, r, "0\r\n\r\n", 5);
	r->resp_ended = 1;
	r->drain_cb = NULL;
	r->close_cb = NULL;
	r->body_cb = NULL;
	r->chunk_cb = NULL;
	if (c->closing)
		return;
	if (!r->msg_complete) {
		/* Discard whatever is left of the body; the connection closes after the response. */
		r->mode = BODY_DISCARD;
		free(r->held);
		r->held = NULL;
		r->held_len = 0;
		r->paused = 0;
		if (r->has_body)
			c->close_after = 1;
		conn_update_reading(c);
	}
	if (!r->pending)
		req_maybe_finish(c);
}

void http_resp_send(http_req *r, int status, const char *content_type, const void *body, size_t len)
{
	http_header h[2] = {{"Content-Type", content_type ? content_type : "text/plain"}, {"Cache-Control", "no-store"}};
	http_resp_start(r, status, h, 2, (long long)len);
	if (len)
		http_resp_write(r, body, len);
	http_resp_end(r);
}

void http_resp_error(http_req *r, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:i,s:s}", "code", status, "message", msg);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!body) {
		http_resp_send(r, status, "application/json", "{}", 2);
		return;
	}
	http_resp_send(r, status, "application/json", body, strlen(body));
	free(body);
}

void http_req_abort(http_req *r)
{
	r->close_cb = NULL;
	conn_close(r->conn);
}

uv_stream_t *http_req_detach(http_req *r, char **leftover, size_t *leftover_len)
{
	http_conn *c = r->conn;
	uv_stream_t *s = c->stream;
	if (c->reading)
		uv_read_stop(s);
	c->reading = 0;
	*leftover = NULL;
	*leftover_len = 0;
	if (c->in_len) {
		*leftover = malloc(c->in_len);
		if (*leftover) {
			memcpy(*leftover, c->in, c->in_len);
			*leftover_len = c->in_len;
		}
	}
	s->data = NULL;
	c->req = NULL;
	req_free(r);
	free(c->in);
	/* Writes still in flight reference c: keep c alive but inert until they finish is complex;
	 * callers detach only before writing anything, so none are in flight. */
	free(c);
	return s;
}

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 207: return "Multi-Status";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 422: return "Unprocessable Entity";
	case 499: return "Client Closed Request";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
