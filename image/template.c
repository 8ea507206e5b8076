/* Template registry: parses each <templates-dir>/<name>/template.json, checks the rootfs, shifts its
 * owners for the sandbox uid range (rootfs_shift.c) and serves lookups by name to the API and runtime.
 * A registry is immutable once published; a reload publishes a new one and retires the old. */
#include "image/template.h"
#include "net/policy.h"

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/util.h"
#include "image/rootfs_shift.h"

struct registry {
	struct tpl **items;   /* sorted by name */
	size_t count;
	struct registry *retired_next;
};

static struct registry *current;   /* read with __atomic loads: lookups take no lock */
static struct registry *retired;   /* replaced registries, freed by tpl_registry_free() */

#define TPL_DEFAULT_CPU 2
#define TPL_DEFAULT_MEMORY_MB 512
#define TPL_DEFAULT_DISK_MB 1024
#define TPL_MAX_LAYERS 64 /* RT_MAX_LAYERS */

static char *layer_store;

void tpl_set_layer_store(const char *dir)
{
	free(layer_store);
	layer_store = dir ? strdup(dir) : NULL;
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void tpl_free(struct tpl *t)
{
	if (!t)
		return;
	free(t->name);
	free(t->dir);
	free(t->rootfs);
	free_strv(t->layers);
	free_strv(t->aliases);
	json_decref(t->envs);
	json_decref(t->allow_internet);
	json_decref(t->network);
	free(t->start_cmd);
	free(t->start_user);
	free(t->start_cwd);
	free(t);
}

static void registry_free(struct registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->count; i++)
		tpl_free(r->items[i]);
	free(r->items);
	free(r);
}

/* Names end up in paths and in the API: keep them to a safe alphabet. */
static bool valid_name(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 64 || name[0] == '.' || name[0] == '-')
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* An optional positive integer field; *out keeps its default when the field is absent. */
static int get_positive_int(json_t *root, const char *key, int max, int *out, const char *path, cube_err *err)
{
	json_t *v = json_object_get(root, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > max)
		return cube_fail(err, 500, 0, "%s: \"%s\" must be an integer between 1 and %d", path, key, max);
	*out = (int)json_integer_value(v);
	return 0;
}

/* An optional non-empty string field; *out stays NULL when absent, null or "". */
static int get_string(json_t *root, const char *key, char **out, const char *path, cube_err *err)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return cube_fail(err, 500, 0, "%s: \"%s\" must be a string or null", path, key);
	if (json_string_length(v) > 0 && !(*out = strdup(json_string_value(v))))
		return cube_fail(err, 500, ENOMEM, "%s", path);
	return 0;
}

/* "aliases": names in the same alphabet as template names. */
static int parse_aliases(json_t *root, struct tpl *t, const char *path, cube_err *err)
{
	json_t *a = json_object_get(root, "aliases");
	size_t n = a && json_is_array(a) ? json_array_size(a) : 0;
	if (a && !json_is_null(a) && !json_is_array(a))
		return cube_fail(err, 500, 0, "%s: \"aliases\" must be a list of names", path);
	if (!(t->aliases = calloc(n + 1, sizeof *t->aliases)))
		return cube_fail(err, 500, ENOMEM, "%s", path);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(a, i);
		if (!json_is_string(v) || !valid_name(json_string_value(v)))
			return cube_fail(err, 500, 0, "%s: alias %zu is not a valid name (letters, digits, '.', '_', '-')",
					 path, i);
		if (!(t->aliases[i] = strdup(json_string_value(v))))
			return cube_fail(err, 500, ENOMEM, "%s", path);
	}
	return 0;
}

