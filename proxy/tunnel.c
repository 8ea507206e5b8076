/* Raw byte tunnel between a client and a sandbox port after "101 Switching Protocols" (WebSocket and
 * other upgrades). Each direction applies backpressure on its own and passes half-closes on; the
 * tunnel ends when both directions ended or either side fails. */
#include "proxy/internal.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

#define TUNNEL_READ_SIZE (64 * 1024)

struct tunnel;

struct tunnel_side {
	uv_stream_t *stream;
	struct tunnel *tunnel;
	struct tunnel_side *peer;
	size_t queued;       /* bytes written to this side, not yet acknowledged */
	int reading;
	int eof;             /* this side sent EOF: its direction ended once the peer shut down */
	int shut;            /* the shutdown towards this side completed */
	uv_shutdown_t shutdown;
};

struct tunnel {
	struct tunnel_side side[2];
	int closing;
	int handles;
};

struct tunnel_write {
	uv_write_t w;
	struct tunnel_side *to;
	size_t len;
	char data[];
};

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	/* One buffer suffices: data is copied into the write before the next read can happen. */
	static char slab[TUNNEL_READ_SIZE];
	buf->base = slab;
	buf->len = sizeof slab;
}

static void on_handle_closed(uv_handle_t *h)
{
	struct tunnel *t = ((struct tunnel_side *)h->data)->tunnel;
	free(h);
	if (--t->handles == 0)
		free(t);
}

static void tunnel_close(struct tunnel *t)
{
	if (t->closing)
		return;
	t->closing = 1;
	for (int i = 0; i < 2; i++)
		uv_close((uv_handle_t *)t->side[i].stream, on_handle_closed);
}

static void side_read(struct tunnel_side *s, int on)
{
	if (s->tunnel->closing || s->eof || s->reading == on)
		return;
	if (on) {
		s->reading = 1;
		if (uv_read_start(s->stream, alloc_cb, on_read) < 0)
			s->reading = 0;
	} else {
		uv_read_stop(s->stream);
		s->reading = 0;
	}
}

static void on_write_done(uv_write_t *w, int status)
{
	struct tunnel_write *tw = (struct tunnel_write *)w;
	struct tunnel_side *to = tw->to;
	struct tunnel *t = to->tunnel;
	to->queued -= tw->len;
	free(tw);
	if (t->closing)
		return;
	if (status < 0) {
		tunnel_close(t);
		return;
	}
	if (to->queued < PROXY_LOW_WATER)
		side_read(to->peer, 1);
}

static int side_write(struct tunnel_side *to, const char *data, size_t len)
{
	if (len == 0)
		return 0;
	struct tunnel_write *tw = malloc(sizeof *tw + len);
	if (!tw)
		return -1;
	tw->to = to;
	tw->len = len;
	memcpy(tw->data, data, len);
	uv_buf_t b = uv_buf_init(tw->data, (unsigned)len);
	to->queued += len;
	if (uv_write(&tw->w, to->stream, &b, 1, on_write_done) < 0) {
		to->queued -= len;
		free(tw);
		return -1;
	}
	return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct tunnel_side *to = req->data;
	struct tunnel *t = to->tunnel;
	(void)status;
	if (t->closing)
		return;
	to->shut = 1;
	if (t->side[0].shut && t->side[1].shut)
		tunnel_close(t);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct tunnel_side *from = stream->data;
	struct tunnel *t = from->tunnel;
	(void)buf;
	if (t->closing || nread == 0)
		return;
	if (nread == UV_EOF) {
		side_read(from, 0);
		from->eof = 1;
		/* Queued after the pending writes: the peer sees every byte, then EOF. */
		from->peer->shutdown.data = from->peer;
		if (uv_shutdown(&from->peer->shutdown, from->peer->stream, on_shutdown) < 0)
			tunnel_close(t);
		return;
	}
	if (nread < 0 || side_write(from->peer, buf->base, (size_t)nread) < 0) {
		tunnel_close(t);
		return;
	}
	if (from->peer->queued > PROXY_HIGH_WATER)
		side_read(from, 0);
}

void tunnel_start(uv_stream_t *client, const char *to_client, size_t to_client_len,
		  uv_stream_t *upstream, const char *to_upstream, size_t to_upstream_len)
{
	struct tunnel *t = calloc(1, sizeof *t);
	if (!t) {
		uv_close((uv_handle_t *)client, (uv_close_cb)free);
		uv_close((uv_handle_t *)upstream, (uv_close_cb)free);
		return;
	}
	t->handles = 2;
	t->side[0].stream = client;
	t->side[1].stream = upstream;
	for (int i = 0; i < 2; i++) {
		t->side[i].tunnel = t;
		t->side[i].peer = &t->side[1 - i];
		t->side[i].stream->data = &t->side[i];
	}
	if (side_write(&t->side[0], to_client, to_client_len) < 0 ||
	    side_write(&t->side[1], to_upstream, to_upstream_len) < 0) {
		tunnel_close(t);
		return;
	}
	side_read(&t->side[0], 1);
	side_read(&t->side[1], 1);
}
