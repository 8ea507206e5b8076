/* Administration routes, served only on the root-only admin unix socket: API keys (the key itself is
 * returned once, at creation; afterwards only its id, name and display prefix are known) and what this
 * node can do (GET /admin/node). */
#include "api/internal.h"

#include <stdlib.h>

#include "api/validate.h"
#include "common/log.h"
#include "daemon/eviction.h"
#include "runtime/criu.h"
#include "store/store.h"

static void apikey_create_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	char *name = NULL;
	cube_err err = {0};
	if (api_parse_apikey_create(body, len, &name, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	char key[48], key_id[24];
	if (store_apikey_create(name, key, key_id, &err) < 0) {
		free(name);
		api_send_err(req, &err);
		return;
	}
	log_info("api key %s (%s) created", key_id, name);
	api_send_json(req, 201, json_pack("{s:s,s:s,s:s}", "id", key_id, "name", name, "key", key));
	free(name);
}

void api_apikey_create(http_req *req, const char *id)
{
	api_with_body(req, id, apikey_create_body);
}

void api_apikey_list(http_req *req, const char *id)
{
	(void)id;
	json_t *list = NULL;
	cube_err err = {0};
	if (store_apikey_list(&list, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	api_send_json(req, 200, list);
}

void api_apikey_delete(http_req *req, const char *id)
{
	cube_err err = {0};
	if (store_apikey_delete(id, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	log_info("api key %s deleted", id);
	api_send_no_content(req);
}

/* GET /admin/node: this node's version and optional capabilities (CRIU, detected at start). */
void api_node_get(http_req *req, const char *id)
{
	(void)id;
	const struct rt_criu_status *c = rt_criu_status();
	json_t *criu = json_pack("{s:b}", "available", c->available);
	if (c->path[0])
		json_object_set_new(criu, "path", json_string(c->path));
	if (c->version[0])
		json_object_set_new(criu, "version", json_string(c->version));
	if (!c->available)
		json_object_set_new(criu, "reason", json_string(c->reason));
	const struct evict_config *e = evict_config();
	json_t *eviction = json_pack("{s:i,s:I,s:i}", "idleSeconds", (int)e->idle_s, "hostBelowMB",
				     (json_int_t)e->host_low_mb, "capPercent", (int)e->cap_pct);
	api_send_json(req, 200, json_pack("{s:s,s:o,s:o}", "version", CUBE_VERSION, "criu", criu, "eviction", eviction));
}
