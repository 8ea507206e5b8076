/* Directory watchers of cube-envd (§3.9): WatchDir streams inotify events; CreateWatcher,
 * GetWatcherEvents and RemoveWatcher buffer them server-side for polling clients. One inotify
 * instance per watcher (watch descriptors are per instance, so watchers never share state),
 * polled by the libuv loop. Recursive watchers add subdirectories, also those created later. */
#include "envd/fs_internal.h"

#include "common/log.h"
#include "common/util.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MASK                                                                                   \
	(IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | \
	 IN_MOVE_SELF | IN_ONLYDIR)
/* Bounds on events nobody reads yet: a buffered watcher nobody polls, a stream to a slow client. */
#define MAX_BUFFERED_EVENTS 10000
#define MAX_STREAM_PENDING (8u << 20)

enum event_type { EV_CREATE = 1, EV_WRITE, EV_REMOVE, EV_RENAME, EV_CHMOD };

struct watched_dir {
	int wd;
	char *rel; /* path relative to the root, "" for the root */
};

struct watcher {
	char id[24];
	int fd;
	uv_poll_t poll;
	char root[PATH_MAX];
	int recursive, include_entry;
	struct envd_user user;
	struct watched_dir *dirs;
	size_t ndirs, cap;
	envd_rpc *rpc;      /* WatchDir stream; NULL for a buffered watcher */
	json_t *buffered;   /* CreateWatcher: events not yet fetched */
	int dropped;
	int closing;
	struct watcher *next;
};

static struct watcher *buffered_watchers;

/* ---- watch descriptor bookkeeping ---- */

static struct watched_dir *find_wd(struct watcher *w, int wd)
{
	for (size_t i = 0; i < w->ndirs; i++)
		if (w->dirs[i].wd == wd)
			return &w->dirs[i];
	return NULL;
}

static void forget_at(struct watcher *w, size_t i)
{
	free(w->dirs[i].rel);
	w->dirs[i] = w->dirs[--w->ndirs];
}

static int remember(struct watcher *w, int wd, const char *rel)
{
	struct watched_dir *d = find_wd(w, wd);
	if (d) { /* the same directory again (e.g. moved back): the new name wins */
		char *r = strdup(rel);
		if (!r)
			return -1;
		free(d->rel);
		d->rel = r;
		return 0;
	}
	if (w->ndirs == w->cap) {
		size_t nc = w->cap ? w->cap * 2 : 16;
		struct watched_dir *nd = realloc(w->dirs, nc * sizeof *nd);
		if (!nd)
			return -1;
		w->dirs = nd;
		w->cap = nc;
	}
	w->dirs[w->ndirs].rel = strdup(rel);
	if (!w->dirs[w->ndirs].rel)
		return -1;
	w->dirs[w->ndirs++].wd = wd;
	return 0;
}

static void join(char *out, size_t len, const char *a, const char *b)
{
	if (!*a)
		snprintf(out, len, "%s", b);
	else if (!*b)
		snprintf(out, len, "%s", a);
	else
		snprintf(out, len, "%s/%s", strcmp(a, "/") == 0 ? "" : a, b);
}

/* Watch root/rel and, when recursive, every directory below it (not following symlinks).
 * Call with the watcher's user identity. Only a failure on the root itself is an error. */
static int add_tree(struct watcher *w, const char *rel)
{
	char path[PATH_MAX];
	join(path, sizeof path, w->root, rel);
	uint32_t mask = WATCH_MASK | (*rel ? IN_DONT_FOLLOW : 0);
	int wd = inotify_add_watch(w->fd, path, mask);
	if (wd < 0)
		return *rel ? 0 : -1;
	if (remember(w, wd, rel) < 0)
		return *rel ? 0 : -1;
	if (!w->recursive)
		return 0;
	cleanup_dir DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		char sub[PATH_MAX];
		join(sub, sizeof sub, rel, de->d_name);
		add_tree(w, sub); /* DT_UNKNOWN non-directories fail IN_ONLYDIR and are skipped */
	}
	return 0;
}

/* A directory moved out of (or within) the tree: drop its watches; a move within re-adds them
 * under the new name when IN_MOVED_TO arrives. */
static void drop_tree(struct watcher *w, const char *rel)
{
	size_t rl = strlen(rel);
	for (size_t i = 0; i < w->ndirs;) {
		const char *r = w->dirs[i].rel;
		if (strncmp(r, rel, rl) == 0 && (r[rl] == '\0' || r[rl] == '/')) {
			inotify_rm_watch(w->fd, w->dirs[i].wd);
			forget_at(w, i);
		} else {
			i++;
		}
	}
}

