/* cube-envd: the agent inside every sandbox, running as its PID 1. Reads its configuration from a
 * file descriptor handed over by cubed, listens on :49983, signals readiness on another descriptor,
 * then routes HTTP: CORS, the access token, the plain endpoints and the Connect services. As PID 1
 * it also reaps every child, routing exit statuses of started processes to the process service. */
#include "envd/claim.h"
#include "envd/connect.h"
#include "envd/core.h"
#include "envd/envd.h"
#include "envd/fs_internal.h"
#include "envd/version.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_PORT 49983
#define MAX_CONFIG_BYTES (1 << 20)
#define SHUTDOWN_GRACE_MS 1000

struct envd_state envd;

static http_server *server;
static uv_signal_t sigchld_watch, sigterm_watch, sigint_watch;
static uv_timer_t shutdown_timer;

/* ---- routing ---- */

static int method_is(http_req *req, const char *m)
{
	return strcmp(http_req_method(req), m) == 0;
}

static void on_request(http_req *req, void *ctx)
{
	(void)ctx;
	const char *path = http_req_path(req);
	int get = method_is(req, "GET") || method_is(req, "HEAD"), post = method_is(req, "POST");

	/* Order of §3.1: CORS (preflights need no token), the access token, then the handlers. */
	if (method_is(req, "OPTIONS")) {
		envd_http_preflight(req);
		return;
	}
	if (strcmp(path, "/health") == 0 && get) {
		envd_http_health(req);
		return;
	}
	if (envd_claim_handle(req)) /* cubed's pool (envd/claim.c) */
		return;
	int token_ok = envd_token_ok(req);
	if (strcmp(path, "/files") == 0 && (get || post)) {
		/* A signed URL may stand in for the token (§3.13). */
		if (get)
			envd_files_get(req, token_ok);
		else
			envd_files_post(req, token_ok);
		return;
	}
	/* POST /init is open in E2B's envd, but here cubed configures envd through a descriptor, so
	 * once a token is set /init needs it like everything else (no one can swap the token). */
	if (!token_ok) {
		envd_http_unauthorized(req);
		return;
	}
	if (strcmp(path, "/files/compose") == 0 && post) {
		envd_files_compose(req, token_ok);
		return;
	}
	if (strcmp(path, "/envs") == 0 && get) {
		envd_http_envs(req);
		return;
	}
	if (strcmp(path, "/metrics") == 0 && get) {
		envd_http_metrics(req);
		return;
	}
	if (strcmp(path, "/init") == 0 && post) {
		envd_http_init(req);
		return;
	}
	if (envd_connect_dispatch(req) == 0)
		return;
	if (!strcmp(path, "/health") || !strcmp(path, "/files") || !strcmp(path, "/envs") || !strcmp(path, "/metrics") ||
	    !strcmp(path, "/init") || !strcmp(path, "/files/compose")) {
		envd_send_error(req, 405, "method %s not allowed on %s", http_req_method(req), path);
		return;
	}
	envd_send_error(req, 404, "path %s not found", path);
}

/* ---- child reaping and shutdown ---- */

static void reap_children(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		if (!envd_process_reaped(pid, status))
			log_debug("envd: reaped orphan %d", (int)pid);
}

static void on_sigchld(uv_signal_t *h, int sig)
{
	(void)h;
	(void)sig;
	reap_children();
}

static void on_shutdown_timer(uv_timer_t *t)
{
	(void)t;
	/* The grace period is over: kill what is left. */
	reap_children();
	envd_process_signal_all(SIGKILL);
	if (getpid() == 1)
		kill(-1, SIGKILL);
	log_info("envd: exiting");
	exit(0);
}

static void on_sigterm(uv_signal_t *h, int sig)
{
	(void)h;
	if (uv_is_active((uv_handle_t *)&shutdown_timer))
		return;
	log_info("envd: %s, stopping processes", strsignal(sig));
	http_server_close(server);
	envd_process_signal_all(SIGTERM);
	if (getpid() == 1)
		kill(-1, SIGTERM);
	uv_timer_start(&shutdown_timer, on_shutdown_timer, envd_process_live_count() ? SHUTDOWN_GRACE_MS : 0, 0);
}

