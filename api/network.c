/* PUT /sandboxes/{id}/network (E2B's update: the whole policy is replaced, omitted fields are cleared)
 * and GET /sandboxes/{id}/network (this server's view: policy, address, learned-address count). */
#include "api/internal.h"

#include <stdlib.h>

#include "api/validate.h"
#include "net/net.h"

static void update_body(http_req *req, const char *id, const char *body, size_t len)
{
	struct net_policy *p = malloc(sizeof *p);
	cube_err err = {0};
	if (!p) {
		http_resp_error(req, 500, "out of memory");
		return;
	}
	if (api_parse_network_update(body, len, p, &err) < 0) {
		free(p);
		api_send_err(req, &err);
		return;
	}
	struct sandbox *sb = sbx_find(id);
	if (sb && (sb->state != SBX_RUNNING || !sb->net)) {
		http_resp_error(req, 409, "Sandbox \"%s\" is not running", id);
	} else if ((sb = api_running_sandbox(req, id))) {
		if (net_sandbox_set_policy(sb->net, p, &err) < 0)
			api_send_err(req, &err);
		else {
			sbx_log(sb, "info", "network policy replaced");
			api_send_no_content(req);
		}
	}
	net_policy_free(p);
	free(p);
}

void api_network_update(http_req *req, const char *id)
{
	api_with_body(req, id, update_body);
}

void api_network_get(http_req *req, const char *id)
{
	struct sandbox *sb = api_running_sandbox(req, id);
	if (!sb)
		return;
	if (!sb->net) {
		http_resp_error(req, 409, "Sandbox \"%s\" is not running", id);
		return;
	}
	api_send_json(req, 200, net_sandbox_json(sb->net));
}
