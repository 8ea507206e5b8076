/* Template build jobs. A job is a JSON document (persisted whole in the store on every phase change) plus
 * live progress counters. Its thread pulls the image (image/registry.c), unpacks new layers into the layer
 * store (image/layer_store.c), writes <templates>/<id>/template.json naming those layers, reloads the
 * registry and, with a probe, starts a real sandbox and waits for an HTTP 2xx from inside it. The loop
 * thread owns the store and the sandbox table: job threads reach them through loop_call(). */
#include "daemon/templates.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/builds.h"
#include "daemon/sandboxes.h"
#include "image/archive_src.h"
#include "image/layer_store.h"
#include "image/registry.h"
#include "runtime/runtime.h"
#include "store/store.h"

#define PARALLEL_BLOBS 4
#define PROBE_DEFAULT_MS 30000

enum phase { PH_PENDING, PH_PULLING, PH_UNPACKING, PH_PREPARING, PH_PROBING, PH_READY, PH_FAILED };
static const char *const phase_names[] = {"PENDING", "PULLING", "UNPACKING", "PREPARING", "PROBING", "READY",
					  "FAILED"};

struct layer_prog {
	char hex[65];
	long long size, done;
	bool cached;
};

struct job {
	char id[24];
	json_t *doc;            /* under T.lock */
	char *password;         /* never persisted */
	struct layer_prog *layers;
	size_t n_layers;
	long long pull_start_ms, pull_base_bytes;
	bool dirty, running;
	struct job *next;
};

struct loop_call {
	void (*fn)(struct loop_call *c);
	void *arg;
	json_t *result;
	cube_err err;
	int rc, netns_fd;
	bool done;
	struct loop_call *next;
};

static struct {
	struct tjobs_config cfg;
	char state_dir[PATH_MAX], templates_dir[PATH_MAX], layers_dir[PATH_MAX], blobs_dir[PATH_MAX + 16];
	pthread_mutex_t lock;      /* jobs' docs, progress, the call queue; registry reloads */
	pthread_cond_t cond;
	struct job *jobs;          /* newest first */
	struct loop_call *calls;
	uv_async_t async;
	bool ready;
} T = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static int reload_registry(cube_err *err);

/* ---- loop thread hand-off ---- */

static void on_async(uv_async_t *a)
{
	(void)a;
	pthread_mutex_lock(&T.lock);
	struct loop_call *calls = T.calls;
	T.calls = NULL;
	json_t *docs[64];
	char ids[64][24];
	size_t n = 0;
	for (struct job *j = T.jobs; j && n < 64; j = j->next)
		if (j->dirty) {
			j->dirty = false;
			docs[n] = json_deep_copy(j->doc);
			snprintf(ids[n], sizeof ids[n], "%s", j->id);
			n++;
		}
	pthread_mutex_unlock(&T.lock);
	for (size_t i = 0; i < n; i++) {
		cube_err err = {0};
		if (docs[i] && store_job_put(ids[i], docs[i],
					     json_integer_value(json_object_get(docs[i], "createdMs")), &err) < 0)
			log_error("template job %s: %s", ids[i], err.msg);
		json_decref(docs[i]);
	}
	while (calls) {
		struct loop_call *c = calls;
		calls = c->next;
		c->fn(c); /* completes itself through call_done(), maybe later */
	}
}

static void call_done(struct loop_call *c)
{
	pthread_mutex_lock(&T.lock);
	c->done = true;
	pthread_cond_broadcast(&T.cond);
	pthread_mutex_unlock(&T.lock);
}

/* From a job thread: run c->fn on the loop thread and wait until it calls call_done(). */
static void loop_call(struct loop_call *c)
{
	pthread_mutex_lock(&T.lock);
	c->done = false;
	c->next = T.calls;
	T.calls = c;
	pthread_mutex_unlock(&T.lock);
	uv_async_send(&T.async);
	pthread_mutex_lock(&T.lock);
	while (!c->done)
		pthread_cond_wait(&T.cond, &T.lock);
	pthread_mutex_unlock(&T.lock);
}

/* ---- job documents ---- */

static void set_phase(struct job *j, enum phase ph, const char *reason)
{
	pthread_mutex_lock(&T.lock);
	long long now = cube_now_ms();
	json_object_set_new(j->doc, "phase", json_string(phase_names[ph]));
	json_object_set_new(j->doc, "updatedMs", json_integer(now));
	/* Every phase the job went through, so a watcher polling slower than the job still sees them all. */
	json_t *hist = json_object_get(j->doc, "phases");
	if (!json_is_array(hist))
		json_object_set_new(j->doc, "phases", hist = json_array());
	json_array_append_new(hist, json_pack("{s:s,s:I}", "phase", phase_names[ph], "atMs", (json_int_t)now));
	if (reason)
		json_object_set_new(j->doc, "reason", json_string(reason));
	j->dirty = true;
	pthread_mutex_unlock(&T.lock);
	log_info("template job %s: %s%s%s", j->id, phase_names[ph], reason ? ": " : "", reason ? reason : "");
	if (T.ready)
		uv_async_send(&T.async);
}

static const char *req_str(struct job *j, const char *key)
{
	return json_string_value(json_object_get(json_object_get(j->doc, "request"), key));
}

