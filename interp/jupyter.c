/* Python contexts: one ipykernel process each, spoken to over the Jupyter messaging protocol (5.3)
 * on ZeroMQ: execute_request on the shell channel (DEALER), outputs from the iopub channel (SUB),
 * every message signed with HMAC-SHA256 (OpenSSL) under a per-kernel random key. Interrupts are
 * SIGINT (the kernel's "signal" interrupt mode). libzmq's ZMQ_FD is edge-triggered, so each socket
 * is drained after every wake-up and every send, plus on a short timer as a safety net. */
#include "interp/interp.h"

#include "common/log.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define DELIM "<IDS|MSG>"
#define INFO_RETRY_MS 250
#define SAFETY_POLL_MS 100
#define MAX_FRAMES 64

struct kernel {
	struct ictx *c;
	uv_process_t proc;
	int alive, stopping;
	void *shell, *iopub;
	uv_poll_t shell_poll, iopub_poll;
	uv_timer_t timer;
	int handles;
	char key[65];
	char session[40];
	char conn_path[256];
	char exec_id[40];       /* msg_id of the running user execution, "" if none */
	json_t *restore;        /* env_vars to restore after the running execution */
	int info_ok, iopub_ok;
	long long info_sent;
	unsigned long seq;
};

static void *zctx;

static const char *str_or(json_t *v, const char *dflt)
{
	return json_is_string(v) ? json_string_value(v) : dflt;
}

static void uuid4(char out[37])
{
	unsigned char b[16];
	char hex[33];
	cube_random_hex(hex, 16);
	for (int i = 0; i < 16; i++)
		sscanf(hex + 2 * i, "%2hhx", &b[i]);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* hex HMAC-SHA256 over the four JSON frames (header, parent, metadata, content). */
static int sign(const char *key, const char *const parts[4], const size_t lens[4], char out[65])
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0), OSSL_PARAM_END};
	unsigned char md[32];
	size_t mdlen = 0;
	int ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)key, strlen(key), params);
	for (int i = 0; ok && i < 4; i++)
		ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i], lens[i]);
	ok = ok && EVP_MAC_final(ctx, md, &mdlen, sizeof md) && mdlen == 32;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	for (size_t i = 0; ok && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return ok ? 0 : -1;
}

static void iso_now(char *buf, size_t len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static void drain(struct kernel *k);

/* Run once in every kernel: pandas DataFrames also display as e2b/data (the columns as lists, like
 * E2B's server), which the SDK exposes as Result.data. Lazy: pandas is imported only by the user. */
static const char kernel_setup[] =
	"def _cube_setup():\n"
	"    import json\n"
	"    from IPython import get_ipython\n"
	"    from IPython.core.formatters import BaseFormatter\n"
	"    class E2BDataFormatter(BaseFormatter):\n"
	"        format_type = 'e2b/data'\n"
	"        print_method = '_repr_e2b_data_'\n"
	"        _return_type = (dict,)\n"
	"    ip = get_ipython()\n"
	"    f = E2BDataFormatter(parent=ip.display_formatter)\n"
	"    ip.display_formatter.formatters['e2b/data'] = f\n"
	"    f.for_type_by_name('pandas.core.frame', 'DataFrame',\n"
	"        lambda df: json.loads(json.dumps(df.to_dict(orient='list'), default=str)))\n"
	"_cube_setup()\n"
	"del _cube_setup\n";

/* Send one message on the shell channel; msg_id_out (37 bytes) receives its id. */
static int send_shell(struct kernel *k, const char *msg_type, json_t *content, char *msg_id_out)
{
	char id[37], date[40];
	uuid4(id);
	iso_now(date, sizeof date);
	json_t *header = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "msg_id", id, "session", k->session, "username",
				   "cube-interp", "date", date, "msg_type", msg_type, "version", "5.3");
	char *parts[4] = {json_dumps(header, JSON_COMPACT), strdup("{}"), strdup("{}"),
			  json_dumps(content, JSON_COMPACT)};
	json_decref(header);
	json_decref(content);
	int rc = -1;
	char sig[65];
	if (parts[0] && parts[1] && parts[2] && parts[3]) {
		size_t lens[4];
		for (int i = 0; i < 4; i++)
			lens[i] = strlen(parts[i]);
		if (sign(k->key, (const char *const *)parts, lens, sig) == 0 &&
		    zmq_send(k->shell, DELIM, strlen(DELIM), ZMQ_SNDMORE) >= 0 &&
		    zmq_send(k->shell, sig, 64, ZMQ_SNDMORE) >= 0) {
			rc = 0;
			for (int i = 0; i < 4 && rc == 0; i++)
				if (zmq_send(k->shell, parts[i], lens[i], i < 3 ? ZMQ_SNDMORE : 0) < 0)
					rc = -1;
		}
	}
	for (int i = 0; i < 4; i++)
		free(parts[i]);
	if (rc < 0)
		log_warn("interp: kernel %s: sending %s failed: %s", k->c->id, msg_type, zmq_strerror(zmq_errno()));
	else if (msg_id_out)
		memcpy(msg_id_out, id, 37);
	k->seq++;
	return rc;
}

