/* The fake sandbox table of the API route tests (see fake_daemon.c). Loop thread only. */
#ifndef CUBE_TESTS_API_FAKE_DAEMON_H
#define CUBE_TESTS_API_FAKE_DAEMON_H

#include "daemon/sandboxes.h"
#include "store/store.h"

#define FAKE_MAX 64

struct fake_daemon {
	uv_loop_t *loop;
	struct sandbox *items[FAKE_MAX];
	int n;
	int creates, kills;
	int create_delay_ms;
	unsigned long long cpu_usage_ns;
	/* what the last sbx_create was asked for */
	json_t *last_metadata, *last_env_vars;
	int last_timeout_s, last_secure, last_auto_pause, last_auto_resume;
};
extern struct fake_daemon fake;

struct sandbox *fake_add(const char *id, long long started_ms, long long end_ms, json_t *metadata);
void fake_reset(void);

#endif
