/* One forwarded request/response exchange: connect to the sandbox port, send the request head and
 * stream the body up, parse the response with http_parser and stream it down, with backpressure on
 * both sides. One upstream connection per exchange ("Connection: close" upstream); the client
 * connection stays keep-alive. An Upgrade answered with 101 becomes a raw tunnel (tunnel.c). */
#include "proxy/internal.h"
#include "common/log.h"

#include <http_parser.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_RESP_HEADERS 128
#define MAX_RESP_HEAD_BYTES (64 * 1024)

struct header_list {
	char *names[MAX_RESP_HEADERS], *values[MAX_RESP_HEADERS];
	size_t n;
	size_t bytes;
	int last_was_value;
};

struct exchange {
	http_req *req;                 /* NULL once the client side is answered, gone or detached */
	char sandbox_id[ROUTE_ID_MAX];
	int port;
	uv_tcp_t *upstream;            /* malloc'd (the tunnel may take it over); NULL once closed */
	int upstream_closing;
	uv_connect_t connect;
	uv_timer_t timer;              /* connect timeout, then deferred client abort */
	int timer_closing;

	/* request, client → sandbox */
	int upgrade;
	int body_chunked;              /* re-chunk the client's chunked body */
	int body_paused;
	int upstream_write_failed;
	size_t up_queued;

	/* response, sandbox → client */
	http_parser parser;
	struct header_list headers;
	int head_request;
	int interim;                   /* a 1xx we swallow (our server cannot send interim responses) */
	int switching;                 /* 101 to an Upgrade: hand over to the tunnel */
	int resp_started, resp_done;
	int reading;
	int aborting;                  /* close the client connection once its writes drained */
};

struct upstream_write {
	uv_write_t w;
	struct exchange *x;
	size_t len;
	char data[];
};

static void on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- lifetime ---- */

static void headers_clear(struct header_list *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->names[i]);
		free(h->values[i]);
	}
	memset(h, 0, sizeof *h);
}

static void on_timer_closed(uv_handle_t *h)
{
	struct exchange *x = h->data;
	headers_clear(&x->headers);
	free(x);
}

/* Freed when neither side needs it any more; both handle closes are asynchronous, so x always
 * outlives the call stack that finishes it. */
static void maybe_free(struct exchange *x)
{
	if (x->req || x->upstream || x->timer_closing)
		return;
	x->timer_closing = 1;
	uv_close((uv_handle_t *)&x->timer, on_timer_closed);
}

static void on_upstream_closed(uv_handle_t *h)
{
	struct exchange *x = h->data;
	free(h);
	x->upstream = NULL;
	maybe_free(x);
}

static void close_upstream(struct exchange *x)
{
	if (!x->upstream || x->upstream_closing)
		return;
	x->upstream_closing = 1;
	uv_close((uv_handle_t *)x->upstream, on_upstream_closed);
}

static void on_client_close(http_req *req)
{
	struct exchange *x = http_req_data(req);
	x->req = NULL;
	close_upstream(x);
	maybe_free(x);
}

/* ---- replies and aborts towards the client ---- */

static void on_abort_timer(uv_timer_t *t)
{
	struct exchange *x = t->data;
	/* Detaching is only safe with no response write in flight; the drain callback re-arms us. */
	if (!x->req || http_resp_pending(x->req) > 0)
		return;
	char *leftover;
	size_t leftover_len;
	uv_stream_t *s = http_req_detach(x->req, &leftover, &leftover_len);
	free(leftover);
	x->req = NULL;
	uv_close((uv_handle_t *)s, (uv_close_cb)free);
	maybe_free(x);
}

/* The response already started, so the only honest signal left is closing the connection. */
static void abort_client(struct exchange *x)
{
	if (!x->req || x->aborting)
		return;
	x->aborting = 1;
	uv_timer_start(&x->timer, on_abort_timer, 0, 0);
}

/* The upstream failed: 502 if nothing was sent yet, else cut the client connection. */
static void upstream_failed(struct exchange *x, const char *why)
{
	log_debug("proxy: %s:%d: %s", x->sandbox_id, x->port, why);
	close_upstream(x);
	if (!x->req)
		return;
	if (!x->resp_started) {
		http_req *req = x->req;
		x->req = NULL;
		proxy_reply_bad_gateway(req, x->sandbox_id, why);
		maybe_free(x);
	} else {
		abort_client(x);
	}
}

