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
	const char *path;             /* one %s: the sandbox id */
	const char *done_on_200;      /* what a 200 (instead of 201/204) means, if it differs */
	int takes_timeout;
};

static const struct op ops[] = {
	{"pause", "paused", "ID...", "freeze every process of the sandboxes (memory and files kept, no CPU)",
	 "/sandboxes/%s/pause", NULL, 0},
	{"resume", "resumed", "ID... [--timeout SECONDS]",
	 "resume paused sandboxes (a running one only gets its timeout extended); timeout default 300",
	 "/v2/sandboxes/%s/connect", "was running; timeout extended", 1},
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
			if (*optarg == '\0' || *end || timeout < 0 || timeout > 2147483647L || !op->takes_timeout) {
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
	return cli_each_id(&ctx, "POST", op->path, body, argv + optind, argc - optind, op->done, op->done_on_200);
}
