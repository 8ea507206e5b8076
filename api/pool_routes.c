/* Pool administration (admin unix socket only): GET /admin/pool [?templateID=NAME] and
 * PUT /admin/pool {"templateID": NAME, "min": N, "max": N}. cubemastercli pool uses these. */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

void api_pool_get(http_req *req, const char *id)
{
	(void)id;
	char *name = http_req_query_param(req, "templateID");
	if (!name) {
		api_send_json(req, 200, pool_list_json());
		return;
	}
	cube_err err = {0};
	json_t *p = pool_get_json(name, &err);
	free(name);
	if (!p)
		api_send_err(req, &err);
	else
		api_send_json(req, 200, p);
}

static int get_count(json_t *body, const char *key, unsigned *out, cube_err *err)
{
	json_t *v = json_object_get(body, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
		return cube_fail(err, 400, 0, "%s must be a non-negative integer", key);
	*out = (unsigned)json_integer_value(v);
	return 0;
}

static void pool_put_body(http_req *req, const char *id, const char *body, size_t len)
{
	(void)id;
	cube_err err = {0};
	json_error_t jerr;
	json_t *b = json_loadb(body, len, 0, &jerr);
	unsigned min = 0, max = 0;
	const char *name = json_string_value(json_object_get(b, "templateID"));
	if (!json_is_object(b))
		cube_fail(&err, 400, 0, "body must be a JSON object: %s", b ? "not an object" : jerr.text);
	else if (!name || !*name)
		cube_fail(&err, 400, 0, "templateID is required");
	if (!err.status && get_count(b, "min", &min, &err) == 0 && get_count(b, "max", &max, &err) == 0)
		pool_set(name, min, max, &err);
	json_t *out = err.status ? NULL : pool_get_json(name, &err);
	json_decref(b);
	if (!out)
		api_send_err(req, &err);
	else
		api_send_json(req, 200, out);
}

void api_pool_put(http_req *req, const char *id)
{
	api_with_body(req, id, pool_put_body);
}
