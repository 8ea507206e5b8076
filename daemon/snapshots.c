/* Snapshots (daemon/snapshots.h): freeze, copy the writable layer in a worker thread, thaw, then publish
 * the layer and a template for it on the loop thread (where layer GC also runs, so GC never sees the new
 * layer without its template). */
#include "daemon/snapshots.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/templates.h"
#include "image/layer_copy.h"
#include "image/layer_store.h"
#include "image/template.h"
#include "runtime/runtime.h"

/* ---- the work ---- */

#define SNAP_FLATTEN_ABOVE 48

struct snap_work {
	uv_work_t work;
	char sandbox_id[32], snap_id[32], name[128], template_id[128];
	char upper[PATH_MAX], scratch[PATH_MAX + 64];
	int no_upper;                    /* paused to disk: no writable layer, only the saved ones */
	int freeze;                      /* running: freeze it first (in the worker, never on the loop) */
	bool fork;                       /* the snapshot behind a fork: deleted with its last sandbox */
	char *flat[RT_MAX_LAYERS];       /* a chain too deep: the sandbox's template layers (dirs) above its root's, */
	size_t n_flat;                   /* merged with its own into one layer (0 = a layer above them, as usual) */
	size_t n_kept;                   /* flattened: the chain root's layers, kept below the merged one (shared) */
	char *disk[RT_MAX_LAYERS];       /* layers saved by pauses to disk (dirs), newest first */
	size_t n_disk;
	snap_cb cb;
	void *arg;
	cube_err err;
	int rc;
	long long t0;
};

static void snap_work_free(struct snap_work *sw)
{
	for (size_t k = 0; k < sw->n_disk; k++)
		free(sw->disk[k]);
	for (size_t k = 0; k < sw->n_flat; k++)
		free(sw->flat[k]);
	free(sw);
}


static void copy_in_worker(uv_work_t *w)
{
	struct snap_work *sw = (struct snap_work *)w;
	if (sw->freeze && rt_freeze(sw->sandbox_id, NULL, &sw->err) < 0) {
		sw->rc = -1;
		return;
	}
	/* Saved layers (and, flattened, the template's too) are merged with the writable layer into the one
	 * new layer: the snapshot never depends on the sandbox, and stacks one layer per generation. */
	if (sw->n_flat || sw->n_disk) {
		const char *stack[LAYER_MERGE_MAX];
		char *roots[RT_MAX_LAYERS] = {0};
		size_t n = 0;
		if (!sw->no_upper)
			stack[n++] = sw->upper;
		for (size_t k = 0; k < sw->n_disk; k++)
			if (asprintf(&roots[k], "%s/rootfs", sw->disk[k]) > 0)
				stack[n++] = roots[k];
		for (size_t k = 0; k < sw->n_flat; k++)
			stack[n++] = sw->flat[k];
		sw->rc = n == (sw->no_upper ? 0 : 1) + sw->n_disk + sw->n_flat ? layer_merge(stack, n, sw->scratch, &sw->err)
							     : cube_fail(&sw->err, 500, ENOMEM, "snapshot");
		for (size_t k = 0; k < sw->n_disk; k++)
			free(roots[k]);
		if (sw->rc < 0)
			layer_store_remove_tree(sw->scratch);
		return;
	}
	sw->rc = layer_copy(sw->upper, sw->scratch, &sw->err);
	if (sw->rc < 0 && sw->err.status == 409)
		cube_fail(&sw->err, 409, 0, "sandbox %s has no writable layer to snapshot", sw->sandbox_id);
}


/* A snapshot template's document, or NULL (unknown, or a template that is not a snapshot). */
static json_t *snapshot_doc(const struct tpl *t)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/template.json", t->dir);
	json_t *doc = json_load_file(path, 0, NULL);
	if (!json_is_object(json_object_get(doc, "snapshot"))) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* The template at the root of the chain of the template whose template.json is doc (named self when it is
 * not a snapshot); *flattened (if not NULL): it is a snapshot that holds its chain, above the root's
 * layers, in one layer. */