static long long req_int(struct job *j, const char *key, long long dflt)
{
	json_t *v = json_object_get(json_object_get(j->doc, "request"), key);
	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static void on_progress(size_t i, long long done, void *arg)
{
	struct job *j = arg;
	pthread_mutex_lock(&T.lock);
	if (i < j->n_layers)
		j->layers[i].done = done;
	pthread_mutex_unlock(&T.lock);
}

/* The job's JSON with live progress: per layer {digest, size, done, cached}, totals and bytes/s. */
static json_t *job_json_locked(struct job *j)
{
	json_t *d = json_deep_copy(j->doc);
	json_object_del(d, "createdMs");
	json_t *req = json_object_get(d, "request");
	json_object_del(req, "registryPassword");
	if (j->n_layers) {
		json_t *arr = json_array();
		long long total = 0, done = 0;
		for (size_t i = 0; i < j->n_layers; i++) {
			struct layer_prog *l = &j->layers[i];
			char dg[80];
			snprintf(dg, sizeof dg, "sha256:%s", l->hex);
			json_array_append_new(arr, json_pack("{s:s,s:I,s:I,s:b}", "digest", dg, "size", (json_int_t)l->size,
							     "done", (json_int_t)l->done, "cached", l->cached));
			total += l->size;
			done += l->done;
		}
		json_object_set_new(d, "layers", arr);
		json_object_set_new(d, "totalBytes", json_integer(total));
		json_object_set_new(d, "doneBytes", json_integer(done));
		long long ms = cube_mono_ms() - j->pull_start_ms;
		const char *ph = json_string_value(json_object_get(d, "phase"));
		if (ph && strcmp(ph, "PULLING") == 0 && ms > 0)
			json_object_set_new(d, "bytesPerSecond", json_integer((done - j->pull_base_bytes) * 1000 / ms));
	}
	return d;
}

/* ---- the build ---- */

static void shell_quote(const char *s, char **out)
{
	size_t n = strlen(*out ? *out : "");
	size_t cap = n + strlen(s) * 4 + 4;
	char *buf = realloc(*out, cap);
	if (!buf)
		return;
	char *p = buf + n;
	if (n)
		*p++ = ' ';
	*p++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	}
	*p++ = '\'';
	*p = '\0';
	*out = buf;
}

/* template.json for the image: layers topmost first, the config's Env/Entrypoint/Cmd/WorkingDir/User/
 * ExposedPorts, overridden by the request. */
static json_t *template_doc(struct job *j, const struct reg_image *img, bool ready_port)
{
	json_t *cfg = json_object_get(img->config, "config");
	json_t *t = json_object();
	const char *id = json_string_value(json_object_get(j->doc, "templateID"));
	json_object_set_new(t, "name", json_string(id));
	json_t *aliases = json_array();
	if (req_str(j, "alias"))
		json_array_append_new(aliases, json_string(req_str(j, "alias")));
	json_object_set_new(t, "aliases", aliases);
	json_t *layers = json_array();
	for (size_t i = img->n_layers; i-- > 0;) {
		char ref[80];
		snprintf(ref, sizeof ref, "sha256/%s", img->layers[i].hex);
		json_array_append_new(layers, json_string(ref));
	}
	json_object_set_new(t, "layers", layers);
	long long millis = req_int(j, "cpuMillis", 2000);
	json_object_set_new(t, "cpuCount", json_integer((millis + 999) / 1000));
	json_object_set_new(t, "cpuMillis", json_integer(millis));
	json_object_set_new(t, "memoryMB", json_integer(req_int(j, "memoryMB", 2000)));
	json_object_set_new(t, "diskSizeMB", json_integer(req_int(j, "diskSizeMB", 1024)));

	json_t *envs = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(cfg, "Env"), i, v) {
		const char *kv = json_string_value(v);
		const char *eq = kv ? strchr(kv, '=') : NULL;
		if (!eq || eq == kv)
			continue;
		char key[256];
		snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
		json_object_set_new(envs, key, json_string(eq + 1));
	}
	json_object_update(envs, json_object_get(json_object_get(j->doc, "request"), "env"));
	json_object_set_new(t, "envs", envs);

	char *cmd = NULL;
	if (req_str(j, "cmd")) {
		cmd = strdup(req_str(j, "cmd"));
	} else {
		json_array_foreach(json_object_get(cfg, "Entrypoint"), i, v)
			if (json_is_string(v))
				shell_quote(json_string_value(v), &cmd);
		json_array_foreach(json_object_get(cfg, "Cmd"), i, v)
			if (json_is_string(v))
				shell_quote(json_string_value(v), &cmd);
	}
	if (cmd && *cmd)
		json_object_set_new(t, "startCmd", json_string(cmd));
	free(cmd);
	const char *user = json_string_value(json_object_get(cfg, "User"));
	json_object_set_new(t, "startUser", json_string(user && *user ? user : "root"));
	const char *wd = json_string_value(json_object_get(cfg, "WorkingDir"));
	if (wd && *wd)
		json_object_set_new(t, "startCwd", json_string(wd));
	json_t *ports = json_array();
	const char *key;
	json_object_foreach(json_object_get(cfg, "ExposedPorts"), key, v) {
		int port = atoi(key);
		if (port > 0 && port < 65536)
			json_array_append_new(ports, json_integer(port));
	}
	json_array_foreach(json_object_get(json_object_get(j->doc, "request"), "exposePorts"), i, v)
		json_array_append(ports, v);
	json_object_set_new(t, "exposedPorts", ports);
	long long probe = req_int(j, "probePort", 0);
	if (probe && ready_port)
		json_object_set_new(t, "readyPort", json_integer(probe));
	json_object_set_new(t, "image", json_string(req_str(j, "image") ? req_str(j, "image") : req_str(j, "archive")));
	json_object_set_new(t, "manifestDigest", json_string(img->manifest_digest));
	json_object_set_new(t, "createdAt", json_integer(cube_now_ms()));
	return t;
}

