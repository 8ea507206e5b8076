/* The response shapes of §1.21 built from a sandbox of the daemon's table: Sandbox (create/connect),
 * ListedSandbox (list) and SandboxDetail (get). */
#include "api/internal.h"

#include "common/util.h"
#include "net/net.h"
#include "envd/version.h"

json_t *api_time_json(long long epoch_ms)
{
	char ts[40];
	cube_format_time(epoch_ms, ts, sizeof ts);
	return json_string(ts);
}

json_t *api_sandbox_json(const struct sandbox *sb)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:n,s:s}", "sandboxID", sb->id, "templateID", sb->template_id,
			      "clientID", SBX_CLIENT_ID, "envdVersion", ENVD_VERSION, "domain", "alias", sb->template_id);
	if (o && sb->access_token[0])
		json_object_set_new(o, "envdAccessToken", json_string(sb->access_token));
	if (o && sb->traffic_token[0])
		json_object_set_new(o, "trafficAccessToken", json_string(sb->traffic_token));
	return o;
}

json_t *api_listed_sandbox_json(const struct sandbox *sb)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:i,s:i,s:i,s:O,s:s,s:s,s:[]}",
			      "sandboxID", sb->id, "templateID", sb->template_id, "alias", sb->template_id,
			      "clientID", SBX_CLIENT_ID, "startedAt", api_time_json(sb->started_ms),
			      "endAt", api_time_json(sb->end_ms), "cpuCount", (int)sb->cpu_count,
			      "memoryMB", (int)sb->memory_mb, "diskSizeMB", (int)sb->disk_mb,
			      "metadata", sb->metadata, "state", sb->state == SBX_PAUSED ? "paused" : "running", "envdVersion", ENVD_VERSION,
			      "volumeMounts");
	/* Our extension (SDKs ignore it): where a paused sandbox is kept, which decides what connect does. */
	if (o && sb->state == SBX_PAUSED)
		json_object_set_new(o, "pausedTo", json_string(sb->on_disk ? "disk" : "memory"));
	return o;
}

json_t *api_sandbox_detail_json(const struct sandbox *sb)
{
	json_t *o = api_listed_sandbox_json(sb);
	if (!o)
		return NULL;
	if (sb->access_token[0])
		json_object_set_new(o, "envdAccessToken", json_string(sb->access_token));
	json_object_set_new(o, "domain", json_null());
	if (sb->net) {
		const struct net_policy *p = net_sandbox_policy(sb->net);
		json_t *net = net_policy_to_json(p, 0);
		json_object_set_new(o, "allowInternetAccess", p->internet_set ? json_boolean(p->internet) : json_null());
		json_object_del(net, "allow_internet_access");
		json_object_set_new(o, "network", net);
	}
	json_object_set_new(o, "lifecycle", json_pack("{s:b,s:s}", "autoResume", sb->auto_resume, "onTimeout",
						      sb->auto_pause ? "pause" : "kill"));
	return o;
}