static void doc_root(json_t *doc, const char *self, char *out, size_t n, bool *flattened)
{
	json_t *s = json_object_get(doc, "snapshot");
	if (flattened)
		*flattened = json_is_true(json_object_get(s, "flattened"));
	const char *root = json_string_value(json_object_get(s, "root"));
	if (!root)
		root = json_string_value(json_object_get(s, "template"));
	snprintf(out, n, "%s", root ? root : self);
}

/* doc_root of t's own template.json. */
static void root_of(const struct tpl *t, char *out, size_t n, bool *flattened)
{
	json_t *doc = snapshot_doc(t);
	doc_root(doc, t->name, out, n, flattened);
	json_decref(doc);
}

/* How many of t's bottom layers are its chain root's own (0 when they are not, or are too many to keep):
 * a flattening merges only what lies above them, so the base image stays one shared copy. */
static size_t root_layers_below(const struct tpl *t)
{
	char root_name[128];
	root_of(t, root_name, sizeof root_name, NULL);
	const struct tpl *root = tpl_find(root_name);
	if (!root || root == t || !t->store_layers || root->n_layers >= t->n_layers ||
	    root->n_layers > SNAP_FLATTEN_ABOVE / 2)
		return 0;
	for (size_t i = 0; i < root->n_layers; i++)
		if (strcmp(t->layers[t->n_layers - root->n_layers + i], root->layers[i]) != 0)
			return 0;
	return root->n_layers;
}

/* The layer's name in the store: derived from the snapshot id, so a retry never collides. */
static void layer_hex(const struct snap_work *sw, char out[65])
{
	layer_sha256_hex(sw->snap_id, strlen(sw->snap_id), out);
}

/* The snapshot's template.json: the parent's, with the new layer (the writable layer's copy, merged with
 * the layers pauses to disk saved) on top of the parent's layers; flattened, on top of the root's only. */
static json_t *template_doc(const struct snap_work *sw, cube_err *err)
{
	const struct tpl *parent = tpl_find(sw->template_id);
	if (!parent) {
		cube_fail(err, 409, 0, "the template of sandbox %s (%s) no longer exists", sw->sandbox_id, sw->template_id);
		return NULL;
	}
	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/template.json", parent->dir);
	json_t *doc = json_load_file(path, 0, NULL);
	if (!json_is_object(doc)) {
		json_decref(doc);
		cube_fail(err, 500, 0, "read %s", path);
		return NULL;
	}
	json_t *layers = json_array();
	char h[65];
	layer_hex(sw, h);
	json_array_append_new(layers, json_sprintf("sha256/%s", h));
	json_t *pl = json_object_get(doc, "layers");
	if (sw->n_flat) { /* one layer holds the chain, above the root's own layers (bottom of the parent's) */
		size_t n = json_array_size(pl);
		if (sw->n_kept > n) {
			json_decref(layers);
			json_decref(doc);
			cube_fail(err, 500, 0, "%s: its layers changed while the snapshot was taken", path);
			return NULL;
		}
		for (size_t k = n - sw->n_kept; k < n; k++)
			json_array_append(layers, json_array_get(pl, k));
	} else if (json_is_array(pl) && json_array_size(pl))
		json_array_extend(layers, pl);
	else
		json_array_append_new(layers, json_sprintf("template/%s", parent->name));
	/* The lineage survives a flattening: the template at the root of the chain. */
	char root_name[128];
	doc_root(doc, parent->name, root_name, sizeof root_name, NULL);
	json_object_set_new(doc, "layers", layers);
	json_object_set_new(doc, "name", json_string(sw->snap_id));
	json_object_set_new(doc, "aliases", sw->name[0] ? json_pack("[s]", sw->name) : json_array());
	json_object_set_new(doc, "snapshot", json_pack("{s:s,s:s,s:s,s:b,s:b,s:I}", "sandboxID", sw->sandbox_id,
						       "template", parent->name, "root", root_name, "flattened",
						       sw->n_flat > 0, "fork", sw->fork, "createdMs",
						       (json_int_t)cube_now_ms()));
	return doc;
}