/* Load the templates dir again; expect (or NULL) names a template just written, which must load. */
static int tjobs_reload(const char *expect, cube_err *err)
{
	if (reload_registry(err) < 0)
		return -1;
	if (!expect || tpl_find(expect))
		return 0;
	/* Skipped by the registry (it logged why): the same reason for the caller. */
	char dir[PATH_MAX + 256];
	struct tpl *t = NULL;
	snprintf(dir, sizeof dir, "%s/%s", T.templates_dir, expect);
	if (tpl_load_one(dir, expect, &t, err) == 0) {
		tpl_free(t);
		cube_fail(err, 500, 0, "template %s was written but did not load", expect);
	}
	return -1;
}

int tjobs_publish_template(const char *id, json_t *doc, cube_err *err)
{
	char tmp[PATH_MAX + 64], dir[PATH_MAX + 64], file[PATH_MAX + 96];
	snprintf(tmp, sizeof tmp, "%s/.tmp-%s", T.templates_dir, id);
	snprintf(dir, sizeof dir, "%s/%s", T.templates_dir, id);
	snprintf(file, sizeof file, "%s/template.json", tmp);
	layer_store_remove_tree(tmp);
	int rc = 0, fd = -1;
	if (cube_mkdir_p(tmp, 0755) < 0 || json_dump_file(doc, file, JSON_INDENT(2)) < 0)
		rc = cube_fail(err, 500, errno, "write %s", file);
	else if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 || fsync(fd) < 0 || cube_fsync_dir(tmp) < 0)
		rc = cube_fail(err, 500, errno, "write %s", file);
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		layer_store_remove_tree(dir);
		if (rename(tmp, dir) < 0 || cube_fsync_dir(T.templates_dir) < 0)
			rc = cube_fail(err, 500, errno, "publish template %s", dir);
	}
	if (rc < 0) {
		layer_store_remove_tree(tmp);
		return rc;
	}
	if (tjobs_reload(id, err) < 0) {
		char gone[PATH_MAX + 80];
		snprintf(gone, sizeof gone, "%s/.gone-%s", T.templates_dir, id);
		if (rename(dir, gone) == 0)
			layer_store_remove_tree(gone);
		return -1;
	}
	return 0;
}

const char *tjobs_layers_dir(void)
{
	return T.layers_dir;
}

const char *tjobs_templates_dir(void)
{
	return T.templates_dir;
}

void tjobs_uid_range(unsigned *base, unsigned *count)
{
	*base = T.cfg.uid_base;
	*count = T.cfg.uid_count;
}

static int reload_registry(cube_err *err)
{
	pthread_mutex_lock(&T.lock);
	int rc = tpl_registry_load(T.templates_dir, T.cfg.uid_base, T.cfg.uid_count, err);
	pthread_mutex_unlock(&T.lock);
	return rc;
}

/* ready_port: creates wait for the probe port (only once the probe has passed: the probe sandbox itself
 * must not wait the long create timeout for a start command that never listens). */
static int write_template(struct job *j, const struct reg_image *img, bool ready_port, cube_err *err)
{
	const char *id = json_string_value(json_object_get(j->doc, "templateID"));
	json_t *doc = template_doc(j, img, ready_port);
	int rc = tjobs_publish_template(id, doc, err);
	json_decref(doc);
	return rc;
}

static void remove_template_dir(const char *id)
{
	char dir[PATH_MAX + 64];
	snprintf(dir, sizeof dir, "%s/%s", T.templates_dir, id);
	layer_store_remove_tree(dir);
	cube_err err = {0};
	if (reload_registry(&err) < 0)
		log_error("templates: reload: %s", err.msg);
}

/* ---- probe: a real sandbox, an HTTP GET from inside its network namespace ---- */

struct probe_call {
	struct loop_call c;
	const char *tpl;
	char sandbox_id[32];
	json_t *logs;
};

static void probe_created(struct sandbox *sb, const cube_err *err, void *arg)
{
	struct probe_call *p = arg;
	if (!sb) {
		p->c.err = *err;
		p->c.rc = -1;
	} else {
		snprintf(p->sandbox_id, sizeof p->sandbox_id, "%s", sb->id);
		p->c.netns_fd = fcntl(sb->rt.netns_fd, F_DUPFD_CLOEXEC, 3);
		p->c.rc = 0;
	}
	call_done(&p->c);
}

