/* `sandbox SUBCOMMAND ID...`: operations on existing sandboxes. pause (POST /sandboxes/{id}/pause) and
 * resume (POST /v2/sandboxes/{id}/connect, which resumes a paused sandbox and only extends a running one)
 * are rows of the table below; `sandbox network` is handed to cmd_network.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

struct op {
	const char *name, *done, *args, *summary;
	int (*path)(const char *id, char *out, size_t len);
};

static int pause_path(const char *id, char *out, size_t len) { return snprintf(out, len, "/sandboxes/%s/pause", id); }
static int resume_path(const char *id, char *out, size_t len) { return snprintf(out, len, "/v2/sandboxes/%s/connect", id); }

static const struct op ops[] = {
	{"pause", "paused", "ID...", "freeze every process of the sandboxes (memory and files kept, no CPU)", pause_path},
	{"resume", "resumed", "ID... [--timeout SECONDS]",
	 "resume paused sandboxes (a running one only gets its timeout extended); timeout default 300", resume_path},
};

static void usage(FILE *out)
{
	fprintf(out, "Usage: cubemastercli sandbox SUBCOMMAND ARGS [--json]\n\nSubcommands:\n");
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		fprintf(out, "  %-7s %-26s %s\n", ops[i].name, ops[i].args, ops[i].summary);
	fprintf(out, "  network get|set ID [...]           show or replace the egress policy (sandbox network --help)\n"
		     "Exit status 1 if any sandbox could not be changed (unknown id, already paused...).\n");
}

int cmd_sandbox(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"timeout", required_argument, 0, 't'},
		{"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	if (strcmp(argv[1], "network") == 0)
		return cmd_sandbox_network(ctx_in, argc, argv);
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
			if (*optarg == '\0' || *end || timeout < 0 || timeout > 2147483647L || op->path != resume_path) {
				cli_err("sandbox %s: invalid --timeout '%s'", op->name, optarg);
				return CLI_UNREACHABLE;
			}
			break;
		}
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
	int rc = CLI_OK;
	json_t *changed = json_array();
	for (int i = optind; i < argc; i++) {
		char *id = cli_url_encode(argv[i]);
		char path[512];
		op->path(id ? id : "", path, sizeof path);
		free(id);
		struct cli_response resp;
		int r = cli_request(&ctx, "POST", path, body, &resp);
		if (r == CLI_UNREACHABLE) {
			rc = r;
			break;
		}
		if (cli_check_status(&resp) != 0) {
			rc = CLI_API_ERROR;
		} else {
			json_array_append_new(changed, json_string(argv[i]));
			if (!ctx.json)
				printf("%s %s\n", argv[i], resp.status == 200 && op->path == resume_path ?
				       "was running; timeout extended" : op->done);
		}
		cli_response_free(&resp);
	}
	if (ctx.json) {
		json_t *out = json_pack("{s:O}", op->done, changed);
		cli_print_json(out);
		json_decref(out);
	}
	json_decref(changed);
	return rc;
}