static void unpublish(const struct snap_work *sw, const char *shadir)
{
	char h[65], p[PATH_MAX + 96];
	layer_hex(sw, h);
	snprintf(p, sizeof p, "%s/%s", shadir, h);
	layer_store_remove_tree(p);
}

static int publish(struct snap_work *sw, cube_err *err)
{
	char shadir[PATH_MAX + 16];
	const char *layers_dir = tjobs_layers_dir();
	snprintf(shadir, sizeof shadir, "%s/sha256", layers_dir);
	/* Checked again here, serialized with every other publish: two snapshots raced for one name. */
	if (sw->name[0] && tpl_find(sw->name))
		return cube_fail(err, 409, 0, "the name '%s' is already used by a template or snapshot", sw->name);
	json_t *doc = template_doc(sw, err);
	if (!doc)
		return -1;
	char h[65], to[PATH_MAX + 96];
	layer_hex(sw, h);
	snprintf(to, sizeof to, "%s/%s", shadir, h);
	int lrc = cube_mkdir_p(shadir, 0755);
	if (lrc == 0)
		lrc = rename(sw->scratch, to);
	if (lrc < 0 || cube_fsync_dir(shadir) < 0) {
		cube_fail(err, 500, errno, "publish layers of %s", sw->snap_id);
		unpublish(sw, shadir);
		json_decref(doc);
		return -1;
	}
	int rc = tjobs_publish_template(sw->snap_id, doc, err);
	json_decref(doc);
	if (rc < 0) {
		cube_wrap(err, "snapshot %s", sw->snap_id);
		unpublish(sw, shadir);
	}
	return rc;
}

