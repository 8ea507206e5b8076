/* GET /sandboxes/{id}/logs (v1) and GET /v2/sandboxes/{id}/logs: envd and lifecycle lines of a sandbox,
 * from its in-memory log while it runs, or from the store once it has been killed. */
#include "api/internal.h"

#include "api/log_query.h"
#include "store/store.h"

/* The sandbox's entries (new reference), or NULL after answering 404/500. */
static json_t *entries_of(http_req *req, const char *id)
{
	struct sandbox *sb = sbx_find(id);
	if (sb && sb->logs)
		return json_incref(sb->logs);
	json_t *stored = NULL;
	cube_err err = {0};
	if (store_log_list(id, 0, 0, &stored, &err) < 0) {
		api_send_err(req, &err);
		return NULL;
	}
	if (json_array_size(stored) == 0 && !sb) {
		json_decref(stored);
		api_fail_not_found(req, id);
		return NULL;
	}
	json_t *entries = api_log_entries_from_store(stored);
	json_decref(stored);
	return entries;
}

static void logs(http_req *req, const char *id, int v2)
{
	struct api_log_query q;
	cube_err err = {0};
	if (api_parse_log_query(http_req_query(req), v2, &q, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	json_t *entries = entries_of(req, id);
	if (entries) {
		json_t *sel = api_log_select(entries, &q);
		json_decref(entries);
		api_send_json(req, 200, v2 ? json_pack("{s:o}", "logs", sel) : api_logs_v1_body(sel));
		if (!v2)
			json_decref(sel);
	}
	api_log_query_free(&q);
}

void api_logs_v1(http_req *req, const char *id)
{
	logs(req, id, 0);
}

void api_logs_v2(http_req *req, const char *id)
{
	logs(req, id, 1);
}