static json_t *env_code_content(json_t *env_vars, json_t *restore)
{
	/* JSON string literals are valid Python string literals (jansson does not escape '/'). */
	json_t *set = json_object(), *del = json_array();
	const char *key;
	json_t *v;
	json_object_foreach (restore ? restore : env_vars, key, v) {
		if (!restore) {
			if (json_is_string(v))
				json_object_set(set, key, v);
			continue;
		}
		const char *global = getenv(key);
		if (global)
			json_object_set_new(set, key, json_string(global));
		else
			json_array_append_new(del, json_string(key));
	}
	char *s = json_dumps(set, JSON_COMPACT | JSON_ENSURE_ASCII), *d = json_dumps(del, JSON_COMPACT | JSON_ENSURE_ASCII);
	char *code = NULL;
	if (s && d && asprintf(&code, "import os as _cube_os\n_cube_os.environ.update(%s)\nfor _k in %s: _cube_os.environ.pop(_k, None)\ndel _cube_os", s, d) < 0)
		code = NULL;
	free(s);
	free(d);
	json_decref(set);
	json_decref(del);
	json_t *content = json_pack("{s:s,s:b,s:b,s:{},s:b,s:b}", "code", code ? code : "", "silent", 1,
				    "store_history", 0, "user_expressions", "allow_stdin", 0, "stop_on_error", 0);
	free(code);
	return content;
}

void kernel_execute(struct ictx *c, const char *code, json_t *env_vars)
{
	struct kernel *k = c->engine;
	if (env_vars && json_object_size(env_vars)) {
		send_shell(k, "execute_request", env_code_content(env_vars, NULL), NULL);
		k->restore = json_incref(env_vars);
	}
	json_t *content = json_pack("{s:s,s:b,s:b,s:{},s:b,s:b}", "code", code, "silent", 0, "store_history", 1,
				    "user_expressions", "allow_stdin", 0, "stop_on_error", 0);
	if (send_shell(k, "execute_request", content, k->exec_id) < 0) {
		ctx_emit(c, json_pack("{s:s,s:s,s:s,s:s}", "type", "error", "name", "WebSocketError", "value",
				      "Failed to send execution request", "traceback", ""));
		ctx_exec_done(c);
		return;
	}
	drain(k);
}

void kernel_interrupt(struct ictx *c)
{
	struct kernel *k = c->engine;
	if (k && k->alive && k->exec_id[0]) {
		log_info("interp: interrupting context %s", c->id);
		kill(k->proc.pid, SIGINT);
	}
}

/* ---- incoming messages ---- */

