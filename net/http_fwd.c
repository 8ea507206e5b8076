/* Header injection at the egress ("secrets that never enter the sandbox"): for a sandbox with
 * network.rules, nftables redirects its TCP port-80 traffic to a listener of cubed on its gateway. The
 * forwarder reads the original destination (SO_ORIGINAL_DST; the eBPF policy already admitted it),
 * parses the first request head with http_parser and, when the Host matches a rule, replaces the
 * rule's headers and asks for Connection: close (so every request to a rule host is one we rewrote),
 * then relays bytes both ways. Plain HTTP only: HTTPS is never intercepted. */
#include "net/internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <http_parser.h>
#include <linux/netfilter_ipv4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "net/nft.h"

#define HEAD_MAX 65536
#define MAX_HEADERS 100

struct http_fwd {
	uv_tcp_t listener;
	struct net_sbx *ns;    /* NULL once closed */
	unsigned port;
	int refs;              /* listener + live connections */
};

struct fwd_conn {
	struct http_fwd *fwd;
	uv_tcp_t client, upstream;
	uv_connect_t connect;
	int closing, handles;
	int head_done, upstream_ready;
	char *head;            /* the request head until it is complete */
	size_t head_len;
	char *pending;         /* rewritten head + bytes after it, sent once upstream connects */
	size_t pending_len;
	/* parse results */
	char hname[MAX_HEADERS][128];
	char *hval[MAX_HEADERS];
	size_t nh;
	int in_value;
	char url[8192];
};

static void fwd_unref(struct http_fwd *f)
{
	if (--f->refs == 0)
		free(f);
}

static void conn_closed(uv_handle_t *h)
{
	struct fwd_conn *c = h->data;
	if (--c->handles > 0)
		return;
	for (size_t i = 0; i < c->nh; i++)
		free(c->hval[i]);
	free(c->head);
	free(c->pending);
	struct http_fwd *f = c->fwd;
	free(c);
	fwd_unref(f);
}

static void conn_close(struct fwd_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close((uv_handle_t *)&c->client, conn_closed);
	uv_close((uv_handle_t *)&c->upstream, conn_closed);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

struct wreq {
	uv_write_t req;
	struct fwd_conn *c;
	uv_stream_t *from;     /* paused while the queue towards the other side is long */
	char *data;
};

static void on_upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);
static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *w, int status)
{
	struct wreq *r = (struct wreq *)w;
	struct fwd_conn *c = r->c;
	if (status < 0)
		conn_close(c);
	else if (r->from && !c->closing && w->handle->write_queue_size < (1u << 18))
		uv_read_start(r->from, alloc_cb, r->from == (uv_stream_t *)&c->client ? on_client_read : on_upstream_read);
	free(r->data);
	free(r);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct fwd_conn *c = req->data;
	(void)status;
	/* the server finished its answer (we asked for Connection: close) */
	if ((uv_stream_t *)&c->client == req->handle)
		conn_close(c);
	free(req);
}

static void half_close(struct fwd_conn *c, uv_stream_t *s)
{
	uv_shutdown_t *req = malloc(sizeof *req);
	if (!req || (req->data = c, uv_shutdown(req, s, on_shutdown) < 0)) {
		free(req);
		conn_close(c);
	}
}

/* Write data (ownership taken) to stream; the peer stops reading while the queue is large. */
static void relay(struct fwd_conn *c, uv_stream_t *to, uv_stream_t *from, char *data, size_t len)
{
	struct wreq *r = malloc(sizeof *r);
	if (!r) {
		free(data);
		conn_close(c);
		return;
	}
	r->c = c;
	r->from = from;
	r->data = data;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&r->req, to, &b, 1, on_written) < 0) {
		free(data);
		free(r);
		conn_close(c);
		return;
	}
	if (from && to->write_queue_size > 1u << 20)
		uv_read_stop(from); /* resumed in the drain callback below */
}

/* ---- request head parsing (http_parser) ---- */

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct fwd_conn *c = p->data;
	size_t n = strlen(c->url);
	if (n + len >= sizeof c->url)
		return -1;
	memcpy(c->url + n, at, len);
	c->url[n + len] = '\0';
	return 0;
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
	struct fwd_conn *c = p->data;
	if (c->in_value || c->nh == 0) {
		if (c->nh == MAX_HEADERS)
			return -1;
		c->nh++;
		c->hname[c->nh - 1][0] = '\0';
		c->hval[c->nh - 1] = NULL;
		c->in_value = 0;
	}
	char *name = c->hname[c->nh - 1];
	size_t n = strlen(name);
	if (n + len >= sizeof c->hname[0])
		return -1;
	memcpy(name + n, at, len);
	name[n + len] = '\0';
	return 0;
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
	struct fwd_conn *c = p->data;
	if (c->nh == 0)
		return -1;
	c->in_value = 1;
	char **v = &c->hval[c->nh - 1];
	size_t n = *v ? strlen(*v) : 0;
	char *nv = realloc(*v, n + len + 1);
	if (!nv)
		return -1;
	memcpy(nv + n, at, len);
	nv[n + len] = '\0';
	*v = nv;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	(void)p;
	return 1; /* stop: only the head interests us */
}

