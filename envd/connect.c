/* Connect protocol v1 with the JSON codec over HTTP/1.1 (§3.6): unary calls and server streams.
 * An envd_rpc wraps one HTTP request from dispatch until both the handler is done with it (reply,
 * fail, end, or its cancel callback ran) and our timers are closed. The client may leave at any
 * time; writes then fail softly and the handler hears about it through its cancel callback, which
 * is always delivered from the event loop, never from inside one of the calls below. */
#include "envd/connect.h"

#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_REQUEST_BYTES (16u << 20)   /* SendInput may carry a large stdin chunk */
#define DEFAULT_KEEPALIVE_S 90
#define ENVELOPE_HEADER 5

enum rpc_phase { PHASE_READING, PHASE_HANDLER, PHASE_DONE };

struct envd_rpc {
	http_req *req;                 /* NULL once the client left */
	const struct envd_method *method;
	enum rpc_phase phase;
	int started;                   /* stream: 200 and headers sent */
	int deadline_passed;
	int cancel_pending;            /* the client left; cancel_cb runs on the next loop turn */
	struct envd_user user;
	int has_user;
	envd_rpc_cancel_fn cancel_cb, drain_cb;
	void *cancel_arg, *drain_arg;
	json_t *keepalive_msg;
	uint64_t keepalive_ms;
	long long timeout_ms;          /* Connect-Timeout-Ms, 0 = none */
	uv_timer_t keepalive_timer;
	uv_timer_t timer;              /* the deadline, then reused to deliver a deferred cancel */
	int open_handles;
	void *handler_data;
	char *in;                      /* client stream: bytes of a frame not complete yet */
	size_t in_len, in_cap;
};

static const char *const code_names[] = {
	[CONNECT_CANCELED] = "canceled",
	[CONNECT_UNKNOWN] = "unknown",
	[CONNECT_INVALID_ARGUMENT] = "invalid_argument",
	[CONNECT_DEADLINE_EXCEEDED] = "deadline_exceeded",
	[CONNECT_NOT_FOUND] = "not_found",
	[CONNECT_ALREADY_EXISTS] = "already_exists",
	[CONNECT_PERMISSION_DENIED] = "permission_denied",
	[CONNECT_RESOURCE_EXHAUSTED] = "resource_exhausted",
	[CONNECT_FAILED_PRECONDITION] = "failed_precondition",
	[CONNECT_ABORTED] = "aborted",
	[CONNECT_OUT_OF_RANGE] = "out_of_range",
	[CONNECT_UNIMPLEMENTED] = "unimplemented",
	[CONNECT_INTERNAL] = "internal",
	[CONNECT_UNAVAILABLE] = "unavailable",
	[CONNECT_DATA_LOSS] = "data_loss",
	[CONNECT_UNAUTHENTICATED] = "unauthenticated",
};

/* HTTP status of a unary error (§3.6.1). */
static const int code_status[] = {
	[CONNECT_CANCELED] = 499,           [CONNECT_UNKNOWN] = 500,
	[CONNECT_INVALID_ARGUMENT] = 400,   [CONNECT_DEADLINE_EXCEEDED] = 504,
	[CONNECT_NOT_FOUND] = 404,          [CONNECT_ALREADY_EXISTS] = 409,
	[CONNECT_PERMISSION_DENIED] = 403,  [CONNECT_RESOURCE_EXHAUSTED] = 429,
	[CONNECT_FAILED_PRECONDITION] = 400, [CONNECT_ABORTED] = 409,
	[CONNECT_OUT_OF_RANGE] = 400,       [CONNECT_UNIMPLEMENTED] = 501,
	[CONNECT_INTERNAL] = 500,           [CONNECT_UNAVAILABLE] = 503,
	[CONNECT_DATA_LOSS] = 500,          [CONNECT_UNAUTHENTICATED] = 401,
};

static const char *code_name(enum connect_code c)
{
	return c >= CONNECT_CANCELED && c <= CONNECT_UNAUTHENTICATED ? code_names[c] : "unknown";
}

/* ---- lifetime ---- */

static void on_timer_closed(uv_handle_t *h)
{
	envd_rpc *rpc = h->data;
	if (--rpc->open_handles == 0) {
		json_decref(rpc->keepalive_msg);
		free(rpc->in);
		free(rpc);
	}
}

