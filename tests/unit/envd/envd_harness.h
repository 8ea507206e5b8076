/* Test harness for cube-envd over real HTTP: starts the envd binary (CUBE_ENVD_BIN) on a free
 * loopback port with a config file and a scratch /etc (root and user), waits for its ready byte,
 * and talks to it with libcurl: plain requests, Connect unary calls and server streams whose
 * enveloped frames are decoded into JSON. Header-only (static functions), shared by the envd tests. */
#ifndef CUBE_TESTS_ENVD_HARNESS_H
#define CUBE_TESTS_ENVD_HARNESS_H

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct envd_proc {
	pid_t pid;
	int port;
	char dir[128];      /* scratch: config.json, etc/passwd, etc/group, home/ */
	char log[160];
};

static inline int harness_free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || getsockname(s, (struct sockaddr *)&a, &l) < 0)
		return -1;
	close(s);
	return ntohs(a.sin_port);
}

static inline void harness_write(const char *dir, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* Start envd; config_json is the whole config (NULL = a default with token "tok"). 0 on success. */
static inline int envd_start(struct envd_proc *e, const char *config_json)
{
	const char *bin = getenv("CUBE_ENVD_BIN");
	if (!bin)
		return -1;
	snprintf(e->dir, sizeof e->dir, "/tmp/envd-test-XXXXXX");
	if (!mkdtemp(e->dir) || chmod(e->dir, 0755) < 0)   /* user 1000 walks into home/ */
		return -1;
	char sub[256], text[1024];
	snprintf(sub, sizeof sub, "%s/etc", e->dir);
	mkdir(sub, 0755);
	snprintf(sub, sizeof sub, "%s/home", e->dir);
	mkdir(sub, 0755);
	if (chown(sub, 1000, 1000) < 0) {
		/* tests that run as user need root; they skip otherwise */
	}
	snprintf(text, sizeof text,
		 "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:%s/home:/bin/bash\n", e->dir);
	harness_write(e->dir, "etc/passwd", text);
	harness_write(e->dir, "etc/group", "root:x:0:\nuser:x:1000:\nextra:x:4242:user\n");
	harness_write(e->dir, "config.json",
		      config_json ? config_json
				  : "{\"sandboxID\":\"sbx-test\",\"templateID\":\"base\",\"envVars\":{\"GLOBAL_A\":\"1\"},"
				    "\"accessToken\":\"tok\",\"defaultUser\":\"root\",\"maxUploadBytes\":1048576}");
	e->port = harness_free_port();
	snprintf(e->log, sizeof e->log, "%s/envd.log", e->dir);
	int ready[2];
	if (e->port < 0 || pipe(ready) < 0)
		return -1;
	e->pid = fork();
	if (e->pid == 0) {
		char port[16], fd[16], cfg[200], etc[200];
		snprintf(port, sizeof port, "%d", e->port);
		snprintf(fd, sizeof fd, "%d", ready[1]);
		snprintf(cfg, sizeof cfg, "%s/config.json", e->dir);
		snprintf(etc, sizeof etc, "%s/etc", e->dir);
		int log = open(e->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		close(ready[0]);
		execl(bin, bin, "--port", port, "--host", "127.0.0.1", "--config", cfg, "--ready-fd", fd, "--etc", etc,
		      "--log-level", "debug", (char *)NULL);
		_exit(127);
	}
	close(ready[1]);
	char b;
	ssize_t n = read(ready[0], &b, 1);
	close(ready[0]);
	return n == 1 ? 0 : -1;
}

/* Stop envd; -1 if it crashed or a sanitizer complained in its log (which is then printed). */
static inline int envd_stop(struct envd_proc *e)
{
	int rc = 0;
	if (e->pid > 0) {
		kill(e->pid, SIGTERM);
		int st;
		waitpid(e->pid, &st, 0);
		e->pid = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rc = -1;
	}
	FILE *log = fopen(e->log, "r");
	char line[1024];
	int bad = 0;
	while (log && fgets(line, sizeof line, log))
		if (strstr(line, "Sanitizer") || strstr(line, "runtime error"))
			bad = 1;
	if (log && (bad || rc)) {
		rewind(log);
		fprintf(stderr, "---- envd log (%s) ----\n", bad ? "sanitizer report" : "abnormal exit");
		while (fgets(line, sizeof line, log))
			fputs(line, stderr);
		rc = -1;
	}
	if (log)
		fclose(log);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
	if (system(cmd) != 0) {
		/* leave it */
	}
	return rc;
}

/* ---- HTTP with libcurl ---- */

/* One envd (the binary named by CUBE_ENVD_BIN) shared by every test of a group. */
static struct envd_proc envd_p;

static inline int envd_group_setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_ALL);
	if (!getenv("CUBE_ENVD_BIN")) {
		fprintf(stderr, "CUBE_ENVD_BIN is not set\n");
		return -1;
	}
	return envd_start(&envd_p, NULL);
}

