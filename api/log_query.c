/* Selection of sandbox log lines for the logs endpoints. The daemon keeps each live sandbox's recent
 * lines in memory; a killed sandbox's lines come from the store. Both arrive here as SandboxLogEntry. */
#include "api/log_query.h"
#include "common/http_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/list_query.h"
#include "common/util.h"

static const char *const levels[] = {"debug", "info", "warn", "error"};

int api_log_level_rank(const char *level)
{
	for (size_t i = 0; i < CUBE_ARRAY_LEN(levels); i++)
		if (level && strcmp(level, levels[i]) == 0)
			return (int)i;
	if (level && strcmp(level, "warning") == 0)
		return 2;
	return 1;
}

int api_parse_log_query(const char *query, int v2, struct api_log_query *q, cube_err *err)
{
	memset(q, 0, sizeof *q);
	q->limit = API_LOGS_MAX_LIMIT;
	int rc = 0;
	char *v = http_query_get(query, v2 ? "cursor" : "start");
	if (v) {
		if (api_parse_ll(v, &q->cursor_ms) < 0 || q->cursor_ms < 0)
			rc = cube_fail(err, 400, 0, "%s must be a timestamp in milliseconds", v2 ? "cursor" : "start");
		q->has_cursor = 1;
		free(v);
		if (rc < 0)
			return -1;
	}
	if ((v = http_query_get(query, "limit"))) {
		long long n;
		if (api_parse_ll(v, &n) < 0 || n < 0 || n > API_LOGS_MAX_LIMIT)
			rc = cube_fail(err, 400, 0, "limit must be an integer between 0 and %d", API_LOGS_MAX_LIMIT);
		else
			q->limit = (int)n;
		free(v);
		if (rc < 0)
			return -1;
	}
	if (!v2)
		return 0;
	if ((v = http_query_get(query, "direction"))) {
		if (strcmp(v, "backward") == 0)
			q->backward = 1;
		else if (strcmp(v, "forward") != 0)
			rc = cube_fail(err, 400, 0, "invalid direction '%s': expected forward or backward", v);
		free(v);
		if (rc < 0)
			return -1;
	}
	if ((v = http_query_get(query, "level"))) {
		int found = -1;
		for (size_t i = 0; i < CUBE_ARRAY_LEN(levels); i++)
			if (strcmp(v, levels[i]) == 0)
				found = (int)i;
		if (found < 0)
			rc = cube_fail(err, 400, 0, "invalid level '%s': expected debug, info, warn or error", v);
		else
			q->min_level = found;
		free(v);
		if (rc < 0)
			return -1;
	}
	if ((v = http_query_get(query, "search"))) {
		if (*v)
			q->search = v;
		else
			free(v);
	}
	return 0;
}

void api_log_query_free(struct api_log_query *q)
{
	free(q->search);
	q->search = NULL;
}

json_t *api_log_entries_from_store(json_t *stored)
{
	json_t *out = json_array();
	size_t i;
	json_t *line;
	json_array_foreach(stored, i, line) {
		char ts[40];
		cube_format_time((long long)json_integer_value(json_object_get(line, "timestamp")), ts, sizeof ts);
		const char *level = json_string_value(json_object_get(line, "level"));
		const char *message = json_string_value(json_object_get(line, "message"));
		json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:{}}", "timestamp", ts, "level", level ? level : "info",
						     "message", message ? message : "", "fields"));
	}
	return out;
}

static int selected(json_t *e, const struct api_log_query *q)
{
	const char *level = json_string_value(json_object_get(e, "level"));
	const char *message = json_string_value(json_object_get(e, "message"));
	if (api_log_level_rank(level) < q->min_level)
		return 0;
	if (q->search && (!message || !strstr(message, q->search)))
		return 0;
	if (q->has_cursor) {
		long long ts;
		const char *t = json_string_value(json_object_get(e, "timestamp"));
		if (!t || api_parse_rfc3339(t, &ts) < 0)
			return 0;
		if (q->backward ? ts > q->cursor_ms : ts < q->cursor_ms)
			return 0;
	}
	return 1;
}

json_t *api_log_select(json_t *entries, const struct api_log_query *q)
{
	json_t *out = json_array();
	size_t n = json_array_size(entries);
	for (size_t k = 0; k < n && json_array_size(out) < (size_t)q->limit; k++) {
		json_t *e = json_array_get(entries, q->backward ? n - 1 - k : k);
		if (json_is_object(e) && selected(e, q))
			json_array_append(out, e);
	}
	return out;
}

json_t *api_logs_v1_body(json_t *selected_entries)
{
	json_t *logs = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(selected_entries, i, e) {
		json_array_append_new(logs, json_pack("{s:O?,s:O?}", "timestamp", json_object_get(e, "timestamp"),
						      "line", json_object_get(e, "message")));
	}
	return json_pack("{s:o,s:O}", "logs", logs, "logEntries", selected_entries);
}
