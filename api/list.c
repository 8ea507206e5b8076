/* GET /v2/sandboxes (filters, order, limit, X-Next-Token pagination, X-Total-Running) and the
 * deprecated GET /sandboxes (running only, metadata filter, no pagination). */
#include "api/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/list_query.h"
#include "image/template.h"

struct selection {
	const struct api_list_query *q;
	const char *template_name; /* the filter resolved through the registry (alias or name) */
	struct sandbox **items;
	size_t n, cap;
	size_t total_running;      /* matching filters, before the cursor and the page */
};

static int wanted(const struct sandbox *sb, const struct selection *sel)
{
	const struct api_list_query *q = sel->q;
	if (!(sb->state == SBX_RUNNING && q->running) && !(sb->state == SBX_PAUSED && q->paused))
		return 0;
	if (sb->started_ms < q->started_after_ms)
		return 0;
	if (sel->template_name && strcmp(sb->template_id, sel->template_name) != 0)
		return 0;
	return api_metadata_matches(sb->metadata, q->metadata);
}

/* Position in the requested order: <0 if a comes first. */
static int order_cmp(const struct sandbox *a, const struct sandbox *b, int ascending)
{
	int c = api_list_key_cmp(a->started_ms, a->id, b->started_ms, b->id);
	return ascending ? c : -c;
}

static int after_cursor(const struct sandbox *sb, const struct api_list_query *q)
{
	if (!q->has_cursor)
		return 1;
	int c = api_list_key_cmp(sb->started_ms, sb->id, q->cursor_started_ms, q->cursor_id);
	return q->ascending ? c > 0 : c < 0;
}

static void collect(struct sandbox *sb, void *arg)
{
	struct selection *sel = arg;
	if (!wanted(sb, sel))
		return;
	if (sb->state == SBX_RUNNING)
		sel->total_running++;
	if (!after_cursor(sb, sel->q))
		return;
	if (sel->n == sel->cap) {
		size_t nc = sel->cap ? sel->cap * 2 : 64;
		struct sandbox **ni = realloc(sel->items, nc * sizeof *ni);
		if (!ni)
			return;
		sel->items = ni;
		sel->cap = nc;
	}
	sel->items[sel->n++] = sb;
}

static int ascending_order;
static int sort_cmp(const void *a, const void *b)
{
	return order_cmp(*(struct sandbox *const *)a, *(struct sandbox *const *)b, ascending_order);
}

static void list(http_req *req, int v2)
{
	struct api_list_query q;
	cube_err err = {0};
	if (api_parse_list_query(http_req_query(req), v2, &q, &err) < 0) {
		api_send_err(req, &err);
		return;
	}
	struct selection sel = {.q = &q};
	if (q.template_ref) {
		const struct tpl *t = tpl_find(q.template_ref);
		sel.template_name = t ? t->name : q.template_ref;
	}
	sbx_foreach(collect, &sel);
	ascending_order = q.ascending;
	if (sel.n > 1)
		qsort(sel.items, sel.n, sizeof *sel.items, sort_cmp);

	size_t page = q.limit > 0 && (size_t)q.limit < sel.n ? (size_t)q.limit : sel.n;
	json_t *arr = json_array();
	for (size_t i = 0; i < page; i++)
		json_array_append_new(arr, api_listed_sandbox_json(sel.items[i]));

	http_header h[2];
	size_t nh = 0;
	char token[160] = "", total[32];
	if (v2) {
		if (page < sel.n) {
			const struct sandbox *last = sel.items[page - 1];
			api_cursor_encode(last->started_ms, last->id, token, sizeof token);
			h[nh++] = (http_header){"X-Next-Token", token};
		}
		snprintf(total, sizeof total, "%zu", sel.total_running);
		h[nh++] = (http_header){"X-Total-Running", total};
	}
	free(sel.items);
	api_list_query_free(&q);
	api_send_json_with(req, 200, arr, h, nh);
}

void api_list_v1(http_req *req, const char *id)
{
	(void)id;
	list(req, 0);
}

void api_list_v2(http_req *req, const char *id)
{
	(void)id;
	list(req, 1);
}
