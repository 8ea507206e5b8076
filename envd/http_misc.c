/* envd's small plain-HTTP endpoints (§3.12): /health, /envs, /metrics, /init, CORS preflight and the
 * 401 answer, plus the JSON/base64 helpers every envd facility shares. The router in main.c calls
 * these after CORS and the access-token check. */
#include "envd/core.h"
#include "envd/envd.h"
#include "envd/version.h"

#include "common/log.h"
#include "common/util.h"

#include <openssl/evp.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

/* §2.7: everything allowed from any origin; preflights are answered before authentication. */
const http_header envd_cors_headers[] = {
	{"Access-Control-Allow-Origin", "*"},
	{"Access-Control-Expose-Headers",
	 "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Location, Cache-Control, X-Content-Type-Options"},
	{"Vary", "Origin"},
};
const size_t envd_cors_header_count = CUBE_ARRAY_LEN(envd_cors_headers);

#define JSON_UTF8 "application/json; charset=utf-8"

void envd_send_json(http_req *req, int status, json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!s) {
		http_resp_send(req, 500, JSON_UTF8, "{\"code\":500,\"message\":\"out of memory\"}", 38);
		return;
	}
	http_resp_send(req, status, JSON_UTF8, s, strlen(s));
	free(s);
}

void envd_send_error(http_req *req, int status, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	envd_send_json(req, status, json_pack("{s:i,s:s}", "code", status, "message", msg));
}

void envd_http_unauthorized(http_req *req)
{
	static const char body[] = "{\"code\":401,\"message\":\"unauthorized access, please provide a valid access "
				   "token or method signing if supported\"}";
	http_resp_send(req, 401, JSON_UTF8, body, sizeof body - 1);
}

/* ---- base64 (OpenSSL's codec; we only normalise the alphabet and the padding) ---- */

char *envd_base64_encode(const void *data, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	if (!out)
		return NULL;
	int n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	out[n < 0 ? 0 : n] = '\0';
	return out;
}

unsigned char *envd_base64_decode(const char *s, size_t *len_out)
{
	size_t n = strlen(s);
	while (n && s[n - 1] == '=')
		n--;
	if (n % 4 == 1 || n > (size_t)INT_MAX / 2)
		return NULL;
	size_t padded = (n + 3) / 4 * 4;
	cleanup_free char *tmp = malloc(padded + 1);
	unsigned char *out = malloc(padded / 4 * 3 + 1);
	if (!tmp || !out) {
		free(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t')
			goto bad; /* padding inside, or whitespace that EVP would silently skip at the ends */
		tmp[i] = c;
	}
	for (size_t i = n; i < padded; i++)
		tmp[i] = '=';
	int r = padded ? EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded) : 0;
	if (r < 0)
		goto bad;
	*len_out = (size_t)r - (padded - n);
	out[*len_out] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* ---- global environment ---- */

void envd_merge_envs(json_t *envs)
{
	const char *k;
	json_t *v;
	if (json_is_object(envs))
		json_object_foreach (envs, k, v)
			if (json_is_string(v))
				envd_set_env(k, json_string_value(v));
}

void envd_set_env(const char *key, const char *value)
{
	if (!envd.env_vars)
		envd.env_vars = json_object();
	json_object_set_new(envd.env_vars, key, json_string(value));
}

/* ---- endpoints ---- */

void envd_http_preflight(http_req *req)
{
	const char *want = http_req_header(req, "Access-Control-Request-Headers");
	http_header h[] = {
		{"Access-Control-Allow-Methods", "HEAD, GET, POST, PUT, PATCH, DELETE"},
		{"Access-Control-Allow-Headers", want && *want ? want : "*"},
		{"Access-Control-Max-Age", "7200"},
	};
	http_resp_start(req, 204, h, CUBE_ARRAY_LEN(h), -1);
	http_resp_end(req);
}

void envd_http_health(http_req *req)
{
	http_header h[] = {{"Cache-Control", "no-store"}};
	http_resp_start(req, 204, h, CUBE_ARRAY_LEN(h), -1);
	http_resp_end(req);
}

void envd_http_envs(http_req *req)
{
	envd_send_json(req, 200, envd.env_vars ? json_incref(envd.env_vars) : json_object());
}

/* ---- /metrics: cgroup-aware when the sandbox's cgroup files are visible ---- */

static long long read_ll(const char *dir, const char *file)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, file);
	cleanup_free char *s = cube_read_file(path, NULL);
	if (!s)
		return -1;
	if (strncmp(s, "max", 3) == 0)
		return LLONG_MAX;
	char *end;
	long long v = strtoll(s, &end, 10);
	return end == s ? -1 : v;
}

