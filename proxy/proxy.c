/* Entry point of the data-plane proxy: route each request (headers or Host), look the sandbox up,
 * open a socket inside its network namespace and hand over to an exchange (exchange.c). Errors
 * follow E2B's edge proxy (e2b-protocol §2.3, §2.6). X-Access-Token is left to envd. */
#include "proxy/proxy.h"
#include "proxy/internal.h"
#include "common/log.h"
#include "daemon/sandboxes.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static struct {
	uv_loop_t *loop;
	char domain[256];
} P;

void proxy_init(uv_loop_t *loop, const struct proxy_config *cfg)
{
	P.loop = loop;
	snprintf(P.domain, sizeof P.domain, "%s", cfg && cfg->domain ? cfg->domain : "localhost");
	log_info("proxy: routing by E2b-Sandbox-Id/-Port headers or Host <port>-<sandboxID>.%s", P.domain);
}

static void reply_json(http_req *req, int status, json_t *body)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		http_resp_error(req, status, "out of memory");
		return;
	}
	http_resp_send(req, status, "application/json", text, strlen(text));
	free(text);
}

void proxy_reply_not_found(http_req *req, const char *sandbox_id)
{
	reply_json(req, 502, json_pack("{s:s,s:s,s:i}", "sandboxId", sandbox_id, "message",
				       "The sandbox was not found", "code", 502));
}

void proxy_reply_port_closed(http_req *req, const char *sandbox_id, int port)
{
	reply_json(req, 502, json_pack("{s:s,s:s,s:i,s:i}", "sandboxId", sandbox_id, "message",
				       "The sandbox is running but port is not open", "port", port, "code", 502));
}

void proxy_reply_bad_gateway(http_req *req, const char *sandbox_id, const char *message)
{
	reply_json(req, 502, json_pack("{s:s,s:s,s:i}", "sandboxId", sandbox_id, "message", message, "code", 502));
}

static void forward(http_req *req, struct sandbox *sb, const struct proxy_route *route)
{
	cube_err err = {0};
	int fd = sbx_socket(sb, &err);
	if (fd < 0) {
		log_debug("proxy: %s: %s", route->sandbox_id, err.msg);
		proxy_reply_not_found(req, route->sandbox_id);
		return;
	}
	log_debug("proxy: %s %s -> %s:%d", http_req_method(req), http_req_target(req), route->sandbox_id, route->port);
	exchange_start(P.loop, req, route, fd);
}

/* autoResume of a sandbox that must boot again (paused or evicted to disk, or its files being
 * copied): the request waits for it as it waits for a thaw, unless the client leaves first. */
struct wake {
	http_req *req; /* NULL once the client left */
	struct proxy_route route;
};

static void wake_client_gone(http_req *req)
{
	struct wake *w = http_req_data(req);
	if (w)
		w->req = NULL;
}

static void woke(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct wake *w = arg;
	http_req *req = w->req;
	if (req) {
		http_req_on_close(req, NULL);
		http_req_set_data(req, NULL);
		if (sb) {
			forward(req, sb, &w->route);
		} else {
			log_warn("proxy: %s: auto-resume: %s", w->route.sandbox_id, err->msg);
			proxy_reply_not_found(req, w->route.sandbox_id);
		}
	}
	free(w);
}

void proxy_handle(http_req *req)
{
	struct proxy_route route;
	cube_err err = {0};
	if (strcmp(http_req_method(req), "CONNECT") == 0) {
		/* a tunnel to anywhere is not what the data plane offers */
		http_resp_error(req, 405, "CONNECT is not supported");
		return;
	}
	if (proxy_route_parse(http_req_header(req, "Host"), http_req_header(req, "E2b-Sandbox-Id"),
			      http_req_header(req, "E2b-Sandbox-Port"), &route, &err) < 0) {
		http_resp_error(req, 400, "%s", err.msg);
		return;
	}
	struct sandbox *sb = sbx_find(route.sandbox_id);
	if (!sb || sb->state == SBX_KILLING) {
		proxy_reply_not_found(req, route.sandbox_id);
		return;
	}
	/* allowPublicTraffic=false: every port but envd's needs the sandbox's traffic token (§2.5). */
	if (sb->traffic_token[0] && route.port != SBX_ENVD_PORT) {
		const char *tok = http_req_header(req, "E2B-Traffic-Access-Token");
		if (!tok || strcmp(tok, sb->traffic_token) != 0) {
			reply_json(req, 403, json_pack("{s:s,s:s,s:i}", "sandboxId", route.sandbox_id, "message",
						       "Sandbox is secured with traffic access token. Provide a valid "
						       "token in the e2b-traffic-access-token header.", "code", 403));
			return;
		}
	}
	if (sb->auto_resume && ((sb->state == SBX_PAUSED && (sb->on_disk || sb->snapshotting)) ||
				sb->state == SBX_RESTARTING)) {
		struct wake *w = calloc(1, sizeof *w);
		if (!w) {
			http_resp_error(req, 500, "out of memory");
			return;
		}
		w->req = req;
		w->route = route;
		http_req_set_data(req, w);
		http_req_on_close(req, wake_client_gone);
		sbx_connect(sb, sb->timeout_s, 1, woke, w);
		return;
	}
	if (sb->state == SBX_PAUSED && sb->auto_resume && sbx_resume(sb, sb->timeout_s, &err) < 0)
		log_warn("proxy: %s: auto-resume: %s", route.sandbox_id, err.msg); /* a thaw: the request waits */
	forward(req, sb, &route);
}