/* A result line from a Jupyter display bundle (§4.4): known MIME types become fields, the rest extra. */
static json_t *result_line(json_t *data, int main_result)
{
	static const char *const map[][2] = {
		{"text/plain", "text"},        {"text/html", "html"},         {"text/markdown", "markdown"},
		{"image/svg+xml", "svg"},      {"image/png", "png"},          {"image/jpeg", "jpeg"},
		{"application/pdf", "pdf"},    {"text/latex", "latex"},       {"application/json", "json"},
		{"application/javascript", "javascript"}, {"e2b/data", "data"}, {"e2b/chart", "chart"},
	};
	json_t *line = json_pack("{s:s}", "type", "result"), *extra = json_object();
	const char *mime;
	json_t *v;
	json_object_foreach (data, mime, v) {
		const char *field = NULL;
		for (size_t i = 0; i < CUBE_ARRAY_LEN(map); i++)
			if (strcmp(map[i][0], mime) == 0)
				field = map[i][1];
		/* base64 images may arrive with line breaks (older kernels): the SDK wants them plain. */
		if (field && json_is_string(v) && (!strcmp(field, "png") || !strcmp(field, "jpeg"))) {
			const char *s = json_string_value(v);
			char *clean = malloc(strlen(s) + 1), *o = clean;
			for (; clean && *s; s++)
				if (*s != '\n')
					*o++ = *s;
			if (clean) {
				*o = '\0';
				json_object_set_new(line, field, json_string(clean));
				free(clean);
			}
			continue;
		}
		if (field && !strcmp(field, "text") && json_is_string(v)) {
			/* as E2B's server does: one pair of surrounding quotes of a str repr goes */
			const char *t = json_string_value(v);
			size_t n = json_string_length(v);
			if (n >= 2 && (t[0] == '\'' || t[0] == '"') && t[n - 1] == t[0]) {
				json_object_set_new(line, "text", json_stringn(t + 1, n - 2));
				continue;
			}
		}
		json_object_set(field ? line : extra, field ? field : mime, v);
	}
	json_object_set_new(line, "extra", extra);
	json_object_set_new(line, "is_main_result", json_boolean(main_result));
	return line;
}

static void on_iopub(struct kernel *k, const char *type, json_t *header, json_t *parent, json_t *content)
{
	k->iopub_ok = 1;
	const char *pid = json_string_value(json_object_get(parent, "msg_id"));
	if (!k->exec_id[0] || !pid || strcmp(pid, k->exec_id) != 0)
		return;
	struct ictx *c = k->c;
	if (!strcmp(type, "execute_input")) {
		ctx_emit(c, json_pack("{s:s,s:O}", "type", "number_of_executions", "execution_count",
				      json_object_get(content, "execution_count")));
	} else if (!strcmp(type, "stream")) {
		const char *name = json_string_value(json_object_get(content, "name"));
		json_t *date = json_object_get(header, "date");
		json_t *line = json_pack("{s:s,s:O}", "type", name && !strcmp(name, "stderr") ? "stderr" : "stdout", "text",
					 json_object_get(content, "text"));
		if (json_is_string(date))
			json_object_set(line, "timestamp", date);
		ctx_emit(c, line);
	} else if (!strcmp(type, "execute_result") || !strcmp(type, "display_data")) {
		json_t *data = json_object_get(content, "data");
		if (json_is_object(data))
			ctx_emit(c, result_line(data, !strcmp(type, "execute_result")));
	} else if (!strcmp(type, "error")) {
		json_t *tb = json_object_get(content, "traceback");
		size_t i, n = 0;
		json_t *v;
		json_array_foreach (tb, i, v)
			n += json_string_length(v) + 1;
		char *joined = calloc(1, n + 1);
		json_array_foreach (tb, i, v)
			if (joined && json_is_string(v)) {
				if (i)
					strcat(joined, "\n");
				strcat(joined, json_string_value(v));
			}
		ctx_emit(c, json_pack("{s:s,s:s,s:s,s:s}", "type", "error", "name",
				      str_or(json_object_get(content, "ename"), "Error"), "value",
				      str_or(json_object_get(content, "evalue"), ""), "traceback",
				      joined ? joined : ""));
		free(joined);
	} else if (!strcmp(type, "status") &&
		   !strcmp(str_or(json_object_get(content, "execution_state"), ""), "idle")) {
		k->exec_id[0] = '\0';
		json_t *restore = k->restore;
		k->restore = NULL;
		ctx_exec_done(c);
		/* reset per-execution envs now that the cell has finished (after it, so an error in the
		 * cell cannot abort it) */
		if (restore && c->engine == k && k->alive)
			send_shell(k, "execute_request", env_code_content(NULL, restore), NULL);
		json_decref(restore);
	}
}

static void on_shell(struct kernel *k, const char *type, json_t *content)
{
	if (!strcmp(type, "kernel_info_reply")) {
		k->info_ok = 1;
	} else if (!strcmp(type, "execute_reply") &&
		   !strcmp(str_or(json_object_get(content, "status"), ""), "aborted") && k->exec_id[0]) {
		ctx_emit(k->c, json_pack("{s:s,s:s,s:s,s:s}", "type", "error", "name", "ExecutionAborted", "value",
					 "Execution was aborted", "traceback", ""));
	}
}

