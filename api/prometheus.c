/* GET /metrics: Prometheus text exposition of cubed. Families from daemon-side collectors (pool,
 * admission) and counters/histograms (common/metrics.h), plus sandboxes by state from the table and
 * API/proxy errors observed as responses start. Served without an API key: it holds counts, latencies
 * and template names only, never sandbox ids, metadata or keys (docs/operations.md). */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"
#include "runtime/criu.h"

struct state_counts {
	unsigned starting, running, paused, paused_disk, killing;
};

static void count_state(struct sandbox *sb, void *arg)
{
	struct state_counts *c = arg;
	if (sb->state == SBX_STARTING || sb->state == SBX_RESTARTING)
		c->starting++;
	else if (sb->state == SBX_RUNNING)
		c->running++;
	else if (sb->state == SBX_PAUSED && sb->on_disk)
		c->paused_disk++;
	else if (sb->state == SBX_PAUSED)
		c->paused++;
	else
		c->killing++;
}

static void collect_states(FILE *out, void *arg)
{
	(void)arg;
	struct state_counts c = {0};
	sbx_foreach(count_state, &c);
	fputs("# HELP cube_sandboxes Sandboxes on this node by state (paused: in memory; paused_disk: paused or evicted to disk; pooled: pre-warmed, not yet claimed).\n"
	      "# TYPE cube_sandboxes gauge\n", out);
	metrics_sample(out, "cube_sandboxes", "state=\"starting\"", c.starting);
	metrics_sample(out, "cube_sandboxes", "state=\"running\"", c.running);
	metrics_sample(out, "cube_sandboxes", "state=\"paused\"", c.paused);
	metrics_sample(out, "cube_sandboxes", "state=\"paused_disk\"", c.paused_disk);
	metrics_sample(out, "cube_sandboxes", "state=\"killing\"", c.killing);
	metrics_sample(out, "cube_sandboxes", "state=\"pooled\"", (double)pool_idle_total());
	fputs("# HELP cube_criu_available 1 if `criu check` passed at start: evictions to disk also checkpoint processes.\n"
	      "# TYPE cube_criu_available gauge\n", out);
	metrics_sample(out, "cube_criu_available", "", rt_criu_status()->available ? 1 : 0);
}

void api_prometheus(http_req *req, const char *id)
{
	(void)id;
	static int registered;
	if (!registered) {
		registered = 1;
		metrics_add_collector(collect_states, NULL);
	}
	size_t len = 0;
	char *text = metrics_render(&len);
	if (!text) {
		http_resp_error(req, 500, "out of memory");
		return;
	}
	http_header h[] = {{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}, {"Cache-Control", "no-store"}};
	http_resp_start(req, 200, h, 2, (long long)len);
	http_resp_write(req, text, len);
	http_resp_end(req);
	free(text);
}

void api_observe_response(http_req *req, int status, double seconds, void *ctx)
{
	(void)seconds;
	(void)ctx;
	if (status < 400)
		return;
	char endpoint[128], labels[256] = "", code[8];
	api_route_label(req, endpoint, sizeof endpoint);
	snprintf(code, sizeof code, "%d", status);
	metrics_label(labels, sizeof labels, "endpoint", endpoint);
	metrics_label(labels, sizeof labels, "code", code);
	metrics_counter_add("cube_api_errors_total", "Error responses (4xx/5xx) by endpoint and status.", labels, 1);
}

void api_observe_proxy_response(http_req *req, int status, double seconds, void *ctx)
{
	(void)req;
	(void)ctx;
	metrics_observe("cube_proxy_request_seconds",
			"Data-plane proxy: time from the request's first byte to the response head.", "", seconds);
	if (status >= 400) {
		char labels[128] = "", code[8];
		snprintf(code, sizeof code, "%d", status);
		metrics_label(labels, sizeof labels, "endpoint", "proxy");
		metrics_label(labels, sizeof labels, "code", code);
		metrics_counter_add("cube_api_errors_total", "Error responses (4xx/5xx) by endpoint and status.", labels, 1);
	}
}
