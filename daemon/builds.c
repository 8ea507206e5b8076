/* Template builds for the E2B SDK's Template builder. A RUN step is executed by envd as the start command
 * of a sandbox started with rt_start directly (no proxy, loopback-only network) on the build's current
 * layers, with its writable layer bound from a host directory; the command's exit status comes back as a
 * marker line in the sandbox log. After the sandbox is killed that directory, already in overlay form
 * (whiteouts, opaque dirs), is cleaned of what the runtime itself put there and becomes a layer. */
#include "daemon/builds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/templates.h"
#include "image/layer_store.h"
#include "image/template.h"
#include "image/unpack.h"
#include "runtime/runtime.h"

#define STEP_TIMEOUT_MS (10 * 60 * 1000)
#define EXIT_MARK "cube-build-step-exit="

struct build {
	char tid[72], bid[40];
	char *status;          /* waiting | building | ready | error */
	json_t *logs;          /* [{timestamp, level, message, step?}] */
	json_t *reason;        /* {message, step} or NULL */
	json_t *req;           /* the v3 request (cpuCount, memoryMB) */
	json_t *body;          /* the build body */
	struct build *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct build *builds;
static int running; /* builds in progress: their new layers are in no template yet (under lock) */

int builds_running(void)
{
	pthread_mutex_lock(&lock);
	int n = running;
	pthread_mutex_unlock(&lock);
	return n;
}

void builds_cleanup_leftovers(const char *layers_dir)
{
	cleanup_dir DIR *d = opendir(layers_dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, ".build-", 7) != 0 && strncmp(de->d_name, ".copy-", 6) != 0)
			continue;
		char p[PATH_MAX];
		snprintf(p, sizeof p, "%s/%s", layers_dir, de->d_name);
		layer_store_remove_tree(p);
	}
}

static struct build *find(const char *tid, const char *bid)
{
	for (struct build *b = builds; b; b = b->next)
		if (strcmp(b->tid, tid) == 0 && (!bid || strcmp(b->bid, bid) == 0))
			return b;
	return NULL;
}

