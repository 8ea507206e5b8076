/* Parsing of list queries: which sandboxes a GET /v2/sandboxes asks for, in which order, from where.
 * The cursor is opaque to clients (base64url of "<started_ms>__<id>", as E2B does); ordering is by start
 * time then id, so pages are stable while sandboxes come and go. */
#include "api/list_query.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/http_server.h"

int api_decode_metadata_filter(const char *value, json_t **out, cube_err *err)
{
	*out = NULL;
	/* step 1 (query decoding) was done by http_query_get; step 2: decode the whole string again */
	char *whole = http_url_decode(value, strlen(value), 0);
	if (!whole)
		return cube_fail(err, 500, ENOMEM, "decode metadata");
	json_t *filter = json_object();
	int rc = 0;
	char *save = NULL;
	for (char *pair = strtok_r(whole, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		/* step 3: exactly one '=' per pair */
		char *eq = strchr(pair, '=');
		if (!eq || strchr(eq + 1, '=') || eq == pair) {
			rc = cube_fail(err, 400, 0, "invalid metadata filter '%s': expected key=value pairs", pair);
			break;
		}
		/* step 4: decode key and value */
		char *k = http_url_decode(pair, (size_t)(eq - pair), 0);
		char *v = http_url_decode(eq + 1, strlen(eq + 1), 0);
		if (!k || !v || json_object_set_new(filter, k, json_string(v)) < 0)
			rc = cube_fail(err, 400, 0, "invalid metadata filter '%s'", pair);
		free(k);
		free(v);
		if (rc < 0)
			break;
	}
	free(whole);
	if (rc < 0) {
		json_decref(filter);
		return -1;
	}
	*out = filter;
	return 0;
}

int api_metadata_matches(json_t *metadata, json_t *filter)
{
	const char *key;
	json_t *want;
	if (!filter)
		return 1;
	json_object_foreach(filter, key, want) {
		json_t *have = json_object_get(metadata, key);
		if (!json_is_string(have) || strcmp(json_string_value(have), json_string_value(want)) != 0)
			return 0;
	}
	return 1;
}

int api_list_key_cmp(long long a_ms, const char *a_id, long long b_ms, const char *b_id)
{
	if (a_ms != b_ms)
		return a_ms < b_ms ? -1 : 1;
	return strcmp(a_id, b_id);
}

static int parse_states(const char *value, struct api_list_query *q, cube_err *err)
{
	q->running = q->paused = 0;
	char *copy = strdup(value);
	if (!copy)
		return cube_fail(err, 500, ENOMEM, "parse state");
	int rc = 0;
	char *save = NULL;
	for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (strcmp(s, "running") == 0) {
			q->running = 1;
		} else if (strcmp(s, "paused") == 0) {
			q->paused = 1;
		} else {
			rc = cube_fail(err, 400, 0, "invalid state '%s': expected running or paused", s);
			break;
		}
	}
	free(copy);
	if (rc == 0 && !q->running && !q->paused)
		q->running = q->paused = 1; /* "state=" means no filter */
	return rc;
}