static void copy_done(uv_work_t *w, int status)
{
	(void)status;
	struct snap_work *sw = (struct snap_work *)w;
	/* Thaw first: the sandbox waits for nothing else. One paused meanwhile stays paused. */
	struct sandbox *sb = sbx_find(sw->sandbox_id);
	if (sb && sb->snapshotting) {
		sb->snapshotting = 0;
		cube_err terr = {0};
		if (sb->state == SBX_RUNNING && rt_thaw(sb->id, &sb->rt, &terr) < 0)
			log_error("sandbox %s: thaw after snapshot: %s", sb->id, terr.msg);
	}
	if (sw->rc == 0 && publish(sw, &sw->err) < 0)
		sw->rc = -1;
	if (sw->rc < 0) {
		layer_store_remove_tree(sw->scratch);
		log_warn("snapshot of %s failed: %s", sw->sandbox_id, sw->err.msg);
		sw->cb(NULL, &sw->err, sw->arg);
	} else {
		if (sb)
			sbx_log(sb, "info", "snapshot %s taken in %lld ms", sw->snap_id, cube_mono_ms() - sw->t0);
		json_t *names = sw->name[0] ? json_pack("[s]", sw->name) : json_array();
		sw->cb(json_pack("{s:s,s:o}", "snapshotID", sw->snap_id, "names", names), NULL, sw->arg);
	}
	snap_work_free(sw);
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

void snap_create(struct sandbox *sb, const char *name, bool fork, snap_cb cb, void *arg)
{
	cube_err err = {0};
	if (sb->state != SBX_RUNNING && sb->state != SBX_PAUSED) {
		cube_fail(&err, 409, 0, "sandbox %s is %s", sb->id, sb->state == SBX_STARTING ? "still starting" : "going away");
		cb(NULL, &err, arg);
		return;
	}
	if (sb->pausing) {
		cube_fail(&err, 409, 0, "sandbox %s is being paused; retry shortly", sb->id);
		cb(NULL, &err, arg);
		return;
	}
	if (sb->snapshotting) {
		cube_fail(&err, 409, 0, "a snapshot of sandbox %s is already being taken", sb->id);
		cb(NULL, &err, arg);
		return;
	}
	if (name && !valid_name(name)) {
		cube_fail(&err, 400, 0, "invalid snapshot name '%s' (letters, digits, '.', '_', '-')", name);
		cb(NULL, &err, arg);
		return;
	}
	if (name && tpl_find(name)) {
		cube_fail(&err, 409, 0, "the name '%s' is already used by a template or snapshot", name);
		cb(NULL, &err, arg);
		return;
	}
	struct snap_work *sw = calloc(1, sizeof *sw);
	if (!sw) {
		cube_fail(&err, 500, ENOMEM, "snapshot");
		cb(NULL, &err, arg);
		return;
	}
	snprintf(sw->sandbox_id, sizeof sw->sandbox_id, "%s", sb->id);
	snprintf(sw->template_id, sizeof sw->template_id, "%s", sbx_layers_template(sb)); /* after a rollback: the snapshot's */
	snprintf(sw->name, sizeof sw->name, "%s", name ? name : "");
	sw->fork = fork;
	memcpy(sw->snap_id, "snap", 4);
	cube_random_alnum(sw->snap_id + 4, 16);
	snprintf(sw->scratch, sizeof sw->scratch, "%s/.copy-snap-%s", tjobs_layers_dir(), sw->snap_id);
	sw->no_upper = sb->on_disk;
	sw->n_disk = sbx_disk_layers(sb, sw->disk, RT_MAX_LAYERS - 1);
	/* Snapshots of snapshots stack a layer each: past SNAP_FLATTEN_ABOVE layers (sandboxes from it still
	 * need room for their pauses to disk under the runtime's 64), this one merges the chain above its root
	 * template's layers into one. */
	const struct tpl *parent = tpl_find(sw->template_id);
	if (parent && (sw->no_upper ? 0 : 1) + sw->n_disk + parent->n_layers > SNAP_FLATTEN_ABOVE) {
		sw->n_kept = root_layers_below(parent);
		for (size_t k = 0; k < parent->n_layers - sw->n_kept && k < RT_MAX_LAYERS; k++)
			if ((sw->flat[sw->n_flat] = strdup(parent->layers[k])))
				sw->n_flat++;
	}
	if (parent && sw->n_flat && sw->n_flat != parent->n_layers - sw->n_kept) {
		snap_work_free(sw);
		cube_fail(&err, 500, ENOMEM, "snapshot");
		cb(NULL, &err, arg);
		return;
	}
	if (rt_layer_upper(sb->id, sw->upper, sizeof sw->upper) < 0) {
		snap_work_free(sw);
		cube_fail(&err, 500, ENAMETOOLONG, "layer path");
		cb(NULL, &err, arg);
		return;
	}
	sw->cb = cb;
	sw->arg = arg;
	sw->t0 = cube_mono_ms();
	/* A consistent copy: nothing in the sandbox writes while it is taken (a paused one stays paused). */
	sw->freeze = sb->state == SBX_RUNNING;
	sb->snapshotting = 1;
	uv_queue_work(uv_default_loop(), &sw->work, copy_in_worker, copy_done);
}

/* ---- rollback ---- */

void snap_rollback(struct sandbox *sb, const char *snapshot_ref, sbx_create_cb cb, void *arg)
{
	cube_err err = {0};
	const struct tpl *snap = tpl_find(snapshot_ref);
	json_t *doc = snap ? snapshot_doc(snap) : NULL;
	json_decref(doc);
	if (!doc) {
		cube_fail(&err, 404, 0, "snapshot '%s' not found", snapshot_ref);
		cb(NULL, &err, arg);
		return;
	}
	/* Only the sandbox's own lineage: the snapshot's lower layers must end with the layers of the
	 * template the sandbox was created from (a snapshot of another template would change its base). */
	const struct tpl *base = tpl_find(sb->template_id);
	bool ok = base && snap->n_layers > base->n_layers;
	for (size_t i = 0; ok && i < base->n_layers; i++)
		ok = strcmp(snap->layers[snap->n_layers - base->n_layers + i], base->layers[i]) == 0;
	if (!ok && base) { /* a flattened snapshot (one layer) of the same chain: compared by its root */
		char r1[128], r2[128];
		bool flat1, flat2;
		root_of(snap, r1, sizeof r1, &flat1);
		root_of(base, r2, sizeof r2, &flat2);
		ok = (flat1 || flat2) && strcmp(r1, r2) == 0;
	}
	if (!ok) {
		cube_fail(&err, 409, 0, "snapshot '%s' was not taken from a sandbox of template '%s'", snapshot_ref,
			  sb->template_id);
		cb(NULL, &err, arg);
		return;
	}
	sbx_restart(sb, snap, cb, arg);
}

/* ---- forks' snapshots: gone with their last sandbox ---- */

void snap_release(const char *template_name)
{
	/* Most sandboxes run on a template: only snapshot ids ("snap…") are worth reading a document for. */
	const struct tpl *t = template_name && strncmp(template_name, "snap", 4) == 0 ? tpl_find(template_name) : NULL;
	json_t *doc = t ? snapshot_doc(t) : NULL;
	bool fork = json_is_true(json_object_get(json_object_get(doc, "snapshot"), "fork"));
	json_decref(doc);
	if (!fork)
		return;
	char name[128];
	snprintf(name, sizeof name, "%s", t->name);
	cube_err err = {0};
	if (tjobs_delete_template(name, 0, &err) == 0)
		log_info("snapshot %s of a fork deleted: no sandbox uses it any more", name);
	else if (err.status != 409) /* 409: still in use */
		log_error("snapshot %s of a fork: %s", name, err.msg);
}

void snap_sweep(void)
{
	char (*names)[128] = calloc(tpl_count() + 1, sizeof *names);
	size_t n = 0;
	for (size_t i = 0; names && i < tpl_count(); i++) /* copied first: a delete reloads the registry */
		snprintf(names[n++], sizeof names[0], "%s", tpl_at(i)->name);
	for (size_t i = 0; i < n; i++)
		snap_release(names[i]);
	free(names);
}

/* ---- listing ---- */

struct snap_row {
	json_t *info;
	long long created;
};

static int row_cmp(const void *a, const void *b)
{
	const struct snap_row *x = a, *y = b;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x->info, "snapshotID")),
		      json_string_value(json_object_get(y->info, "snapshotID")));
}