/* A layer reference "sha256/<64 hex>": resolved inside the store, so it cannot name any other path. */
static bool valid_layer_ref(const char *ref)
{
	if (strncmp(ref, "sha256/", 7) != 0 || strlen(ref) != 7 + 64)
		return false;
	for (const char *p = ref + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

/* "template/<name>": another template's own rootfs (a build on top of `base`), next to this one. */
static int template_layer(const char *ref, const char *dir, char **out)
{
	const char *name = ref + 9;
	if (!valid_name(name))
		return -1;
	const char *slash = strrchr(dir, '/');
	int plen = slash ? (int)(slash - dir) : 1;
	return asprintf(out, "%.*s/%s/rootfs", plen, slash ? dir : ".", name) < 0 ? -1 : 0;
}

static int parse_layers(json_t *layers, struct tpl *t, const char *path, cube_err *err)
{
	size_t n = json_is_array(layers) ? json_array_size(layers) : 0;
	if (n == 0 || n > TPL_MAX_LAYERS)
		return cube_fail(err, 500, 0, "%s: \"layers\" must be a list of 1 to %d layer ids", path,
				 TPL_MAX_LAYERS);
	if (!layer_store)
		return cube_fail(err, 500, 0, "%s: \"layers\" needs a layer store", path);
	if (!(t->layers = calloc(n + 1, sizeof *t->layers)))
		return cube_fail(err, 500, ENOMEM, "%s", path);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(layers, i);
		const char *ref = json_string_value(v);
		if (ref && strncmp(ref, "template/", 9) == 0) {
			if (template_layer(ref, t->dir, &t->layers[i]) < 0) {
				t->layers[i] = NULL;
				return cube_fail(err, 500, 0, "%s: layer %zu: bad template reference", path, i);
			}
			t->n_layers = i + 1;
			continue;
		}
		if (!ref || !valid_layer_ref(ref))
			return cube_fail(err, 500, 0, "%s: layer %zu must be \"sha256/<64 hex digits>\" or \"template/<name>\"",
					 path, i);
		if (asprintf(&t->layers[i], "%s/%s/rootfs", layer_store, ref) < 0) {
			t->layers[i] = NULL;
			return cube_fail(err, 500, ENOMEM, "%s", path);
		}
		t->n_layers = i + 1;
	}
	return 0;
}

int tpl_load_one(const char *dir, const char *name, struct tpl **out, cube_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/template.json", dir);
	if (!valid_name(name))
		return cube_fail(err, 500, 0, "%s: template name '%s' is not valid (letters, digits, '.', '_', '-')",
				 dir, name);
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return cube_fail(err, 500, 0, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);

	struct tpl *t = calloc(1, sizeof *t);
	if (!t) {
		json_decref(root);
		return cube_fail(err, 500, ENOMEM, "%s", path);
	}
	t->cpu_count = TPL_DEFAULT_CPU;
	t->memory_mb = TPL_DEFAULT_MEMORY_MB;
	t->disk_mb = TPL_DEFAULT_DISK_MB;
	int rc = -1;
	if (!json_is_object(root)) {
		cube_fail(err, 500, 0, "%s: must contain a JSON object", path);
		goto out;
	}
	json_t *jname = json_object_get(root, "name");
	if (jname && (!json_is_string(jname) || strcmp(json_string_value(jname), name) != 0)) {
		cube_fail(err, 500, 0, "%s: \"name\" must be the string \"%s\" (the directory's name)", path, name);
		goto out;
	}
	t->cpu_millis = 0;
	if (get_positive_int(root, "cpuCount", 256, &t->cpu_count, path, err) < 0 ||
	    get_positive_int(root, "cpuMillis", 256000, &t->cpu_millis, path, err) < 0 ||
	    get_positive_int(root, "memoryMB", 1 << 20, &t->memory_mb, path, err) < 0 ||
	    get_positive_int(root, "diskSizeMB", 1 << 24, &t->disk_mb, path, err) < 0)
		goto out;
	if (!t->cpu_millis)
		t->cpu_millis = t->cpu_count * 1000;
	json_t *envs = json_object_get(root, "envs");
	if (envs && !json_is_null(envs)) {
		if (!json_is_object(envs)) {
			cube_fail(err, 500, 0, "%s: \"envs\" must be an object of strings", path);
			goto out;
		}
		const char *key;
		json_t *val;
		json_object_foreach(envs, key, val) {
			if (!json_is_string(val) || key[0] == '\0' || strchr(key, '=')) {
				cube_fail(err, 500, 0, "%s: \"envs\".\"%s\" must be a string under a name without '='",
					  path, key);
				goto out;
			}
		}
		t->envs = json_incref(envs);
	} else {
		t->envs = json_object();
	}
	json_t *tai = json_object_get(root, "allowInternetAccess"), *tnet = json_object_get(root, "network");
	struct net_policy *tp = malloc(sizeof *tp);
	cube_err perr = {0};
	if (!tp || net_policy_parse(tai, tnet, tp, &perr) < 0) {
		free(tp);
		cube_fail(err, 500, 0, "%s: %s", path, tp ? perr.msg : "out of memory");
		goto out;
	}
	net_policy_free(tp);
	free(tp);
	t->allow_internet = json_is_boolean(tai) ? json_incref(tai) : NULL;
	t->network = json_is_object(tnet) ? json_incref(tnet) : NULL;
	if (get_string(root, "startCmd", &t->start_cmd, path, err) < 0 ||
	    get_string(root, "startUser", &t->start_user, path, err) < 0 ||
	    get_string(root, "startCwd", &t->start_cwd, path, err) < 0 ||
	    get_positive_int(root, "readyPort", 65535, &t->ready_port, path, err) < 0)
		goto out;
	if (!(t->name = strdup(name)) || !(t->dir = strdup(dir)))
		goto nomem;
	if (parse_aliases(root, t, path, err) < 0)
		goto out;
	json_t *layers = json_object_get(root, "layers");
	if (layers && !json_is_null(layers)) {
		if (parse_layers(layers, t, path, err) < 0)
			goto out;
		t->store_layers = true;
	} else {
		if (!(t->layers = calloc(2, sizeof *t->layers)) || asprintf(&t->layers[0], "%s/rootfs", dir) < 0) {
			if (t->layers)
				t->layers[0] = NULL;
			goto nomem;
		}
		t->n_layers = 1;
	}
	if (!(t->rootfs = strdup(t->layers[0])))
		goto nomem;
	for (size_t i = 0; i < t->n_layers; i++) {
		struct stat st;
		if (lstat(t->layers[i], &st) < 0) {
			cube_fail(err, 500, errno, "template '%s': %s", name, t->layers[i]);
			goto out;
		}
		if (!S_ISDIR(st.st_mode)) {
			cube_fail(err, 500, 0, "template '%s': %s is not a directory", name, t->layers[i]);
			goto out;
		}
	}
	*out = t;
	t = NULL;
	rc = 0;
	goto out;
nomem:
	cube_fail(err, 500, ENOMEM, "%s", path);
out:
	tpl_free(t);
	json_decref(root);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(struct tpl *const *)a)->name, (*(struct tpl *const *)b)->name);
}