/* Value of `key` in a "key value" file such as memory.stat, cpu.stat or /proc/meminfo. */
static long long read_key(const char *path, const char *key)
{
	cleanup_free char *s = cube_read_file(path, NULL);
	if (!s)
		return -1;
	size_t kl = strlen(key);
	for (char *line = s; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (strncmp(line, key, kl) == 0 && (line[kl] == ' ' || line[kl] == ':'))
			return strtoll(line + kl + 1 + strspn(line + kl + 1, " :\t"), NULL, 10);
	return -1;
}

struct cgroup_dirs {
	int v2;
	char memory[PATH_MAX], cpu[PATH_MAX], cpuacct[PATH_MAX];
};

/* Our cgroup's directories, from /proc/self/cgroup (paths are relative to our cgroup namespace). */
static void find_cgroups(struct cgroup_dirs *cg)
{
	memset(cg, 0, sizeof *cg);
	cleanup_free char *s = cube_read_file("/proc/self/cgroup", NULL);
	if (!s)
		return;
	for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = *c2 = '\0';
		const char *ctrls = c1 + 1, *path = c2 + 1;
		if (strcmp(path, "/") == 0)
			path = "";
		if (!*ctrls) {
			char dir[PATH_MAX];
			snprintf(dir, sizeof dir, "/sys/fs/cgroup%s", path);
			if (read_ll(dir, "memory.current") >= 0) {
				cg->v2 = 1;
				snprintf(cg->memory, sizeof cg->memory, "%s", dir);
				snprintf(cg->cpu, sizeof cg->cpu, "%s", dir);
			}
			continue;
		}
		char list[256];
		snprintf(list, sizeof list, ",%s,", ctrls);
		if (strstr(list, ",memory,"))
			snprintf(cg->memory, sizeof cg->memory, "/sys/fs/cgroup/memory%s", path);
		if (strstr(list, ",cpu,"))
			snprintf(cg->cpu, sizeof cg->cpu, "/sys/fs/cgroup/%s%s", ctrls, path);
		if (strstr(list, ",cpuacct,"))
			snprintf(cg->cpuacct, sizeof cg->cpuacct, "/sys/fs/cgroup/%s%s", ctrls, path);
	}
}

/* CPU time used so far in nanoseconds: the cgroup's if visible, else the whole machine's
 * non-idle time from /proc/stat. */
static long long cpu_used_ns(const struct cgroup_dirs *cg)
{
	if (cg->v2 && cg->cpu[0]) {
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/cpu.stat", cg->cpu);
		long long us = read_key(p, "usage_usec");
		if (us >= 0)
			return us * 1000;
	} else if (cg->cpuacct[0]) {
		long long ns = read_ll(cg->cpuacct, "cpuacct.usage");
		if (ns >= 0)
			return ns;
	}
	cleanup_free char *s = cube_read_file("/proc/stat", NULL);
	unsigned long long v[8] = {0};
	if (!s || sscanf(s, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
			 &v[6], &v[7]) < 4)
		return -1;
	unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	return (long long)(busy * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)));
}

