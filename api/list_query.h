/* Query strings of the list and logs endpoints: raw query parsing, the SDK's triple-encoded metadata
 * filter (§1.9), RFC 3339 times, and the opaque pagination cursor. Pure functions, unit-tested alone. */
#ifndef CUBE_API_LIST_QUERY_H
#define CUBE_API_LIST_QUERY_H

#include <jansson.h>

#include "common/error.h"

#define API_LIST_MAX_LIMIT 100

struct api_list_query {
	json_t *metadata;          /* object key->value that must all match; NULL = no filter */
	int running, paused;       /* which states are wanted */
	long long started_after_ms; /* -1 = no bound */
	char *template_ref;        /* NULL = any */
	int ascending;             /* order=asc; default newest first */
	int limit;                 /* 1..100 */
	int has_cursor;            /* nextToken given: continue after (cursor_started_ms, cursor_id) */
	long long cursor_started_ms;
	char cursor_id[64];
};

/* A whole decimal integer (no sign games, no trailing bytes): 0, or -1 if s is not one. */
int api_parse_ll(const char *s, long long *out);

/* The 4-step metadata decoding: "user%253Dabc" style value (already query-decoded once) -> object. */
int api_decode_metadata_filter(const char *value, json_t **out, cube_err *err);

/* GET /v2/sandboxes (v2 = 1) or GET /sandboxes (v2 = 0: metadata only, running only, no paging). */
int api_parse_list_query(const char *query, int v2, struct api_list_query *out, cube_err *err);
void api_list_query_free(struct api_list_query *q);

/* 1 if metadata (object string->string) contains every pair of filter. */
int api_metadata_matches(json_t *metadata, json_t *filter);

/* Sort key of a listed sandbox: started time, then id. <0, 0, >0 like strcmp, in ascending order. */
int api_list_key_cmp(long long a_ms, const char *a_id, long long b_ms, const char *b_id);

/* Opaque cursor: base64url("<started_ms>__<id>"). out >= 128 bytes. */
void api_cursor_encode(long long started_ms, const char *id, char *out, size_t outlen);
int api_cursor_decode(const char *token, long long *started_ms, char *id, size_t idlen);

/* RFC 3339 date-time ("2026-11-22T07:51:38.025Z", offsets allowed) -> epoch ms; -1 on error. */
int api_parse_rfc3339(const char *s, long long *ms);

#endif
