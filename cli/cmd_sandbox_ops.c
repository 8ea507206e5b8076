/* `sandbox SUBCOMMAND ID...`: operations on existing sandboxes. pause (POST /sandboxes/{id}/pause),
 * resume (POST /v2/sandboxes/{id}/connect, which resumes a paused sandbox and only extends a running one)
 * and evict (POST /admin/sandboxes/{id}/evict) are rows of the table below; `sandbox fork` (POST /sandboxes/{id}/fork) starts copies of one sandbox's
 * files; `sandbox rollback` (POST /sandboxes/{id}/rollback) restores a snapshot's files in place;
 * `sandbox network` is handed to cmd_network.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct op {
	const char *name, *done, *args, *summary;
	const char *path;             /* one %s: the sandbox id */
	const char *done_on_200;      /* what a 200 (instead of 201/204) means, if it differs */
	int takes_timeout;
};

static const struct op ops[] = {
	{"pause", "paused", "ID... [--to-disk]",
	 "freeze every process (memory and files kept, no CPU); --to-disk: save the files, end the processes",
	 "/sandboxes/%s/pause", NULL, 0},
	{"resume", "resumed", "ID... [--timeout SECONDS]",
	 "resume paused sandboxes (a running one only gets its timeout extended); timeout default 300",
	 "/v2/sandboxes/%s/connect", "was running; timeout extended", 1},
	{"evict", "evicted to disk", "ID...",
	 "move sandboxes paused in memory to disk now, as the eviction policy would (files kept)",
	 "/admin/sandboxes/%s/evict", NULL, 0},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: cubemastercli sandbox SUBCOMMAND ARGS [--json]\n\nSubcommands:\n");
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		fprintf(out, "  %-7s %-26s %s\n", ops[i].name, ops[i].args, ops[i].summary);
	fprintf(out, "  fork    ID [--count N] [--timeout SECONDS]  start N sandboxes from a snapshot of its files (N default 1)\n"
		     "  rollback ID SNAPSHOT_ID            restart the sandbox in place on the snapshot's files (same id;\n"
		     "                                     also --sandbox-id ID --snapshot-id SNAP, and top-level `rollback`)\n"
		     "  network get|set ID [...]           show or replace the egress policy (sandbox network --help)\n"
		     "Exit status 1 if any sandbox could not be changed (unknown id, already paused...).\n");
}