void envd_http_metrics(http_req *req)
{
	static long long prev_used_ns = -1, prev_mono_ms;
	struct cgroup_dirs cg;
	find_cgroups(&cg);

	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		cpus = 1;
	long long quota = -1, period = -1;
	if (cg.v2 && cg.cpu[0]) {
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/cpu.max", cg.cpu);
		cleanup_free char *s = cube_read_file(p, NULL);
		if (s && strncmp(s, "max", 3) != 0)
			sscanf(s, "%lld %lld", &quota, &period);
	} else if (cg.cpu[0]) {
		quota = read_ll(cg.cpu, "cpu.cfs_quota_us");
		period = read_ll(cg.cpu, "cpu.cfs_period_us");
	}
	if (quota > 0 && period > 0 && (quota + period - 1) / period < cpus)
		cpus = (long)((quota + period - 1) / period);

	double pct = 0;
	long long used = cpu_used_ns(&cg), now = cube_mono_ms();
	if (used >= 0 && prev_used_ns >= 0 && now > prev_mono_ms && used >= prev_used_ns)
		pct = (double)(used - prev_used_ns) / 1e6 / (double)(now - prev_mono_ms) / (double)cpus * 100.0;
	if (pct > 100)
		pct = 100;
	prev_used_ns = used;
	prev_mono_ms = now;

	long long mem_total = read_key("/proc/meminfo", "MemTotal") * 1024;
	long long mem_used = mem_total - read_key("/proc/meminfo", "MemAvailable") * 1024;
	long long mem_cache = read_key("/proc/meminfo", "Cached") * 1024;
	if (cg.memory[0]) {
		char stat[PATH_MAX];
		snprintf(stat, sizeof stat, "%s/memory.stat", cg.memory);
		long long limit = read_ll(cg.memory, cg.v2 ? "memory.max" : "memory.limit_in_bytes");
		long long usage = read_ll(cg.memory, cg.v2 ? "memory.current" : "memory.usage_in_bytes");
		long long inactive = read_key(stat, cg.v2 ? "inactive_file" : "total_inactive_file");
		long long cache = read_key(stat, cg.v2 ? "file" : "total_cache");
		if (limit > 0 && limit < mem_total)
			mem_total = limit;
		if (usage >= 0) {
			mem_used = usage - (inactive > 0 && inactive < usage ? inactive : 0);
			if (cache >= 0)
				mem_cache = cache;
		}
	}

	struct statfs fs;
	long long disk_total = 0, disk_used = 0;
	if (statfs("/", &fs) == 0) {
		disk_total = (long long)fs.f_blocks * (long long)fs.f_frsize;
		disk_used = (long long)(fs.f_blocks - fs.f_bfree) * (long long)fs.f_frsize;
	}
	json_t *o = json_pack("{s:I,s:i,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "ts", (json_int_t)(cube_now_ms() / 1000),
			      "cpu_count", (int)cpus, "cpu_used_pct", (double)(long long)(pct * 100 + 0.5) / 100,
			      "mem_total", (json_int_t)mem_total, "mem_used", (json_int_t)mem_used, "mem_cache",
			      (json_int_t)(mem_cache < 0 ? 0 : mem_cache), "mem_total_mib", (json_int_t)(mem_total >> 20),
			      "mem_used_mib", (json_int_t)(mem_used >> 20), "disk_used", (json_int_t)disk_used,
			      "disk_total", (json_int_t)disk_total);
	envd_send_json(req, 200, o);
}

/* ---- /init ---- */

/* RFC 3339 to Unix milliseconds; -1 if malformed. */
static long long parse_rfc3339_ms(const char *s)
{
	struct tm tm = {0};
	const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -1;
	long long ms = 0;
	if (*p == '.') {
		int digits = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	long long t = (long long)timegm(&tm);
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
		int sign = *p == '-' ? -1 : 1, hh = atoi(p + 1), mm = atoi(p + 4);
		t -= sign * (hh * 3600 + mm * 60);
		p += 6;
	} else {
		return -1;
	}
	return *p ? -1 : t * 1000 + ms;
}

static void on_init_body(http_req *req, char *body, size_t len, int error_status)
{
	static long long last_init_ms = -1;
	if (error_status) {
		envd_send_error(req, error_status, "cannot read request body");
		return;
	}
	json_error_t jerr;
	json_t *o = len ? json_loadb(body, len, 0, &jerr) : json_object();
	if (!json_is_object(o)) {
		json_decref(o);
		envd_send_error(req, 400, "invalid init request: %s", len ? jerr.text : "not an object");
		return;
	}
	json_t *ts = json_object_get(o, "timestamp");
	long long ts_ms = json_is_string(ts) ? parse_rfc3339_ms(json_string_value(ts)) : -1;
	if (ts_ms >= 0 && ts_ms < last_init_ms) {
		log_info("envd: ignoring stale /init (timestamp %s)", json_string_value(ts));
		json_decref(o);
		goto done;
	}
	json_t *tok = json_object_get(o, "accessToken");
	if (json_is_string(tok) && *json_string_value(tok)) {
		if (envd.access_token && strcmp(envd.access_token, json_string_value(tok)) != 0) {
			json_decref(o);
			envd_send_error(req, 409, "access token is already set and cannot be changed");
			return;
		}
		if (!envd.access_token)
			envd.access_token = strdup(json_string_value(tok));
	}
	if (ts_ms >= 0)
		last_init_ms = ts_ms;
	envd_merge_envs(json_object_get(o, "envVars"));
	json_t *user = json_object_get(o, "defaultUser");
	if (json_is_string(user) && *json_string_value(user)) {
		free(envd.default_user);
		envd.default_user = strdup(json_string_value(user));
	}
	json_t *wd = json_object_get(o, "defaultWorkdir");
	if (json_is_string(wd) && *json_string_value(wd)) {
		free(envd.default_workdir);
		envd.default_workdir = strdup(json_string_value(wd));
	}
	json_decref(o);
done:;
	http_header h[] = {{"Cache-Control", "no-store"}, {"X-Envd-Version", ENVD_VERSION}};
	http_resp_start(req, 204, h, CUBE_ARRAY_LEN(h), -1);
	http_resp_end(req);
}

void envd_http_init(http_req *req)
{
	http_req_read_body(req, 1 << 20, on_init_body);
}
