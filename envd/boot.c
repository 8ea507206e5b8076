/* The template's start command: envd runs it once at boot (tag "start-cmd", output into envd's own
 * stdout/stderr, i.e. the sandbox log) and, when the template names a readyPort, reports ready to
 * cubed only once that port accepts on loopback, or when readyTimeoutMs has passed (with a warning):
 * a create then returns a sandbox whose service (e.g. the code interpreter) already answers. */
#include "envd/core.h"
#include "envd/envd.h"

#include "common/log.h"
#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_READY_TIMEOUT_MS 30000
#define READY_POLL_MS 20

static struct {
	char *cmd, *user, *cwd;
	int port;
	long long timeout_ms;
	void (*on_ready)(void);
	long long deadline;
	uv_timer_t timer;
	uv_tcp_t probe;
	uv_connect_t connect;
} B = {.timeout_ms = DEFAULT_READY_TIMEOUT_MS};

static void set_str(char **dst, json_t *v)
{
	if (json_is_string(v) && *json_string_value(v)) {
		free(*dst);
		*dst = strdup(json_string_value(v));
	}
}

void envd_boot_config(json_t *cfg)
{
	set_str(&B.cmd, json_object_get(cfg, "startCmd"));
	set_str(&B.user, json_object_get(cfg, "startUser"));
	set_str(&B.cwd, json_object_get(cfg, "startCwd"));
	json_t *port = json_object_get(cfg, "readyPort");
	if (json_is_integer(port) && json_integer_value(port) > 0 && json_integer_value(port) < 65536)
		B.port = (int)json_integer_value(port);
	json_t *to = json_object_get(cfg, "readyTimeoutMs");
	if (json_is_integer(to) && json_integer_value(to) > 0)
		B.timeout_ms = json_integer_value(to);
}

static void ready(void)
{
	void (*cb)(void) = B.on_ready;
	B.on_ready = NULL;
	if (cb)
		cb();
}

static void probe(void);

static void on_poll_timer(uv_timer_t *t)
{
	(void)t;
	probe();
}

static void on_probe_closed(uv_handle_t *h)
{
	(void)h;
	if (!B.on_ready)
		return;
	if (cube_mono_ms() >= B.deadline) {
		log_warn("envd: start command: port %d did not accept within %lld ms; reporting ready anyway", B.port,
			 B.timeout_ms);
		ready();
		return;
	}
	uv_timer_start(&B.timer, on_poll_timer, READY_POLL_MS, 0);
}

static void on_probe(uv_connect_t *c, int status)
{
	(void)c;
	if (status == 0 && B.on_ready) {
		log_info("envd: start command: port %d accepts", B.port);
		ready();
	}
	uv_close((uv_handle_t *)&B.probe, on_probe_closed);
}

static void probe(void)
{
	struct sockaddr_in a;
	uv_ip4_addr("127.0.0.1", B.port, &a);
	uv_tcp_init(envd.loop, &B.probe);
	if (uv_tcp_connect(&B.connect, &B.probe, (const struct sockaddr *)&a, on_probe) < 0)
		uv_close((uv_handle_t *)&B.probe, on_probe_closed);
}

void envd_boot_start(void (*on_ready)(void))
{
	B.on_ready = on_ready;
	if (!B.cmd) {
		ready();
		return;
	}
	cube_err err = {0};
	const char *user = B.user ? B.user : envd.default_user;
	if (envd_process_start_logged(B.cmd, user, B.cwd, "start-cmd", &err) < 0) {
		log_error("envd: start command failed: %s", err.msg);
		ready();
		return;
	}
	if (!B.port) {
		ready();
		return;
	}
	B.deadline = cube_mono_ms() + B.timeout_ms;
	uv_timer_init(envd.loop, &B.timer);
	uv_unref((uv_handle_t *)&B.timer);
	probe();
}