/* Read one multipart message; 1 when one was handled, 0 when none is waiting. */
static int recv_one(struct kernel *k, void *sock, int is_iopub)
{
	zmq_msg_t frames[MAX_FRAMES];
	int n = 0, more = 1;
	while (more) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, sock, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
			zmq_msg_close(&m);
			break;
		}
		more = zmq_msg_more(&m);
		if (n < MAX_FRAMES)
			frames[n++] = m;
		else
			zmq_msg_close(&m);
	}
	if (n == 0)
		return 0;
	int d = -1;
	for (int i = 0; i < n; i++)
		if (zmq_msg_size(&frames[i]) == strlen(DELIM) && !memcmp(zmq_msg_data(&frames[i]), DELIM, strlen(DELIM))) {
			d = i;
			break;
		}
	if (d >= 0 && n - d >= 6) {
		const char *parts[4];
		size_t lens[4];
		for (int i = 0; i < 4; i++) {
			parts[i] = zmq_msg_data(&frames[d + 2 + i]);
			lens[i] = zmq_msg_size(&frames[d + 2 + i]);
		}
		char sig[65];
		if (zmq_msg_size(&frames[d + 1]) == 64 && sign(k->key, parts, lens, sig) == 0 &&
		    CRYPTO_memcmp(sig, zmq_msg_data(&frames[d + 1]), 64) == 0) {
			json_t *header = json_loadb(parts[0], lens[0], 0, NULL), *parent = json_loadb(parts[1], lens[1], 0, NULL),
			       *content = json_loadb(parts[3], lens[3], 0, NULL);
			const char *type = json_string_value(json_object_get(header, "msg_type"));
			if (type && is_iopub)
				on_iopub(k, type, header, parent, content);
			else if (type)
				on_shell(k, type, content);
			json_decref(header);
			json_decref(parent);
			json_decref(content);
		} else {
			log_warn("interp: kernel %s: dropped a message with a bad signature", k->c->id);
		}
	}
	for (int i = 0; i < n; i++)
		zmq_msg_close(&frames[i]);
	return 1;
}

