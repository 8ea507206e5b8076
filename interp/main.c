/* cube-interp: the code-interpreter server of the @e2b/code-interpreter protocol (§4) on port 49999.
 * HTTP on common/http_server; contexts, their execution queues and the NDJSON stream of each
 * execution live here; the engines (Jupyter kernel, node driver) in jupyter.c and driver.c. */
#include "interp/interp.h"

#include "common/log.h"
#include "common/util.h"

#include <ctype.h>
#include <curl/curl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_PORT 49999
#define MAX_BODY (16u << 20)
#define KEEPALIVE_MS 5000

#define LISTEN_LATEST_MS 30000

uv_loop_t *interp_loop;
static struct ictx *contexts;
static http_server *srv;
static char listen_addr[300];
static int listening;
static uv_timer_t listen_timer;
static const char *default_cwd = "/home/user";

static const http_header cors[] = {
	{"Access-Control-Allow-Origin", "*"},
	{"Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"},
	{"Access-Control-Allow-Headers", "*"},
};

/* ---- contexts ---- */

static int engine_start(struct ictx *c)
{
	c->ready = 0;
	return c->kind == ENGINE_JUPYTER ? kernel_start(c) : driver_start(c);
}

static void engine_stop(struct ictx *c)
{
	if (c->kind == ENGINE_JUPYTER)
		kernel_stop(c);
	else
		driver_stop(c);
	c->ready = 0;
}

/* python, javascript, typescript or bash; NULL for a language without an engine. */
static const char *normalize_language(const char *in, char *buf, size_t len)
{
	while (in && isspace((unsigned char)*in))
		in++;
	size_t n = 0;
	for (; in && in[n] && n + 1 < len; n++)
		buf[n] = (char)tolower((unsigned char)in[n]);
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		n--;
	buf[n] = '\0';
	if (n == 0 || !strcmp(buf, "python") || !strcmp(buf, "python3"))
		return "python";
	if (!strcmp(buf, "js") || !strcmp(buf, "javascript"))
		return "javascript";
	if (!strcmp(buf, "ts") || !strcmp(buf, "typescript"))
		return "typescript";
	if (!strcmp(buf, "bash") || !strcmp(buf, "sh"))
		return "bash";
	return NULL;
}

