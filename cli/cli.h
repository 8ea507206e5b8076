/* cubemastercli: shared pieces of the command files (cmd_*.c): how to reach cubed, the request helper,
 * output helpers. Each command group registers one entry in the table of cli/main.c. */
#ifndef CUBE_CLI_CLI_H
#define CUBE_CLI_CLI_H

#include <jansson.h>
#include <stddef.h>

#define CLI_DEFAULT_SOCKET "/var/lib/cubesandbox/cubed.sock"

/* Exit codes: 0 ok, 1 the API said no (or bad usage of a command), 2 cubed unreachable / usage error. */
enum { CLI_OK = 0, CLI_API_ERROR = 1, CLI_UNREACHABLE = 2 };

struct cli_ctx {
	const char *socket;   /* admin unix socket (default), or NULL when api_url is set */
	const char *api_url;  /* remote TCP API, e.g. http://127.0.0.1:3000 */
	const char *api_key;  /* X-API-Key for api_url */
	int json;             /* --json: raw API JSON for scripts */
};

struct cli_response {
	long status;
	char *body;           /* NUL-terminated, never NULL after success */
	size_t len;
	char *next_token;     /* X-Next-Token, or NULL */
};

/* Send one request. Returns 0 with any HTTP status in resp, or CLI_UNREACHABLE after printing
 * "cannot reach cubed at ...". body may be NULL. */
int cli_request(const struct cli_ctx *ctx, const char *method, const char *path, const char *body,
		struct cli_response *resp);
void cli_response_free(struct cli_response *resp);
/* Parse resp as JSON; on failure prints an error and returns NULL. */
json_t *cli_response_json(const struct cli_response *resp);
/* If status is not 2xx: print "cubemastercli: <status>: <message>" and return CLI_API_ERROR; else 0. */
int cli_check_status(const struct cli_response *resp);

/* Percent-encode everything but unreserved characters (like encodeURIComponent). Caller frees. */
char *cli_url_encode(const char *s);

/* For each of ids[0..n): METHOD path_fmt (its one %s is the URL-encoded id) with body (may be NULL).
 * Prints "<id> <done>" per success ("<id> <done_on_200>" when that is set and the answer is 200), or with
 * --json {"<done>": [ids...]}. Returns CLI_OK, CLI_API_ERROR if any was refused, CLI_UNREACHABLE. */
int cli_each_id(const struct cli_ctx *ctx, const char *method, const char *path_fmt, const char *body,
		char *const *ids, int n, const char *done, const char *done_on_200)
	__attribute__((format(printf, 3, 0)));

/* Print a JSON value (pretty) followed by a newline. */
void cli_print_json(json_t *v);
/* Print rows as aligned columns; cells[row * ncols + col], row 0 is the header. */
void cli_print_table(const char *const *cells, size_t nrows, size_t ncols);

/* "2026-11-22T07:51:38.025Z" -> "2026-11-22 07:51:38" (UTC) and relative "in 4m59s" / "expired". */
void cli_format_time(const char *rfc3339, char *out, size_t len);
void cli_format_until(const char *rfc3339, char *out, size_t len);

void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Command groups (cmd_*.c): argv[0] is the command name. */
int cmd_list(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_node(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_info(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_cubebox(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_sandbox(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_apikey(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_tpl(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_snapshot(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_rollback(const struct cli_ctx *ctx, int argc, char **argv);
/* `sandbox network ...` (cmd_network.c), reached through cmd_sandbox (cmd_sandbox_ops.c). */
int cmd_sandbox_network(const struct cli_ctx *ctx, int argc, char **argv);
int cmd_pool(const struct cli_ctx *ctx, int argc, char **argv);

#endif