/* ---- events ---- */

static const char *event_type_name(enum event_type t)
{
	switch (t) {
	case EV_CREATE: return "EVENT_TYPE_CREATE";
	case EV_WRITE: return "EVENT_TYPE_WRITE";
	case EV_REMOVE: return "EVENT_TYPE_REMOVE";
	case EV_RENAME: return "EVENT_TYPE_RENAME";
	case EV_CHMOD: return "EVENT_TYPE_CHMOD";
	}
	return "EVENT_TYPE_UNSPECIFIED";
}

static void emit(struct watcher *w, const char *rel, enum event_type type)
{
	if (w->closing)
		return;
	json_t *ev = json_pack("{s:s,s:s}", "name", rel, "type", event_type_name(type));
	if (!ev)
		return;
	if (w->include_entry && type != EV_REMOVE && type != EV_RENAME) {
		char path[PATH_MAX];
		join(path, sizeof path, w->root, rel);
		json_t *entry = fs_entry_info(path);
		if (entry)
			json_object_set_new(ev, "entry", entry);
	}
	if (w->rpc) {
		if (envd_rpc_pending(w->rpc) > MAX_STREAM_PENDING) {
			if (!w->dropped++)
				log_warn("envd: watch %s: client too slow, dropping events", w->root);
			json_decref(ev);
			return;
		}
		envd_rpc_send(w->rpc, json_pack("{s:o}", "filesystem", ev));
		return;
	}
	if (json_array_size(w->buffered) >= MAX_BUFFERED_EVENTS) {
		if (!w->dropped++)
			log_warn("envd: watcher %s: %d events unread, dropping new ones", w->id, MAX_BUFFERED_EVENTS);
		json_decref(ev);
		return;
	}
	json_array_append_new(w->buffered, ev);
}

static void handle_event(struct watcher *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		log_warn("envd: watch %s: inotify queue overflow, events lost", w->root);
		return;
	}
	struct watched_dir *d = find_wd(w, ev->wd);
	if (!d)
		return;
	if (ev->mask & IN_IGNORED) {
		forget_at(w, (size_t)(d - w->dirs));
		return;
	}
	/* Events about a watched directory itself duplicate what its parent reports. */
	if (ev->len == 0 || !ev->name[0])
		return;
	char rel[PATH_MAX];
	join(rel, sizeof rel, d->rel, ev->name);

	if (w->recursive && (ev->mask & IN_ISDIR)) {
		if (ev->mask & IN_MOVED_FROM)
			drop_tree(w, rel);
		if (ev->mask & (IN_CREATE | IN_MOVED_TO))
			add_tree(w, rel);
	}
	/* One frame per operation, in envd's order. */
	if (ev->mask & (IN_CREATE | IN_MOVED_TO))
		emit(w, rel, EV_CREATE);
	if (ev->mask & IN_MOVED_FROM)
		emit(w, rel, EV_RENAME);
	if (ev->mask & IN_ATTRIB)
		emit(w, rel, EV_CHMOD);
	if (ev->mask & IN_MODIFY)
		emit(w, rel, EV_WRITE);
	if (ev->mask & IN_DELETE)
		emit(w, rel, EV_REMOVE);
}

static void watcher_close(struct watcher *w);

static void on_inotify(uv_poll_t *h, int status, int events)
{
	(void)events;
	struct watcher *w = h->data;
	if (status < 0) {
		log_warn("envd: watch %s: %s", w->root, uv_strerror(status));
		return;
	}
	FS_ACT_AS(&w->user);
	char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (!w->closing) {
		ssize_t n = read(w->fd, buf, sizeof buf);
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n && !w->closing;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			handle_event(w, ev);
			p += sizeof *ev + ev->len;
		}
	}
}

static void on_poll_closed(uv_handle_t *h)
{
	struct watcher *w = h->data;
	close(w->fd);
	for (size_t i = 0; i < w->ndirs; i++)
		free(w->dirs[i].rel);
	free(w->dirs);
	json_decref(w->buffered);
	free(w);
}

static void watcher_close(struct watcher *w)
{
	if (w->closing)
		return;
	w->closing = 1;
	for (struct watcher **p = &buffered_watchers; *p; p = &(*p)->next) {
		if (*p == w) {
			*p = w->next;
			break;
		}
	}
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, on_poll_closed);
}