/* Parse a whole number in [lo, hi] or print why not. */
static int parse_num(const char *what, const char *text, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(text, &end, 10);
	if (*text == '\0' || *end || v < lo || v > hi) {
		cli_err("sandbox fork: invalid %s '%s' (%ld..%ld)", what, text, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int fork_sandbox(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"count", required_argument, 0, 'c'},
		{"timeout", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	long count = 1, timeout = -1;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx->json = 1; break;
		case 'c': if (parse_num("--count", optarg, 1, 100, &count) < 0) return CLI_UNREACHABLE; break;
		case 't': if (parse_num("--timeout", optarg, 1, 2147483647L, &timeout) < 0) return CLI_UNREACHABLE; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (argc - optind != 1) {
		usage(stderr);
		return CLI_UNREACHABLE;
	}
	char *id = cli_url_encode(argv[optind]), path[512], body[96];
	snprintf(path, sizeof path, "/sandboxes/%s/fork", id ? id : "");
	free(id);
	if (timeout >= 0)
		snprintf(body, sizeof body, "{\"count\":%ld,\"timeout\":%ld}", count, timeout);
	else
		snprintf(body, sizeof body, "{\"count\":%ld}", count);
	struct cli_response resp;
	int rc = cli_request(ctx, "POST", path, body, &resp);
	if (rc != 0)
		return rc;
	json_t *results = (rc = cli_check_status(&resp)) == 0 ? cli_response_json(&resp) : NULL;
	if (rc == 0 && !json_is_array(results)) {
		cli_err("fork: the answer is not a list of results");
		rc = CLI_API_ERROR;
	} else if (rc == 0 && ctx->json) {
		cli_print_json(results);
	} else if (rc == 0) {
		/* One line per fork, in order: the new sandbox id, or why that one failed. */
		size_t i;
		json_t *r;
		json_array_foreach(results, i, r) {
			json_t *sb = json_object_get(r, "sandbox"), *e = json_object_get(r, "error");
			if (sb) {
				printf("%s\n", json_string_value(json_object_get(sb, "sandboxID")));
			} else {
				cli_err("fork %zu: %lld: %s", i + 1, json_integer_value(json_object_get(e, "code")),
					json_string_value(json_object_get(e, "message")));
				rc = CLI_API_ERROR;
			}
		}
	}
	json_decref(results);
	cli_response_free(&resp);
	return rc;
}

/* `sandbox rollback ID SNAPSHOT_ID`, or the reference CLI's `rollback --sandbox-id ID --snapshot-id SNAP`
 * (either spelling under either command). */
static int rollback_sandbox(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
		{"sandbox-id", required_argument, 0, 's'}, {"snapshot-id", required_argument, 0, 'i'}, {0, 0, 0, 0},
	};
	const char *sandbox = NULL, *snapshot = NULL;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx->json = 1; break;
		case 's': sandbox = optarg; break;
		case 'i': snapshot = optarg; break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (!sandbox && optind < argc)
		sandbox = argv[optind++];
	if (!snapshot && optind < argc)
		snapshot = argv[optind++];
	if (!sandbox || !snapshot || optind != argc) {
		usage(stderr);
		return CLI_UNREACHABLE;
	}
	char *id = cli_url_encode(sandbox), path[512];
	snprintf(path, sizeof path, "/sandboxes/%s/rollback", id ? id : "");
	free(id);
	json_t *req = json_pack("{s:s}", "snapshotID", snapshot);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		cli_err("rollback: out of memory");
		return CLI_UNREACHABLE;
	}
	struct cli_response resp;
	int rc = cli_request(ctx, "POST", path, body, &resp);
	free(body);
	if (rc != 0)
		return rc;
	json_t *out = (rc = cli_check_status(&resp)) == 0 ? cli_response_json(&resp) : NULL;
	if (rc == 0 && ctx->json)
		cli_print_json(out);
	else if (rc == 0)
		printf("%s rolled back to %s\n", sandbox, snapshot);
	json_decref(out);
	cli_response_free(&resp);
	return rc;
}

int cmd_sandbox(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"timeout", required_argument, 0, 't'},
		{"to-disk", no_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	int to_disk = 0;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	if (strcmp(argv[1], "network") == 0)
		return cmd_sandbox_network(ctx_in, argc, argv);
	if (strcmp(argv[1], "fork") == 0)
		return fork_sandbox(&ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "rollback") == 0)
		return rollback_sandbox(&ctx, argc - 1, argv + 1);
	const struct op *op = NULL;
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(argv[1], ops[i].name) == 0)
			op = &ops[i];
	if (!op) {
		cli_err("sandbox: unknown subcommand '%s' (see cubemastercli sandbox --help)", argv[1]);
		return CLI_UNREACHABLE;
	}
	long timeout = -1;
	int c;
	optind = 0;
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx.json = 1; break;
		case 't': {
			char *end;
			timeout = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end || timeout < 0 || timeout > 2147483647L || !op->takes_timeout) {
				cli_err("sandbox %s: invalid --timeout '%s'", op->name, optarg);
				return CLI_UNREACHABLE;
			}
			break;
		}
		case 'd':
			if (strcmp(op->name, "pause") != 0) {
				cli_err("sandbox %s: --to-disk is an option of pause", op->name);
				return CLI_UNREACHABLE;
			}
			to_disk = 1;
			break;
		case 'h': usage(stdout); return CLI_OK;
		default: usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_UNREACHABLE;
	}
	char body[64] = "{}";
	if (timeout >= 0)
		snprintf(body, sizeof body, "{\"timeout\":%ld}", timeout);
	if (to_disk)
		snprintf(body, sizeof body, "{\"memory\":false}");
	return cli_each_id(&ctx, "POST", op->path, body, argv + optind, argc - optind, op->done, op->done_on_200);
}

/* The reference CLI's top-level `rollback` (the same as `sandbox rollback`). */
int cmd_rollback(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	struct cli_ctx ctx = *ctx_in;
	return rollback_sandbox(&ctx, argc, argv);
}
