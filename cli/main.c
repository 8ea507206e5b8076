/* cubemastercli: administration of a cubed node. Global flags choose how to reach cubed (admin unix
 * socket by default, or the TCP API with a key); the first word picks a command group from the table
 * below (as kvmtool and git do), and each group parses its own arguments and --help. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/cli.h"

struct command {
	const char *name;
	int (*run)(const struct cli_ctx *ctx, int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{"list", cmd_list, "list sandboxes (alias: ls)"},
	{"ls", cmd_list, NULL},
	{"info", cmd_info, "show one sandbox with its current metrics"},
	{"cubebox", cmd_cubebox, "cubebox destroy|rm ID...: kill sandboxes"},
	{"sandbox", cmd_sandbox, "sandbox pause|resume ID... | network get|set ID: pause, resume, egress policy"},
	{"apikey", cmd_apikey, "apikey create|list|delete: manage API keys (admin socket only)"},
	{"snapshot", cmd_snapshot, "snapshot create|list|info|delete: snapshots of sandboxes' files"},
	{"rollback", cmd_rollback, "rollback ID SNAPSHOT_ID: a sandbox back to a snapshot's files (= sandbox rollback)"},
	{"tpl", cmd_tpl, "tpl create-from-image|watch|list|info|delete: templates from OCI images"},
	{"pool", cmd_pool, "pool set|get|list: pre-warmed sandboxes per template (admin socket only)"},
	{"node", cmd_node, "node: version and CRIU checkpoint availability (admin socket only)"},
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli [GLOBAL OPTIONS] COMMAND [ARGS]\n"
		"Administer a cubed node (CubeSandbox).\n\n"
		"Commands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (commands[i].summary)
			fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
		"\nGlobal options:\n"
		"  --socket PATH    cubed's admin socket (default $CUBE_SOCKET or " CLI_DEFAULT_SOCKET ")\n"
		"  --api URL        use the TCP API instead, e.g. http://127.0.0.1:3000 (needs an API key)\n"
		"  --api-key KEY    API key for --api (default $E2B_API_KEY)\n"
		"  --json           print the API's JSON instead of tables\n"
		"  --help, --version\n\n"
		"Run 'cubemastercli COMMAND --help' for the options of a command.\n"
		"Exit status: 0 ok, 1 the API refused the request, 2 cubed unreachable or bad usage.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, 0, 's'}, {"api", required_argument, 0, 'a'},
		{"api-key", required_argument, 0, 'k'}, {"json", no_argument, 0, 'j'},
		{"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
		{0, 0, 0, 0},
	};
	struct cli_ctx ctx = {.socket = getenv("CUBE_SOCKET"), .api_key = getenv("E2B_API_KEY")};
	int c;
	/* '+': stop at the command word; what follows belongs to the command */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 's': ctx.socket = optarg; break;
		case 'a': ctx.api_url = optarg; break;
		case 'k': ctx.api_key = optarg; break;
		case 'j': ctx.json = 1; break;
		case 'h': usage(stdout); return CLI_OK;
		case 'V': printf("cubemastercli %s\n", CUBE_VERSION); return CLI_OK;
		default: usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (!ctx.socket || !*ctx.socket)
		ctx.socket = CLI_DEFAULT_SOCKET;
	if (ctx.api_url && (!ctx.api_key || !*ctx.api_key)) {
		cli_err("--api needs an API key: pass --api-key KEY or set E2B_API_KEY");
		return CLI_UNREACHABLE;
	}
	if (optind >= argc) {
		usage(stderr);
		return CLI_UNREACHABLE;
	}
	const char *name = argv[optind];
	if (strcmp(name, "help") == 0) {
		usage(stdout);
		return CLI_OK;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(commands[i].name, name) == 0) {
			curl_global_init(CURL_GLOBAL_DEFAULT);
			int rc = commands[i].run(&ctx, argc - optind, argv + optind);
			curl_global_cleanup();
			return rc;
		}
	}
	cli_err("unknown command '%s' (see cubemastercli --help)", name);
	return CLI_UNREACHABLE;
}
