/* Shared by the control-plane files (router, routes, JSON shapes). Not a public header. */
#ifndef CUBE_API_INTERNAL_H
#define CUBE_API_INTERNAL_H

#include <jansson.h>

#include "api/api.h"
#include "common/error.h"
#include "common/http_server.h"
#include "daemon/pool.h"
#include "daemon/sandboxes.h"

#define API_MAX_BODY_BYTES (1u << 20)

extern struct api_config api_cfg;

/* Route handler: id is the validated sandbox (or API key) id from the path, or NULL. */
typedef void (*api_route_fn)(http_req *req, const char *id);
/* Route handler that needs the request body (buffered, at most API_MAX_BODY_BYTES). */
typedef void (*api_body_fn)(http_req *req, const char *id, const char *body, size_t len);

/* Buffer the body, then call fn; answers 413/400 itself when the body is too large or broken. */
void api_with_body(http_req *req, const char *id, api_body_fn fn);

/* Responses. api_send_json takes ownership of body. */
void api_send_json(http_req *req, int status, json_t *body);
void api_send_json_with(http_req *req, int status, json_t *body, const http_header *extra, size_t n);
void api_send_no_content(http_req *req);
void api_send_err(http_req *req, const cube_err *err);

/* A RUNNING sandbox by id, or NULL after answering 404. */
struct sandbox *api_running_sandbox(http_req *req, const char *id);
/* Any sandbox in the table that is not being killed (running, paused, starting...); else 404 sent, NULL. */
struct sandbox *api_live_sandbox(http_req *req, const char *id);
void api_fail_not_found(http_req *req, const char *id);

/* JSON shapes of §1.21 (new references). */
json_t *api_sandbox_json(const struct sandbox *sb);         /* Sandbox */
json_t *api_listed_sandbox_json(const struct sandbox *sb);  /* ListedSandbox */
json_t *api_sandbox_detail_json(const struct sandbox *sb);  /* SandboxDetail */
json_t *api_time_json(long long epoch_ms);                   /* RFC 3339 string */

/* Auth: 1 if the request may proceed, else it has been answered (401/500). */
int api_authorize(http_req *req, int admin);

/* Route handlers, by facility. */
void api_create_v1(http_req *req, const char *id);
void api_create_v2(http_req *req, const char *id);
void api_get_sandbox(http_req *req, const char *id);
void api_kill_sandbox(http_req *req, const char *id);
void api_set_timeout(http_req *req, const char *id);
void api_refresh(http_req *req, const char *id);
void api_connect_v1(http_req *req, const char *id);
void api_connect_v2(http_req *req, const char *id);
void api_pause(http_req *req, const char *id);
void api_evict(http_req *req, const char *id);        /* POST /admin/sandboxes/{id}/evict (admin socket only) */
void api_resume(http_req *req, const char *id);
void api_snapshot_create(http_req *req, const char *id);
void api_snapshot_list(http_req *req, const char *id);
void api_sandbox_fork(http_req *req, const char *id);
void api_sandbox_rollback(http_req *req, const char *id);

void api_network_update(http_req *req, const char *id);
void api_network_get(http_req *req, const char *id);

void api_list_v1(http_req *req, const char *id);
void api_list_v2(http_req *req, const char *id);

void api_sandbox_metrics(http_req *req, const char *id);
void api_sandboxes_metrics(http_req *req, const char *id);
void api_metrics_forget(const char *sandbox_id);

void api_prometheus(http_req *req, const char *id);
void api_route_label(http_req *req, char *buf, size_t len);

void api_logs_v1(http_req *req, const char *id);
void api_logs_v2(http_req *req, const char *id);

void api_templates_list(http_req *req, const char *id);
void api_template_get(http_req *req, const char *id);
void api_template_alias(http_req *req, const char *id);
void api_template_delete(http_req *req, const char *id);
void api_template_job_create(http_req *req, const char *id);
void api_template_jobs(http_req *req, const char *id);
void api_template_job_get(http_req *req, const char *id);
void api_build_request(http_req *req, const char *id);
void api_build_file_link(http_req *req, const char *id);
void api_build_file_upload(http_req *req, const char *id);
void api_build_start(http_req *req, const char *id);
void api_build_status(http_req *req, const char *id);

void api_apikey_create(http_req *req, const char *id);
void api_apikey_list(http_req *req, const char *id);
void api_apikey_delete(http_req *req, const char *id);

void api_pool_get(http_req *req, const char *id);
void api_pool_put(http_req *req, const char *id);
void api_node_get(http_req *req, const char *id);      /* GET /admin/node (admin socket only) */

#endif