/* ---- configuration ---- */

static void set_string(char **dst, json_t *v)
{
	if (json_is_string(v) && *json_string_value(v)) {
		free(*dst);
		*dst = strdup(json_string_value(v));
	}
}

static int apply_config(const char *text, size_t len, cube_err *err)
{
	json_error_t jerr;
	json_t *cfg = json_loadb(text, len, 0, &jerr);
	if (!json_is_object(cfg)) {
		json_decref(cfg);
		return cube_fail(err, 400, 0, "config: %s", cfg ? "not a JSON object" : jerr.text);
	}
	set_string(&envd.sandbox_id, json_object_get(cfg, "sandboxID"));
	set_string(&envd.template_id, json_object_get(cfg, "templateID"));
	set_string(&envd.access_token, json_object_get(cfg, "accessToken"));
	set_string(&envd.default_user, json_object_get(cfg, "defaultUser"));
	set_string(&envd.default_workdir, json_object_get(cfg, "defaultWorkdir"));
	json_t *max = json_object_get(cfg, "maxUploadBytes");
	if (json_is_integer(max) && json_integer_value(max) > 0)
		envd.max_upload_bytes = (unsigned long long)json_integer_value(max);
	envd_merge_envs(json_object_get(cfg, "envVars"));
	envd_boot_config(cfg);
	envd_claim_config(cfg);
	json_t *host = json_object_get(cfg, "hostname");
	/* Only as PID 1 of a sandbox: a test run on the host must not rename the machine. */
	if (json_is_string(host) && *json_string_value(host) && getpid() == 1 &&
	    sethostname(json_string_value(host), strlen(json_string_value(host))) < 0)
		log_warn("envd: sethostname: %s", strerror(errno));
	json_decref(cfg);
	return 0;
}

