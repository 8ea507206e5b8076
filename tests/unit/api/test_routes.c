/* The control plane over real HTTP (libcurl client, our server on loopback), against the fake sandbox
 * table of fake_daemon.c and a real store in a temporary directory: auth, create (async, v1/v2 defaults),
 * list filters and pagination, get, kill, timeout, connect, metrics, logs, admin keys, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/api.h"
#include "common/util.h"
#include "tests/unit/api/fake_daemon.h"

static uv_loop_t loop;
static uv_async_t stop_async;
static pthread_t server_thread;
static int api_port, admin_port;
static char dir[64], api_key[48];

struct resp {
	long status;
	char body[65536];
	size_t len;
	char next_token[256];
	char total_running[32];
	char retry_after[32];
	json_t *json;
};

static void on_api(http_req *req, void *ctx) { (void)ctx; api_handle(req, 0); }
static void on_admin(http_req *req, void *ctx) { (void)ctx; api_handle(req, 1); }
static void on_stop(uv_async_t *a) { (void)a; uv_stop(&loop); }

static void *serve(void *arg)
{
	(void)arg;
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = size * n;
	if (r->len + len < sizeof r->body) {
		memcpy(r->body + r->len, p, len);
		r->len += len;
		r->body[r->len] = '\0';
	}
	return len;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	if (n <= nl || strncasecmp(line, name, nl) != 0)
		return;
	const char *v = line + nl;
	size_t vl = n - nl;
	while (vl && *v == ' ') {
		v++;
		vl--;
	}
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	snprintf(out, outlen, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	header_value(p, size * n, "X-Next-Token:", r->next_token, sizeof r->next_token);
	header_value(p, size * n, "X-Total-Running:", r->total_running, sizeof r->total_running);
	header_value(p, size * n, "Retry-After:", r->retry_after, sizeof r->retry_after);
	return size * n;
}

/* One request; key NULL = no X-API-Key; admin = use the admin listener. */
static struct resp *request(const char *method, const char *path, const char *body, const char *key, int admin)
{
	static struct resp r;
	json_decref(r.json);
	memset(&r, 0, sizeof r);
	char url[2048], keyh[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", admin ? admin_port : api_port, path);
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	if (key) {
		snprintf(keyh, sizeof keyh, "x-api-key: %s", key);
		h = curl_slist_append(h, keyh);
	}
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		h = curl_slist_append(h, "Transfer-Encoding: chunked"); /* as the SDK sends it */
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.json = r.len ? json_loadb(r.body, r.len, JSON_DECODE_ANY, NULL) : NULL;
	return &r;
}

static struct resp *api(const char *method, const char *path, const char *body)
{
	return request(method, path, body, api_key, 0);
}

/* Every error must be {"code": status, "message": "..."}. */
static void assert_error(struct resp *r, long status, const char *msg_part)
{
	if (r->status != status)
		fail_msg("expected %ld, got %ld: %s", status, r->status, r->body);
	assert_non_null(r->json);
	assert_int_equal(json_integer_value(json_object_get(r->json, "code")), status);
	const char *m = json_string_value(json_object_get(r->json, "message"));
	assert_non_null(m);
	if (msg_part && !strstr(m, msg_part))
		fail_msg("message '%s' lacks '%s'", m, msg_part);
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/cube-api-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	char db[128];
	snprintf(db, sizeof db, "%s/cubed.db", dir);
	cube_err err = {0};
	if (store_open(db, &err) < 0)
		return -1;
	char id[24];
	if (store_apikey_create("test", api_key, id, &err) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN); /* as cubed does */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	uv_loop_init(&loop);
	uv_async_init(&loop, &stop_async, on_stop);
	fake.loop = &loop;
	struct api_config cfg = {.local_auth = 0, .domain = "localhost", .max_timeout_s = 3600};
	api_init(&cfg);
	http_server *a = http_server_new(&loop, on_api, NULL), *m = http_server_new(&loop, on_admin, NULL);
	if (http_server_listen_tcp(a, "127.0.0.1:0", &err) < 0)
		return -1;
	api_port = http_server_port(a);
	if (http_server_listen_tcp(m, "127.0.0.1:0", &err) < 0)
		return -1;
	admin_port = http_server_port(m);
	return pthread_create(&server_thread, NULL, serve, NULL);
}

static int teardown(void **state)
{
	(void)state;
	uv_async_send(&stop_async);
	pthread_join(server_thread, NULL);
	store_close();
	fake_reset();
	curl_global_cleanup();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void reset(void)
{
	uv_loop_t *l = fake.loop;
	fake_reset();
	fake.loop = l;
}

/* ---- tests ---- */

static void test_health_and_auth(void **state)
{
	(void)state;
	reset();
	struct resp *r = request("GET", "/health", NULL, NULL, 0);
	assert_int_equal(r->status, 204);
	assert_int_equal(r->len, 0);
	assert_error(request("GET", "/v2/sandboxes", NULL, NULL, 0), 401, "API key");
	assert_error(request("GET", "/v2/sandboxes", NULL, "", 0), 401, NULL);
	assert_error(request("GET", "/v2/sandboxes", NULL, "e2b_0000000000000000000000000000000000000000", 0), 401, "Invalid");
	assert_int_equal(api("GET", "/v2/sandboxes", NULL)->status, 200);
	/* the admin listener needs no key and serves the same routes */
	assert_int_equal(request("GET", "/v2/sandboxes", NULL, NULL, 1)->status, 200);
	/* admin routes do not exist on the public listener */
	assert_error(api("GET", "/admin/apikeys", NULL), 404, NULL);
	assert_error(api("GET", "/no/such/route", NULL), 404, NULL);
	assert_error(api("PATCH", "/sandboxes/iabc", NULL), 405, NULL);
	assert_error(api("POST", "/v3/templates", "{}"), 400, NULL);
	/* template routes: list, get by name or name:tag, bad ids, delete conflicts, jobs */
	r = api("GET", "/templates", NULL);
	assert_int_equal(r->status, 200);
	assert_error(api("GET", "/templates/nope", NULL), 404, "nope");
	assert_int_equal(api("GET", "/templates/base:latest", NULL)->status, 200);
	assert_int_equal(api("GET", "/templates/aliases/base", NULL)->status, 200);
	assert_error(api("GET", "/templates/a%2fb", NULL), 400, "Invalid template ID");
	assert_error(api("DELETE", "/templates/base", NULL), 409, NULL);
	assert_error(api("GET", "/templates/jobs/jx", NULL), 404, "jx");
	assert_error(api("POST", "/templates/jobs", "{}"), 400, NULL);
}

static void test_create_v2_and_v1(void **state)
{
	(void)state;
	reset();
	fake.create_delay_ms = 20;
	struct resp *r = api("POST", "/v2/sandboxes", "{\"templateID\":\"base\",\"metadata\":{\"user\":\"abc\"},\"envVars\":{\"A\":\"b\"}}");
	assert_int_equal(r->status, 201);
	assert_string_equal(str(r->json, "sandboxID"), "icreated1");
	assert_string_equal(str(r->json, "templateID"), "base");
	assert_string_equal(str(r->json, "clientID"), "6532622b");
	assert_non_null(str(r->json, "envdVersion"));
	assert_string_equal(str(r->json, "envdAccessToken"), "tok-icreated1");
	assert_true(json_is_null(json_object_get(r->json, "domain")));
	assert_int_equal(fake.last_timeout_s, 300);
	assert_int_equal(fake.last_secure, 1);
	assert_string_equal(str(fake.last_metadata, "user"), "abc");
	assert_string_equal(str(fake.last_env_vars, "A"), "b");

	r = api("POST", "/sandboxes", "{\"templateID\":\"base\",\"secure\":false}");
	assert_int_equal(r->status, 201);
	assert_null(json_object_get(r->json, "envdAccessToken"));
	assert_int_equal(fake.last_timeout_s, 15);
	assert_int_equal(fake.last_secure, 0);

	assert_error(api("POST", "/v2/sandboxes", "{\"templateID\":\"nope\"}"), 404, "template 'nope' not found");
	assert_error(api("POST", "/v2/sandboxes", "{\"templateID\":"), 400, "malformed JSON");
	assert_error(api("POST", "/v2/sandboxes", "{\"templateID\":\"base\",\"timeout\":\"x\"}"), 400, "timeout");
	assert_error(api("POST", "/v2/sandboxes", "{\"templateID\":\"base\",\"timeout\":3601}"), 400,
		     "Timeout cannot be greater than 1 hours");
	assert_int_equal(fake.creates, 2);
}

/* The client hangs up before the sandbox is ready: the sandbox must not be left running. */
static void test_create_client_gone(void **state)
{
	(void)state;
	reset();
	fake.create_delay_ms = 1500;
	CURL *c = curl_easy_init();
	char url[128], keyh[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/sandboxes", api_port);
	snprintf(keyh, sizeof keyh, "X-API-Key: %s", api_key);
	struct curl_slist *h = curl_slist_append(NULL, keyh);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"templateID\":\"base\"}");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300L);
	assert_int_equal(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	for (int i = 0; i < 100 && fake.creates == 0; i++)
		usleep(50 * 1000);
	usleep(100 * 1000);
	assert_int_equal(fake.creates, 1);
	assert_int_equal(request("GET", "/health", NULL, NULL, 0)->status, 204);
	for (int i = 0; i < 100 && fake.kills == 0; i++)
		usleep(50 * 1000);
	assert_int_equal(fake.kills, 1);
	assert_int_equal(fake.n, 0);
}

static void test_list_pagination_and_filters(void **state)
{
	(void)state;
	reset();
	long long now = cube_now_ms();
	json_t *mine = json_pack("{s:s,s:s}", "owner", "e2e", "k y", "a b&c=d");
	json_t *other = json_pack("{s:s}", "owner", "someone");
	fake_add("ia", now - 5000, now + 60000, mine);
	fake_add("ib", now - 4000, now + 60000, other);
	fake_add("ic", now - 3000, now + 60000, mine);
	fake_add("id", now - 3000, now + 60000, mine); /* same start as ic: ordered by id */
	fake_add("ie", now - 1000, now + 60000, NULL);
	json_decref(mine);
	json_decref(other);

	struct resp *r = api("GET", "/v2/sandboxes?limit=2", NULL);
	assert_int_equal(r->status, 200);
	assert_string_equal(r->total_running, "5");
	assert_int_equal(json_array_size(r->json), 2);
	assert_string_equal(str(json_array_get(r->json, 0), "sandboxID"), "ie"); /* newest first */
	assert_string_equal(str(json_array_get(r->json, 1), "sandboxID"), "id");
	json_t *first = json_array_get(r->json, 0);
	assert_string_equal(str(first, "state"), "running");
	assert_string_equal(str(first, "clientID"), "6532622b");
	assert_int_equal(json_integer_value(json_object_get(first, "cpuCount")), 2);
	assert_int_equal(json_integer_value(json_object_get(first, "memoryMB")), 512);
	assert_int_equal(json_integer_value(json_object_get(first, "diskSizeMB")), 1024);
	assert_non_null(str(first, "startedAt"));
	assert_non_null(str(first, "endAt"));
	assert_true(r->next_token[0]);

	char path[512], ids[64] = "";
	snprintf(path, sizeof path, "/v2/sandboxes?limit=2&nextToken=%s", r->next_token);
	r = api("GET", path, NULL);
	assert_int_equal(json_array_size(r->json), 2);
	assert_string_equal(str(json_array_get(r->json, 0), "sandboxID"), "ic");
	assert_string_equal(str(json_array_get(r->json, 1), "sandboxID"), "ib");
	snprintf(path, sizeof path, "/v2/sandboxes?limit=2&nextToken=%s", r->next_token);
	r = api("GET", path, NULL);
	assert_int_equal(json_array_size(r->json), 1);
	assert_string_equal(str(json_array_get(r->json, 0), "sandboxID"), "ia");
	assert_string_equal(r->next_token, ""); /* last page */

	/* ascending, all at once */
	r = api("GET", "/v2/sandboxes?order=asc", NULL);
	for (size_t i = 0; i < json_array_size(r->json); i++)
		strcat(ids, str(json_array_get(r->json, i), "sandboxID"));
	assert_string_equal(ids, "iaibicidie");

	/* metadata filter as the SDK encodes {owner:'e2e', "k y":"a b&c=d"} */
	r = api("GET", "/v2/sandboxes?metadata=owner%3De2e%26k%252520y%3Da%252520b%252526c%25253Dd", NULL);
	assert_int_equal(json_array_size(r->json), 3);
	assert_string_equal(r->total_running, "3");
	r = api("GET", "/sandboxes?metadata=owner%3Dsomeone", NULL); /* v1 */
	assert_int_equal(json_array_size(r->json), 1);
	assert_string_equal(str(json_array_get(r->json, 0), "sandboxID"), "ib");
	assert_error(api("GET", "/v2/sandboxes?metadata=owner", NULL), 400, "metadata");

	/* state, startedAfter, template */
	assert_int_equal(json_array_size(api("GET", "/v2/sandboxes?state=paused", NULL)->json), 0);
	assert_int_equal(json_array_size(api("GET", "/v2/sandboxes?state=running,paused", NULL)->json), 5);
	char after[40];
	cube_format_time(now - 3000, after, sizeof after);
	snprintf(path, sizeof path, "/v2/sandboxes?startedAfter=%s", after);
	assert_int_equal(json_array_size(api("GET", path, NULL)->json), 3);
	assert_int_equal(json_array_size(api("GET", "/v2/sandboxes?template=base", NULL)->json), 5);
	assert_int_equal(json_array_size(api("GET", "/v2/sandboxes?template=other", NULL)->json), 0);

	assert_error(api("GET", "/v2/sandboxes?limit=101", NULL), 400, "limit");
	assert_error(api("GET", "/v2/sandboxes?limit=0", NULL), 400, "limit");
	assert_error(api("GET", "/v2/sandboxes?nextToken=garbage!", NULL), 400, "nextToken");
	assert_error(api("GET", "/v2/sandboxes?state=dead", NULL), 400, "state");
}

static void test_get_kill_timeout_connect(void **state)
{
	(void)state;
	reset();
	long long now = cube_now_ms();
	struct sandbox *sb = fake_add("iget", now, now + 300000, NULL);
	snprintf(sb->access_token, sizeof sb->access_token, "secret");

	struct resp *r = api("GET", "/sandboxes/iget", NULL);
	assert_int_equal(r->status, 200);
	assert_string_equal(str(r->json, "sandboxID"), "iget");
	assert_string_equal(str(r->json, "envdAccessToken"), "secret");
	assert_string_equal(str(r->json, "state"), "running");
	assert_int_equal(api("GET", "/sandboxes/iget-6532622b", NULL)->status, 200); /* legacy id form */
	assert_error(api("GET", "/sandboxes/IGET", NULL), 400, "Invalid sandbox ID");
	assert_error(api("GET", "/sandboxes/i-get", NULL), 400, "Invalid sandbox ID");
	assert_error(api("GET", "/sandboxes/inope", NULL), 404, "inope");

	/* timeout may shorten; negative = now; above max = 400 */
	assert_int_equal(api("POST", "/sandboxes/iget/timeout", "{\"timeout\":10}")->status, 204);
	assert_true(sb->end_ms <= cube_now_ms() + 10000 && sb->end_ms > cube_now_ms() + 8000);
	assert_int_equal(api("POST", "/sandboxes/iget/timeout", "{\"timeout\":-5}")->status, 204);
	assert_true(sb->end_ms <= cube_now_ms());
	assert_error(api("POST", "/sandboxes/iget/timeout", "{\"timeout\":3601}"), 400, "Timeout cannot be greater");
	assert_error(api("POST", "/sandboxes/iget/timeout", "{}"), 400, "timeout");
	assert_error(api("POST", "/sandboxes/inope/timeout", "{\"timeout\":10}"), 404, NULL);

	/* connect extends only, and returns the same token */
	assert_int_equal(api("POST", "/sandboxes/iget/timeout", "{\"timeout\":600}")->status, 204);
	long long end = sb->end_ms;
	r = api("POST", "/v2/sandboxes/iget/connect", "{}");
	assert_int_equal(r->status, 200);
	assert_string_equal(str(r->json, "envdAccessToken"), "secret");
	assert_true(sb->end_ms == end); /* 300 s < 600 s left: unchanged */
	r = api("POST", "/sandboxes/iget/connect", "{\"timeout\":900}");
	assert_int_equal(r->status, 200);
	assert_true(sb->end_ms > end);
	assert_error(api("POST", "/sandboxes/iget/connect", "{}"), 400, "timeout is required"); /* v1 */
	assert_error(api("POST", "/v2/sandboxes/inope/connect", "{}"), 404, NULL);

	/* refreshes: extend only, 0..3600 */
	end = sb->end_ms;
	assert_int_equal(api("POST", "/sandboxes/iget/refreshes", "{\"duration\":1}")->status, 204);
	assert_true(sb->end_ms == end);
	assert_error(api("POST", "/sandboxes/iget/refreshes", "{\"duration\":3601}"), 400, "duration");

	/* pause: 204, then 409; paused sandboxes are listed and shown as paused; connect resumes (201) */
	assert_int_equal(api("POST", "/sandboxes/iget/pause", "{}")->status, 204);
	assert_int_equal(sb->state, SBX_PAUSED);
	assert_error(api("POST", "/sandboxes/iget/pause", "{\"memory\":true}"), 409, "already paused");
	assert_error(api("POST", "/sandboxes/inope/pause", "{}"), 404, NULL);
	assert_error(api("POST", "/sandboxes/iget/pause", "{\"memory\":1}"), 400, "memory");
	r = api("GET", "/sandboxes/iget", NULL);
	assert_int_equal(r->status, 200);
	assert_string_equal(str(r->json, "state"), "paused");
	r = api("GET", "/v2/sandboxes?state=paused", NULL);
	assert_int_equal(json_array_size(r->json), 1);
	assert_string_equal(str(json_array_get(r->json, 0), "state"), "paused");
	assert_int_equal(json_array_size(api("GET", "/v2/sandboxes?state=running", NULL)->json), 0);
	assert_int_equal(json_array_size(api("GET", "/sandboxes", NULL)->json), 0); /* v1: running only */
	assert_error(api("POST", "/sandboxes/iget/timeout", "{\"timeout\":10}"), 404, NULL);
	r = api("POST", "/v2/sandboxes/iget/connect", "{\"timeout\":60}");
	assert_int_equal(r->status, 201);
	assert_string_equal(str(r->json, "envdAccessToken"), "secret"); /* same token across pause */
	assert_int_equal(sb->state, SBX_RUNNING);
	assert_true(sb->end_ms > cube_now_ms() + 55000 && sb->end_ms <= cube_now_ms() + 60000);
	/* the deprecated resume: 409 when running, 201 when paused */
	assert_error(api("POST", "/sandboxes/iget/resume", "{}"), 409, "already running");
	assert_int_equal(api("POST", "/sandboxes/iget/pause", "")->status, 204);
	r = api("POST", "/sandboxes/iget/resume", "");
	assert_int_equal(r->status, 201);
	assert_int_equal(sb->state, SBX_RUNNING);
	assert_error(api("POST", "/sandboxes/inope/resume", "{}"), 404, NULL);
	/* a paused sandbox can be killed */
	assert_int_equal(api("POST", "/sandboxes/iget/pause", "{}")->status, 204);

	/* kill: 204 then 404 */
	r = api("DELETE", "/sandboxes/iget", NULL);
	assert_int_equal(r->status, 204);
	assert_int_equal(r->len, 0);
	assert_error(api("DELETE", "/sandboxes/iget", NULL), 404, NULL);
	assert_error(api("GET", "/sandboxes/iget", NULL), 404, NULL);
}

static void test_metrics(void **state)
{
	(void)state;
	reset();
	long long now = cube_now_ms();
	fake_add("imet", now - 10000, now + 60000, NULL); /* 2 CPUs, started 10 s ago */
	fake.cpu_usage_ns = 5000000000ULL;                  /* 5 s of CPU: 25% of 2 cores over 10 s */
	struct resp *r = api("GET", "/sandboxes/imet/metrics", NULL);
	assert_int_equal(r->status, 200);
	assert_int_equal(json_array_size(r->json), 1);
	json_t *m = json_array_get(r->json, 0);
	double pct = json_number_value(json_object_get(m, "cpuUsedPct"));
	assert_true(pct > 24.0 && pct <= 25.0);
	assert_int_equal(json_integer_value(json_object_get(m, "cpuCount")), 2);
	assert_int_equal(json_integer_value(json_object_get(m, "memUsed")), 3 << 20);
	assert_int_equal(json_integer_value(json_object_get(m, "memTotal")), 512 << 20);
	assert_int_equal(json_integer_value(json_object_get(m, "memCache")), 1 << 20);
	assert_int_equal(json_integer_value(json_object_get(m, "diskUsed")), 4096);
	assert_int_equal(json_integer_value(json_object_get(m, "diskTotal")), 1024LL << 20);
	assert_non_null(str(m, "timestamp"));
	assert_true(json_integer_value(json_object_get(m, "timestampUnix")) >= now / 1000);
	/* second call: only the CPU used since the first counts (none) */
	usleep(200 * 1000);
	r = api("GET", "/sandboxes/imet/metrics", NULL);
	assert_true(json_number_value(json_object_get(json_array_get(r->json, 0), "cpuUsedPct")) == 0.0);
	r = api("GET", "/sandboxes/metrics?sandbox_ids=imet,inope", NULL);
	assert_int_equal(r->status, 200);
	assert_non_null(json_object_get(json_object_get(r->json, "sandboxes"), "imet"));
	assert_null(json_object_get(json_object_get(r->json, "sandboxes"), "inope"));
	assert_error(api("GET", "/sandboxes/inope/metrics", NULL), 404, NULL);
}

static void test_logs(void **state)
{
	(void)state;
	reset();
	long long now = cube_now_ms();
	struct sandbox *sb = fake_add("ilog", now, now + 60000, NULL);
	sbx_log(sb, "info", "sandbox started");
	sbx_log(sb, "warn", "something odd");
	struct resp *r = api("GET", "/v2/sandboxes/ilog/logs", NULL);
	assert_int_equal(r->status, 200);
	json_t *logs = json_object_get(r->json, "logs");
	assert_int_equal(json_array_size(logs), 2);
	json_t *e = json_array_get(logs, 0);
	assert_string_equal(str(e, "message"), "sandbox started");
	assert_non_null(str(e, "timestamp"));
	assert_non_null(str(e, "level"));
	assert_true(json_is_object(json_object_get(e, "fields")));
	r = api("GET", "/v2/sandboxes/ilog/logs?level=warn", NULL);
	assert_int_equal(json_array_size(json_object_get(r->json, "logs")), 1);
	r = api("GET", "/sandboxes/ilog/logs", NULL); /* v1 shape */
	assert_int_equal(json_array_size(json_object_get(r->json, "logs")), 2);
	assert_string_equal(str(json_array_get(json_object_get(r->json, "logs"), 1), "line"), "something odd");
	assert_int_equal(json_array_size(json_object_get(r->json, "logEntries")), 2);
	assert_error(api("GET", "/v2/sandboxes/ilog/logs?direction=sideways", NULL), 400, "direction");

	/* after a kill the lines come from the store */
	assert_int_equal(api("DELETE", "/sandboxes/ilog", NULL)->status, 204);
	r = api("GET", "/v2/sandboxes/ilog/logs", NULL);
	assert_int_equal(r->status, 200);
	logs = json_object_get(r->json, "logs");
	assert_int_equal(json_array_size(logs), 1);
	assert_string_equal(str(json_array_get(logs, 0), "message"), "sandbox killed");
	assert_error(api("GET", "/v2/sandboxes/ineverexisted/logs", NULL), 404, NULL);
}

static void test_admin_apikeys(void **state)
{
	(void)state;
	struct resp *r = request("POST", "/admin/apikeys", "{\"name\":\"ci\"}", NULL, 1);
	assert_int_equal(r->status, 201);
	char key[64], id[32];
	snprintf(key, sizeof key, "%s", str(r->json, "key"));
	snprintf(id, sizeof id, "%s", str(r->json, "id"));
	assert_string_equal(str(r->json, "name"), "ci");
	assert_int_equal(strlen(key), 44);
	assert_int_equal(request("GET", "/v2/sandboxes", NULL, key, 0)->status, 200);

	r = request("GET", "/admin/apikeys", NULL, NULL, 1);
	assert_int_equal(r->status, 200);
	assert_true(json_array_size(r->json) >= 2);
	assert_null(strstr(r->body, key)); /* never shown again */

	assert_error(request("POST", "/admin/apikeys", "{}", NULL, 1), 400, "name");
	assert_error(request("POST", "/admin/apikeys", "{\"name\":\"x\"}", api_key, 0), 404, NULL);
	char path[64];
	snprintf(path, sizeof path, "/admin/apikeys/%s", id);
	assert_int_equal(request("DELETE", path, NULL, NULL, 1)->status, 204);
	assert_error(request("DELETE", path, NULL, NULL, 1), 404, NULL);
	assert_error(request("GET", "/v2/sandboxes", NULL, key, 0), 401, NULL);
	assert_error(request("DELETE", "/admin/apikeys/BAD-ID", NULL, NULL, 1), 400, "API key ID");
}

/* Garbage of every kind gets a JSON 4xx, and the server keeps serving. */
static void test_bad_input_keeps_serving(void **state)
{
	(void)state;
	reset();
	fake_add("ibad", cube_now_ms(), cube_now_ms() + 60000, NULL);
	static const char *const bodies[] = {"", "{", "null", "[]", "{\"templateID\":[]}", "\"\\ud800\"",
					     "{\"templateID\":\"base\",\"metadata\":{\"a\":{}}}", "\x01\x02\xff",
					     "{\"timeout\":1e309}", "{\"duration\":\"x\"}"};
	static const char *const paths[] = {"/v2/sandboxes", "/sandboxes", "/sandboxes/ibad/timeout",
					    "/sandboxes/ibad/refreshes", "/sandboxes/ibad/connect"};
	for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
		for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
			struct resp *r = api("POST", paths[p], bodies[b]);
			/* a refresh ignores unknown fields and defaults its duration, so some of these pass */
			if (r->status >= 200 && r->status < 300 && strstr(paths[p], "refreshes"))
				continue;
			if (r->status < 400 || r->status >= 500)
				fail_msg("POST %s %s -> %ld", paths[p], bodies[b], r->status);
			assert_int_equal(json_integer_value(json_object_get(r->json, "code")), r->status);
		}
	}
	static const char *const weird[] = {"/sandboxes/%00", "/sandboxes/a%2Fb", "/sandboxes//x", "/v2/sandboxes?limit=%",
					    "/v2/sandboxes?metadata=%25%25", "/sandboxes/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (size_t i = 0; i < sizeof weird / sizeof weird[0]; i++) {
		struct resp *r = api("GET", weird[i], NULL);
		if (r->status < 400 || r->status >= 500 || !r->json)
			fail_msg("GET %s -> %ld %s", weird[i], r->status, r->body);
	}
	assert_int_equal(request("GET", "/health", NULL, NULL, 0)->status, 204);
	assert_int_equal(api("GET", "/sandboxes/ibad", NULL)->status, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_health_and_auth),
		cmocka_unit_test(test_create_v2_and_v1),
		cmocka_unit_test(test_create_client_gone),
		cmocka_unit_test(test_list_pagination_and_filters),
		cmocka_unit_test(test_get_kill_timeout_connect),
		cmocka_unit_test(test_metrics),
		cmocka_unit_test(test_logs),
		cmocka_unit_test(test_admin_apikeys),
		cmocka_unit_test(test_bad_input_keeps_serving),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