static void drain(struct kernel *k)
{
	for (int progress = 1; progress && k->shell;) {
		progress = 0;
		while (k->shell && recv_one(k, k->shell, 0))
			progress = 1;
		while (k->iopub && recv_one(k, k->iopub, 1))
			progress = 1;
	}
	struct ictx *c = k->c;
	if (!c->ready && k->info_ok && k->iopub_ok) {
		log_info("interp: context %s (%s) ready", c->id, c->language);
		/* queued ahead of any user cell on the same channel */
		send_shell(k, "execute_request",
			   json_pack("{s:s,s:b,s:b,s:{},s:b,s:b}", "code", kernel_setup, "silent", 1, "store_history", 0,
				     "user_expressions", "allow_stdin", 0, "stop_on_error", 0),
			   NULL);
		ctx_engine_ready(c);
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	drain(h->data);
}

static void on_timer(uv_timer_t *t)
{
	struct kernel *k = t->data;
	drain(k);
	/* Until the kernel answers on both channels, ask again (the SUB socket may join late). */
	if (!k->c->ready && k->alive && cube_mono_ms() - k->info_sent >= INFO_RETRY_MS) {
		k->info_sent = cube_mono_ms();
		send_shell(k, "kernel_info_request", json_object(), NULL);
	}
}

/* ---- process ---- */

static void on_handle_closed(uv_handle_t *h)
{
	struct kernel *k = h->data;
	if (--k->handles == 0) {
		if (k->shell)
			zmq_close(k->shell);
		if (k->iopub)
			zmq_close(k->iopub);
		unlink(k->conn_path);
		json_decref(k->restore);
		free(k);
	}
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct kernel *k = p->data;
	k->alive = 0;
	log_info("interp: kernel of context %s exited (status %lld, signal %d)", k->c ? k->c->id : "-",
		 (long long)status, sig);
	if (!k->stopping && k->c)
		ctx_engine_died(k->c, "the kernel exited");
	uv_close((uv_handle_t *)p, on_handle_closed);
}

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int port = -1;
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(s, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

static void *zsock(int type, int port)
{
	void *s = zmq_socket(zctx, type);
	int zero = 0;
	char ep[64];
	snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
	if (!s)
		return NULL;
	zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
	if (type == ZMQ_SUB)
		zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
	if (zmq_connect(s, ep) < 0) {
		zmq_close(s);
		return NULL;
	}
	return s;
}

int kernel_start(struct ictx *c)
{
	if (!zctx && !(zctx = zmq_ctx_new()))
		return -1;
	struct kernel *k = calloc(1, sizeof *k);
	if (!k)
		return -1;
	k->c = c;
	cube_random_hex(k->key, 32);
	uuid4(k->session);
	int ports[5];
	for (int i = 0; i < 5; i++)
		if ((ports[i] = free_port()) < 0) {
			free(k);
			return -1;
		}
	char dir[64];
	snprintf(dir, sizeof dir, "/tmp/cube-interp-%d", (int)getpid());
	mkdir(dir, 0700);
	/* one file per kernel, not per context: a restarted context's old kernel removes its own file
	 * later, possibly while the new kernel is still starting */
	static unsigned serial;
	snprintf(k->conn_path, sizeof k->conn_path, "%s/kernel-%s-%u.json", dir, c->id, ++serial);
	json_t *conn = json_pack("{s:i,s:i,s:i,s:i,s:i,s:s,s:s,s:s,s:s,s:s}", "shell_port", ports[0], "iopub_port",
				 ports[1], "stdin_port", ports[2], "control_port", ports[3], "hb_port", ports[4], "ip",
				 "127.0.0.1", "key", k->key, "transport", "tcp", "signature_scheme", "hmac-sha256",
				 "kernel_name", "python3");
	int rc = json_dump_file(conn, k->conn_path, JSON_COMPACT);
	json_decref(conn);
	if (rc < 0 || chmod(k->conn_path, 0600) < 0) {
		free(k);
		return -1;
	}
	k->shell = zsock(ZMQ_DEALER, ports[0]);
	k->iopub = zsock(ZMQ_SUB, ports[1]);
	char *args[] = {"python3", "-m", "ipykernel_launcher", "-f", k->conn_path, NULL};
	/* stdout only carries ipykernel's start-up banner (cell output goes over iopub); stderr its
	 * warnings and crashes, kept in the sandbox log */
	uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE},
					 {.flags = UV_INHERIT_FD, .data.fd = 2}};
	uv_process_options_t opt = {.exit_cb = on_proc_exit, .file = "python3", .args = args, .cwd = c->cwd,
				    .flags = UV_PROCESS_DETACHED, .stdio_count = 3, .stdio = stdio};
	k->proc.data = k;
	if (!k->shell || !k->iopub || (rc = uv_spawn(interp_loop, &k->proc, &opt)) < 0) {
		log_error("interp: cannot start the python kernel: %s", k->shell && k->iopub ? uv_strerror(rc) : "zmq");
		if (k->shell)
			zmq_close(k->shell);
		if (k->iopub)
			zmq_close(k->iopub);
		unlink(k->conn_path);
		free(k);
		return -1;
	}
	k->alive = 1;
	k->handles = 4;
	int fd;
	size_t fdlen = sizeof fd;
	zmq_getsockopt(k->shell, ZMQ_FD, &fd, &fdlen);
	uv_poll_init(interp_loop, &k->shell_poll, fd);
	fdlen = sizeof fd;
	zmq_getsockopt(k->iopub, ZMQ_FD, &fd, &fdlen);
	uv_poll_init(interp_loop, &k->iopub_poll, fd);
	k->shell_poll.data = k->iopub_poll.data = k;
	uv_poll_start(&k->shell_poll, UV_READABLE, on_poll);
	uv_poll_start(&k->iopub_poll, UV_READABLE, on_poll);
	uv_timer_init(interp_loop, &k->timer);
	k->timer.data = k;
	uv_timer_start(&k->timer, on_timer, SAFETY_POLL_MS, SAFETY_POLL_MS);
	c->engine = k;
	log_info("interp: context %s: python kernel pid %d in %s", c->id, k->proc.pid, c->cwd);
	return 0;
}

void kernel_stop(struct ictx *c)
{
	struct kernel *k = c->engine;
	if (!k)
		return;
	c->engine = NULL;
	k->stopping = 1;
	k->exec_id[0] = '\0';
	uv_close((uv_handle_t *)&k->shell_poll, on_handle_closed);
	uv_close((uv_handle_t *)&k->iopub_poll, on_handle_closed);
	uv_close((uv_handle_t *)&k->timer, on_handle_closed);
	k->c = NULL;
	if (k->alive)
		kill(k->proc.pid, SIGKILL); /* on_exit closes the process handle */
}