static inline int envd_group_teardown(void **state)
{
	(void)state;
	return envd_stop(&envd_p);
}

struct http_result {
	long status;
	char content_type[128];
	char *body;
	size_t len;
	char headers[4096];   /* raw response head, for header checks */
	size_t hlen;
	CURLcode curl_rc;
	volatile size_t *progress;   /* optional: body bytes received so far, updated as they arrive */
};

static inline size_t harness_body_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct http_result *r = ud;
	char *nb = realloc(r->body, r->len + sz * n + 1);
	if (!nb)
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	if (r->progress)
		__atomic_store_n(r->progress, r->len, __ATOMIC_SEQ_CST);
	return sz * n;
}

static inline size_t harness_header_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct http_result *r = ud;
	size_t len = sz * n;
	if (r->hlen + len < sizeof r->headers) {
		memcpy(r->headers + r->hlen, p, len);
		r->hlen += len;
		r->headers[r->hlen] = '\0';
	}
	if (len > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
		size_t l = len - 13;
		const char *v = p + 13;
		while (l && *v == ' ')
			v++, l--;
		while (l && (v[l - 1] == '\r' || v[l - 1] == '\n'))
			l--;
		snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)l, v);
	}
	return len;
}

static inline void http_result_free(struct http_result *r)
{
	free(r->body);
	memset(r, 0, sizeof *r);
}

/* One request; headers is a NULL-terminated list of "Name: value". timeout_ms 0 = 30 s. */
static inline struct http_result envd_http_progress(struct envd_proc *e, const char *method, const char *path,
					     const char *const *headers, const void *body, size_t len, long timeout_ms,
					     volatile size_t *progress)
{
	struct http_result r = {.progress = progress};
	char url[512];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e->port, path);
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	for (const char *const *p = headers; p && *p; p++)
		h = curl_slist_append(h, *p);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
	}
	if (!strcmp(method, "HEAD"))
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, harness_body_cb);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, harness_header_cb);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms ? timeout_ms : 30000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	r.curl_rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	r.progress = NULL;
	return r;
}

static inline struct http_result envd_http(struct envd_proc *e, const char *method, const char *path,
				    const char *const *headers, const void *body, size_t len, long timeout_ms)
{
	return envd_http_progress(e, method, path, headers, body, len, timeout_ms, NULL);
}

/* Connect unary call with the token "tok" (plus extra headers). Returns the parsed body (NULL if
 * not JSON) and the status. */
static inline json_t *envd_unary(struct envd_proc *e, const char *method_path, const char *json_body, long *status,
			  const char *const *extra)
{
	const char *h[16] = {"Content-Type: application/json", "Connect-Protocol-Version: 1", "X-Access-Token: tok"};
	size_t n = 3;
	for (const char *const *p = extra; p && *p && n < 15; p++)
		h[n++] = *p;
	h[n] = NULL;
	struct http_result r = envd_http(e, "POST", method_path, h, json_body, strlen(json_body), 0);
	*status = r.status;
	json_t *j = r.body ? json_loadb(r.body, r.len, 0, NULL) : NULL;
	http_result_free(&r);
	return j;
}

