/* The E2B-compatible control plane (REST). cubed calls api_handle for every request on the API TCP
 * listener (admin = 0: an API key is required) and on the root-only admin unix socket (admin = 1: no
 * key, and the /admin/apikeys routes exist only there). Loop thread only. */
#ifndef CUBE_API_API_H
#define CUBE_API_API_H

#include "common/http_server.h"

struct api_config {
	int local_auth;          /* accept any non-empty X-API-Key (laptop mode) */
	const char *domain;      /* sandbox domain (informational; responses carry domain:null) */
	unsigned max_timeout_s;  /* longest sandbox lifetime a request may ask for */
};

void api_init(const struct api_config *cfg);
void api_handle(http_req *req, int admin);
/* Response observers (http_server_on_response) that feed /metrics: API errors by endpoint, and the
 * data-plane proxy's latency and errors. */
void api_observe_response(http_req *req, int status, double seconds, void *ctx);
void api_observe_proxy_response(http_req *req, int status, double seconds, void *ctx);

#endif
