/* The one loop behind every "COMMAND ID..." that sends the same request for each id (cubebox destroy,
 * sandbox pause|resume, snapshot delete): one line per success, a JSON list of them with --json, and
 * the exit codes of cli.h (a refusal does not stop the others; an unreachable cubed does). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

int cli_each_id(const struct cli_ctx *ctx, const char *method, const char *path_fmt, const char *body,
		char *const *ids, int n, const char *done, const char *done_on_200)
{
	int rc = CLI_OK;
	json_t *changed = json_array();
	for (int i = 0; i < n; i++) {
		char *id = cli_url_encode(ids[i]);
		char path[512];
		snprintf(path, sizeof path, path_fmt, id ? id : "");
		free(id);
		struct cli_response resp;
		if (cli_request(ctx, method, path, body, &resp) == CLI_UNREACHABLE) {
			rc = CLI_UNREACHABLE;
			break;
		}
		if (cli_check_status(&resp) != 0) {
			rc = CLI_API_ERROR;
		} else {
			json_array_append_new(changed, json_string(ids[i]));
			if (!ctx->json)
				printf("%s %s\n", ids[i], resp.status == 200 && done_on_200 ? done_on_200 : done);
		}
		cli_response_free(&resp);
	}
	if (ctx->json) {
		json_t *out = json_pack("{s:O}", done, changed);
		cli_print_json(out);
		json_decref(out);
	}
	json_decref(changed);
	return rc;
}