int api_parse_ll(const char *s, long long *out)
{
	if (!*s)
		return -1;
	errno = 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

int api_parse_list_query(const char *query, int v2, struct api_list_query *q, cube_err *err)
{
	memset(q, 0, sizeof *q);
	q->running = q->paused = 1;
	q->started_after_ms = -1;
	q->limit = API_LIST_MAX_LIMIT;
	int rc = 0;
	char *v = http_query_get(query, "metadata");
	if (v && *v)
		rc = api_decode_metadata_filter(v, &q->metadata, err);
	free(v);
	if (rc < 0)
		goto fail;
	if (!v2) {
		q->paused = 0; /* v1 lists running sandboxes only */
		q->limit = 0;  /* and does not paginate */
		return 0;
	}

	if ((v = http_query_get(query, "state"))) {
		rc = parse_states(v, q, err);
		free(v);
		if (rc < 0)
			goto fail;
	}
	if ((v = http_query_get(query, "startedAfter"))) {
		rc = api_parse_rfc3339(v, &q->started_after_ms);
		if (rc < 0)
			cube_fail(err, 400, 0, "invalid startedAfter '%s': expected an RFC 3339 date-time", v);
		free(v);
		if (rc < 0)
			goto fail;
	}
	if ((v = http_query_get(query, "template"))) {
		if (strchr(v, ':')) {
			cube_fail(err, 400, 0, "template filter must not contain a tag: '%s'", v);
			free(v);
			goto fail;
		}
		if (*v)
			q->template_ref = v;
		else
			free(v);
	}
	if ((v = http_query_get(query, "order"))) {
		if (strcmp(v, "asc") == 0)
			q->ascending = 1;
		else if (strcmp(v, "desc") != 0)
			rc = cube_fail(err, 400, 0, "invalid order '%s': expected asc or desc", v);
		free(v);
		if (rc < 0)
			goto fail;
	}
	if ((v = http_query_get(query, "limit"))) {
		long long n;
		if (api_parse_ll(v, &n) < 0 || n < 1 || n > API_LIST_MAX_LIMIT)
			rc = cube_fail(err, 400, 0, "limit must be an integer between 1 and %d", API_LIST_MAX_LIMIT);
		else
			q->limit = (int)n;
		free(v);
		if (rc < 0)
			goto fail;
	}
	if ((v = http_query_get(query, "nextToken"))) {
		if (*v) {
			if (api_cursor_decode(v, &q->cursor_started_ms, q->cursor_id, sizeof q->cursor_id) < 0)
				rc = cube_fail(err, 400, 0, "invalid nextToken");
			else
				q->has_cursor = 1;
		}
		free(v);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	api_list_query_free(q);
	return -1;
}

void api_list_query_free(struct api_list_query *q)
{
	json_decref(q->metadata);
	free(q->template_ref);
	q->metadata = NULL;
	q->template_ref = NULL;
}

/* ---- cursor ---- */

void api_cursor_encode(long long started_ms, const char *id, char *out, size_t outlen)
{
	char raw[96];
	int n = snprintf(raw, sizeof raw, "%lld__%s", started_ms, id);
	unsigned char b64[132];
	if (n < 0 || (size_t)n >= sizeof raw || outlen < 4 * (((size_t)n + 2) / 3) + 1) {
		if (outlen)
			out[0] = '\0';
		return;
	}
	int m = EVP_EncodeBlock(b64, (const unsigned char *)raw, n);
	size_t o = 0;
	for (int i = 0; i < m && b64[i] != '='; i++)
		out[o++] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : (char)b64[i];
	out[o] = '\0';
}

int api_cursor_decode(const char *token, long long *started_ms, char *id, size_t idlen)
{
	size_t n = strlen(token);
	if (n == 0 || n > 128)
		return -1;
	char b64[136];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = token[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '=')
			break;
		else if (!isalnum((unsigned char)c))
			return -1;
		b64[o++] = c;
	}
	if (o % 4 == 1)
		return -1;
	while (o % 4)
		b64[o++] = '=';
	unsigned char raw[128];
	int m = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)o);
	if (m < 0)
		return -1;
	/* EVP_DecodeBlock counts padding bytes as zeros: drop them */
	for (size_t i = o; i > 0 && b64[i - 1] == '='; i--)
		m--;
	raw[m] = '\0';
	if (memchr(raw, '\0', (size_t)m))
		return -1;
	char *sep = strstr((char *)raw, "__");
	if (!sep)
		return -1;
	*sep = '\0';
	long long ms;
	if (api_parse_ll((char *)raw, &ms) < 0 || ms < 0)
		return -1;
	const char *rid = sep + 2;
	size_t rl = strlen(rid);
	if (rl == 0 || rl >= idlen)
		return -1;
	for (size_t i = 0; i < rl; i++)
		if (!islower((unsigned char)rid[i]) && !isdigit((unsigned char)rid[i]))
			return -1;
	*started_ms = ms;
	memcpy(id, rid, rl + 1);
	return 0;
}

/* ---- RFC 3339 ---- */

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int expect(const char **p, const char *any)
{
	if (!**p || !strchr(any, **p))
		return -1;
	(*p)++;
	return 0;
}

int api_parse_rfc3339(const char *s, long long *ms)
{
	const char *p = s;
	int Y, M, D, h, m, sec, frac_ms = 0;
	if (digits(&p, 4, &Y) || expect(&p, "-") || digits(&p, 2, &M) || expect(&p, "-") || digits(&p, 2, &D) ||
	    expect(&p, "Tt ") || digits(&p, 2, &h) || expect(&p, ":") || digits(&p, 2, &m) || expect(&p, ":") ||
	    digits(&p, 2, &sec))
		return -1;
	if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
		return -1;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		int scale = 100;
		while (isdigit((unsigned char)*p)) {
			frac_ms += (*p - '0') * scale;
			scale /= 10;
			p++;
		}
	}
	long offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (digits(&p, 2, &oh) || expect(&p, ":") || digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
		offset_s = sign * (oh * 3600L + om * 60L);
	} else {
		return -1;
	}
	if (*p)
		return -1;
	struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D, .tm_hour = h, .tm_min = m, .tm_sec = sec};
	time_t t = timegm(&tm);
	*ms = ((long long)t - offset_s) * 1000 + frac_ms;
	return 0;
}
