/* The template registry: the templates cubed can start sandboxes from, read from
 * <templates-dir>/<name>/{template.json,rootfs/} at start-up. A template is a stack of read-only layers:
 * either its own rootfs/ (uid-shifted for the sandbox uid range while loading), or the "layers" its
 * template.json names in the shared layer store (shifted when they were unpacked). Read-only after load,
 * so lookups need no lock. */
#ifndef CUBE_IMAGE_TEMPLATE_H
#define CUBE_IMAGE_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/error.h"

struct tpl {
	char *name;         /* directory name == "name" in template.json */
	char *dir;          /* <templates-dir>/<name> */
	char *rootfs;       /* the topmost layer: <templates-dir>/<name>/rootfs, or layers[0] */
	char **layers;      /* absolute layer dirs, topmost first: {rootfs}, or "layers" in the store */
	size_t n_layers;
	bool store_layers;  /* layers come from the layer store (already shifted), not the template's rootfs/ */
	char **aliases;     /* "aliases": other names tpl_find() resolves; NULL-terminated, never NULL */
	int cpu_count;      /* cpuCount */
	int cpu_millis;     /* cpuMillis: the CPU limit in millicores; default cpuCount * 1000 */
	int memory_mb;      /* memoryMB */
	int disk_mb;        /* diskSizeMB: the writable layer's size limit */
	json_t *envs;       /* envs: object of string values, never NULL; owned by the registry */
	char *start_cmd;    /* startCmd, NULL when the template has none: envd runs it at boot */
	char *start_user;   /* startUser (NULL = envd's default user) */
	char *start_cwd;    /* startCwd (NULL = the user's home) */
	int ready_port;     /* readyPort: a create returns once this port accepts (0 = don't wait) */
	json_t *allow_internet; /* allowInternetAccess: the default egress policy (net/policy.h), NULL = unset */
	json_t *network;    /* network {allowOut, denyOut, rules}: merged under each create's (validated) */
};

/* Where "layers" entries of template.json are resolved: "sha256/<hex>" names <dir>/sha256/<hex>/rootfs.
 * Call before loading; a template with layers fails to load while no store is set. */
void tpl_set_layer_store(const char *dir);

/* Scan templates_dir and shift each rootfs to [uid_base, uid_base+uid_count). Entries whose name starts
 * with '.' and directories without template.json are skipped (with a warning); a template that does not
 * load (invalid template.json, missing rootfs) is skipped with an error naming it and why, so one bad
 * template never takes the others (or cubed's start) down. Fails only when templates_dir cannot be read.
 * Replaces any previous registry; entries returned before stay valid until tpl_registry_free(). */
int tpl_registry_load(const char *templates_dir, unsigned uid_base, unsigned uid_count, cube_err *err);
void tpl_registry_free(void);

/* Look up "name", an alias, or either with ":tag" (the tag is ignored: each template has one version).
 * NULL if unknown. */
const struct tpl *tpl_find(const char *ref);

/* Iterate in name order: for (size_t i = 0; i < tpl_count(); i++) use tpl_at(i). */
size_t tpl_count(void);
const struct tpl *tpl_at(size_t i);

/* Parse and validate <dir>/template.json for the template called name (no registry involved).
 * On success *out is a new entry to release with tpl_free(). Errors have status 500 and name the file. */
int tpl_load_one(const char *dir, const char *name, struct tpl **out, cube_err *err);
void tpl_free(struct tpl *t);

#endif