/* A decoded server stream: frames[i] is the JSON payload, flags[i] its envelope flags. */
struct stream_result {
	long status;
	char content_type[128];
	json_t *frames[4096];
	unsigned char flags[4096];
	size_t n;
	int malformed;        /* framing broken (truncated, trailing bytes) */
	CURLcode curl_rc;
	volatile size_t received;   /* body bytes so far, while the call runs (set before the call) */
};

static inline void stream_result_free(struct stream_result *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_decref(s->frames[i]);
	s->n = 0;
}

static inline void decode_frames(struct stream_result *s, const unsigned char *b, size_t len)
{
	size_t i = 0;
	while (i + 5 <= len && s->n < 4096) {
		uint32_t l = (uint32_t)b[i + 1] << 24 | (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 3] << 8 | b[i + 4];
		if (i + 5 + l > len)
			break;
		s->flags[s->n] = b[i];
		s->frames[s->n++] = json_loadb((const char *)b + i + 5, l, 0, NULL);
		i += 5 + l;
	}
	if (i != len)
		s->malformed = 1;
}

/* Server-streaming call: one enveloped request message; extra headers appended. */
static inline void envd_stream_raw(struct envd_proc *e, const char *method_path, const void *envelope, size_t len,
			    const char *const *extra, long timeout_ms, struct stream_result *out)
{
	const char *h[16] = {"Content-Type: application/connect+json", "Connect-Protocol-Version: 1",
			     "X-Access-Token: tok"};
	size_t n = 3;
	for (const char *const *p = extra; p && *p && n < 15; p++)
		h[n++] = *p;
	h[n] = NULL;
	memset(out, 0, sizeof *out);
	struct http_result r = envd_http_progress(e, "POST", method_path, h, envelope, len, timeout_ms, &out->received);
	out->status = r.status;
	out->curl_rc = r.curl_rc;
	snprintf(out->content_type, sizeof out->content_type, "%s", r.content_type);
	decode_frames(out, (const unsigned char *)r.body, r.len);
	http_result_free(&r);
}

static inline void envd_stream(struct envd_proc *e, const char *method_path, const char *json_body,
			const char *const *extra, long timeout_ms, struct stream_result *out)
{
	size_t l = strlen(json_body);
	unsigned char *env = malloc(l + 5);
	env[0] = 0;
	env[1] = (unsigned char)(l >> 24);
	env[2] = (unsigned char)(l >> 16);
	env[3] = (unsigned char)(l >> 8);
	env[4] = (unsigned char)l;
	memcpy(env + 5, json_body, l);
	envd_stream_raw(e, method_path, env, l + 5, extra, timeout_ms, out);
	free(env);
}

/* Concatenated, decoded output of the data events of one kind ("stdout", "stderr", "pty"). */
static inline char *stream_output(const struct stream_result *s, const char *kind, size_t *len)
{
	char *out = malloc(1);
	size_t n = 0;
	for (size_t i = 0; i < s->n; i++) {
		json_t *d = json_object_get(json_object_get(json_object_get(s->frames[i], "event"), "data"), kind);
		if (!json_is_string(d))
			continue;
		const char *b64 = json_string_value(d);
		size_t bl = strlen(b64);
		unsigned char *tmp = malloc(bl);
		int k = EVP_DecodeBlock(tmp, (const unsigned char *)b64, (int)bl);
		if (k > 0) {
			if (bl >= 1 && b64[bl - 1] == '=')
				k--;
			if (bl >= 2 && b64[bl - 2] == '=')
				k--;
			out = realloc(out, n + (size_t)k + 1);
			memcpy(out + n, tmp, (size_t)k);
			n += (size_t)k;
		}
		free(tmp);
	}
	out[n] = '\0';
	if (len)
		*len = n;
	return out;
}

/* The "event" member named kind in frame i ("start", "data", "end", "keepalive"), or NULL. */
static inline json_t *frame_event(const struct stream_result *s, size_t i, const char *kind)
{
	return i < s->n ? json_object_get(json_object_get(s->frames[i], "event"), kind) : NULL;
}

#endif