/* ---- request: client → sandbox ---- */

static int is_hop_by_hop(const char *name)
{
	static const char *const hop[] = {"Connection", "Keep-Alive", "TE", "Trailer", "Transfer-Encoding",
					  "Upgrade"};
	for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
		if (strcasecmp(name, hop[i]) == 0)
			return 1;
	return strncasecmp(name, "Proxy-", 6) == 0;
}

/* Is `name` listed as a token in the Connection header value `connection` (RFC 9110 §7.6.1)? */
static int listed_in(const char *connection, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = connection; *p;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		const char *end = p;
		while (*end && *end != ',')
			end++;
		const char *tail = end;
		while (tail > p && (tail[-1] == ' ' || tail[-1] == '\t'))
			tail--;
		if ((size_t)(tail - p) == nl && strncasecmp(p, name, nl) == 0)
			return 1;
		p = end;
	}
	return 0;
}

/* Headers listed in any Connection header are hop-by-hop too. */
static int listed_in_connection(char *const *names, char *const *values, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (names[i] && values[i] && strcasecmp(names[i], "Connection") == 0 && listed_in(values[i], name))
			return 1;
	return 0;
}

static int request_listed_in_connection(http_req *req, const char *name)
{
	for (size_t i = 0; i < http_req_header_count(req); i++) {
		const char *n, *v;
		http_req_header_at(req, i, &n, &v);
		if (n && v && strcasecmp(n, "Connection") == 0 && listed_in(v, name))
			return 1;
	}
	return 0;
}

static int buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n > *cap) {
		size_t nc = *cap ? *cap * 2 : 1024;
		while (nc < *len + n)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, s, n);
	*len += n;
	return 0;
}

static void on_upstream_write(uv_write_t *w, int status)
{
	struct upstream_write *uw = (struct upstream_write *)w;
	struct exchange *x = uw->x;
	x->up_queued -= uw->len;
	free(uw);
	if (status < 0 && status != UV_ECANCELED && !x->upstream_write_failed) {
		/* The sandbox stopped reading (it may still answer, e.g. 413): drop the rest of the body. */
		x->upstream_write_failed = 1;
		log_debug("proxy: %s:%d: write: %s", x->sandbox_id, x->port, uv_strerror(status));
	}
	if (x->body_paused && x->req && (x->up_queued < PROXY_LOW_WATER || x->upstream_write_failed)) {
		x->body_paused = 0;
		http_req_resume_body(x->req);
	}
}

/* Queue bytes to the sandbox; `prefix`/`suffix` frame a chunk without a second copy. */
static void upstream_write(struct exchange *x, const char *prefix, size_t plen, const char *data, size_t len,
			   const char *suffix, size_t slen)
{
	if (!x->upstream || x->upstream_closing || x->upstream_write_failed)
		return;
	size_t total = plen + len + slen;
	struct upstream_write *uw = malloc(sizeof *uw + total);
	if (!uw) {
		upstream_failed(x, "out of memory");
		return;
	}
	uw->x = x;
	uw->len = total;
	memcpy(uw->data, prefix, plen);
	memcpy(uw->data + plen, data, len);
	memcpy(uw->data + plen + len, suffix, slen);
	uv_buf_t b = uv_buf_init(uw->data, (unsigned)total);
	x->up_queued += total;
	int rc = uv_write(&uw->w, (uv_stream_t *)x->upstream, &b, 1, on_upstream_write);
	if (rc < 0) {
		x->up_queued -= total;
		free(uw);
		x->upstream_write_failed = 1;
	}
}

static void on_client_body(http_req *req, const char *data, size_t len)
{
	struct exchange *x = http_req_data(req);
	if (!data) {
		if (x->body_chunked)
			upstream_write(x, "", 0, "0\r\n\r\n", 5, "", 0);
		return;
	}
	if (x->body_chunked) {
		char size[32];
		int n = snprintf(size, sizeof size, "%zx\r\n", len);
		upstream_write(x, size, (size_t)n, data, len, "\r\n", 2);
	} else {
		upstream_write(x, "", 0, data, len, "", 0);
	}
	if (x->req && x->up_queued > PROXY_HIGH_WATER && !x->body_paused && !x->upstream_write_failed) {
		x->body_paused = 1;
		http_req_pause_body(x->req);
	}
}

