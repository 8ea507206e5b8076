/* Connect protocol (v1, JSON codec) over HTTP/1.1 for envd's RPC services: unary calls and
 * server streams with enveloped frames, end-of-stream errors, keepalives and Connect-Timeout-Ms.
 * Services declare method tables; the router calls envd_connect_dispatch for /<svc>/<Method>. */
#ifndef CUBE_ENVD_CONNECT_H
#define CUBE_ENVD_CONNECT_H

#include <jansson.h>

#include "common/http_server.h"
#include "envd/envd.h"

enum connect_code {
	CONNECT_CANCELED = 1, CONNECT_UNKNOWN, CONNECT_INVALID_ARGUMENT, CONNECT_DEADLINE_EXCEEDED,
	CONNECT_NOT_FOUND, CONNECT_ALREADY_EXISTS, CONNECT_PERMISSION_DENIED, CONNECT_RESOURCE_EXHAUSTED,
	CONNECT_FAILED_PRECONDITION, CONNECT_ABORTED, CONNECT_OUT_OF_RANGE, CONNECT_UNIMPLEMENTED,
	CONNECT_INTERNAL, CONNECT_UNAVAILABLE, CONNECT_DATA_LOSS, CONNECT_UNAUTHENTICATED,
};

typedef struct envd_rpc envd_rpc;
typedef void (*envd_rpc_fn)(envd_rpc *rpc, json_t *request);
typedef void (*envd_rpc_cancel_fn)(envd_rpc *rpc, void *arg);

struct envd_method {
	const char *path;          /* "/process.Process/Start" */
	int streaming;             /* 1 = server stream, 0 = unary, 2 = client stream (see below) */
	int needs_user;            /* resolve the acting user (Basic auth or default) before the call */
	envd_rpc_fn fn;
};

/* Method tables, NULL-path terminated. */
extern const struct envd_method envd_process_methods[];
extern const struct envd_method envd_filesystem_methods[];

/* Router entry: finds the method, checks content type, reads the (enveloped) request, resolves
 * the user and calls the handler. Returns 0 if path was an RPC path (handled), -1 otherwise. */
int envd_connect_dispatch(http_req *req);

/* Acting user; valid for the whole call when the method has needs_user. */
const struct envd_user *envd_rpc_user(envd_rpc *rpc);
/* Unary success (steals msg). */
void envd_rpc_reply(envd_rpc *rpc, json_t *msg);
/* Unary error, or end of stream with an error. The rpc is finished afterwards. */
void envd_rpc_fail(envd_rpc *rpc, enum connect_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Stream: send one message frame (steals msg); restarts the keepalive timer. -1 if gone. */
int envd_rpc_send(envd_rpc *rpc, json_t *msg);
/* Stream: end of stream, success. The rpc is finished afterwards. */
void envd_rpc_end(envd_rpc *rpc);
/* Stream: keepalive message to send after Keepalive-Ping-Interval seconds of silence (steals). */
void envd_rpc_set_keepalive(envd_rpc *rpc, json_t *msg);
/* Called once if the client goes away or the Connect-Timeout-Ms deadline passes before the handler
 * finished the rpc; on deadline the layer then ends the stream with deadline_exceeded itself.
 * After the callback returns the rpc must not be used. */
void envd_rpc_on_cancel(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg);
/* 1 when the cancel came from the deadline (not a disconnect); valid inside the cancel callback. */
int envd_rpc_deadline_passed(envd_rpc *rpc);
/* The call's Connect-Timeout-Ms in milliseconds, 0 when it has none. */
long long envd_rpc_timeout_ms(envd_rpc *rpc);
/* Bytes written but not yet flushed to the client: stop producing above a bound. */
size_t envd_rpc_pending(envd_rpc *rpc);
void envd_rpc_on_drain(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg);
/* Request header (e.g. for X-Metadata-*), NULL if absent. */
const char *envd_rpc_header(envd_rpc *rpc, const char *name);

/* Client streams (streaming = 2, e.g. StreamInput): fn runs once per request message as it arrives,
 * then once with request == NULL at the end of the request body. The answer (envd_rpc_reply or
 * envd_rpc_fail) goes out as one message + EOS in the streaming content type. */
void envd_rpc_pause_input(envd_rpc *rpc);
void envd_rpc_resume_input(envd_rpc *rpc);
/* Per-call handler state (client streams keep theirs here between messages). */
void envd_rpc_set_data(envd_rpc *rpc, void *data);
void *envd_rpc_get_data(envd_rpc *rpc);

#endif