/* Nobody uses the rpc any more: detach from the request and free once the timers are closed. */
/* Forget the request (its callbacks too) and return it, so the caller can end the response:
 * http_resp_end may free the request at once. */
static http_req *rpc_detach(envd_rpc *rpc)
{
	http_req *req = rpc->req;
	if (req) {
		http_req_set_data(req, NULL);
		http_req_on_close(req, NULL);
		http_resp_on_drain(req, NULL);
		rpc->req = NULL;
	}
	return req;
}

static void rpc_release(envd_rpc *rpc)
{
	rpc->phase = PHASE_DONE;
	rpc_detach(rpc);
	uv_close((uv_handle_t *)&rpc->keepalive_timer, on_timer_closed);
	uv_close((uv_handle_t *)&rpc->timer, on_timer_closed);
}

static void on_deferred_cancel(uv_timer_t *t)
{
	envd_rpc *rpc = t->data;
	if (rpc->phase == PHASE_DONE)
		return;
	rpc->cancel_pending = 0;
	if (rpc->cancel_cb)
		rpc->cancel_cb(rpc, rpc->cancel_arg);
	rpc_release(rpc);
}

static void schedule_cancel(envd_rpc *rpc)
{
	if (rpc->cancel_pending)
		return;
	rpc->cancel_pending = 1;
	uv_timer_stop(&rpc->timer);
	uv_timer_start(&rpc->timer, on_deferred_cancel, 0, 0);
}

static void on_http_close(http_req *req)
{
	envd_rpc *rpc = http_req_data(req);
	if (!rpc)
		return;
	rpc->req = NULL;
	uv_timer_stop(&rpc->keepalive_timer);
	if (rpc->phase == PHASE_READING) {
		rpc_release(rpc); /* the handler never saw it */
		return;
	}
	/* Handlers that keep the rpc register a cancel callback; others finish it later with a
	 * reply that then goes nowhere. */
	if (rpc->cancel_cb)
		schedule_cancel(rpc);
}

static void on_http_drain(http_req *req)
{
	envd_rpc *rpc = http_req_data(req);
	if (rpc && rpc->phase == PHASE_HANDLER && rpc->drain_cb)
		rpc->drain_cb(rpc, rpc->drain_arg);
}

/* ---- writing ---- */

static int write_frame(envd_rpc *rpc, unsigned char flags, const char *payload, size_t len);

/* Unary answer; ends the response, so the rpc is detached first. */
static void send_unary(envd_rpc *rpc, int status, const char *body, size_t len)
{
	http_req *req = rpc_detach(rpc);
	if (!req)
		return;
	http_header h[] = {{"Content-Type", "application/json"}};
	http_resp_start(req, status, h, 1, (long long)len);
	http_resp_write(req, body, len);
	http_resp_end(req);
}

/* Stream: the EOS frame, then the end of the body. */
static void send_eos(envd_rpc *rpc, const char *payload, size_t len)
{
	if (write_frame(rpc, 0x02, payload, len) < 0)
		return;
	http_req *req = rpc_detach(rpc);
	if (req)
		http_resp_end(req);
}

static void stream_start(envd_rpc *rpc)
{
	if (rpc->started || !rpc->req)
		return;
	rpc->started = 1;
	http_header h[] = {{"Content-Type", "application/connect+json"}};
	http_resp_start(rpc->req, 200, h, 1, -1);
}

/* One enveloped frame: flags, big-endian length, payload. 0 or -1 if the client is gone. */
static int write_frame(envd_rpc *rpc, unsigned char flags, const char *payload, size_t len)
{
	stream_start(rpc);
	if (!rpc->req)
		return -1;
	unsigned char small[512];
	unsigned char *buf = len + ENVELOPE_HEADER <= sizeof small ? small : malloc(len + ENVELOPE_HEADER);
	if (!buf)
		return -1;
	buf[0] = flags;
	buf[1] = (unsigned char)(len >> 24);
	buf[2] = (unsigned char)(len >> 16);
	buf[3] = (unsigned char)(len >> 8);
	buf[4] = (unsigned char)len;
	memcpy(buf + ENVELOPE_HEADER, payload, len);
	int rc = http_resp_write(rpc->req, buf, len + ENVELOPE_HEADER);
	if (buf != small)
		free(buf);
	return rc < 0 || !rpc->req ? -1 : 0;
}

