/* Test-only stand-ins for the daemon's sbx_find/sbx_resume/sbx_connect/sbx_socket, linked into the proxy tests instead of
 * daemon/sandboxes.c: known sandboxes get a plain host socket, so "127.0.0.1:<port>" reaches
 * loopback servers of the test. Never shipped. */
#include "daemon/sandboxes.h"
#include "tests/unit/proxy/fake_sandboxes.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static struct sandbox fakes[3];
static const char *const fake_ids[3] = {"sbxa", "sbxb", "sbxgone"};
static char socket_log[64][32];
static int socket_count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct sandbox *sbx_find(const char *id)
{
	for (int i = 0; i < 3; i++) {
		if (strcmp(id, fake_ids[i]) == 0) {
			snprintf(fakes[i].id, sizeof fakes[i].id, "%s", fake_ids[i]);
			fakes[i].state = SBX_RUNNING;
			return &fakes[i];
		}
	}
	return NULL;
}

int sbx_resume(struct sandbox *sb, int timeout_s, cube_err *err)
{
	(void)timeout_s;
	if (sb->state != SBX_PAUSED)
		return cube_fail(err, 409, 0, "sandbox %s is not paused", sb->id);
	sb->state = SBX_RUNNING;
	return 0;
}

void sbx_connect(struct sandbox *sb, int timeout_s, int memory, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	(void)memory;
	if (sbx_resume(sb, timeout_s, &err) < 0)
		cb(NULL, &err, arg);
	else
		cb(sb, NULL, arg);
}

int sbx_socket(struct sandbox *sb, cube_err *err)
{
	pthread_mutex_lock(&lock);
	if (socket_count < 64)
		snprintf(socket_log[socket_count++], sizeof socket_log[0], "%s", sb->id);
	pthread_mutex_unlock(&lock);
	if (strcmp(sb->id, "sbxgone") == 0)
		return cube_fail(err, 502, 0, "sandbox %s is not running", sb->id);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cube_fail(err, 500, errno, "socket");
	return fd;
}

int fake_socket_count(void)
{
	pthread_mutex_lock(&lock);
	int n = socket_count;
	pthread_mutex_unlock(&lock);
	return n;
}

const char *fake_socket_id(int i)
{
	return socket_log[i];
}
