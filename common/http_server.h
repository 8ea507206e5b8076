/* HTTP/1.1 server on libuv + http_parser, shared by cubed's API, its data-plane proxy and cube-envd.
 * Both directions stream: request bodies arrive through callbacks with pause/resume, responses are
 * written in pieces with a drain callback. A request object lives from on_request until its response
 * has ended, or until on_close tells the handler the client went away, whichever comes first. */
#ifndef CUBE_COMMON_HTTP_SERVER_H
#define CUBE_COMMON_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "common/error.h"

typedef struct http_server http_server;
typedef struct http_req http_req;

typedef struct http_header {
	const char *name;
	const char *value;
} http_header;

typedef void (*http_request_cb)(http_req *req, void *ctx);
/* Whole body buffered: error_status is 0, or 413 (too large) / 400 (malformed). body is NUL-terminated. */
typedef void (*http_body_cb)(http_req *req, char *body, size_t len, int error_status);
/* Streamed body: called per piece; data == NULL marks the end of the body. */
typedef void (*http_chunk_cb)(http_req *req, const char *data, size_t len);
typedef void (*http_req_cb)(http_req *req);

http_server *http_server_new(uv_loop_t *loop, http_request_cb on_request, void *ctx);
/* "host:port" ("[::1]:80" for IPv6). */
int http_server_listen_tcp(http_server *srv, const char *host_port, cube_err *err);
/* Unix socket at path (replaced if stale), mode 0600. */
int http_server_listen_unix(http_server *srv, const char *path, cube_err *err);
/* Headers appended to every response of this server (the array must outlive it). */
void http_server_set_default_headers(http_server *srv, const http_header *headers, size_t n);
/* Observer called as each response starts: its status and the seconds since the request's first
 * byte (cubed's metrics). req is valid during the call. */
typedef void (*http_response_cb)(http_req *req, int status, double seconds, void *ctx);
void http_server_on_response(http_server *srv, http_response_cb cb, void *ctx);
/* Port actually bound by the last TCP listen (useful with port 0). */
int http_server_port(http_server *srv);
void http_server_close(http_server *srv);

const char *http_req_method(http_req *req);
const char *http_req_target(http_req *req);          /* raw request target: path?query */
const char *http_req_path(http_req *req);            /* path only, not percent-decoded */
const char *http_req_query(http_req *req);           /* raw query without '?', or "" */
const char *http_req_header(http_req *req, const char *name); /* case-insensitive; NULL if absent */
size_t http_req_header_count(http_req *req);
void http_req_header_at(http_req *req, size_t i, const char **name, const char **value);
int http_req_http_minor(http_req *req);
int http_req_is_upgrade(http_req *req);
int http_req_has_body(http_req *req);                /* a Content-Length > 0 or chunked body follows */
void http_req_set_data(http_req *req, void *data);
void *http_req_data(http_req *req);
/* Peer credentials when served over a unix socket (uid), else -1. */
long http_req_peer_uid(http_req *req);
/* Copy of the query parameter `name`, percent-decoded ('+' as space); NULL if absent. Caller frees. */
char *http_req_query_param(http_req *req, const char *name);
/* Same lookup in any raw query string (NULL or "" allowed). Caller frees. */
char *http_query_get(const char *query, const char *name);
/* Percent-decode (and '+' -> space when form) a string into a new buffer. */
char *http_url_decode(const char *s, size_t len, int form);

void http_req_read_body(http_req *req, size_t max_bytes, http_body_cb cb);
void http_req_stream_body(http_req *req, http_chunk_cb cb);
void http_req_pause_body(http_req *req);
void http_req_resume_body(http_req *req);

/* content_length < 0 means chunked transfer encoding. */
void http_resp_start(http_req *req, int status, const http_header *headers, size_t n, long long content_length);
int http_resp_write(http_req *req, const void *data, size_t len);
size_t http_resp_pending(http_req *req);
void http_resp_on_drain(http_req *req, http_req_cb cb);
void http_resp_end(http_req *req);
/* Called if the connection dies before the response ended; req is freed right after it returns. */
void http_req_on_close(http_req *req, http_req_cb cb);

void http_resp_send(http_req *req, int status, const char *content_type, const void *body, size_t len);
/* {"code":status,"message":msg} with application/json. */
void http_resp_error(http_req *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Drop the connection now (e.g. an upstream died mid-response and the client must see a broken
 * body, not a complete one). The close callback is not called; req is freed. */
void http_req_abort(http_req *req);

/* Hand the connection over (after an Upgrade): the caller owns the returned stream and must close
 * it; *leftover receives bytes already read past the request head (caller frees). req is freed. */
uv_stream_t *http_req_detach(http_req *req, char **leftover, size_t *leftover_len);

const char *http_status_text(int status);

#endif
