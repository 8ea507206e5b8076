/* Pre-warmed pool per template: sandboxes fully booted (namespaces, overlay root, cgroups, network,
 * envd listening) and frozen while idle, handed out by sbx_create in place of a cold boot. Settings
 * (min, max) per template are persisted; a background refill keeps each pool at a target between min
 * and max that follows the claim rate, and only while admission has room. Loop thread only. */
#ifndef CUBE_DAEMON_POOL_H
#define CUBE_DAEMON_POOL_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "common/error.h"
#include "daemon/sandboxes.h"

struct tpl;

/* Load settings from the store and start the refill timer (after sbx_init). */
int pool_init(uv_loop_t *loop, cube_err *err);
/* Settings of one template; 404 for an unknown template, 400 when min > max or max is too large. */
int pool_set(const char *template_ref, unsigned min, unsigned max, cube_err *err);
/* {templateID, min, max, target, idle, warming, hits, misses, claimsPerMinute}; NULL + 404 if unknown. */
json_t *pool_get_json(const char *template_ref, cube_err *err);
/* Array of the above for every template with settings or pooled sandboxes. */
json_t *pool_list_json(void);
size_t pool_idle_total(void);
/* Hand a pooled sandbox of t to this create request, whose egress policy (merged with the template's)
 * is policy (borrowed for the call). Returns 1 when it took the request over (cb runs
 * later, possibly after falling back to a cold create), 0 when no pooled sandbox is idle (a miss). */
int pool_claim(const struct tpl *t, const struct sbx_create_req *req, const struct net_policy *policy,
	       sbx_create_cb cb, void *arg);
/* Destroy one idle pooled sandbox (of any template) to free a slot for a cold create; 1 if one went. */
int pool_evict_one(void);
/* Stop refilling and destroy idle pooled sandboxes (cubed exit: they are never adopted). */
void pool_shutdown(void);

#endif