static json_t *error_object(enum connect_code code, const char *msg)
{
	return json_pack("{s:s,s:s}", "code", code_name(code), "message", msg);
}

static void finish_with_error(envd_rpc *rpc, enum connect_code code, const char *msg)
{
	if (rpc->req) {
		json_t *e = error_object(code, msg);
		if (rpc->method->streaming) {
			json_t *eos = json_pack("{s:o}", "error", e);
			char *s = json_dumps(eos, JSON_COMPACT);
			json_decref(eos);
			if (s)
				send_eos(rpc, s, strlen(s));
			free(s);
		} else {
			char *s = json_dumps(e, JSON_COMPACT);
			json_decref(e);
			if (s)
				send_unary(rpc, code_status[code >= CONNECT_CANCELED && code <= CONNECT_UNAUTHENTICATED ? code
												      : CONNECT_UNKNOWN],
					   s, strlen(s));
			free(s);
		}
	}
	rpc_release(rpc);
}

/* ---- public API ---- */

const struct envd_user *envd_rpc_user(envd_rpc *rpc)
{
	return rpc->has_user ? &rpc->user : NULL;
}

const char *envd_rpc_header(envd_rpc *rpc, const char *name)
{
	return rpc->req ? http_req_header(rpc->req, name) : NULL;
}

void envd_rpc_reply(envd_rpc *rpc, json_t *msg)
{
	if (rpc->phase == PHASE_DONE) {
		json_decref(msg);
		return;
	}
	if (rpc->method->streaming) {
		/* Client-stream style: one message, then the end of the stream. */
		envd_rpc_send(rpc, msg);
		envd_rpc_end(rpc);
		return;
	}
	char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!s) {
		finish_with_error(rpc, CONNECT_INTERNAL, "cannot encode response");
		return;
	}
	if (rpc->req)
		send_unary(rpc, 200, s, strlen(s));
	free(s);
	rpc_release(rpc);
}

void envd_rpc_fail(envd_rpc *rpc, enum connect_code code, const char *fmt, ...)
{
	if (rpc->phase == PHASE_DONE)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	finish_with_error(rpc, code, msg);
}

static void on_keepalive(uv_timer_t *t)
{
	envd_rpc *rpc = t->data;
	if (rpc->phase != PHASE_HANDLER || !rpc->req || !rpc->keepalive_msg)
		return;
	envd_rpc_send(rpc, json_incref(rpc->keepalive_msg));
}

int envd_rpc_send(envd_rpc *rpc, json_t *msg)
{
	if (rpc->phase == PHASE_DONE || !rpc->req || !rpc->method->streaming) {
		json_decref(msg);
		return -1;
	}
	char *s = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (!s)
		return -1;
	int rc = write_frame(rpc, 0x00, s, strlen(s));
	free(s);
	if (rc == 0 && rpc->keepalive_msg)
		uv_timer_start(&rpc->keepalive_timer, on_keepalive, rpc->keepalive_ms, rpc->keepalive_ms);
	return rc;
}

void envd_rpc_end(envd_rpc *rpc)
{
	if (rpc->phase == PHASE_DONE)
		return;
	if (rpc->req && rpc->method->streaming)
		send_eos(rpc, "{}", 2);
	else if (rpc->req && !rpc->method->streaming)
		send_unary(rpc, 200, "{}", 2);
	rpc_release(rpc);
}

void envd_rpc_set_keepalive(envd_rpc *rpc, json_t *msg)
{
	json_decref(rpc->keepalive_msg);
	rpc->keepalive_msg = msg;
	if (msg && rpc->req && rpc->phase == PHASE_HANDLER)
		uv_timer_start(&rpc->keepalive_timer, on_keepalive, rpc->keepalive_ms, rpc->keepalive_ms);
	else
		uv_timer_stop(&rpc->keepalive_timer);
}