/* Validate the request, set up inotify and start polling. NULL after failing the rpc. */
static struct watcher *watcher_open(envd_rpc *rpc, json_t *req)
{
	const char *in;
	int recursive, include_entry, allow_network;
	if (fs_req_string(rpc, req, "path", NULL, &in) < 0 ||
	    fs_req_bool(rpc, req, "recursive", NULL, &recursive) < 0 ||
	    fs_req_bool(rpc, req, "includeEntry", "include_entry", &include_entry) < 0 ||
	    fs_req_bool(rpc, req, "allowNetworkMounts", "allow_network_mounts", &allow_network) < 0)
		return NULL;
	const struct envd_user *user = envd_rpc_user(rpc);
	char path[PATH_MAX];
	cube_err err = {0};
	if (envd_resolve_path(in, user, path, sizeof path, &err) < 0) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "%s", err.msg);
		return NULL;
	}
	FS_ACT_AS(user);
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		if (fs_errno_code(e) == CONNECT_NOT_FOUND)
			envd_rpc_fail(rpc, CONNECT_NOT_FOUND, "path %s not found: %s", path, strerror(e));
		else
			envd_rpc_fail(rpc, fs_errno_code(e), "error statting path %s: %s", path, strerror(e));
		return NULL;
	}
	if (!S_ISDIR(st.st_mode)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "path %s not a directory", path);
		return NULL;
	}
	if (!allow_network && fs_is_network_fs(path)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "cannot watch path on network filesystem: %s", path);
		return NULL;
	}
	struct watcher *w = calloc(1, sizeof *w);
	if (!w) {
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "out of memory");
		return NULL;
	}
	snprintf(w->root, sizeof w->root, "%s", path);
	w->recursive = recursive;
	w->include_entry = include_entry;
	if (user)
		w->user = *user;
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0 || add_tree(w, "") < 0) {
		int e = errno;
		if (w->fd >= 0)
			close(w->fd);
		free(w->dirs);
		free(w);
		envd_rpc_fail(rpc, e == EACCES ? CONNECT_PERMISSION_DENIED : CONNECT_INTERNAL,
			      "error adding path %s to watcher: %s", path, strerror(e));
		return NULL;
	}
	uv_poll_init(envd.loop, &w->poll, w->fd);
	w->poll.data = w;
	uv_poll_start(&w->poll, UV_READABLE, on_inotify);
	return w;
}

/* ---- WatchDir ---- */

static void on_stream_cancel(envd_rpc *rpc, void *arg)
{
	(void)rpc;
	struct watcher *w = arg;
	w->rpc = NULL;
	watcher_close(w);
}

void fs_watch_dir(envd_rpc *rpc, json_t *req)
{
	struct watcher *w = watcher_open(rpc, req);
	if (!w)
		return;
	w->rpc = rpc;
	envd_rpc_on_cancel(rpc, on_stream_cancel, w);
	envd_rpc_set_keepalive(rpc, json_pack("{s:{}}", "keepalive"));
	if (envd_rpc_send(rpc, json_pack("{s:{}}", "start")) < 0) {
		/* The client is gone; the cancel callback has released the watcher or will. */
		return;
	}
}

/* ---- buffered watchers ---- */

static struct watcher *find_watcher(envd_rpc *rpc, json_t *req)
{
	const char *id;
	if (fs_req_string(rpc, req, "watcherId", "watcher_id", &id) < 0)
		return NULL;
	for (struct watcher *w = buffered_watchers; w; w = w->next)
		if (strcmp(w->id, id) == 0)
			return w;
	envd_rpc_fail(rpc, CONNECT_NOT_FOUND, "watcher with id %s not found", id);
	return NULL;
}

void fs_create_watcher(envd_rpc *rpc, json_t *req)
{
	struct watcher *w = watcher_open(rpc, req);
	if (!w)
		return;
	w->buffered = json_array();
	cube_random_alnum(w->id, 20);
	w->next = buffered_watchers;
	buffered_watchers = w;
	envd_rpc_reply(rpc, json_pack("{s:s}", "watcherId", w->id));
}

void fs_get_watcher_events(envd_rpc *rpc, json_t *req)
{
	struct watcher *w = find_watcher(rpc, req);
	if (!w)
		return;
	json_t *resp = json_object();
	if (json_array_size(w->buffered)) {
		json_object_set_new(resp, "events", w->buffered);
		w->buffered = json_array();
	}
	w->dropped = 0;
	envd_rpc_reply(rpc, resp);
}

void fs_remove_watcher(envd_rpc *rpc, json_t *req)
{
	struct watcher *w = find_watcher(rpc, req);
	if (!w)
		return;
	watcher_close(w);
	envd_rpc_reply(rpc, json_object());
}