static void probe_create_on_loop(struct loop_call *c)
{
	struct probe_call *p = (struct probe_call *)c;
	struct sbx_create_req req = {.template_ref = p->tpl, .timeout_s = 300};
	sbx_create(&req, probe_created, p);
}

static void probe_kill_on_loop(struct loop_call *c)
{
	struct probe_call *p = (struct probe_call *)c;
	struct sandbox *sb = sbx_find(p->sandbox_id);
	if (sb && sb->logs)
		p->logs = json_deep_copy(sb->logs);
	cube_err err = {0};
	sbx_kill(p->sandbox_id, &err);
	call_done(c);
}

/* One GET; returns the HTTP status, or -1 with why filled. */
static int http_get_in(int netns_fd, int port, const char *path, char *why, size_t why_len)
{
	cube_err err = {0};
	int fd = rt_connect_socket(netns_fd, &err);
	if (fd < 0) {
		snprintf(why, why_len, "%s", err.msg);
		return -1;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int status = -1;
	char buf[512];
	if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
		snprintf(why, why_len, "connect: %s", strerror(errno));
		goto out;
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (poll(&p, 1, 2000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
		snprintf(why, why_len, "connect: %s", soerr ? strerror(soerr) : "timed out");
		goto out;
	}
	int n = snprintf(buf, sizeof buf, "GET %s HTTP/1.0\r\nHost: localhost:%d\r\nUser-Agent: cubesandbox-probe\r\n\r\n",
			 path, port);
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(why, why_len, "send: %s", strerror(errno));
		goto out;
	}
	size_t have = 0;
	while (have < 12) {
		p = (struct pollfd){.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 3000) != 1) {
			snprintf(why, why_len, "no answer");
			goto out;
		}
		ssize_t r = recv(fd, buf + have, sizeof buf - 1 - have, 0);
		if (r <= 0) {
			snprintf(why, why_len, "connection closed before a status line");
			goto out;
		}
		have += (size_t)r;
	}
	buf[have] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 8, " %d", &status) != 1) {
		snprintf(why, why_len, "not an HTTP answer");
		status = -1;
	} else {
		snprintf(why, why_len, "status %d", status);
	}
out:
	close(fd);
	return status;
}

static int run_probe(struct job *j, cube_err *err)
{
	int port = (int)req_int(j, "probePort", 0);
	const char *path = req_str(j, "probePath") ? req_str(j, "probePath") : "/";
	long long budget = req_int(j, "probeTimeoutMs", PROBE_DEFAULT_MS);
	struct probe_call p = {.c = {.fn = probe_create_on_loop, .netns_fd = -1},
			       .tpl = json_string_value(json_object_get(j->doc, "templateID"))};
	loop_call(&p.c);
	if (p.c.rc < 0)
		return cube_fail(err, 422, 0, "probe sandbox did not start: %s", p.c.err.msg);
	long long deadline = cube_mono_ms() + budget;
	char why[256] = "no attempt";
	int ok = 0;
	while (cube_mono_ms() < deadline) {
		int st = http_get_in(p.c.netns_fd, port, path, why, sizeof why);
		if (st >= 200 && st < 300) {
			ok = 1;
			break;
		}
		usleep(300 * 1000);
	}
	close(p.c.netns_fd);
	p.c.fn = probe_kill_on_loop;
	loop_call(&p.c);
	if (ok) {
		json_decref(p.logs);
		return 0;
	}
	/* The start command's last output explains most failures. */
	char tail[600] = "";
	size_t n = json_array_size(p.logs), used = 0;
	for (size_t i = n > 4 ? n - 4 : 0; i < n && used < sizeof tail - 1; i++) {
		const char *m = json_string_value(json_object_get(json_array_get(p.logs, i), "message"));
		if (m)
			used += (size_t)snprintf(tail + used, sizeof tail - used, "%s%s", used ? " | " : "", m);
	}
	json_decref(p.logs);
	return cube_fail(err, 422, 0, "probe: GET http://127.0.0.1:%d%s did not answer 2xx within %lld ms (last: %s)%s%s",
			 port, path, budget, why, tail[0] ? "; last output: " : "", tail);
}

/* Unpack layer i of the job's image into the store (once) and drop its blob. */
static int unpack_layer(struct job *j, const struct reg_layer *l, size_t i, cube_err *err)
{
	struct unpack_opts o = {.uid_base = T.cfg.uid_base, .uid_count = T.cfg.uid_count,
				.max_bytes = (unsigned long long)req_int(j, "maxLayerBytes", 0)};
	char blob[PATH_MAX + 128];
	snprintf(blob, sizeof blob, "%s/%s", T.blobs_dir, l->hex);
	if (layer_store_has(T.layers_dir, l->hex)) {
		unlink(blob);
		return 0;
	}
	struct unpack_stats st;
	if (layer_store_unpack(T.layers_dir, l->hex, blob, &o, &st, err) < 0)
		return cube_wrap(err, "layer %zu (sha256:%.12s)", i, l->hex);
	unlink(blob); /* the unpacked tree is what is kept */
	log_info("template job %s: layer sha256:%.12s: %llu entries, %llu bytes%s", j->id, l->hex, st.entries, st.bytes,
		 st.devices_skipped ? " (device nodes skipped)" : "");
	return 0;
}

struct fetch_ctx {
	struct job *j;
	const struct reg_image *img;
};