void envd_rpc_on_cancel(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg)
{
	rpc->cancel_cb = cb;
	rpc->cancel_arg = arg;
	if (cb && !rpc->req && rpc->phase == PHASE_HANDLER)
		schedule_cancel(rpc);
}

long long envd_rpc_timeout_ms(envd_rpc *rpc)
{
	return rpc->timeout_ms;
}

int envd_rpc_deadline_passed(envd_rpc *rpc)
{
	return rpc->deadline_passed;
}

size_t envd_rpc_pending(envd_rpc *rpc)
{
	return rpc->req ? http_resp_pending(rpc->req) : 0;
}

void envd_rpc_on_drain(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg)
{
	rpc->drain_cb = cb;
	rpc->drain_arg = arg;
}

/* ---- deadline ---- */

static void on_deadline(uv_timer_t *t)
{
	envd_rpc *rpc = t->data;
	if (rpc->phase == PHASE_DONE || rpc->cancel_pending)
		return;
	rpc->deadline_passed = 1;
	if (rpc->phase == PHASE_HANDLER && rpc->cancel_cb) {
		/* The callback may still send frames (e.g. the end event of the process it killed). */
		envd_rpc_cancel_fn cb = rpc->cancel_cb;
		rpc->cancel_cb = NULL;
		cb(rpc, rpc->cancel_arg);
		if (rpc->phase == PHASE_DONE)
			return;
	}
	finish_with_error(rpc, CONNECT_DEADLINE_EXCEEDED, "context deadline exceeded");
}

/* ---- request intake ---- */

/* Media type without parameters matches `want` (case-insensitive). */
static int content_type_is(const char *ct, const char *want)
{
	if (!ct)
		return 0;
	while (*ct == ' ')
		ct++;
	size_t wl = strlen(want);
	if (strncasecmp(ct, want, wl) != 0)
		return 0;
	ct += wl;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* Acting user: Basic credentials' username, else the default user. */
static int resolve_user(envd_rpc *rpc)
{
	char name[128] = "";
	const char *auth = rpc->req ? http_req_header(rpc->req, "Authorization") : NULL;
	if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
		size_t len;
		const char *b64 = auth + 6;
		while (*b64 == ' ')
			b64++;
		unsigned char *cred = envd_base64_decode(b64, &len);
		if (cred) {
			char *colon = memchr(cred, ':', len);
			size_t ul = colon ? (size_t)(colon - (char *)cred) : len;
			if (ul >= sizeof name)
				ul = sizeof name - 1;
			memcpy(name, cred, ul);
			name[ul] = '\0';
			free(cred);
		}
	}
	if (!name[0] && envd.default_user)
		snprintf(name, sizeof name, "%s", envd.default_user);
	if (!name[0]) {
		envd_rpc_fail(rpc, CONNECT_UNAUTHENTICATED, "no user specified");
		return -1;
	}
	cube_err err = {0};
	if (envd_user_lookup(name, &rpc->user, &err) < 0) {
		envd_rpc_fail(rpc, err.status == 401 ? CONNECT_UNAUTHENTICATED : CONNECT_INTERNAL, "%s", err.msg);
		return -1;
	}
	rpc->has_user = 1;
	return 0;
}

static void on_body(http_req *req, char *body, size_t len, int error_status)
{
	envd_rpc *rpc = http_req_data(req);
	if (!rpc || rpc->phase != PHASE_READING)
		return;
	rpc->phase = PHASE_HANDLER;
	if (error_status == 413) {
		envd_rpc_fail(rpc, CONNECT_RESOURCE_EXHAUSTED, "request message larger than %u bytes", MAX_REQUEST_BYTES);
		return;
	}
	if (error_status) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "cannot read request body");
		return;
	}
	const char *payload = body;
	size_t plen = len;
	if (rpc->method->streaming) {
		/* Exactly one uncompressed message envelope (§3.6.2). */
		if (len < ENVELOPE_HEADER) {
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: incomplete envelope (%zu bytes)", len);
			return;
		}
		const unsigned char *b = (const unsigned char *)body;
		uint32_t mlen = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
		if (b[0] & 0x01) {
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: compressed messages are not supported");
			return;
		}
		if (b[0] != 0x00) {
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: invalid envelope flags 0x%02x", b[0]);
			return;
		}
		if ((size_t)mlen != len - ENVELOPE_HEADER) {
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT,
				      "protocol error: envelope declares %u bytes but %zu follow", mlen, len - ENVELOPE_HEADER);
			return;
		}
		payload = body + ENVELOPE_HEADER;
		plen = mlen;
	}
	json_error_t jerr;
	json_t *msg = plen ? json_loadb(payload, plen, 0, &jerr) : json_object();
	if (!msg) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "unmarshal message: %s", jerr.text);
		return;
	}
	if (!json_is_object(msg)) {
		json_decref(msg);
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "unmarshal message: not a JSON object");
		return;
	}
	if (rpc->method->needs_user && resolve_user(rpc) < 0) {
		json_decref(msg);
		return;
	}
	/* The request is borrowed for the duration of the call; handlers incref what they keep. */
	rpc->method->fn(rpc, msg);
	json_decref(msg);
}