static const http_parser_settings head_settings = {
	.on_url = on_url, .on_header_field = on_hfield, .on_header_value = on_hvalue,
	.on_headers_complete = on_headers_complete,
};

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
	if (*len + n > *cap) {
		size_t nc = (*len + n) * 2;
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

/* Build the head to send upstream: the original, or with the rule's headers when Host matches. */
static int rewrite_head(struct fwd_conn *c, size_t head_end)
{
	http_parser p;
	http_parser_init(&p, HTTP_REQUEST);
	p.data = c;
	http_parser_execute(&p, &head_settings, c->head, head_end);
	if (!p.upgrade && HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_CB_headers_complete)
		return -1;
	const char *host = NULL;
	for (size_t i = 0; i < c->nh; i++)
		if (!strcasecmp(c->hname[i], "Host"))
			host = c->hval[i];
	const struct net_header_rule *rule = host && c->fwd->ns ? net_policy_header_rule(&c->fwd->ns->policy, host) : NULL;
	char *out = NULL;
	size_t len = 0, cap = 0;
	if (!rule) {
		if (append(&out, &len, &cap, c->head, c->head_len) < 0)
			return -1;
	} else {
		char line[8400];
		int n = snprintf(line, sizeof line, "%s %s HTTP/%u.%u\r\n", http_method_str((enum http_method)p.method),
				 c->url, p.http_major, p.http_minor);
		if (append(&out, &len, &cap, line, (size_t)n) < 0)
			goto fail;
		for (size_t i = 0; i < c->nh; i++) {
			const char *name = c->hname[i];
			if (json_object_get(rule->headers, name) || !strcasecmp(name, "Connection") ||
			    !strcasecmp(name, "Keep-Alive") || !strcasecmp(name, "Proxy-Connection"))
				continue;
			/* the rule's names are matched case-insensitively too */
			int dup = 0;
			const char *k;
			json_t *v;
			json_object_foreach(rule->headers, k, v)
				dup |= !strcasecmp(k, name);
			if (dup)
				continue;
			if (append(&out, &len, &cap, name, strlen(name)) < 0 || append(&out, &len, &cap, ": ", 2) < 0 ||
			    append(&out, &len, &cap, c->hval[i] ? c->hval[i] : "", c->hval[i] ? strlen(c->hval[i]) : 0) < 0 ||
			    append(&out, &len, &cap, "\r\n", 2) < 0)
				goto fail;
		}
		const char *k;
		json_t *v;
		json_object_foreach(rule->headers, k, v) {
			const char *s = json_string_value(v);
			if (append(&out, &len, &cap, k, strlen(k)) < 0 || append(&out, &len, &cap, ": ", 2) < 0 ||
			    append(&out, &len, &cap, s, strlen(s)) < 0 || append(&out, &len, &cap, "\r\n", 2) < 0)
				goto fail;
		}
		if (append(&out, &len, &cap, "Connection: close\r\n\r\n", 21) < 0)
			goto fail;
		/* bytes after the head (a body's start) follow unchanged */
		if (append(&out, &len, &cap, c->head + head_end, c->head_len - head_end) < 0)
			goto fail;
	}
	c->pending = out;
	c->pending_len = len;
	return 0;
fail:
	free(out);
	return -1;
}

static void flush_pending(struct fwd_conn *c)
{
	if (!c->upstream_ready || !c->pending)
		return;
	char *p = c->pending;
	c->pending = NULL;
	relay(c, (uv_stream_t *)&c->upstream, (uv_stream_t *)&c->client, p, c->pending_len);
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct fwd_conn *c = s->data;
	if (n < 0) {
		free(buf->base);
		if (n == UV_EOF && c->upstream_ready && c->head_done && !c->pending)
			half_close(c, (uv_stream_t *)&c->upstream);
		else
			conn_close(c);
		return;
	}
	if (n == 0) {
		free(buf->base);
		return;
	}
	if (c->head_done) {
		if (c->pending) { /* upstream not connected yet: queue behind the head */
			char *np = realloc(c->pending, c->pending_len + (size_t)n);
			if (!np) {
				free(buf->base);
				conn_close(c);
				return;
			}
			memcpy(np + c->pending_len, buf->base, (size_t)n);
			c->pending = np;
			c->pending_len += (size_t)n;
			free(buf->base);
		} else {
			relay(c, (uv_stream_t *)&c->upstream, s, buf->base, (size_t)n);
		}
		return;
	}
	if (c->head_len + (size_t)n > HEAD_MAX) {
		free(buf->base);
		conn_close(c);
		return;
	}
	char *nh = realloc(c->head, c->head_len + (size_t)n + 1);
	if (!nh) {
		free(buf->base);
		conn_close(c);
		return;
	}
	memcpy(nh + c->head_len, buf->base, (size_t)n);
	c->head = nh;
	c->head_len += (size_t)n;
	c->head[c->head_len] = '\0';
	free(buf->base);
	char *end = strstr(c->head, "\r\n\r\n");
	if (!end)
		return;
	c->head_done = 1;
	if (rewrite_head(c, (size_t)(end + 4 - c->head)) < 0) {
		conn_close(c);
		return;
	}
	flush_pending(c);
}

static void on_upstream_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct fwd_conn *c = s->data;
	if (n < 0) {
		free(buf->base);
		if (n == UV_EOF)
			half_close(c, (uv_stream_t *)&c->client);
		else
			conn_close(c);
		return;
	}
	if (n == 0) {
		free(buf->base);
		return;
	}
	relay(c, (uv_stream_t *)&c->client, s, buf->base, (size_t)n);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct fwd_conn *c = req->data;
	if (status < 0 || c->closing) {
		conn_close(c);
		return;
	}
	c->upstream_ready = 1;
	uv_read_start((uv_stream_t *)&c->upstream, alloc_cb, on_upstream_read);
	flush_pending(c);
}