static void on_fetch_progress(size_t i, long long done, void *arg)
{
	on_progress(i, done, ((struct fetch_ctx *)arg)->j);
}

/* A blob is complete: unpack it now, while the other blobs still download. */
static int on_fetched(size_t i, void *arg, cube_err *err)
{
	struct fetch_ctx *f = arg;
	return unpack_layer(f->j, &f->img->layers[i], i, err);
}

/* An archive on this host instead of a registry: the blobs are imported, nothing is left to download. */
static int import_archive(struct job *j, struct reg_image *img, cube_err *err)
{
	if (archive_read_image(req_str(j, "archive"), T.blobs_dir, img, NULL, NULL, err) < 0)
		return -1;
	struct layer_prog *lp = calloc(img->n_layers, sizeof *lp);
	if (!lp)
		return cube_fail(err, 500, ENOMEM, "import");
	for (size_t i = 0; i < img->n_layers; i++) {
		snprintf(lp[i].hex, sizeof lp[i].hex, "%s", img->layers[i].hex);
		lp[i].size = lp[i].done = img->layers[i].size;
		lp[i].cached = layer_store_has(T.layers_dir, img->layers[i].hex);
	}
	pthread_mutex_lock(&T.lock);
	free(j->layers);
	j->layers = lp;
	j->n_layers = img->n_layers;
	pthread_mutex_unlock(&T.lock);
	return 0;
}

static int pull(struct job *j, struct reg_image *img, cube_err *err)
{
	if (req_str(j, "archive"))
		return import_archive(j, img, err);
	struct image_ref ref;
	if (image_ref_parse(req_str(j, "image"), &ref, err) < 0)
		return -1;
	struct reg_opts o = {.insecure = json_is_true(json_object_get(json_object_get(j->doc, "request"),
								       "insecureRegistry")),
			     .ca_file = req_str(j, "caFile"), .user = req_str(j, "registryUser"),
			     .password = j->password};
	struct registry *r = reg_open(&ref, &o, err);
	if (!r)
		return -1;
	int rc = -1;
	if (reg_get_image(r, img, err) < 0)
		goto out;
	bool *skip = calloc(img->n_layers, sizeof *skip);
	struct layer_prog *lp = calloc(img->n_layers, sizeof *lp);
	if (!skip || !lp) {
		free(skip);
		free(lp);
		cube_fail(err, 500, ENOMEM, "pull");
		goto out;
	}
	long long base = 0;
	for (size_t i = 0; i < img->n_layers; i++) {
		snprintf(lp[i].hex, sizeof lp[i].hex, "%s", img->layers[i].hex);
		lp[i].size = img->layers[i].size;
		if ((skip[i] = layer_store_has(T.layers_dir, img->layers[i].hex))) {
			lp[i].cached = true;
			lp[i].done = lp[i].size;
			base += lp[i].size;
		}
	}
	pthread_mutex_lock(&T.lock);
	free(j->layers);
	j->layers = lp;
	j->n_layers = img->n_layers;
	j->pull_start_ms = cube_mono_ms();
	j->pull_base_bytes = base;
	json_object_set_new(j->doc, "manifestDigest", json_string(img->manifest_digest));
	pthread_mutex_unlock(&T.lock);
	struct fetch_ctx f = {.j = j, .img = img};
	rc = reg_fetch_layers(r, img->layers, img->n_layers, skip, T.blobs_dir, PARALLEL_BLOBS, on_fetch_progress,
			      on_fetched, &f, err);
	free(skip);
out:
	reg_close(r);
	return rc;
}

/* Layers not unpacked during the download (archives, and blobs found complete from an earlier run). */
static int unpack_all(struct job *j, const struct reg_image *img, cube_err *err)
{
	for (size_t i = 0; i < img->n_layers; i++)
		if (unpack_layer(j, &img->layers[i], i, err) < 0)
			return -1;
	return 0;
}

/* Plain HTTP is safe only to a registry on this host. */
static bool loopback_registry(const char *image)
{
	struct image_ref ref;
	cube_err e = {0};
	if (image_ref_parse(image, &ref, &e) < 0)
		return false;
	return strncmp(ref.registry, "127.", 4) == 0 || strncmp(ref.registry, "localhost", 9) == 0 ||
	       strncmp(ref.registry, "[::1]", 5) == 0;
}

int tjobs_pull_image(const char *image, const char *user, const char *password, json_t **refs, json_t **config,
		     cube_err *err)
{
	struct job j = {.id = "build"};
	j.doc = json_pack("{s:{s:s,s:b}}", "request", "image", image, "insecureRegistry", loopback_registry(image));
	if (user)
		json_object_set_new(json_object_get(j.doc, "request"), "registryUser", json_string(user));
	j.password = password ? strdup(password) : NULL;
	struct reg_image img = {0};
	int rc = -1;
	if (pull(&j, &img, err) == 0 && unpack_all(&j, &img, err) == 0) {
		*refs = json_array();
		for (size_t i = img.n_layers; i-- > 0;)
			json_array_append_new(*refs, json_sprintf("sha256/%s", img.layers[i].hex));
		*config = json_incref(img.config);
		rc = 0;
	}
	reg_image_free(&img);
	json_decref(j.doc);
	free(j.password);
	free(j.layers);
	return rc;
}

