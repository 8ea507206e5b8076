/* cubemastercli node: what this cubed node is and can do (GET /admin/node, admin socket only): its
 * version, whether evictions to disk checkpoint processes with CRIU (or why not), and its eviction policy. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void node_usage(FILE *out)
{
	fprintf(out, "Usage: cubemastercli node [--json]\n"
		     "Show the node's version, whether CRIU process checkpoints are available (and why not), and\n"
		     "when paused sandboxes are evicted to disk.\n");
}

int cmd_node(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	struct cli_ctx ctx = *ctx_in;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			ctx.json = 1;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			node_usage(stdout);
			return CLI_OK;
		} else {
			cli_err("node: unexpected argument '%s'", argv[i]);
			node_usage(stderr);
			return CLI_UNREACHABLE;
		}
	}
	struct cli_response resp;
	int rc = cli_request(&ctx, "GET", "/admin/node", NULL, &resp);
	if (rc)
		return rc;
	if ((rc = cli_check_status(&resp))) {
		cli_response_free(&resp);
		return rc;
	}
	json_t *j = cli_response_json(&resp);
	cli_response_free(&resp);
	if (!j)
		return CLI_API_ERROR;
	if (ctx.json) {
		cli_print_json(j);
	} else {
		json_t *c = json_object_get(j, "criu");
		const char *path = json_string_value(json_object_get(c, "path"));
		const char *version = json_string_value(json_object_get(c, "version"));
		printf("version  %s\n", json_string_value(json_object_get(j, "version")) ?: "?");
		if (json_is_true(json_object_get(c, "available")))
			printf("criu     available (%s%s%s): evictions to disk checkpoint processes\n", path ?: "?",
			       version ? " " : "", version ?: "");
		else
			printf("criu     unavailable: %s\n", json_string_value(json_object_get(c, "reason")) ?: "?");
		json_t *e = json_object_get(j, "eviction");
		long long idle = json_integer_value(json_object_get(e, "idleSeconds"));
		long long low = json_integer_value(json_object_get(e, "hostBelowMB"));
		long long pct = json_integer_value(json_object_get(e, "capPercent"));
		printf("eviction paused sandboxes move to disk: ");
		if (idle)
			printf("after %lld s paused; ", idle);
		else
			printf("never for idleness; ");
		if (low)
			printf("while MemAvailable < %lld MiB; ", low);
		if (pct)
			printf("while sandboxes use %lld%% of their cap; ", pct);
		printf("when the node is full\n");
	}
	json_decref(j);
	return CLI_OK;
}