/* ---- client streams: frames are cut out of the body as it arrives ---- */

static int take_frame(envd_rpc *rpc, size_t *used)
{
	const unsigned char *b = (const unsigned char *)rpc->in;
	if (rpc->in_len < ENVELOPE_HEADER)
		return 0;
	uint32_t mlen = (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4];
	if (b[0] & 0x01) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: compressed messages are not supported");
		return -1;
	}
	if (b[0] & ~0x02) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: invalid envelope flags 0x%02x", b[0]);
		return -1;
	}
	if (mlen > MAX_REQUEST_BYTES) {
		envd_rpc_fail(rpc, CONNECT_RESOURCE_EXHAUSTED, "request message larger than %u bytes", MAX_REQUEST_BYTES);
		return -1;
	}
	if (rpc->in_len < ENVELOPE_HEADER + (size_t)mlen)
		return 0;
	*used = ENVELOPE_HEADER + mlen;
	if (b[0] & 0x02)
		return 2; /* an end-of-stream frame: nothing to deliver */
	json_error_t jerr;
	json_t *msg = mlen ? json_loadb(rpc->in + ENVELOPE_HEADER, mlen, 0, &jerr) : json_object();
	if (!json_is_object(msg)) {
		json_decref(msg);
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "unmarshal message: %s", msg ? "not a JSON object" : jerr.text);
		return -1;
	}
	rpc->phase = PHASE_HANDLER;
	rpc->method->fn(rpc, msg);
	json_decref(msg);
	return 1;
}