static void *job_thread(void *arg)
{
	struct job *j = arg;
	struct reg_image img = {0};
	cube_err err = {0};
	const char *id = json_string_value(json_object_get(j->doc, "templateID"));
	set_phase(j, PH_PULLING, NULL);
	if (pull(j, &img, &err) < 0)
		goto failed;
	set_phase(j, PH_UNPACKING, NULL);
	if (unpack_all(j, &img, &err) < 0)
		goto failed;
	set_phase(j, PH_PREPARING, NULL);
	if (write_template(j, &img, false, &err) < 0)
		goto failed;
	if (req_int(j, "probePort", 0)) {
		set_phase(j, PH_PROBING, NULL);
		if (run_probe(j, &err) < 0 || write_template(j, &img, true, &err) < 0) {
			remove_template_dir(id);
			goto failed;
		}
	}
	set_phase(j, PH_READY, NULL);
	goto out;
failed:
	set_phase(j, PH_FAILED, err.msg);
out:
	reg_image_free(&img);
	pthread_mutex_lock(&T.lock);
	j->running = false;
	free(j->password);
	j->password = NULL;
	pthread_mutex_unlock(&T.lock);
	return NULL;
}

static int start_job(struct job *j, cube_err *err)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	j->running = true;
	int rc = pthread_create(&t, &at, job_thread, j);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		j->running = false;
		return cube_fail(err, 500, rc, "start template job");
	}
	return 0;
}

/* ---- requests ---- */

static bool valid_alias(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64 || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

static int check_int(json_t *req, const char *key, long long lo, long long hi, cube_err *err)
{
	json_t *v = json_object_get(req, key);
	if (v && (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi))
		return cube_fail(err, 400, 0, "\"%s\" must be an integer between %lld and %lld", key, lo, hi);
	return 0;
}

static bool alias_taken(const char *alias)
{
	if (tpl_find(alias))
		return true;
	for (struct job *j = T.jobs; j; j = j->next) {
		const char *ph = json_string_value(json_object_get(j->doc, "phase"));
		const char *a = req_str(j, "alias");
		if (a && strcmp(a, alias) == 0 && ph && strcmp(ph, "FAILED") != 0 && strcmp(ph, "READY") != 0)
			return true;
	}
	return false;
}

#define JOBS_KEPT 100 /* finished jobs remembered (memory and store); older ones are forgotten */

/* Forget the oldest finished jobs beyond JOBS_KEPT (loop thread; running jobs are never touched). */
static void prune_jobs(void)
{
	size_t finished = 0;
	pthread_mutex_lock(&T.lock);
	struct job **pp = &T.jobs;
	while (*pp) {
		struct job *j = *pp;
		const char *ph = json_string_value(json_object_get(j->doc, "phase"));
		bool done = !j->running && ph && (strcmp(ph, "READY") == 0 || strcmp(ph, "FAILED") == 0);
		if (done && ++finished > JOBS_KEPT && !j->dirty) {
			*pp = j->next;
			cube_err err = {0};
			if (store_job_delete(j->id, &err) < 0)
				log_error("template job %s: %s", j->id, err.msg);
			json_decref(j->doc);
			free(j->layers);
			free(j->password);
			free(j);
			continue;
		}
		pp = &j->next;
	}
	pthread_mutex_unlock(&T.lock);
}

int tjobs_submit(json_t *req, json_t **job_out, cube_err *err)
{
	prune_jobs();
	if (!json_is_object(req))
		return cube_fail(err, 400, 0, "body must be a JSON object");
	const char *image = json_string_value(json_object_get(req, "image"));
	const char *archive = json_string_value(json_object_get(req, "archive"));
	struct image_ref ref;
	if (!image == !archive)
		return cube_fail(err, 400, 0, "exactly one of \"image\" and \"archive\" is required");
	if (image && image_ref_parse(image, &ref, err) < 0)
		return -1;
	if (archive && archive[0] != '/')
		return cube_fail(err, 400, 0, "\"archive\" must be an absolute path on cubed's host");
	if (check_int(req, "cpuMillis", 100, 256000, err) < 0 || check_int(req, "memoryMB", 16, 1 << 20, err) < 0 ||
	    check_int(req, "diskSizeMB", 1, 1 << 24, err) < 0 || check_int(req, "probePort", 1, 65535, err) < 0 ||
	    check_int(req, "probeTimeoutMs", 100, 3600000, err) < 0 ||
	    check_int(req, "maxLayerBytes", 1, 1LL << 40, err) < 0)
		return -1;
	const char *alias = json_string_value(json_object_get(req, "alias"));
	if (json_object_get(req, "alias") && (!alias || !valid_alias(alias)))
		return cube_fail(err, 400, 0, "\"alias\" must be 1-64 of [a-z0-9._-]");
	if (alias && alias_taken(alias))
		return cube_fail(err, 409, 0, "alias '%s' is already in use", alias);
	json_t *env = json_object_get(req, "env");
	if (env && !json_is_object(env))
		return cube_fail(err, 400, 0, "\"env\" must be an object of strings");
	const char *pp = json_string_value(json_object_get(req, "probePath"));
	if (pp && pp[0] != '/')
		return cube_fail(err, 400, 0, "\"probePath\" must start with '/'");
	if (pp && strpbrk(pp, " \r\n"))
		return cube_fail(err, 400, 0, "\"probePath\" must not contain spaces or line breaks");
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(req, "exposePorts"), i, v)
		if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
			return cube_fail(err, 400, 0, "\"exposePorts\" must be ports");

	struct job *j = calloc(1, sizeof *j);
	if (!j)
		return cube_fail(err, 500, ENOMEM, "job");
	j->id[0] = 'j';
	cube_random_alnum(j->id + 1, 16);
	char tid[24] = "tpl";
	cube_random_alnum(tid + 3, 16);
	json_t *r = json_deep_copy(req);
	const char *pw = json_string_value(json_object_get(r, "registryPassword"));
	j->password = pw ? strdup(pw) : NULL;
	json_object_del(r, "registryPassword");
	json_object_set_new(r, "hasPassword", json_boolean(pw != NULL));
	long long now = cube_now_ms();
	j->doc = json_pack("{s:s,s:s,s:o,s:s,s:I,s:I,s:I}", "jobID", j->id, "templateID", tid, "request", r, "phase",
			   "PENDING", "createdMs", (json_int_t)now, "createdAt", (json_int_t)now, "updatedMs",
			   (json_int_t)now);
	json_object_set_new(j->doc, "image", json_string(image ? image : archive));
	if (alias)
		json_object_set_new(j->doc, "alias", json_string(alias));
	pthread_mutex_lock(&T.lock);
	j->next = T.jobs;
	T.jobs = j;
	j->dirty = true;
	pthread_mutex_unlock(&T.lock);
	cube_err e2 = {0};
	if (store_job_put(j->id, j->doc, now, &e2) < 0)
		log_error("template job %s: %s", j->id, e2.msg);
	if (start_job(j, err) < 0)
		return -1;
	*job_out = tjobs_get(j->id);
	return 0;
}