static int send_request_head(struct exchange *x)
{
	http_req *req = x->req;
	char *head = NULL;
	size_t len = 0, cap = 0;
	char line[64];
	int rc = 0;
	const char *method = http_req_method(req), *target = http_req_target(req);
	rc |= buf_add(&head, &len, &cap, method, strlen(method));
	rc |= buf_add(&head, &len, &cap, " ", 1);
	rc |= buf_add(&head, &len, &cap, target, strlen(target));
	rc |= buf_add(&head, &len, &cap, " HTTP/1.1\r\n", 11);
	for (size_t i = 0; i < http_req_header_count(req); i++) {
		const char *name, *value;
		http_req_header_at(req, i, &name, &value);
		if (x->upgrade && strcasecmp(name, "Upgrade") == 0) {
			/* kept: it is what the upgrade is about */
		} else if (is_hop_by_hop(name) || request_listed_in_connection(req, name) ||
			   strcasecmp(name, "Expect") == 0) {
			/* Expect: the server side never sends "100 Continue", so do not ask the sandbox either */
			continue;
		}
		rc |= buf_add(&head, &len, &cap, name, strlen(name));
		rc |= buf_add(&head, &len, &cap, ": ", 2);
		rc |= buf_add(&head, &len, &cap, value, strlen(value));
		rc |= buf_add(&head, &len, &cap, "\r\n", 2);
	}
	x->body_chunked = http_req_has_body(req) && !http_req_header(req, "Content-Length");
	if (x->body_chunked)
		rc |= buf_add(&head, &len, &cap, "Transfer-Encoding: chunked\r\n", 28);
	int n = snprintf(line, sizeof line, "Connection: %s\r\n\r\n", x->upgrade ? "Upgrade" : "close");
	rc |= buf_add(&head, &len, &cap, line, (size_t)n);
	if (rc == 0)
		upstream_write(x, "", 0, head, len, "", 0);
	free(head);
	return rc;
}

/* ---- response: sandbox → client ---- */

static int header_append(struct header_list *h, int value, const char *at, size_t len)
{
	h->bytes += len;
	if (h->bytes > MAX_RESP_HEAD_BYTES)
		return -1;
	if (!value && (h->last_was_value || h->n == 0)) {
		if (h->n == MAX_RESP_HEADERS)
			return -1;
		h->n++;
	}
	if (h->n == 0)
		return -1;
	h->last_was_value = value;
	char **slot = value ? &h->values[h->n - 1] : &h->names[h->n - 1];
	size_t old = *slot ? strlen(*slot) : 0;
	char *s = realloc(*slot, old + len + 1);
	if (!s)
		return -1;
	memcpy(s + old, at, len);
	s[old + len] = '\0';
	*slot = s;
	return 0;
}

static int on_resp_begin(http_parser *p)
{
	struct exchange *x = p->data;
	headers_clear(&x->headers);
	x->interim = 0;
	return 0;
}

static int on_resp_header_field(http_parser *p, const char *at, size_t len)
{
	return header_append(&((struct exchange *)p->data)->headers, 0, at, len);
}

static int on_resp_header_value(http_parser *p, const char *at, size_t len)
{
	return header_append(&((struct exchange *)p->data)->headers, 1, at, len);
}