static char *read_fd_all(int fd, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		if (n + 1 >= cap) {
			if (cap >= MAX_CONFIG_BYTES) {
				errno = EFBIG;
				break;
			}
			char *nb = realloc(buf, cap *= 2);
			if (!nb)
				break;
			buf = nb;
		}
		ssize_t r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			break;
		if (r == 0) {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	free(buf);
	return NULL;
}

static int fd_is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

static int ready_fd = 4, have_ready_fd;

static void signal_ready(void)
{
	if (have_ready_fd) {
		if (cube_write_all(ready_fd, "1", 1) < 0)
			log_warn("envd: ready fd %d: %s", ready_fd, strerror(errno));
		close(ready_fd);
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: cube-envd [options]\n"
		"  --port N          listen port (default %d)\n"
		"  --host ADDR       listen address (default 0.0.0.0)\n"
		"  --config-fd N     read the JSON config from this descriptor (default 3)\n"
		"  --config FILE     read the JSON config from a file instead (tests)\n"
		"  --ready-fd N      write one byte here once listening, then close it (default 4)\n"
		"  --etc DIR         read users from DIR/passwd and DIR/group (tests)\n"
		"  --log-level L     debug, info, warn or error\n"
		"  --version\n",
		DEFAULT_PORT);
}

int main(int argc, char **argv)
{
	/* Descriptors 0-2 must exist, or a pipe created later could land on one of them. */
	for (int fd = 0; fd < 3; fd++)
		if (!fd_is_open(fd) && open("/dev/null", O_RDWR) != fd)
			return 1;
	signal(SIGPIPE, SIG_IGN);

	int port = DEFAULT_PORT, config_fd = 3;
	const char *host = "0.0.0.0", *config_file = NULL, *etc = NULL;
	static const struct option opts[] = {
		{"port", required_argument, NULL, 'p'},      {"host", required_argument, NULL, 'H'},
		{"config-fd", required_argument, NULL, 'c'}, {"config", required_argument, NULL, 'f'},
		{"ready-fd", required_argument, NULL, 'r'},  {"etc", required_argument, NULL, 'e'},
		{"log-level", required_argument, NULL, 'l'}, {"version", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'H': host = optarg; break;
		case 'c': config_fd = atoi(optarg); break;
		case 'f': config_file = optarg; break;
		case 'r': ready_fd = atoi(optarg); break;
		case 'e': etc = optarg; break;
		case 'l':
			cube_log_set_level(!strcmp(optarg, "debug") ? CUBE_LOG_DEBUG
					   : !strcmp(optarg, "warn") ? CUBE_LOG_WARN
					   : !strcmp(optarg, "error") ? CUBE_LOG_ERROR
								      : CUBE_LOG_INFO);
			break;
		case 'v': printf("%s\n", ENVD_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (port < 0 || port > 65535) {
		fprintf(stderr, "cube-envd: bad port %d\n", port);
		return 2;
	}
	if (etc) {
		static char passwd[4096], group[4096];
		snprintf(passwd, sizeof passwd, "%s/passwd", etc);
		snprintf(group, sizeof group, "%s/group", etc);
		envd_users_set_files(passwd, group);
		fs_set_identity_files(passwd, group);
	}

	/* Decide about the inherited descriptors before libuv opens any: once it has, a closed fd 3
	 * or 4 may be reused by the loop, and "reading the config" or "closing the ready fd" would hit
	 * libuv's own pipes. */
	int have_config_fd = !config_file && fd_is_open(config_fd);
	have_ready_fd = fd_is_open(ready_fd) && ready_fd > 2;

	envd.loop = uv_default_loop();
	envd.started_ms = cube_now_ms();
	envd.default_user = strdup("user");
	envd.env_vars = json_object();

	cube_err err = {0};
	size_t len = 0;
	char *text = NULL;
	if (config_file) {
		text = cube_read_file(config_file, &len);
		if (!text) {
			log_error("envd: cannot read config %s: %s", config_file, strerror(errno));
			return 1;
		}
	} else if (have_config_fd) {
		text = read_fd_all(config_fd, &len);
		close(config_fd);
		if (!text)
			log_error("envd: cannot read config from fd %d: %s", config_fd, strerror(errno));
	} else {
		log_warn("envd: no config on fd %d; running with defaults", config_fd);
	}
	if (text && len && apply_config(text, len, &err) < 0) {
		log_error("envd: %s", err.msg);
		free(text);
		return 1;
	}
	free(text);
	envd_set_env("E2B_SANDBOX", "true");
	if (envd.sandbox_id)
		envd_set_env("E2B_SANDBOX_ID", envd.sandbox_id);
	if (envd.template_id)
		envd_set_env("E2B_TEMPLATE_ID", envd.template_id);

	uv_signal_init(envd.loop, &sigchld_watch);
	uv_signal_start(&sigchld_watch, on_sigchld, SIGCHLD);
	uv_signal_init(envd.loop, &sigterm_watch);
	uv_signal_start(&sigterm_watch, on_sigterm, SIGTERM);
	uv_signal_init(envd.loop, &sigint_watch);
	uv_signal_start(&sigint_watch, on_sigterm, SIGINT);
	uv_timer_init(envd.loop, &shutdown_timer);
	reap_children(); /* anything that died before we watched */

	server = http_server_new(envd.loop, on_request, NULL);
	/* §2.7: CORS on every response, /files included. */
	if (server)
		http_server_set_default_headers(server, envd_cors_headers, envd_cors_header_count);
	char addr[300];
	snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	if (!server || http_server_listen_tcp(server, addr, &err) < 0) {
		log_error("envd: %s", server ? err.msg : "out of memory");
		return 1;
	}
	log_info("envd %s listening on %s (sandbox %s, user %s, token %s)", ENVD_VERSION, addr,
		 envd.sandbox_id ? envd.sandbox_id : "-", envd.default_user, envd.access_token ? "set" : "none");
	envd_boot_start(signal_ready);
	return uv_run(envd.loop, UV_RUN_DEFAULT);
}