json_t *tjobs_get(const char *id)
{
	json_t *out = NULL;
	pthread_mutex_lock(&T.lock);
	for (struct job *j = T.jobs; j; j = j->next)
		if (strcmp(j->id, id) == 0) {
			out = job_json_locked(j);
			break;
		}
	pthread_mutex_unlock(&T.lock);
	return out;
}

json_t *tjobs_list(void)
{
	json_t *arr = json_array();
	pthread_mutex_lock(&T.lock);
	for (struct job *j = T.jobs; j; j = j->next)
		json_array_insert_new(arr, 0, job_json_locked(j));
	pthread_mutex_unlock(&T.lock);
	return arr;
}

/* ---- templates ---- */

static json_t *template_json(const struct tpl *t)
{
	json_t *aliases = json_array();
	for (char **a = t->aliases; a && *a; a++)
		json_array_append_new(aliases, json_string(*a));
	json_t *layers = json_array();
	for (size_t i = 0; t->store_layers && i < t->n_layers; i++) {
		/* <store>/sha256/<hex>/rootfs -> sha256:<hex>; <templates>/<name>/rootfs -> template:<name> */
		const char *p = strstr(t->layers[i], "/sha256/");
		char dg[160];
		if (p) {
			snprintf(dg, sizeof dg, "sha256:%.64s", p + 8);
		} else {
			size_t len = strlen(t->layers[i]);
			const char *end = len > 7 ? t->layers[i] + len - 7 : t->layers[i]; /* "/rootfs" */
			const char *start = end;
			while (start > t->layers[i] && start[-1] != '/')
				start--;
			snprintf(dg, sizeof dg, "template:%.*s", (int)(end - start), start);
		}
		json_array_append_new(layers, json_string(dg));
	}
	return json_pack("{s:s,s:s,s:o,s:o,s:i,s:i,s:i,s:b,s:s?,s:s,s:b}", "templateID", t->name, "buildID", t->name,
			 "aliases", aliases, "layers", layers, "cpuCount", t->cpu_count, "memoryMB", t->memory_mb,
			 "diskSizeMB", t->disk_mb, "public", 0, "startCmd", t->start_cmd, "buildStatus", "ready",
			 "fromImage", t->store_layers);
}

json_t *tjobs_templates(void)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < tpl_count(); i++)
		json_array_append_new(arr, template_json(tpl_at(i)));
	return arr;
}

json_t *tjobs_template(const char *ref)
{
	const struct tpl *t = tpl_find(ref);
	return t ? template_json(t) : NULL;
}

struct users {
	const char *name;
	char ids[64][32];
	size_t n;
};

static void count_user(struct sandbox *sb, void *arg)
{
	struct users *u = arg;
	if ((strcmp(sb->template_id, u->name) == 0 || strcmp(sbx_layers_template(sb), u->name) == 0) && u->n < 64)
		snprintf(u->ids[u->n++], sizeof u->ids[0], "%s", sb->id);
}