static void on_chunk(http_req *req, const char *data, size_t len)
{
	envd_rpc *rpc = http_req_data(req);
	if (!rpc || rpc->phase == PHASE_DONE)
		return;
	if (!data) {
		rpc->phase = PHASE_HANDLER;
		if (rpc->in_len)
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: incomplete envelope (%zu bytes)", rpc->in_len);
		else
			rpc->method->fn(rpc, NULL);
		return;
	}
	if (rpc->in_len + len > rpc->in_cap) {
		size_t cap = rpc->in_cap ? rpc->in_cap : 4096;
		while (cap < rpc->in_len + len)
			cap *= 2;
		char *n = realloc(rpc->in, cap);
		if (!n) {
			envd_rpc_fail(rpc, CONNECT_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		rpc->in = n;
		rpc->in_cap = cap;
	}
	memcpy(rpc->in + rpc->in_len, data, len);
	rpc->in_len += len;
	size_t used;
	int rc;
	/* The handler may finish the call mid-chunk; rpc stays allocated until our timers close. */
	while (rpc->phase != PHASE_DONE && (rc = take_frame(rpc, &used)) > 0) {
		memmove(rpc->in, rpc->in + used, rpc->in_len - used);
		rpc->in_len -= used;
	}
}

void envd_rpc_pause_input(envd_rpc *rpc)
{
	if (rpc->req && rpc->phase != PHASE_DONE)
		http_req_pause_body(rpc->req);
}

void envd_rpc_resume_input(envd_rpc *rpc)
{
	if (rpc->req && rpc->phase != PHASE_DONE)
		http_req_resume_body(rpc->req);
}

void envd_rpc_set_data(envd_rpc *rpc, void *data)
{
	rpc->handler_data = data;
}

void *envd_rpc_get_data(envd_rpc *rpc)
{
	return rpc->handler_data;
}

static const struct envd_method *find_method(const char *path)
{
	const struct envd_method *tables[] = {envd_process_methods, envd_filesystem_methods};
	for (size_t t = 0; t < CUBE_ARRAY_LEN(tables); t++)
		for (const struct envd_method *m = tables[t]; m->path; m++)
			if (strcmp(m->path, path) == 0)
				return m;
	return NULL;
}

static void plain_connect_error(http_req *req, int status, enum connect_code code, const char *msg)
{
	json_t *e = error_object(code, msg);
	char *s = json_dumps(e, JSON_COMPACT);
	json_decref(e);
	http_header h[] = {{"Content-Type", "application/json"}};
	size_t len = s ? strlen(s) : 0;
	http_resp_start(req, status, h, 1, (long long)len);
	http_resp_write(req, s, len);
	http_resp_end(req);
	free(s);
}

int envd_connect_dispatch(http_req *req)
{
	const char *path = http_req_path(req);
	if (strncmp(path, "/process.Process/", 17) != 0 && strncmp(path, "/filesystem.Filesystem/", 23) != 0)
		return -1;
	const struct envd_method *m = find_method(path);
	if (!m) {
		/* A bare 404 would read as "unimplemented" anyway; say so with a Connect body. */
		char msg[512];
		snprintf(msg, sizeof msg, "%.400s is not implemented", path);
		plain_connect_error(req, 404, CONNECT_UNIMPLEMENTED, msg);
		return 0;
	}
	if (strcmp(http_req_method(req), "POST") != 0) {
		plain_connect_error(req, 405, CONNECT_UNIMPLEMENTED, "only POST is supported");
		return 0;
	}
	const char *ct = http_req_header(req, "Content-Type");
	if (!content_type_is(ct, m->streaming ? "application/connect+json" : "application/json")) {
		char msg[256];
		snprintf(msg, sizeof msg, "unsupported content type '%.100s' (expected %s)", ct ? ct : "",
			 m->streaming ? "application/connect+json" : "application/json");
		plain_connect_error(req, 415, CONNECT_INVALID_ARGUMENT, msg);
		return 0;
	}

	envd_rpc *rpc = calloc(1, sizeof *rpc);
	if (!rpc) {
		plain_connect_error(req, 500, CONNECT_INTERNAL, "out of memory");
		return 0;
	}
	rpc->req = req;
	rpc->method = m;
	rpc->phase = PHASE_READING;
	rpc->keepalive_ms = DEFAULT_KEEPALIVE_S * 1000;
	uv_timer_init(envd.loop, &rpc->keepalive_timer);
	uv_timer_init(envd.loop, &rpc->timer);
	rpc->keepalive_timer.data = rpc->timer.data = rpc;
	rpc->open_handles = 2;
	http_req_set_data(req, rpc);
	http_req_on_close(req, on_http_close);
	http_resp_on_drain(req, on_http_drain);

	const char *ka = http_req_header(req, "Keepalive-Ping-Interval");
	if (ka) {
		char *end;
		long v = strtol(ka, &end, 10);
		if (end != ka && !*end && v > 0 && v < 86400)
			rpc->keepalive_ms = (uint64_t)v * 1000;
	}
	const char *to = http_req_header(req, "Connect-Timeout-Ms");
	if (to) {
		/* Connect allows at most 10 digits. */
		size_t n = strlen(to);
		int ok = n > 0 && n <= 10;
		for (size_t i = 0; ok && i < n; i++)
			ok = isdigit((unsigned char)to[i]);
		if (!ok) {
			rpc->phase = PHASE_HANDLER;
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "protocol error: invalid Connect-Timeout-Ms '%.32s'", to);
			return 0;
		}
		rpc->timeout_ms = strtoll(to, NULL, 10);
		if (rpc->timeout_ms > 0)
			uv_timer_start(&rpc->timer, on_deadline, (uint64_t)rpc->timeout_ms, 0);
	}
	if (m->streaming == 2)
		http_req_stream_body(req, on_chunk);
	else
		http_req_read_body(req, MAX_REQUEST_BYTES, on_body);
	return 0;
}
