/* Pieces of the proxy shared between its files: routing errors, one forwarded exchange, the raw
 * tunnel an Upgrade turns into. Not part of the public surface (proxy.h). */
#ifndef CUBE_PROXY_INTERNAL_H
#define CUBE_PROXY_INTERNAL_H

#include <stddef.h>
#include <uv.h>

#include "common/http_server.h"
#include "proxy/route.h"

#define PROXY_CONNECT_TIMEOUT_MS 5000
/* Above this many bytes queued towards one side, stop reading from the other until it drains. */
#define PROXY_HIGH_WATER (1024 * 1024)
#define PROXY_LOW_WATER (256 * 1024)

/* 502 bodies of E2B's edge proxy (e2b-protocol §2.6); the SDK reads 502 as "not running". */
void proxy_reply_not_found(http_req *req, const char *sandbox_id);
void proxy_reply_port_closed(http_req *req, const char *sandbox_id, int port);
void proxy_reply_bad_gateway(http_req *req, const char *sandbox_id, const char *message);

/* Forward req to 127.0.0.1:route->port over fd, a fresh non-blocking TCP socket that already lives
 * in the sandbox's network namespace (ownership of fd passes here). Answers req in every case. */
void exchange_start(uv_loop_t *loop, http_req *req, const struct proxy_route *route, int fd);

/* Splice two connected streams both ways until both directions ended (half-closes are passed on)
 * or one fails, then close and free both handles (malloc'd). The byte buffers are what each peer
 * must receive first; they are copied. */
void tunnel_start(uv_stream_t *client, const char *to_client, size_t to_client_len,
		  uv_stream_t *upstream, const char *to_upstream, size_t to_upstream_len);

#endif