/* Keep every layer any loaded template names; remove the rest. */
static void gc_layers(void)
{
	size_t cap = 0, n = 0;
	const char **keep = NULL;
	for (size_t i = 0; i < tpl_count(); i++) {
		const struct tpl *t = tpl_at(i);
		for (size_t k = 0; t->store_layers && k < t->n_layers; k++) {
			const char *p = strstr(t->layers[k], "/sha256/");
			if (!p)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				const char **nk = realloc(keep, cap * sizeof *keep);
				if (!nk) {
					free(keep);
					return; /* keep everything */
				}
				keep = nk;
			}
			keep[n++] = p + 8;
		}
	}
	/* Jobs still running will reference layers not yet in a template: skip GC then. */
	pthread_mutex_lock(&T.lock);
	bool busy = false;
	for (struct job *j = T.jobs; j; j = j->next)
		busy |= j->running;
	pthread_mutex_unlock(&T.lock);
	busy |= builds_running() > 0;
	cube_err err = {0};
	if (!busy && layer_store_gc(T.layers_dir, keep, n, &err) < 0)
		log_error("templates: %s", err.msg);
	free(keep);
}

int tjobs_delete_template(const char *ref, int force, cube_err *err)
{
	const struct tpl *t = tpl_find(ref);
	if (!t)
		return cube_fail(err, 404, 0, "template '%s' not found", ref);
	char name[128];
	snprintf(name, sizeof name, "%s", t->name);
	struct users u = {.name = name};
	sbx_foreach(count_user, &u);
	if (u.n && !force)
		return cube_fail(err, 409, 0, "template '%s' is used by %zu sandbox(es) (e.g. %s); kill them or force", name,
				 u.n, u.ids[0]);
	for (size_t i = 0; i < u.n; i++) {
		cube_err e2 = {0};
		sbx_kill(u.ids[i], &e2);
	}
	/* Out of the registry first (renamed away, so it is skipped), then removed. */
	char dir[PATH_MAX + 64], gone[PATH_MAX + 96];
	snprintf(dir, sizeof dir, "%s/%s", T.templates_dir, name);
	snprintf(gone, sizeof gone, "%s/.deleted-%s", T.templates_dir, name);
	layer_store_remove_tree(gone);
	if (rename(dir, gone) < 0)
		return cube_fail(err, 500, errno, "delete template %s", dir);
	if (reload_registry(err) < 0)
		return -1;
	layer_store_remove_tree(gone);
	/* Layers still mounted by killed sandboxes: rt_kill has reaped them before sbx_kill returns? Not
	 * necessarily (it runs in the background), so GC happens only for layers no template names and the
	 * next delete or restart catches the rest. */
	if (!u.n)
		gc_layers();
	log_info("template %s deleted", name);
	return 0;
}

/* ---- start-up ---- */

static void load_job(json_t *doc, void *arg)
{
	(void)arg;
	const char *id = json_string_value(json_object_get(doc, "jobID"));
	if (!id || strlen(id) >= sizeof ((struct job *)0)->id)
		return;
	struct job *j = calloc(1, sizeof *j);
	if (!j)
		return;
	snprintf(j->id, sizeof j->id, "%s", id);
	j->doc = json_deep_copy(doc);
	j->next = T.jobs;
	T.jobs = j;
}

int tjobs_init(const struct tjobs_config *cfg, cube_err *err)
{
	T.cfg = *cfg;
	curl_global_init(CURL_GLOBAL_DEFAULT); /* before any job thread uses libcurl */
	snprintf(T.state_dir, sizeof T.state_dir, "%s", cfg->state_dir);
	snprintf(T.templates_dir, sizeof T.templates_dir, "%s", cfg->templates_dir);
	snprintf(T.layers_dir, sizeof T.layers_dir, "%s/layers", cfg->state_dir);
	snprintf(T.blobs_dir, sizeof T.blobs_dir, "%s/blobs/sha256", T.layers_dir);
	if (cube_mkdir_p(T.blobs_dir, 0700) < 0 || cube_mkdir_p(T.templates_dir, 0755) < 0)
		return cube_fail(err, 500, errno, "templates: create %s", T.layers_dir);
	if (uv_async_init(cfg->loop, &T.async, on_async) < 0)
		return cube_fail(err, 500, 0, "templates: async");
	uv_unref((uv_handle_t *)&T.async);
	if (store_job_load_all(load_job, NULL, err) < 0)
		return -1;
	builds_cleanup_leftovers(T.layers_dir);
	T.ready = true;
	/* Unfinished jobs resume from the start: downloaded blobs and unpacked layers are reused. A job
	 * that needed a password cannot, since passwords are never stored: it fails saying so. */
	for (struct job *j = T.jobs; j; j = j->next) {
		const char *ph = json_string_value(json_object_get(j->doc, "phase"));
		if (!ph || strcmp(ph, "READY") == 0 || strcmp(ph, "FAILED") == 0)
			continue;
		if (json_is_true(json_object_get(json_object_get(j->doc, "request"), "hasPassword"))) {
			set_phase(j, PH_FAILED, "interrupted by a restart of cubed; registry passwords are not stored, "
						"submit the job again");
			continue;
		}
		log_info("template job %s: resuming after restart (was %s)", j->id, ph);
		cube_err e2 = {0};
		if (start_job(j, &e2) < 0)
			set_phase(j, PH_FAILED, e2.msg);
	}
	gc_layers();
	return 0;
}

void tjobs_shutdown(void)
{
	if (T.ready)
		uv_close((uv_handle_t *)&T.async, NULL);
	T.ready = false;
}
