/* API key commands: `apikey create --name N`, `apikey list`, `apikey delete ID`. They use the admin
 * routes, which exist only on cubed's admin unix socket. A key is shown once, at creation. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void apikey_usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli apikey create --name NAME [--json]\n"
		"       cubemastercli apikey list [--json]\n"
		"       cubemastercli apikey delete ID\n"
		"Manage the API keys that clients send as X-API-Key (admin socket only).\n"
		"create prints the key once; only its SHA-256 is stored. --json prints {\"id\",\"name\",\"key\"}.\n");
}

static int create(const struct cli_ctx *ctx, const char *name)
{
	json_t *req = json_pack("{s:s}", "name", name);
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct cli_response resp;
	int rc = cli_request(ctx, "POST", "/admin/apikeys", body, &resp);
	free(body);
	if (rc)
		return rc;
	if ((rc = cli_check_status(&resp)) == 0) {
		json_t *k = cli_response_json(&resp);
		if (!k) {
			rc = CLI_API_ERROR;
		} else if (ctx->json) {
			cli_print_json(k);
		} else {
			printf("Created API key %s (%s):\n\n    %s\n\nStore it now: it cannot be shown again.\n",
			       json_string_value(json_object_get(k, "id")), json_string_value(json_object_get(k, "name")),
			       json_string_value(json_object_get(k, "key")));
		}
		json_decref(k);
	}
	cli_response_free(&resp);
	return rc;
}

static int list(const struct cli_ctx *ctx)
{
	struct cli_response resp;
	int rc = cli_request(ctx, "GET", "/admin/apikeys", NULL, &resp);
	if (rc)
		return rc;
	if ((rc = cli_check_status(&resp)) == 0) {
		json_t *keys = cli_response_json(&resp);
		if (!json_is_array(keys)) {
			rc = CLI_API_ERROR;
		} else if (ctx->json) {
			cli_print_json(keys);
		} else {
			size_t n = json_array_size(keys), ncols = 5;
			const char **cells = calloc((n + 1) * ncols, sizeof *cells);
			char(*times)[2][64] = calloc(n ? n : 1, sizeof *times);
			if (cells && times) {
				static const char *const head[] = {"ID", "NAME", "PREFIX", "CREATED", "LAST USED"};
				memcpy(cells, head, sizeof head);
				for (size_t i = 0; i < n; i++) {
					json_t *k = json_array_get(keys, i);
					const char **row = cells + (i + 1) * ncols;
					const char *last = json_string_value(json_object_get(k, "lastUsedAt"));
					cli_format_time(json_string_value(json_object_get(k, "createdAt")), times[i][0], 64);
					if (last)
						cli_format_time(last, times[i][1], 64);
					else
						snprintf(times[i][1], 64, "never");
					row[0] = json_string_value(json_object_get(k, "id"));
					row[1] = json_string_value(json_object_get(k, "name"));
					row[2] = json_string_value(json_object_get(k, "prefix"));
					row[3] = times[i][0];
					row[4] = times[i][1];
				}
				cli_print_table(cells, n + 1, ncols);
			}
			free(cells);
			free(times);
		}
		json_decref(keys);
	}
	cli_response_free(&resp);
	return rc;
}

static int delete(const struct cli_ctx *ctx, const char *id)
{
	char *enc = cli_url_encode(id);
	char path[512];
	snprintf(path, sizeof path, "/admin/apikeys/%s", enc ? enc : "");
	free(enc);
	struct cli_response resp;
	int rc = cli_request(ctx, "DELETE", path, NULL, &resp);
	if (rc)
		return rc;
	if ((rc = cli_check_status(&resp)) == 0 && !ctx->json)
		printf("API key %s deleted\n", id);
	cli_response_free(&resp);
	return rc;
}

int cmd_apikey(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"name", required_argument, 0, 'n'}, {"json", no_argument, 0, 'j'},
		{"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		apikey_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	const char *sub = argv[1], *name = NULL;
	argc--;
	argv++;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': name = optarg; break;
		case 'j': ctx.json = 1; break;
		case 'h': apikey_usage(stdout); return CLI_OK;
		default: apikey_usage(stderr); return CLI_UNREACHABLE;
		}
	}
	int nargs = argc - optind;
	if (strcmp(sub, "create") == 0) {
		if (!name || !*name || nargs) {
			cli_err("apikey create: needs --name NAME");
			return CLI_UNREACHABLE;
		}
		return create(&ctx, name);
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0) {
		if (nargs) {
			cli_err("apikey list: unexpected argument '%s'", argv[optind]);
			return CLI_UNREACHABLE;
		}
		return list(&ctx);
	}
	if (strcmp(sub, "delete") == 0 || strcmp(sub, "rm") == 0) {
		if (nargs != 1) {
			cli_err("apikey delete: needs exactly one key ID (see 'apikey list')");
			return CLI_UNREACHABLE;
		}
		return delete(&ctx, argv[optind]);
	}
	cli_err("apikey: unknown subcommand '%s' (create, list or delete)", sub);
	return CLI_UNREACHABLE;
}