int tpl_registry_load(const char *templates_dir, unsigned uid_base, unsigned uid_count, cube_err *err)
{
	cleanup_dir DIR *d = opendir(templates_dir);
	if (!d)
		return cube_fail(err, 500, errno, "templates directory %s", templates_dir);
	struct registry *r = calloc(1, sizeof *r);
	if (!r)
		return cube_fail(err, 500, ENOMEM, "template registry");
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char dir[PATH_MAX], manifest[PATH_MAX];
		snprintf(dir, sizeof dir, "%s/%s", templates_dir, de->d_name);
		snprintf(manifest, sizeof manifest, "%s/template.json", dir);
		struct stat st;
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		if (access(manifest, F_OK) < 0) {
			log_warn("templates: skipping %s (no template.json)", dir);
			continue;
		}
		struct tpl *t;
		cube_err terr = {0};
		if (tpl_load_one(dir, de->d_name, &t, &terr) < 0) {
			log_error("templates: skipping %s: %s", de->d_name, terr.msg);
			continue;
		}
		if (r->count == cap) {
			cap = cap ? cap * 2 : 8;
			struct tpl **items = realloc(r->items, cap * sizeof *items);
			if (!items) {
				tpl_free(t);
				cube_fail(err, 500, ENOMEM, "template registry");
				goto fail;
			}
			r->items = items;
		}
		if (!t->store_layers && tpl_rootfs_shift(dir, uid_base, uid_count, &terr) < 0) {
			log_error("templates: skipping '%s': %s", t->name, terr.msg);
			tpl_free(t);
			continue;
		}
		r->items[r->count++] = t;
	}
	if (r->count > 1)
		qsort(r->items, r->count, sizeof *r->items, by_name);
	if (r->count == 0)
		log_warn("templates: none found in %s", templates_dir);
	else
		log_info("templates: %zu loaded from %s", r->count, templates_dir);

	struct registry *old = __atomic_exchange_n(&current, r, __ATOMIC_ACQ_REL);
	if (old) {
		old->retired_next = retired;
		retired = old;
	}
	return 0;
fail:
	registry_free(r);
	return -1;
}

void tpl_registry_free(void)
{
	tpl_set_layer_store(NULL);
	registry_free(__atomic_exchange_n(&current, NULL, __ATOMIC_ACQ_REL));
	while (retired) {
		struct registry *next = retired->retired_next;
		registry_free(retired);
		retired = next;
	}
}

const struct tpl *tpl_find(const char *ref)
{
	struct registry *r = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
	if (!r || !ref)
		return NULL;
	size_t len = strcspn(ref, ":");
	for (size_t i = 0; i < r->count; i++) {
		const char *name = r->items[i]->name;
		if (strlen(name) == len && strncmp(name, ref, len) == 0)
			return r->items[i];
	}
	/* Aliases after all names, so an alias never shadows another template's name. */
	for (size_t i = 0; i < r->count; i++)
		for (char **a = r->items[i]->aliases; a && *a; a++)
			if (strlen(*a) == len && strncmp(*a, ref, len) == 0)
				return r->items[i];
	return NULL;
}

size_t tpl_count(void)
{
	struct registry *r = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
	return r ? r->count : 0;
}

const struct tpl *tpl_at(size_t i)
{
	struct registry *r = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
	return r && i < r->count ? r->items[i] : NULL;
}