static int on_resp_headers_complete(http_parser *p)
{
	struct exchange *x = p->data;
	struct header_list *h = &x->headers;
	int status = p->status_code;
	if (status == 101 && x->upgrade) {
		x->switching = 1;
		return 2; /* no body: the rest of the stream is the upgraded protocol */
	}
	if (status / 100 == 1) {
		x->interim = 1;
		return 0;
	}
	if (!x->req)
		return -1;
	http_header out[MAX_RESP_HEADERS];
	size_t n = 0;
	for (size_t i = 0; i < h->n; i++) {
		const char *name = h->names[i];
		if (!name || is_hop_by_hop(name) || listed_in_connection(h->names, h->values, h->n, name) ||
		    strcasecmp(name, "Content-Length") == 0)
			continue; /* framing is ours to choose */
		out[n++] = (http_header){name, h->values[i] ? h->values[i] : ""};
	}
	int chunked = (p->flags & F_CHUNKED) != 0;
	long long length = (!chunked && p->content_length != ULLONG_MAX) ? (long long)p->content_length : -1;
	if (x->head_request) {
		/* No body follows; an unknown length is sent as 0 (http_resp_start would announce chunks). */
		length = length < 0 ? 0 : length;
	} else if (status == 204 || status == 304) {
		length = -1;
	}
	x->resp_started = 1;
	http_resp_start(x->req, status, out, n, length);
	return x->head_request ? 1 : 0;
}

static int on_resp_body(http_parser *p, const char *at, size_t len)
{
	struct exchange *x = p->data;
	if (!x->req || http_resp_write(x->req, at, len) < 0)
		return -1; /* client gone: stop parsing */
	return 0;
}

static int on_resp_complete(http_parser *p)
{
	struct exchange *x = p->data;
	if (x->interim)
		return 0; /* the real response follows */
	if (x->switching) {
		http_parser_pause(p, 1);
		return 0;
	}
	x->resp_done = 1;
	http_parser_pause(p, 1); /* anything after the response is not ours to forward */
	if (x->req) {
		http_req *req = x->req;
		x->req = NULL; /* http_resp_end may free req */
		http_resp_end(req);
	}
	return 0;
}

static const http_parser_settings response_settings = {
	.on_message_begin = on_resp_begin,
	.on_header_field = on_resp_header_field,
	.on_header_value = on_resp_header_value,
	.on_headers_complete = on_resp_headers_complete,
	.on_body = on_resp_body,
	.on_message_complete = on_resp_complete,
};

/* 101: re-send the head as received (Upgrade/Connection included) and splice the rest raw. */
static void start_tunnel(struct exchange *x, const char *rest, size_t rest_len)
{
	char *head = NULL;
	size_t len = 0, cap = 0;
	int rc = buf_add(&head, &len, &cap, "HTTP/1.1 101 Switching Protocols\r\n", 34);
	for (size_t i = 0; i < x->headers.n; i++) {
		const char *name = x->headers.names[i], *value = x->headers.values[i] ? x->headers.values[i] : "";
		if (!name)
			continue;
		rc |= buf_add(&head, &len, &cap, name, strlen(name));
		rc |= buf_add(&head, &len, &cap, ": ", 2);
		rc |= buf_add(&head, &len, &cap, value, strlen(value));
		rc |= buf_add(&head, &len, &cap, "\r\n", 2);
	}
	rc |= buf_add(&head, &len, &cap, "\r\n", 2);
	rc |= buf_add(&head, &len, &cap, rest, rest_len);
	if (rc < 0 || !x->req) {
		free(head);
		upstream_failed(x, "cannot start the tunnel");
		return;
	}
	char *leftover;
	size_t leftover_len;
	uv_stream_t *client = http_req_detach(x->req, &leftover, &leftover_len);
	x->req = NULL;
	uv_stream_t *upstream = (uv_stream_t *)x->upstream;
	uv_read_stop(upstream);
	x->upstream = NULL; /* the tunnel owns it now */
	log_debug("proxy: %s:%d: switching protocols", x->sandbox_id, x->port);
	tunnel_start(client, head, len, upstream, leftover, leftover_len);
	free(head);
	free(leftover);
	maybe_free(x);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[64 * 1024]; /* parsed and copied out before the next read */
	buf->base = slab;
	buf->len = sizeof slab;
}

static void set_reading(struct exchange *x, int on)
{
	if (!x->upstream || x->upstream_closing || x->reading == on)
		return;
	if (on && uv_read_start((uv_stream_t *)x->upstream, alloc_cb, on_upstream_read) < 0)
		return;
	if (!on)
		uv_read_stop((uv_stream_t *)x->upstream);
	x->reading = on;
}

static void on_client_drain(http_req *req)
{
	struct exchange *x = http_req_data(req);
	if (x->aborting)
		uv_timer_start(&x->timer, on_abort_timer, 0, 0);
	else if (!x->resp_done)
		set_reading(x, 1);
}