static struct ictx *ctx_create(const char *language, const char *cwd)
{
	struct ictx *c = calloc(1, sizeof *c);
	char hex[33];
	if (!c || cube_random_hex(hex, 16) < 0) {
		free(c);
		return NULL;
	}
	snprintf(c->id, sizeof c->id, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
	c->language = strdup(language);
	c->cwd = strdup(cwd && *cwd ? cwd : default_cwd);
	c->kind = !strcmp(language, "python") ? ENGINE_JUPYTER : ENGINE_DRIVER;
	if (!c->language || !c->cwd || engine_start(c) < 0) {
		free(c->language);
		free(c->cwd);
		free(c);
		return NULL;
	}
	c->next = contexts;
	contexts = c;
	return c;
}

static struct ictx *ctx_find(const char *id)
{
	for (struct ictx *c = contexts; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

/* The oldest context of a language: the default one (created at start-up or on first use). */
static struct ictx *ctx_default(const char *language)
{
	struct ictx *hit = NULL;
	for (struct ictx *c = contexts; c; c = c->next)
		if (!strcmp(c->language, language))
			hit = c;
	return hit;
}

/* ---- executions ---- */

static void write_line(struct exec *e, json_t *line)
{
	char *s = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (!s || !e->req) {
		free(s);
		return;
	}
	size_t n = strlen(s);
	s[n] = '\n'; /* replaces the NUL: one write per line (the client decodes each chunk on its own) */
	http_resp_write(e->req, s, n + 1);
	free(s);
	if (e->running)
		uv_timer_again(&e->keepalive);
}

static void on_keepalive(uv_timer_t *t)
{
	struct exec *e = t->data;
	write_line(e, json_pack("{s:s}", "type", "keepalive"));
}

static void exec_free_cb(uv_handle_t *h)
{
	struct exec *e = h->data;
	free(e->code);
	json_decref(e->env_vars);
	free(e);
}

static void exec_client_gone(http_req *req)
{
	struct exec *e = http_req_data(req);
	e->req = NULL;
	if (e->running && e->ctx) {
		/* the SDK aborts on its timeoutMs: stop the cell, keep the context */
		if (e->ctx->kind == ENGINE_JUPYTER)
			kernel_interrupt(e->ctx);
		else
			driver_interrupt(e->ctx);
	}
}

/* End an execution: final line, close the response, unlink it from its context. */
static void exec_end(struct exec *e)
{
	struct ictx *c = e->ctx;
	for (struct exec **pp = &c->queue; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	e->running = 0;
	uv_timer_stop(&e->keepalive);
	if (e->req) {
		write_line(e, json_pack("{s:s}", "type", "end_of_execution"));
		http_req_on_close(e->req, NULL);
		http_resp_end(e->req);
		e->req = NULL;
	}
	uv_close((uv_handle_t *)&e->keepalive, exec_free_cb);
}

static void ctx_pump(struct ictx *c)
{
	while (c->ready && c->queue && !c->queue->running) {
		struct exec *e = c->queue;
		if (!e->req) { /* the client left while it waited */
			exec_end(e);
			continue;
		}
		e->running = 1;
		uv_timer_start(&e->keepalive, on_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
		if (c->kind == ENGINE_JUPYTER)
			kernel_execute(c, e->code, e->env_vars);
		else
			driver_execute(c, e->code, e->env_vars);
		return;
	}
}

/* The port opens once the default python kernel is ready (or after LISTEN_LATEST_MS): a sandbox whose
 * template waits for the port then comes with a warm kernel. */
static void start_listening(void)
{
	if (listening)
		return;
	listening = 1;
	uv_timer_stop(&listen_timer);
	cube_err err = {0};
	if (http_server_listen_tcp(srv, listen_addr, &err) < 0) {
		log_error("interp: %s", err.msg);
		exit(1);
	}
	log_info("cube-interp listening on %s", listen_addr);
}

static void on_listen_timer(uv_timer_t *t)
{
	(void)t;
	log_warn("interp: the python kernel is not ready yet; opening the port anyway");
	start_listening();
}

void ctx_engine_ready(struct ictx *c)
{
	c->ready = 1;
	if (!listening && !strcmp(c->language, "python"))
		start_listening();
	ctx_pump(c);
}

void ctx_emit(struct ictx *c, json_t *line)
{
	struct exec *e = c->queue;
	if (!e || !e->running) {
		json_decref(line);
		return;
	}
	write_line(e, line);
}

void ctx_exec_done(struct ictx *c)
{
	struct exec *e = c->queue;
	if (e && e->running)
		exec_end(e);
	ctx_pump(c);
}

static void fail_running(struct ictx *c, const char *name, const char *value)
{
	struct exec *e = c->queue;
	if (e && e->running) {
		write_line(e, json_pack("{s:s,s:s,s:s,s:s}", "type", "error", "name", name, "value", value, "traceback", ""));
		exec_end(e);
	}
}

void ctx_engine_died(struct ictx *c, const char *why)
{
	log_warn("interp: context %s: %s; starting a new one", c->id, why);
	fail_running(c, "UnexpectedEndOfExecution",
		     "Connection to the execution was closed before the execution was finished");
	engine_stop(c);
	if (engine_start(c) < 0)
		log_error("interp: context %s: the engine cannot be restarted", c->id);
}

static void ctx_restart(struct ictx *c)
{
	fail_running(c, "ContextRestarting", "Context was restarted");
	engine_stop(c);
	if (engine_start(c) < 0)
		log_error("interp: context %s: the engine cannot be restarted", c->id);
}

static void ctx_remove(struct ictx *c)
{
	fail_running(c, "ContextRestarting", "Context was removed");
	while (c->queue)
		exec_end(c->queue);
	engine_stop(c);
	for (struct ictx **pp = &contexts; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	free(c->language);
	free(c->cwd);
	free(c);
}

/* ---- HTTP ---- */

static void send_text(http_req *req, int status, const char *text)
{
	http_resp_send(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void send_json(http_req *req, int status, json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(body);
	http_resp_send(req, status, "application/json", s ? s : "null", s ? strlen(s) : 4);
	free(s);
}

static json_t *ctx_json(const struct ictx *c)
{
	return json_pack("{s:s,s:s,s:s}", "id", c->id, "language", c->language, "cwd", c->cwd);
}

/* 422 like FastAPI's validation errors. */
static void send_422(http_req *req, const char *loc, const char *msg)
{
	send_json(req, 422, json_pack("{s:[{s:[s,s],s:s,s:s}]}", "detail", "loc", "body", loc, "msg", msg, "type",
				      "value_error"));
}

static void execute(http_req *req, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	json_t *code = json_object_get(j, "code"), *cid = json_object_get(j, "context_id"),
	       *lang = json_object_get(j, "language"), *envs = json_object_get(j, "env_vars");
	if (!json_is_object(j) || !json_is_string(code)) {
		json_decref(j);
		send_422(req, "code", "field required (a string)");
		return;
	}
	if ((cid && !json_is_null(cid) && !json_is_string(cid)) || (lang && !json_is_null(lang) && !json_is_string(lang))) {
		json_decref(j);
		send_422(req, "context_id", "must be a string");
		return;
	}
	if (envs && !json_is_null(envs) && !json_is_object(envs)) {
		json_decref(j);
		send_422(req, "env_vars", "must be an object of strings");
		return;
	}
	const char *k;
	json_t *v;
	json_object_foreach (envs, k, v)
		if (!json_is_string(v)) {
			json_decref(j);
			send_422(req, "env_vars", "must be an object of strings");
			return;
		}
	struct ictx *c = NULL;
	if (json_is_string(cid) && json_is_string(lang)) {
		json_decref(j);
		send_text(req, 400, "Only one of context_id or language can be provided");
		return;
	}
	if (json_is_string(cid)) {
		if (!(c = ctx_find(json_string_value(cid)))) {
			char msg[128];
			snprintf(msg, sizeof msg, "Context %s not found", json_string_value(cid));
			json_decref(j);
			send_text(req, 404, msg);
			return;
		}
	} else {
		char buf[64];
		const char *l = normalize_language(json_is_string(lang) ? json_string_value(lang) : "", buf, sizeof buf);
		if (l && !(c = ctx_default(l)))
			c = ctx_create(l, NULL);
		if (!c) {
			char msg[160];
			snprintf(msg, sizeof msg, "Failed to create the default context for language %s", l ? l : buf);
			json_decref(j);
			send_text(req, 500, msg);
			return;
		}
	}
	struct exec *e = calloc(1, sizeof *e);
	if (!e || !(e->code = strdup(json_string_value(code)))) {
		free(e);
		json_decref(j);
		send_text(req, 500, "out of memory");
		return;
	}
	if (json_object_size(envs))
		e->env_vars = json_incref(envs);
	json_decref(j);
	e->ctx = c;
	e->req = req;
	uv_timer_init(interp_loop, &e->keepalive);
	e->keepalive.data = e;
	http_req_set_data(req, e);
	http_req_on_close(req, exec_client_gone);
	http_resp_start(req, 200, NULL, 0, -1);
	struct exec **tail = &c->queue;
	while (*tail)
		tail = &(*tail)->next;
	*tail = e;
	ctx_pump(c);
}

/* /execute waits for the token check with its body; the client may leave meanwhile. */
struct pending_exec {
	http_req *req;
	char *body;
	size_t len;
};

static void pending_gone(http_req *req)
{
	struct pending_exec *p = http_req_data(req);
	p->req = NULL;
}

static void after_auth(int status, void *arg)
{
	struct pending_exec *p = arg;
	if (p->req) {
		http_req_on_close(p->req, NULL);
		http_req_set_data(p->req, NULL);
		if (status == 200)
			execute(p->req, p->body, p->len);
		else if (status == 401)
			send_json(p->req, 401, json_pack("{s:i,s:s}", "code", 401, "message", "Unauthorized: invalid access token"));
		else
			send_text(p->req, 503, "cannot check the access token");
	}
	free(p->body);
	free(p);
}

static void on_execute_body(http_req *req, char *body, size_t len, int error_status)
{
	if (error_status) {
		send_text(req, error_status, error_status == 413 ? "request body too large" : "malformed request");
		return;
	}
	struct pending_exec *p = calloc(1, sizeof *p);
	if (!p || !(p->body = malloc(len + 1))) {
		free(p);
		send_text(req, 500, "out of memory");
		return;
	}
	memcpy(p->body, body, len);
	p->body[len] = '\0';
	p->len = len;
	p->req = req;
	http_req_set_data(req, p);
	http_req_on_close(req, pending_gone);
	auth_check(http_req_header(req, "X-Access-Token"), after_auth, p);
}

static void on_create_context_body(http_req *req, char *body, size_t len, int error_status)
{
	if (error_status) {
		send_text(req, error_status, "malformed request");
		return;
	}
	json_t *j = len ? json_loadb(body, len, 0, NULL) : json_object();
	if (!json_is_object(j)) {
		json_decref(j);
		send_422(req, "body", "a JSON object is required");
		return;
	}
	json_t *lang = json_object_get(j, "language"), *cwd = json_object_get(j, "cwd");
	char buf[64];
	const char *l = normalize_language(json_is_string(lang) ? json_string_value(lang) : "", buf, sizeof buf);
	struct ictx *c = l ? ctx_create(l, json_is_string(cwd) ? json_string_value(cwd) : NULL) : NULL;
	if (!c) {
		char msg[160];
		snprintf(msg, sizeof msg, "Failed to create context for language %s", l ? l : buf);
		send_text(req, 500, msg);
	} else {
		send_json(req, 200, ctx_json(c));
	}
	json_decref(j);
}

static void on_request(http_req *req, void *arg)
{
	(void)arg;
	const char *m = http_req_method(req), *path = http_req_path(req);
	if (!strcmp(m, "OPTIONS")) {
		http_resp_send(req, 204, NULL, NULL, 0);
		return;
	}
	if (!strcmp(path, "/health") && !strcmp(m, "GET")) {
		send_json(req, 200, json_string("OK"));
		return;
	}
	if (!strcmp(path, "/execute") && !strcmp(m, "POST")) {
		http_req_read_body(req, MAX_BODY, on_execute_body);
		return;
	}
	if (!strcmp(path, "/contexts")) {
		if (!strcmp(m, "POST")) {
			http_req_read_body(req, 1 << 16, on_create_context_body);
		} else if (!strcmp(m, "GET")) {
			json_t *list = json_array();
			for (struct ictx *c = contexts; c; c = c->next)
				json_array_insert_new(list, 0, ctx_json(c));
			send_json(req, 200, list);
		} else {
			send_text(req, 405, "Method Not Allowed");
		}
		return;
	}
	if (!strncmp(path, "/contexts/", 10)) {
		char id[64];
		const char *rest = path + 10, *slash = strchr(rest, '/');
		size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
		snprintf(id, sizeof id, "%.*s", (int)(n < sizeof id ? n : sizeof id - 1), rest);
		int restart = slash && !strcmp(slash, "/restart") && !strcmp(m, "POST");
		int del = !slash && !strcmp(m, "DELETE");
		if (!restart && !del) {
			send_text(req, 404, "Not Found");
			return;
		}
		struct ictx *c = ctx_find(id);
		if (!c) {
			char msg[128];
			snprintf(msg, sizeof msg, "Context %s not found", id);
			send_text(req, 404, msg);
			return;
		}
		if (restart)
			ctx_restart(c);
		else
			ctx_remove(c);
		send_json(req, 200, json_null());
		return;
	}
	send_text(req, 404, "Not Found");
}

/* SIGTERM (envd stopping the sandbox, or a test): the engines go with us. */
static void on_sigterm(uv_signal_t *h, int sig)
{
	(void)h;
	log_info("interp: %s, stopping", strsignal(sig));
	for (struct ictx *c = contexts; c; c = c->next)
		engine_stop(c);
	exit(0);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cube-interp [options]\n"
		"  --port N        listen port (default %d)\n"
		"  --host ADDR     listen address (default 0.0.0.0)\n"
		"  --cwd DIR       working directory of the default contexts (default /home/user)\n"
		"  --driver FILE   the JavaScript/bash driver (default %s)\n"
		"  --no-defaults   do not start the default python and javascript contexts\n"
		"  --envd URL      envd, which checks X-Access-Token on /execute (default %s)\n"
		"  --no-auth       do not check X-Access-Token (outside a sandbox)\n",
		DEFAULT_PORT, driver_script, auth_envd_url);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int port = DEFAULT_PORT, defaults = 1;
	const char *host = "0.0.0.0";
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},   {"host", required_argument, NULL, 'H'},
		{"cwd", required_argument, NULL, 'c'},    {"driver", required_argument, NULL, 'd'},
		{"no-defaults", no_argument, NULL, 'n'},  {"help", no_argument, NULL, 'h'},
		{"envd", required_argument, NULL, 'e'},   {"no-auth", no_argument, NULL, 'a'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': port = atoi(optarg); break;
		case 'H': host = optarg; break;
		case 'c': default_cwd = optarg; break;
		case 'd': driver_script = optarg; break;
		case 'n': defaults = 0; break;
		case 'e': auth_envd_url = optarg; break;
		case 'a': auth_disabled = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	struct stat st;
	static char cwd_buf[4096];
	if (stat(default_cwd, &st) < 0 && getcwd(cwd_buf, sizeof cwd_buf))
		default_cwd = cwd_buf;
	/* ipykernel's debugger otherwise warns about frozen modules into the sandbox log at every start */
	setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1", 0);
	interp_loop = uv_default_loop();
	srv = http_server_new(interp_loop, on_request, NULL);
	if (!srv) {
		log_error("interp: out of memory");
		return 1;
	}
	snprintf(listen_addr, sizeof listen_addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	http_server_set_default_headers(srv, cors, CUBE_ARRAY_LEN(cors));
	uv_timer_init(interp_loop, &listen_timer);
	static uv_signal_t sigterm;
	uv_signal_init(interp_loop, &sigterm);
	uv_signal_start(&sigterm, on_sigterm, SIGTERM);
	if (defaults && (!ctx_create("javascript", NULL) || !ctx_create("python", NULL)))
		log_error("interp: a default context did not start");
	if (defaults)
		uv_timer_start(&listen_timer, on_listen_timer, LISTEN_LATEST_MS, 0);
	else
		start_listening();
	return uv_run(interp_loop, UV_RUN_DEFAULT);
}
