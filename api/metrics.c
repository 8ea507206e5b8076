/* GET /sandboxes/{id}/metrics and GET /sandboxes/metrics?sandbox_ids=: one current SandboxMetric from
 * the sandbox's cgroup. CPU use is a rate, so the last cpu_usage_ns sample of each sandbox is kept and
 * the next call reports the average since then (the first call: the average since the start). */
#include "api/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_IDS 100

struct cpu_sample {
	char id[32];
	unsigned long long cpu_ns;
	long long wall_ms;
};

static struct cpu_sample *samples;
static size_t nsamples, capsamples;

static struct cpu_sample *sample_find(const char *id)
{
	for (size_t i = 0; i < nsamples; i++)
		if (strcmp(samples[i].id, id) == 0)
			return &samples[i];
	return NULL;
}

void api_metrics_forget(const char *sandbox_id)
{
	struct cpu_sample *s = sample_find(sandbox_id);
	if (s)
		*s = samples[--nsamples];
}

/* Drop samples of sandboxes that are gone (expired, died): the map stays as small as the table. */
static void samples_prune(void)
{
	for (size_t i = 0; i < nsamples;) {
		if (!sbx_find(samples[i].id))
			samples[i] = samples[--nsamples];
		else
			i++;
	}
}

static double cpu_used_pct(const struct sandbox *sb, unsigned long long cpu_ns, long long now_ms)
{
	struct cpu_sample *s = sample_find(sb->id);
	unsigned long long since_ns = 0;
	long long since_ms = sb->started_ms;
	if (s && s->wall_ms < now_ms && s->cpu_ns <= cpu_ns) {
		since_ns = s->cpu_ns;
		since_ms = s->wall_ms;
	}
	if (!s && nsamples < 4096) {
		if (nsamples == capsamples) {
			size_t nc = capsamples ? capsamples * 2 : 16;
			struct cpu_sample *ns = realloc(samples, nc * sizeof *ns);
			if (ns) {
				samples = ns;
				capsamples = nc;
			}
		}
		if (nsamples < capsamples) {
			s = &samples[nsamples++];
			snprintf(s->id, sizeof s->id, "%s", sb->id);
		}
	}
	if (s) {
		s->cpu_ns = cpu_ns;
		s->wall_ms = now_ms;
	}
	long long wall_ms = now_ms - since_ms;
	unsigned cpus = sb->cpu_count ? sb->cpu_count : 1;
	if (wall_ms <= 0)
		return 0;
	double pct = (double)(cpu_ns - since_ns) / ((double)wall_ms * 1e6 * cpus) * 100.0;
	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	return (double)(long long)(pct * 100 + 0.5) / 100; /* two decimals */
}

static json_t *metric_json(struct sandbox *sb, cube_err *err)
{
	struct rt_stats st = {0};
	if (sbx_stats(sb, &st, err) < 0)
		return NULL;
	long long now = cube_now_ms();
	unsigned long long mem_total = st.mem_limit ? st.mem_limit : (unsigned long long)sb->memory_mb << 20;
	unsigned long long disk_total = st.disk_total ? st.disk_total : (unsigned long long)sb->disk_mb << 20;
	return json_pack("{s:o,s:I,s:i,s:f,s:I,s:I,s:I,s:I,s:I}", "timestamp", api_time_json(now),
			 "timestampUnix", (json_int_t)(now / 1000), "cpuCount", (int)sb->cpu_count,
			 "cpuUsedPct", cpu_used_pct(sb, st.cpu_usage_ns, now), "memUsed", (json_int_t)st.mem_used,
			 "memTotal", (json_int_t)mem_total, "memCache", (json_int_t)st.mem_cache,
			 "diskUsed", (json_int_t)st.disk_used, "diskTotal", (json_int_t)disk_total);
}

void api_sandbox_metrics(http_req *req, const char *id)
{
	struct sandbox *sb = api_running_sandbox(req, id);
	if (!sb)
		return;
	samples_prune();
	cube_err err = {0};
	json_t *m = metric_json(sb, &err);
	if (!m) {
		api_send_err(req, &err);
		return;
	}
	api_send_json(req, 200, json_pack("[o]", m));
}

void api_sandboxes_metrics(http_req *req, const char *id)
{
	(void)id;
	char *ids = http_req_query_param(req, "sandbox_ids");
	if (!ids || !*ids) {
		free(ids);
		http_resp_error(req, 400, "sandbox_ids is required (comma-separated sandbox IDs)");
		return;
	}
	samples_prune();
	json_t *out = json_object();
	size_t count = 0;
	char *save = NULL;
	for (char *s = strtok_r(ids, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
		if (++count > MAX_IDS) {
			json_decref(out);
			free(ids);
			http_resp_error(req, 400, "at most %d sandbox_ids", MAX_IDS);
			return;
		}
		struct sandbox *sb = sbx_find(s);
		if (!sb || sb->state != SBX_RUNNING || json_object_get(out, s))
			continue;
		cube_err err = {0};
		json_t *m = metric_json(sb, &err);
		if (m)
			json_object_set_new(out, s, m);
	}
	free(ids);
	api_send_json(req, 200, json_pack("{s:o}", "sandboxes", out));
}
