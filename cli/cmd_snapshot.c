/* `snapshot create|list|info|delete`: POST /sandboxes/{id}/snapshots, GET /snapshots (all pages; info
 * picks one by id or name), DELETE /templates/{id}. A snapshot is a template: `Sandbox.create(snapshotID)` starts from it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli snapshot create SANDBOX_ID [--name NAME] [--json]\n"
		"       cubemastercli snapshot list|ls [--sandbox SANDBOX_ID] [--json]\n"
		"       cubemastercli snapshot info|describe SNAPSHOT_ID|NAME [--json]\n"
		"       cubemastercli snapshot delete SNAPSHOT_ID... [--json]\n"
		"Snapshot a sandbox's files (it is frozen while they are copied), list or delete snapshots.\n"
		"The reference CLI's flags work too: --sandbox-id ID (create, list), --display-name NAME (create),\n"
		"--snapshot-id ID (info, delete).\n");
}

static int create(struct cli_ctx *ctx, const char *sandbox, const char *name)
{
	char *id = cli_url_encode(sandbox);
	char path[512];
	snprintf(path, sizeof path, "/sandboxes/%s/snapshots", id ? id : "");
	free(id);
	json_t *body = name ? json_pack("{s:s}", "name", name) : json_object();
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct cli_response resp;
	int rc = cli_request(ctx, "POST", path, text, &resp);
	free(text);
	if (rc != 0)
		return rc;
	if ((rc = cli_check_status(&resp)) == 0) {
		json_t *j = cli_response_json(&resp);
		if (!j)
			rc = CLI_API_ERROR;
		else if (ctx->json)
			cli_print_json(j);
		else
			printf("%s\n", json_string_value(json_object_get(j, "snapshotID")));
		json_decref(j);
	}
	cli_response_free(&resp);
	return rc;
}

/* Every snapshot (of one sandbox, or all) into *out, following X-Next-Token. */
static int fetch_all(struct cli_ctx *ctx, const char *sandbox, json_t **out)
{
	json_t *all = json_array();
	char *token = NULL;
	int rc = 0;
	do {
		char path[1024];
		char *sid = sandbox ? cli_url_encode(sandbox) : NULL, *tok = token ? cli_url_encode(token) : NULL;
		snprintf(path, sizeof path, "/snapshots?limit=100%s%s%s%s", sid ? "&sandboxID=" : "", sid ? sid : "",
			 tok ? "&nextToken=" : "", tok ? tok : "");
		free(sid);
		free(tok);
		free(token);
		token = NULL;
		struct cli_response resp;
		if ((rc = cli_request(ctx, "GET", path, NULL, &resp)) != 0)
			break;
		json_t *page = (rc = cli_check_status(&resp)) == 0 ? cli_response_json(&resp) : NULL;
		if (page)
			json_array_extend(all, page);
		else
			rc = rc ? rc : CLI_API_ERROR;
		json_decref(page);
		if (rc == 0 && resp.next_token && *resp.next_token)
			token = strdup(resp.next_token);
		cli_response_free(&resp);
	} while (rc == 0 && token);
	free(token);
	*out = all;
	return rc;
}

static int list(struct cli_ctx *ctx, const char *sandbox)
{
	json_t *all;
	int rc = fetch_all(ctx, sandbox, &all);
	if (rc == 0 && ctx->json) {
		cli_print_json(all);
	} else if (rc == 0) {
		size_t n = json_array_size(all);
		const char **cells = calloc((n + 1) * 4, sizeof *cells);
		char(*names)[256] = calloc(n ? n : 1, sizeof *names);
		if (!cells || !names) {
			rc = CLI_API_ERROR;
		} else {
			static const char *const head[] = {"SNAPSHOT ID", "NAMES", "SANDBOX", "CREATED"};
			memcpy(cells, head, sizeof head);
			for (size_t i = 0; i < n; i++) {
				json_t *s = json_array_get(all, i), *nm = json_object_get(s, "names"), *v;
				size_t k;
				json_array_foreach(nm, k, v) {
					size_t o = strlen(names[i]);
					snprintf(names[i] + o, sizeof names[i] - o, "%s%s", k ? "," : "", json_string_value(v));
				}
				const char **row = cells + (i + 1) * 4;
				row[0] = json_string_value(json_object_get(s, "snapshotID"));
				row[1] = names[i][0] ? names[i] : "-";
				row[2] = json_string_value(json_object_get(s, "sandboxID"));
				row[3] = json_string_value(json_object_get(s, "createdAt"));
			}
			cli_print_table(cells, n + 1, 4);
		}
		free(cells);
		free(names);
	}
	json_decref(all);
	return rc;
}

static int matches(json_t *snap, const char *ref)
{
	const char *id = json_string_value(json_object_get(snap, "snapshotID"));
	if (id && strcmp(id, ref) == 0)
		return 1;
	size_t k;
	json_t *v;
	json_array_foreach(json_object_get(snap, "names"), k, v) {
		const char *nm = json_string_value(v);
		if (nm && strcmp(nm, ref) == 0)
			return 1;
	}
	return 0;
}

static int info(struct cli_ctx *ctx, const char *ref)
{
	json_t *all, *found = NULL, *s;
	int rc = fetch_all(ctx, NULL, &all);
	size_t i;
	json_array_foreach(all, i, s) {
		if (!found && matches(s, ref))
			found = s;
	}
	if (rc == 0 && !found) {
		cli_err("404: snapshot '%s' not found", ref);
		rc = CLI_API_ERROR;
	} else if (rc == 0 && ctx->json) {
		cli_print_json(found);
	} else if (rc == 0) {
		const char *key;
		json_t *v;
		json_object_foreach(found, key, v) {
			char *text = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
			printf("%-12s %s\n", key, text ? text : json_string_value(v));
			free(text);
		}
	}
	json_decref(all);
	return rc;
}

static int delete(struct cli_ctx *ctx, int argc, char **argv)
{
	return cli_each_id(ctx, "DELETE", "/templates/%s", NULL, argv, argc, "deleted", NULL);
}

int cmd_snapshot(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"name", required_argument, 0, 'n'},
		{"sandbox", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
		/* the reference CLI's spellings of the same */
		{"display-name", required_argument, 0, 'n'}, {"sandbox-id", required_argument, 0, 's'},
		{"snapshot-id", required_argument, 0, 'i'}, {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	const char *sub = argv[1], *name = NULL, *sandbox = NULL;
	char *snapshot = NULL;
	int c;
	optind = 0;
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx.json = 1; break;
		case 'n': name = optarg; break;
		case 's': sandbox = optarg; break;
		case 'i': snapshot = optarg; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_UNREACHABLE;
		}
	}
	int rest = argc - optind;
	/* The subject is a positional argument or its --*-id flag, never both. */
	if (strcmp(sub, "create") == 0 && (rest == 1) != (sandbox != NULL) && !snapshot)
		return create(&ctx, sandbox ? sandbox : argv[optind], name);
	if ((strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0) && rest == 0 && !name && !snapshot)
		return list(&ctx, sandbox);
	if ((strcmp(sub, "info") == 0 || strcmp(sub, "describe") == 0) && (rest == 1) != (snapshot != NULL) &&
	    !name && !sandbox)
		return info(&ctx, snapshot ? snapshot : argv[optind]);
	if (strcmp(sub, "delete") == 0 && (rest >= 1) != (snapshot != NULL) && !name && !sandbox)
		return snapshot ? delete(&ctx, 1, &snapshot) : delete(&ctx, rest, argv + optind);
	usage(stderr);
	return CLI_UNREACHABLE;
}