json_t *snap_list(const char *sandbox_id, const char *name)
{
	size_t n = tpl_count(), k = 0;
	struct snap_row *rows = calloc(n ? n : 1, sizeof *rows);
	json_t *out = json_array();
	if (!rows)
		return out;
	for (size_t i = 0; i < n; i++) {
		const struct tpl *t = tpl_at(i);
		char path[PATH_MAX + 16];
		snprintf(path, sizeof path, "%s/template.json", t->dir);
		json_t *doc = json_load_file(path, 0, NULL);
		json_t *s = json_object_get(doc, "snapshot");
		const char *sid = json_string_value(json_object_get(s, "sandboxID"));
		bool named = !name || (t->aliases[0] && strcmp(t->aliases[0], name) == 0) || strcmp(t->name, name) == 0;
		if (json_is_object(s) && sid && named && (!sandbox_id || strcmp(sid, sandbox_id) == 0)) {
			json_t *names = json_array();
			for (char **a = t->aliases; *a; a++)
				json_array_append_new(names, json_string(*a));
			long long created = json_integer_value(json_object_get(s, "createdMs"));
			char ts[40];
			cube_format_time(created, ts, sizeof ts);
			rows[k].created = created;
			rows[k++].info = json_pack("{s:s,s:o,s:s,s:s}", "snapshotID", t->name, "names", names, "sandboxID", sid,
						   "createdAt", ts);
		}
		json_decref(doc);
	}
	qsort(rows, k, sizeof *rows, row_cmp);
	for (size_t i = 0; i < k; i++)
		json_array_append_new(out, rows[i].info);
	free(rows);
	return out;
}