static void blog(struct build *b, const char *level, int step, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void blog(struct build *b, const char *level, int step, const char *fmt, ...)
{
	char msg[2048], ts[40];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cube_format_time(cube_now_ms(), ts, sizeof ts);
	json_t *e = json_pack("{s:s,s:s,s:s}", "timestamp", ts, "level", level, "message", msg);
	if (step >= 0)
		json_object_set_new(e, "step", json_sprintf("%d", step));
	pthread_mutex_lock(&lock);
	json_array_append_new(b->logs, e);
	pthread_mutex_unlock(&lock);
}

static void set_status(struct build *b, const char *status)
{
	pthread_mutex_lock(&lock);
	free(b->status);
	b->status = strdup(status);
	pthread_mutex_unlock(&lock);
}

static bool valid_hex64(const char *h)
{
	return h && strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64;
}

static char *files_dir(void)
{
	char *d = NULL;
	if (asprintf(&d, "%s/files", tjobs_layers_dir()) < 0)
		return NULL;
	cube_mkdir_p(d, 0700);
	return d;
}

/* ---- requests ---- */

#define BUILDS_KEPT 50 /* finished builds remembered for their status and logs */

static void prune_builds(void)
{
	size_t finished = 0;
	pthread_mutex_lock(&lock);
	struct build **pp = &builds;
	while (*pp) {
		struct build *b = *pp;
		bool done = strcmp(b->status, "ready") == 0 || strcmp(b->status, "error") == 0;
		if (done && ++finished > BUILDS_KEPT) {
			*pp = b->next;
			free(b->status);
			json_decref(b->logs);
			json_decref(b->reason);
			json_decref(b->req);
			json_decref(b->body);
			free(b);
			continue;
		}
		pp = &b->next;
	}
	pthread_mutex_unlock(&lock);
}

int builds_request(json_t *req, json_t **out, cube_err *err)
{
	prune_builds();
	const char *name = json_string_value(json_object_get(req, "name"));
	if (!name)
		name = json_string_value(json_object_get(req, "alias"));
	if (!name || !*name)
		return cube_fail(err, 400, 0, "\"name\" is required");
	char tid[72];
	size_t len = strcspn(name, ":");
	if (len == 0 || len > 64)
		return cube_fail(err, 400, 0, "template name must be 1-64 characters");
	snprintf(tid, sizeof tid, "%.*s", (int)len, name);
	if (strspn(tid, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != len || tid[0] == '.' || tid[0] == '-')
		return cube_fail(err, 400, 0, "template name '%s' must be of [a-z0-9._-]", tid);
	const struct tpl *t = tpl_find(tid);
	if (t && !t->store_layers)
		return cube_fail(err, 409, 0, "template '%s' exists and is not a built template", tid);
	struct build *b = calloc(1, sizeof *b);
	if (!b)
		return cube_fail(err, 500, ENOMEM, "build");
	snprintf(b->tid, sizeof b->tid, "%s", tid);
	b->bid[0] = 'b';
	cube_random_alnum(b->bid + 1, 20);
	b->status = strdup("waiting");
	b->logs = json_array();
	b->req = json_deep_copy(req);
	pthread_mutex_lock(&lock);
	b->next = builds;
	builds = b;
	pthread_mutex_unlock(&lock);
	*out = json_pack("{s:s,s:s,s:b,s:[s],s:[],s:[s]}", "templateID", b->tid, "buildID", b->bid, "public", 0, "names",
			 name, "tags", "aliases", b->tid);
	return 0;
}

int builds_file_link(const char *tid, const char *hash, const char *base_url, const char *api_key, json_t **out,
		     cube_err *err)
{
	if (!valid_hex64(hash))
		return cube_fail(err, 400, 0, "files hash must be 64 lowercase hex digits");
	cleanup_free char *dir = files_dir();
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s.tar", dir ? dir : "", hash);
	struct stat st;
	if (stat(path, &st) == 0) {
		*out = json_pack("{s:b}", "present", 1);
		return 0;
	}
	char url[1024];
	snprintf(url, sizeof url, "%s/templates/%s/files/%s", base_url, tid, hash);
	json_t *headers = json_object();
	if (api_key)
		json_object_set_new(headers, "X-API-Key", json_string(api_key));
	*out = json_pack("{s:b,s:s,s:o}", "present", 0, "url", url, "headers", headers);
	return 0;
}

char *builds_file_tmp(const char *hash, cube_err *err)
{
	if (!valid_hex64(hash)) {
		cube_fail(err, 400, 0, "files hash must be 64 lowercase hex digits");
		return NULL;
	}
	cleanup_free char *dir = files_dir();
	char suffix[9], *p = NULL;
	cube_random_hex(suffix, 4);
	if (!dir || asprintf(&p, "%s/.%s.%s.partial", dir, hash, suffix) < 0) {
		cube_fail(err, 500, ENOMEM, "upload");
		return NULL;
	}
	return p;
}

int builds_file_commit(const char *tmp, const char *hash, cube_err *err)
{
	cleanup_free char *dir = files_dir();
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s.tar", dir ? dir : "", hash);
	if (rename(tmp, path) < 0) {
		unlink(tmp);
		return cube_fail(err, 500, errno, "store upload");
	}
	return 0;
}

json_t *builds_status(const char *tid, const char *bid, long offset, cube_err *err)
{
	pthread_mutex_lock(&lock);
	struct build *b = find(tid, bid);
	json_t *out = NULL;
	if (b) {
		json_t *entries = json_array(), *lines = json_array();
		for (size_t i = offset > 0 ? (size_t)offset : 0; i < json_array_size(b->logs); i++) {
			json_t *e = json_array_get(b->logs, i);
			json_array_append(entries, e);
			json_array_append_new(lines, json_string(json_string_value(json_object_get(e, "message"))));
		}
		out = json_pack("{s:s,s:s,s:s,s:o,s:o}", "templateID", b->tid, "buildID", b->bid, "status", b->status,
				"logs", lines, "logEntries", entries);
		if (b->reason)
			json_object_set(out, "reason", b->reason);
	}
	pthread_mutex_unlock(&lock);
	if (!out)
		cube_fail(err, 404, 0, "build '%s' of template '%s' not found", bid, tid);
	return out;
}

/* ---- the build ---- */

struct ctx {
	struct build *b;
	char chain[65];          /* cache key of the stack so far */
	json_t *layers;          /* template.json refs, topmost first */
	json_t *env;
	char user[64], cwd[512];
	bool force;
	unsigned uid_base, uid_count;
};


/* Absolute paths of the refs, for rt_start. */
static char **layer_paths(struct ctx *c, size_t *n)
{
	*n = json_array_size(c->layers);
	char **v = calloc(*n + 1, sizeof *v);
	for (size_t i = 0; v && i < *n; i++) {
		const char *ref = json_string_value(json_array_get(c->layers, i));
		int r = strncmp(ref, "template/", 9) == 0 ?
				asprintf(&v[i], "%s/%s/rootfs", tjobs_templates_dir(), ref + 9) :
				asprintf(&v[i], "%s/%s/rootfs", tjobs_layers_dir(), ref);
		if (r < 0)
			v[i] = NULL;
	}
	return v;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* Move a finished layer tree into the store as sha256/<key>/rootfs. */
static int publish(const char *tree, const char *key, cube_err *err)
{
	char tmp[PATH_MAX], final[PATH_MAX], root[PATH_MAX + 8], suffix[9];
	cube_random_hex(suffix, 4);
	snprintf(tmp, sizeof tmp, "%s/sha256/.tmp-%s-%s", tjobs_layers_dir(), key, suffix);
	snprintf(final, sizeof final, "%s/sha256/%s", tjobs_layers_dir(), key);
	snprintf(root, sizeof root, "%s/rootfs", tmp);
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/sha256", tjobs_layers_dir());
	if (cube_mkdir_p(dir, 0700) < 0)
		return cube_fail(err, 500, errno, "layer store %s", dir);
	layer_store_remove_tree(final); /* a forced rebuild replaces the cached layer */
	if (mkdir(tmp, 0700) < 0 || rename(tree, root) < 0 || rename(tmp, final) < 0) {
		int e = errno;
		layer_store_remove_tree(tmp);
		return cube_fail(err, 500, e, "publish layer %.12s", key);
	}
	sync();
	return 0;
}

static void push_layer(struct ctx *c, const char *key)
{
	char ref[80];
	snprintf(ref, sizeof ref, "sha256/%s", key);
	json_array_insert_new(c->layers, 0, json_string(ref));
	snprintf(c->chain, sizeof c->chain, "%s", key);
}

static void step_key(struct ctx *c, json_t *step, char out[65])
{
	json_t *s = json_deep_copy(step);
	json_object_del(s, "force");
	json_object_del(s, "forceUpload");
	json_t *k = json_pack("{s:s,s:o,s:O,s:s,s:s}", "parent", c->chain, "step", s, "env", c->env, "user", c->user,
			      "cwd", c->cwd);
	char *text = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
	layer_sha256_hex(text ? text : "", text ? strlen(text) : 0, out);
	free(text);
	json_decref(k);
}

/* Drop what the runtime, not the command, put in the writable layer. */
static void clean_upper(const char *upper)
{
	static const char *const files[] = {"etc/hostname", "etc/hosts", "etc/resolv.conf"};
	static const char *const dirs[] = {"dev", "proc", "sys", "etc", "tmp"};
	char p[PATH_MAX];
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", upper, files[i]);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s/.cube", upper);
	layer_store_remove_tree(p);
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		snprintf(p, sizeof p, "%s/%s", upper, dirs[i]);
		rmdir(p); /* only when empty */
	}
}

/* envd's own log lines (timestamped) and the wrapper's lines are not the step's output. */
static bool envd_noise(const char *line)
{
	return (strlen(line) > 24 && line[4] == '-' && line[10] == 'T' && line[23] == 'Z') || strcmp(line, ")") == 0 ||
	       strncmp(line, "echo \"" EXIT_MARK, 6 + strlen(EXIT_MARK)) == 0;
}

static int run_step(struct ctx *c, int idx, const char *cmd, const char *user, const char *key, cube_err *err)
{
	char dir[PATH_MAX], upper[PATH_MAX + 8], logp[PATH_MAX + 8], id[24] = "bld";
	cube_random_alnum(id + 3, 12);
	snprintf(dir, sizeof dir, "%s/.build-%s", tjobs_layers_dir(), id);
	snprintf(upper, sizeof upper, "%s/upper", dir);
	snprintf(logp, sizeof logp, "%s/log", dir);
	if (cube_mkdir_p(dir, 0700) < 0)
		return cube_fail(err, 500, errno, "build dir %s", dir);
	char *wrapped = NULL;
	/* A subshell, so an `exit` in the step still reaches the marker. */
	if (asprintf(&wrapped, "(\n%s\n)\necho \"" EXIT_MARK "$?\" >&2", cmd) < 0)
		return cube_fail(err, 500, ENOMEM, "build");
	json_t *conf = json_pack("{s:s,s:s,s:O,s:s,s:I,s:s,s:n,s:s,s:s,s:s}", "sandboxID", id, "templateID", c->b->tid,
				 "envVars", c->env, "defaultUser", "root", "maxUploadBytes", (json_int_t)(1 << 20),
				 "hostname", id, "accessToken", "startCmd", wrapped, "startUser", user, "startCwd",
				 c->cwd);
	free(wrapped);
	char *conf_text = json_dumps(conf, JSON_COMPACT);
	json_decref(conf);
	size_t n;
	char **paths = layer_paths(c, &n);
	struct rt_spec spec = {.id = id, .layers = (const char *const *)paths, .n_layers = n, .hostname = id,
			       .cpu_millis = 2000, .memory_bytes = 2ULL << 30, .pids_max = 4096, .upper_dir = dir,
			       .envd_config = conf_text, .log_path = logp, .ready_timeout_ms = 30000};
	struct rt_sandbox sb;
	int rc = rt_start(&spec, &sb, err);
	free(conf_text);
	free_strv(paths, n);
	if (rc < 0) {
		layer_store_remove_tree(dir);
		return cube_wrap(err, "step %d", idx);
	}
	/* Wait for the marker (or envd's death, or the step timeout). */
	long long deadline = cube_mono_ms() + STEP_TIMEOUT_MS;
	int status = -1;
	size_t seen = 0;
	while (status < 0 && cube_mono_ms() < deadline) {
		struct pollfd p = {.fd = sb.pidfd, .events = POLLIN};
		bool dead = poll(&p, 1, 200) == 1;
		size_t len = 0;
		cleanup_free char *text = cube_read_file(logp, &len);
		for (char *line = text ? text + seen : NULL; line && *line;) {
			char *nl = strchr(line, '\n');
			if (!nl)
				break; /* partial line: next round */
			*nl = '\0';
			if (strncmp(line, EXIT_MARK, strlen(EXIT_MARK)) == 0)
				status = atoi(line + strlen(EXIT_MARK));
			else if (*line && !envd_noise(line))
				blog(c->b, "info", idx, "%s", line);
			seen += (size_t)(nl - line) + 1;
			line = nl + 1;
		}
		if (dead && status < 0) {
			cube_fail(err, 500, 0, "step %d: the build sandbox exited", idx);
			break;
		}
	}
	rt_kill(id, &sb, NULL);
	if (status != 0) {
		layer_store_remove_tree(dir);
		if (status > 0)
			return cube_fail(err, 422, 0, "step %d: RUN %s: exit status %d", idx, cmd, status);
		if (!err->msg[0])
			cube_fail(err, 504, 0, "step %d: RUN %s did not finish within %d s", idx, cmd, STEP_TIMEOUT_MS / 1000);
		return -1;
	}
	clean_upper(upper);
	rc = publish(upper, key, err);
	layer_store_remove_tree(dir);
	return rc;
}

/* "root" -> 0, "user" -> 1000 (E2B's template user), or a number. */
static unsigned user_id(const char *u)
{
	if (!u || !*u || strcmp(u, "root") == 0)
		return 0;
	if (strcmp(u, "user") == 0)
		return 1000;
	return (unsigned)strtoul(u, NULL, 10);
}

static unsigned chown_to;
static int chown_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return lchown(p, chown_to, chown_to);
}