static void on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct exchange *x = s->data;
	if (nread == 0 || x->upstream_closing)
		return;
	if (nread < 0 && nread != UV_EOF) {
		upstream_failed(x, uv_strerror((int)nread));
		return;
	}
	const char *data = nread > 0 ? buf->base : NULL;
	size_t len = nread > 0 ? (size_t)nread : 0;
	/* At EOF a zero-length execute completes a response delimited by the close. */
	size_t used = http_parser_execute(&x->parser, &response_settings, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&x->parser);
	if (x->switching) {
		start_tunnel(x, data + used, len - used);
		return;
	}
	if (x->resp_done) {
		close_upstream(x);
		return;
	}
	if (e != HPE_OK) {
		upstream_failed(x, e == HPE_CB_body && !x->req ? "client gone" : http_errno_description(e));
		return;
	}
	if (nread == UV_EOF) {
		upstream_failed(x, "the sandbox closed the connection before the response ended");
		return;
	}
	if (x->req && http_resp_pending(x->req) > PROXY_HIGH_WATER)
		set_reading(x, 0);
}

/* ---- connect ---- */

static void on_connect_timeout(uv_timer_t *t)
{
	struct exchange *x = t->data;
	close_upstream(x); /* cancels the connect */
	if (x->req) {
		http_req *req = x->req;
		x->req = NULL;
		proxy_reply_port_closed(req, x->sandbox_id, x->port);
	}
	maybe_free(x);
}

static void on_connect(uv_connect_t *c, int status)
{
	struct exchange *x = c->data;
	if (status == UV_ECANCELED)
		return; /* timed out or the client left; already handled */
	uv_timer_stop(&x->timer);
	if (!x->req) {
		close_upstream(x);
		return;
	}
	if (status < 0) {
		log_debug("proxy: %s:%d: connect: %s", x->sandbox_id, x->port, uv_strerror(status));
		close_upstream(x);
		http_req *req = x->req;
		x->req = NULL;
		proxy_reply_port_closed(req, x->sandbox_id, x->port);
		maybe_free(x);
		return;
	}
	uv_tcp_nodelay(x->upstream, 1);
	if (send_request_head(x) < 0) {
		upstream_failed(x, "out of memory");
		return;
	}
	http_resp_on_drain(x->req, on_client_drain);
	set_reading(x, 1);
	/* May deliver held body bytes (and the end) right away. */
	http_req_stream_body(x->req, on_client_body);
}

void exchange_start(uv_loop_t *loop, http_req *req, const struct proxy_route *route, int fd)
{
	struct exchange *x = calloc(1, sizeof *x);
	uv_tcp_t *tcp = malloc(sizeof *tcp);
	if (!x || !tcp || uv_tcp_init(loop, tcp) < 0) {
		free(x);
		free(tcp);
		close(fd);
		http_resp_error(req, 500, "out of memory");
		return;
	}
	snprintf(x->sandbox_id, sizeof x->sandbox_id, "%s", route->sandbox_id);
	x->port = route->port;
	x->upgrade = http_req_is_upgrade(req);
	x->head_request = strcmp(http_req_method(req), "HEAD") == 0;
	x->upstream = tcp;
	tcp->data = x;
	uv_timer_init(loop, &x->timer);
	x->timer.data = x;
	x->connect.data = x;
	http_parser_init(&x->parser, HTTP_RESPONSE);
	x->parser.data = x;
	x->req = req;
	http_req_set_data(req, x);
	http_req_on_close(req, on_client_close);

	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", route->port, &sa);
	int rc = uv_tcp_open(tcp, fd);
	if (rc < 0)
		close(fd);
	else
		rc = uv_tcp_connect(&x->connect, tcp, (const struct sockaddr *)&sa, on_connect);
	if (rc < 0) {
		log_debug("proxy: %s:%d: connect: %s", x->sandbox_id, x->port, uv_strerror(rc));
		close_upstream(x);
		x->req = NULL;
		proxy_reply_port_closed(req, x->sandbox_id, x->port);
		maybe_free(x);
		return;
	}
	uv_timer_start(&x->timer, on_connect_timeout, PROXY_CONNECT_TIMEOUT_MS, 0);
}
