/* Routing rules of the data plane (e2b-protocol §2.3): the recommended rule for a compatible
 * server is "both routing headers → headers, else Host". Messages follow E2B's text bodies. */
#include "proxy/route.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Sandbox ids are ours ([a-z0-9]); accepting a little more costs nothing, the table decides. */
static int valid_id(const char *s, size_t len)
{
	if (len == 0 || len >= ROUTE_ID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return 0;
	return 1;
}

static int parse_port(const char *s, size_t len)
{
	if (len == 0 || len > 5)
		return -1;
	int port = 0;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		port = port * 10 + (s[i] - '0');
	}
	return port >= 1 && port <= 65535 ? port : -1;
}

static int route_set(struct proxy_route *out, const char *id, size_t id_len, const char *port, size_t port_len,
		     cube_err *err)
{
	if (!valid_id(id, id_len))
		return cube_fail(err, 400, 0, "Invalid sandbox ID");
	int p = parse_port(port, port_len);
	if (p < 0)
		return cube_fail(err, 400, 0, "Invalid sandbox port");
	memcpy(out->sandbox_id, id, id_len);
	out->sandbox_id[id_len] = '\0';
	out->port = p;
	return 0;
}

int proxy_route_parse(const char *host, const char *hdr_sandbox_id, const char *hdr_sandbox_port,
		      struct proxy_route *out, cube_err *err)
{
	if (hdr_sandbox_id && hdr_sandbox_port)
		return route_set(out, hdr_sandbox_id, strlen(hdr_sandbox_id), hdr_sandbox_port,
				 strlen(hdr_sandbox_port), err);
	if (!host || !*host)
		return cube_fail(err, 400, 0, "missing header");
	const char *dot = strchr(host, '.');
	if (!dot)
		return cube_fail(err, 400, 0, "Invalid host");
	/* label = host[0, dot): "<port>-<id>[-<clientID>...]" */
	const char *dash = memchr(host, '-', (size_t)(dot - host));
	if (!dash)
		return cube_fail(err, 400, 0, "Invalid host");
	const char *id = dash + 1;
	const char *id_end = memchr(id, '-', (size_t)(dot - id));
	if (!id_end)
		id_end = dot;
	return route_set(out, id, (size_t)(id_end - id), host, (size_t)(dash - host), err);
}
