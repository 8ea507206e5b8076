/* Data-plane proxy: forwards each request arriving on the proxy listener to a port inside a sandbox,
 * chosen per request by the E2b-Sandbox-Id/-Port headers or by Host <port>-<sandboxID>.<domain>.
 * Bodies stream both ways; Upgrade (WebSocket) becomes a raw tunnel. cubed owns the listener. */
#ifndef CUBE_PROXY_PROXY_H
#define CUBE_PROXY_PROXY_H

#include <uv.h>

#include "common/http_server.h"

struct proxy_config {
	const char *domain;   /* host routing suffix, e.g. "localhost" */
};

void proxy_init(uv_loop_t *loop, const struct proxy_config *cfg);
/* The http_server request callback of the proxy listener. */
void proxy_handle(http_req *req);

#endif
