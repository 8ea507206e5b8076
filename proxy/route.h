/* Which sandbox and port a data-plane request is for (e2b-protocol §2.3). Internal to the proxy;
 * kept apart so the rules can be tested as a table. */
#ifndef CUBE_PROXY_ROUTE_H
#define CUBE_PROXY_ROUTE_H

#include "common/error.h"

#define ROUTE_ID_MAX 64

struct proxy_route {
	char sandbox_id[ROUTE_ID_MAX];
	int port;
};

/* Both headers present → use them; otherwise parse Host "<port>-<id>[-<clientID>].<domain>[:p]".
 * Any argument may be NULL (header absent). Failures are 400 with E2B's messages. */
int proxy_route_parse(const char *host, const char *hdr_sandbox_id, const char *hdr_sandbox_port,
		      struct proxy_route *out, cube_err *err);

#endif