static int mkdirs_owned(const char *root, const char *rel, unsigned owner)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/", root);
	size_t base = strlen(p);
	for (const char *s = rel; *s;) {
		const char *e = strchrnul(s, '/');
		if (e > s) {
			size_t len = strlen(p);
			snprintf(p + len, sizeof p - len, "%.*s", (int)(e - s), s);
			if (mkdir(p, 0755) == 0 && lchown(p, owner, owner) < 0)
				return -1;
			len = strlen(p);
			snprintf(p + len, sizeof p - len, "/");
		}
		s = *e ? e + 1 : e;
	}
	(void)base;
	return 0;
}

static int copy_step(struct ctx *c, int idx, json_t *step, const char *key, cube_err *err)
{
	json_t *args = json_object_get(step, "args");
	const char *src = json_string_value(json_array_get(args, 0));
	const char *dest = json_string_value(json_array_get(args, 1));
	const char *user = json_string_value(json_array_get(args, 2));
	const char *hash = json_string_value(json_object_get(step, "filesHash"));
	if (!src || !dest || !valid_hex64(hash))
		return cube_fail(err, 400, 0, "step %d: COPY needs a source, a destination and a files hash", idx);
	while (src[0] == '.' && src[1] == '/')
		src += 2;
	if (strstr(src, "..") || src[0] == '/')
		return cube_fail(err, 400, 0, "step %d: COPY source must stay in the context", idx);
	char destabs[1024];
	if (dest[0] == '/')
		snprintf(destabs, sizeof destabs, "%s", dest);
	else
		snprintf(destabs, sizeof destabs, "%s/%s", c->cwd, dest);
	if (strstr(destabs, "/../") || strstr(destabs, "/.."))
		return cube_fail(err, 400, 0, "step %d: COPY destination must not contain '..'", idx);
	cleanup_free char *dir = files_dir();
	char tar[PATH_MAX], scratch[PATH_MAX], tree[PATH_MAX], suffix[9];
	snprintf(tar, sizeof tar, "%s/%s.tar", dir ? dir : "", hash);
	cube_random_hex(suffix, 4);
	snprintf(scratch, sizeof scratch, "%s/.copy-%s", tjobs_layers_dir(), suffix);
	snprintf(tree, sizeof tree, "%s/tree", scratch);
	int fd = open(tar, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cube_fail(err, 400, errno, "step %d: files %.12s were not uploaded", idx, hash);
	int rc = -1;
	cube_mkdir_p(scratch, 0700);
	char x[PATH_MAX + 16];
	snprintf(x, sizeof x, "%s/x", scratch);
	mkdir(x, 0755);
	int xfd = open(x, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct unpack_opts o = {.uid_base = c->uid_base, .uid_count = c->uid_count};
	if (xfd < 0 || layer_unpack(fd, xfd, &o, NULL, err) < 0) {
		cube_wrap(err, "step %d: COPY", idx);
		goto out;
	}
	char from[PATH_MAX + 600];
	snprintf(from, sizeof from, "%s/%s", x, *src ? src : ".");
	struct stat st;
	if (lstat(from, &st) < 0) {
		cube_fail(err, 400, 0, "step %d: COPY source '%s' is not in the upload", idx, src);
		goto out;
	}
	unsigned owner = c->uid_base + user_id(user);
	mkdir(tree, 0755);
	lchown(tree, c->uid_base, c->uid_base);
	size_t dl = strlen(destabs);
	bool into = destabs[dl - 1] == '/' || S_ISDIR(st.st_mode);
	char target[PATH_MAX + 1100];
	if (S_ISDIR(st.st_mode)) {
		/* the directory's contents land in dest */
		if (mkdirs_owned(tree, destabs + 1, c->uid_base) < 0)
			goto io;
		snprintf(target, sizeof target, "%s%s", tree, destabs);
		rmdir(target);
	} else {
		const char *base = strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
		char parent[1024];
		snprintf(parent, sizeof parent, "%s", destabs + 1);
		if (!into) {
			char *slash = strrchr(parent, '/');
			if (slash)
				*slash = '\0';
			else
				parent[0] = '\0';
		}
		if (mkdirs_owned(tree, parent, c->uid_base) < 0)
			goto io;
		if (into)
			snprintf(target, sizeof target, "%s%s%s%s", tree, destabs, destabs[dl - 1] == '/' ? "" : "/", base);
		else
			snprintf(target, sizeof target, "%s%s", tree, destabs);
	}
	if (rename(from, target) < 0)
		goto io;
	chown_to = owner;
	if (nftw(target, chown_cb, 16, FTW_PHYS) < 0)
		goto io;
	rc = publish(tree, key, err);
	goto out;
io:
	cube_fail(err, 500, errno, "step %d: COPY %s -> %s", idx, src, dest);
out:
	close(fd);
	if (xfd >= 0)
		close(xfd);
	layer_store_remove_tree(scratch);
	return rc;
}

/* The base template's layers as template.json refs. */
static int base_layers(struct ctx *c, const char *ref, cube_err *err)
{
	const struct tpl *t = tpl_find(ref);
	if (!t)
		return cube_fail(err, 404, 0, "fromTemplate: template '%s' not found", ref);
	c->layers = json_array();
	if (!t->store_layers) {
		json_array_append_new(c->layers, json_sprintf("template/%s", t->name));
	} else {
		for (size_t i = 0; i < t->n_layers; i++) {
			const char *p = strstr(t->layers[i], "/sha256/");
			if (p) {
				json_array_append_new(c->layers, json_sprintf("sha256/%.64s", p + 8));
			} else {
				/* <templates>/<name>/rootfs */
				const char *end = t->layers[i] + strlen(t->layers[i]) - 7, *s = end;
				while (s > t->layers[i] && s[-1] != '/')
					s--;
				json_array_append_new(c->layers, json_sprintf("template/%.*s", (int)(end - s), s));
			}
		}
	}
	char *text = json_dumps(c->layers, JSON_COMPACT);
	layer_sha256_hex(text ? text : "", text ? strlen(text) : 0, c->chain);
	free(text);
	c->env = json_deep_copy(t->envs);
	snprintf(c->user, sizeof c->user, "%s", t->start_user ? t->start_user : "root");
	snprintf(c->cwd, sizeof c->cwd, "%s", t->start_cwd ? t->start_cwd : "/");
	return 0;
}

/* fromImage: the image's layers and its config's Env, User and WorkingDir. */
static int image_layers(struct ctx *c, const char *image, json_t *reg, cube_err *err)
{
	json_t *config = NULL;
	const char *user = json_string_value(json_object_get(reg, "username"));
	const char *password = json_string_value(json_object_get(reg, "password"));
	if (tjobs_pull_image(image, user, password, &c->layers, &config, err) < 0)
		return cube_wrap(err, "fromImage %s", image);
	json_t *cfg = json_object_get(config, "config");
	c->env = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(cfg, "Env"), i, v) {
		const char *kv = json_string_value(v);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		if (eq && eq != kv) {
			char key[256];
			snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
			json_object_set_new(c->env, key, json_string(eq + 1));
		}
	}
	const char *u = json_string_value(json_object_get(cfg, "User"));
	const char *wd = json_string_value(json_object_get(cfg, "WorkingDir"));
	snprintf(c->user, sizeof c->user, "%s", u && *u ? u : "root");
	snprintf(c->cwd, sizeof c->cwd, "%s", wd && *wd ? wd : "/");
	char *text = json_dumps(c->layers, JSON_COMPACT);
	layer_sha256_hex(text ? text : "", text ? strlen(text) : 0, c->chain);
	free(text);
	json_decref(config);
	return 0;
}

static int write_template(struct ctx *c, cube_err *err)
{
	struct build *b = c->b;
	json_t *t = json_pack("{s:s,s:[],s:O,s:O}", "name", b->tid, "aliases", "layers", c->layers, "envs", c->env);
	json_t *cpu = json_object_get(b->req, "cpuCount"), *mem = json_object_get(b->req, "memoryMB");
	if (json_is_integer(cpu) && json_integer_value(cpu) > 0)
		json_object_set(t, "cpuCount", cpu);
	if (json_is_integer(mem) && json_integer_value(mem) > 0)
		json_object_set(t, "memoryMB", mem);
	const char *start = json_string_value(json_object_get(b->body, "startCmd"));
	if (start && *start) {
		json_object_set_new(t, "startCmd", json_string(start));
		json_object_set_new(t, "startUser", json_string(c->user));
		json_object_set_new(t, "startCwd", json_string(c->cwd));
	}
	/* The SDK's waitForPort(P) readyCmd ("ss -Htuln sport = :P") becomes readyPort: creates wait for it. */
	const char *ready = json_string_value(json_object_get(b->body, "readyCmd"));
	const char *sport = ready ? strstr(ready, "sport = :") : NULL;
	int port = sport ? atoi(sport + 9) : 0;
	if (start && *start && port > 0 && port < 65536)
		json_object_set_new(t, "readyPort", json_integer(port));
	json_object_set_new(t, "buildID", json_string(b->bid));
	int rc = tjobs_publish_template(b->tid, t, err);
	json_decref(t);
	return rc;
}

static void *build_thread_body(struct build *b);

static void *build_thread(void *arg)
{
	build_thread_body(arg);
	pthread_mutex_lock(&lock);
	running--;
	pthread_mutex_unlock(&lock);
	return NULL;
}

static void *build_thread_body(struct build *b)
{
	struct ctx c = {.b = b};
	cube_err err = {0};
	int failed_step = -1;
	tjobs_uid_range(&c.uid_base, &c.uid_count);
	set_status(b, "building");
	c.force = json_is_true(json_object_get(b->body, "force"));
	const char *from = json_string_value(json_object_get(b->body, "fromTemplate"));
	const char *image = json_string_value(json_object_get(b->body, "fromImage"));
	if (from) {
		if (base_layers(&c, from, &err) < 0)
			goto failed;
		blog(b, "info", -1, "FROM template %s", from);
	} else if (image) {
		blog(b, "info", -1, "FROM image %s: pulling", image);
		if (image_layers(&c, image, json_object_get(b->body, "fromImageRegistry"), &err) < 0)
			goto failed;
		blog(b, "info", -1, "FROM image %s: %zu layer(s)", image, json_array_size(c.layers));
	} else {
		cube_fail(&err, 400, 0, "a build needs fromTemplate or fromImage");
		goto failed;
	}
	size_t i;
	json_t *step;
	json_array_foreach(json_object_get(b->body, "steps"), i, step) {
		const char *type = json_string_value(json_object_get(step, "type"));
		json_t *args = json_object_get(step, "args");
		const char *a0 = json_string_value(json_array_get(args, 0));
		int idx = (int)i + 1;
		failed_step = idx;
		if (!type) {
			cube_fail(&err, 400, 0, "step %d has no type", idx);
			goto failed;
		}
		if (strcmp(type, "ENV") == 0) {
			for (size_t k = 0; k + 1 < json_array_size(args); k += 2)
				if (json_string_value(json_array_get(args, k)))
					json_object_set(c.env, json_string_value(json_array_get(args, k)),
							json_array_get(args, k + 1));
			blog(b, "info", idx, "ENV %zu variable(s)", json_array_size(args) / 2);
			continue;
		}
		if (strcmp(type, "WORKDIR") == 0 || strcmp(type, "USER") == 0) {
			if (!a0 || !*a0) {
				cube_fail(&err, 400, 0, "step %d: %s needs an argument", idx, type);
				goto failed;
			}
			if (type[0] == 'W')
				snprintf(c.cwd, sizeof c.cwd, "%s", a0);
			else
				snprintf(c.user, sizeof c.user, "%s", a0);
			blog(b, "info", idx, "%s %s", type, a0);
			continue;
		}
		if (strcmp(type, "RUN") != 0 && strcmp(type, "COPY") != 0) {
			cube_fail(&err, 400, 0, "step %d: %s steps are not supported", idx, type);
			goto failed;
		}
		char key[65];
		step_key(&c, step, key);
		bool force = c.force || json_is_true(json_object_get(step, "force"));
		if (!force && layer_store_has(tjobs_layers_dir(), key)) {
			blog(b, "info", idx, "CACHED %s %s", type, a0 ? a0 : "");
			push_layer(&c, key);
			continue;
		}
		blog(b, "info", idx, "%s %s", type, a0 ? a0 : "");
		int rc;
		if (type[0] == 'R') {
			const char *u = json_string_value(json_array_get(args, 1));
			rc = !a0 ? cube_fail(&err, 400, 0, "step %d: RUN needs a command", idx) :
				   run_step(&c, idx, a0, u && *u ? u : c.user, key, &err);
		} else {
			rc = copy_step(&c, idx, step, key, &err);
		}
		if (rc < 0)
			goto failed;
		push_layer(&c, key);
	}
	failed_step = -1;
	if (json_array_size(c.layers) > RT_MAX_LAYERS) {
		cube_fail(&err, 400, 0, "the build has more than %d layers", RT_MAX_LAYERS);
		goto failed;
	}
	if (write_template(&c, &err) < 0)
		goto failed;
	const char *ready = json_string_value(json_object_get(b->body, "readyCmd"));
	if (ready && !strstr(ready, "sport = :"))
		blog(b, "warn", -1, "readyCmd is not run by this server (only waitForPort is understood); sandboxes "
				    "are ready when envd is");
	blog(b, "info", -1, "template %s is ready", b->tid);
	set_status(b, "ready");
	goto out;
failed:
	blog(b, "error", failed_step, "%s", err.msg);
	pthread_mutex_lock(&lock);
	b->reason = json_pack("{s:s}", "message", err.msg);
	if (failed_step >= 0)
		json_object_set_new(b->reason, "step", json_sprintf("%d", failed_step));
	pthread_mutex_unlock(&lock);
	log_warn("template build %s/%s failed: %s", b->tid, b->bid, err.msg);
	set_status(b, "error"); /* last touch of b: a finished build may be pruned from here on */
out:
	json_decref(c.layers);
	json_decref(c.env);
	return NULL;
}

int builds_start(const char *tid, const char *bid, json_t *body, cube_err *err)
{
	if (!json_is_object(body))
		return cube_fail(err, 400, 0, "body must be a JSON object");
	if (json_object_get(body, "fromImage") && json_object_get(body, "fromTemplate"))
		return cube_fail(err, 400, 0, "give fromImage or fromTemplate, not both");
	pthread_mutex_lock(&lock);
	struct build *b = find(tid, bid);
	bool ok = b && strcmp(b->status, "waiting") == 0;
	if (ok) {
		b->body = json_deep_copy(body);
		free(b->status);
		b->status = strdup("building");
		running++;
	}
	pthread_mutex_unlock(&lock);
	if (!b)
		return cube_fail(err, 404, 0, "build '%s' of template '%s' not found", bid, tid);
	if (!ok)
		return cube_fail(err, 409, 0, "build '%s' was already started", bid);
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int rc = pthread_create(&t, &at, build_thread, b);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		pthread_mutex_lock(&lock);
		running--;
		pthread_mutex_unlock(&lock);
		set_status(b, "error");
		return cube_fail(err, 500, rc, "start build");
	}
	return 0;
}