static void on_accept(uv_stream_t *server, int status)
{
	struct http_fwd *f = server->data;
	if (status < 0 || !f->ns)
		return;
	struct fwd_conn *c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->fwd = f;
	f->refs++;
	c->handles = 2;
	uv_tcp_init(server->loop, &c->client);
	uv_tcp_init(server->loop, &c->upstream);
	c->client.data = c->upstream.data = c->connect.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->client) < 0) {
		conn_close(c);
		return;
	}
	/* Only the sandbox itself, and only to where it was going (which its policy admitted). */
	struct sockaddr_in peer, orig;
	int plen = sizeof peer;
	socklen_t olen = sizeof orig;
	uv_os_fd_t fd;
	if (uv_tcp_getpeername(&c->client, (struct sockaddr *)&peer, &plen) < 0 || peer.sin_addr.s_addr != f->ns->addr ||
	    uv_fileno((uv_handle_t *)&c->client, &fd) < 0 ||
	    getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &olen) < 0 || orig.sin_addr.s_addr == f->ns->gw) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->client, 1);
	uv_tcp_nodelay(&c->upstream, 1);
	if (uv_tcp_connect(&c->connect, &c->upstream, (const struct sockaddr *)&orig, on_connected) < 0) {
		conn_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->client, alloc_cb, on_client_read);
}

struct http_fwd *http_fwd_start(uv_loop_t *loop, struct net_sbx *ns, cube_err *err)
{
	struct http_fwd *f = calloc(1, sizeof *f);
	if (!f) {
		cube_fail(err, 500, ENOMEM, "header forwarder");
		return NULL;
	}
	f->ns = ns;
	f->refs = 1;
	uv_tcp_init(loop, &f->listener);
	f->listener.data = f;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = ns->gw};
	struct sockaddr_in bound;
	int blen = sizeof bound, rc;
	if ((rc = uv_tcp_bind(&f->listener, (const struct sockaddr *)&a, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&f->listener, 128, on_accept)) < 0 ||
	    (rc = uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &blen)) < 0) {
		cube_fail(err, 500, -rc, "header forwarder on the gateway: %s", uv_strerror(rc));
		http_fwd_stop(f);
		return NULL;
	}
	f->port = ntohs(bound.sin_port);
	if (nft_http_redirect(ns->link, f->port, err) < 0) {
		http_fwd_stop(f);
		return NULL;
	}
	return f;
}

static void listener_closed(uv_handle_t *h)
{
	fwd_unref(h->data);
}

void http_fwd_stop(struct http_fwd *f)
{
	if (f->ns && f->port)
		nft_http_redirect_remove(f->ns->link, f->port);
	f->ns = NULL; /* open connections finish; new ones are refused */
	uv_close((uv_handle_t *)&f->listener, listener_closed);
}
