/* Sandbox log queries (GET /sandboxes/{id}/logs and /v2/...): parse the query, then select entries from
 * an array of SandboxLogEntry {timestamp (RFC 3339), level, message, fields}. Pure, unit-tested alone. */
#ifndef CUBE_API_LOG_QUERY_H
#define CUBE_API_LOG_QUERY_H

#include <jansson.h>

#include "common/error.h"

#define API_LOGS_MAX_LIMIT 1000

struct api_log_query {
	int has_cursor;
	long long cursor_ms;  /* forward: entries at or after it; backward: at or before it */
	int limit;            /* 1..1000 */
	int backward;         /* newest first */
	int min_level;        /* 0 debug, 1 info, 2 warn, 3 error */
	char *search;         /* case-sensitive substring of message; NULL = any */
};

/* v2: cursor, limit, direction, level, search. v1: start (ms) and limit, forward only. */
int api_parse_log_query(const char *query, int v2, struct api_log_query *out, cube_err *err);
void api_log_query_free(struct api_log_query *q);

/* Level name -> 0..3 (unknown names count as info). */
int api_log_level_rank(const char *level);

/* Stored lines {timestamp (ms), level, message} -> SandboxLogEntry array (new reference). */
json_t *api_log_entries_from_store(json_t *stored);
/* The selected entries (new array of new references), in the query's direction. */
json_t *api_log_select(json_t *entries, const struct api_log_query *q);
/* SandboxLogs (v1): {"logs":[{timestamp,line}], "logEntries":[...]} from selected entries. */
json_t *api_logs_v1_body(json_t *selected);

#endif
