/* `sandbox network get ID` (GET /sandboxes/{id}/network) and `sandbox network set ID [flags]`
 * (PUT /sandboxes/{id}/network: the flags form the whole new policy, as E2B's update replaces it). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli sandbox network get ID [--json]\n"
		"       cubemastercli sandbox network set ID [--no-internet] [--allow-out X]... [--deny-out CIDR]...\n"
		"Show or replace a running sandbox's egress policy. `set` replaces the whole policy: what is not\n"
		"given is cleared. X is an IPv4 address, a CIDR, a domain or *.domain; allowOut wins over denyOut.\n"
		"  --no-internet       allow_internet_access=false (only --allow-out destinations)\n"
		"  --allow-out X       repeatable\n"
		"  --deny-out CIDR     repeatable\n");
}

static void print_list(const char *label, json_t *arr)
{
	printf("%-17s", label);
	size_t i;
	json_t *v;
	if (!json_array_size(arr))
		printf("-");
	json_array_foreach(arr, i, v)
		printf("%s%s", i ? ", " : "", json_string_value(v));
	printf("\n");
}

static int net_get(const struct cli_ctx *ctx, const char *path)
{
	struct cli_response resp;
	int rc = cli_request(ctx, "GET", path, NULL, &resp);
	if (rc != 0)
		return rc;
	if ((rc = cli_check_status(&resp)) == 0) {
		json_t *o = cli_response_json(&resp);
		if (!o) {
			rc = CLI_API_ERROR;
		} else if (ctx->json) {
			cli_print_json(o);
		} else {
			printf("%-17s%s\n", "address", json_string_value(json_object_get(o, "address")));
			printf("%-17s%s\n", "gateway/dns", json_string_value(json_object_get(o, "gateway")));
			printf("%-17s%s\n", "host link", json_string_value(json_object_get(o, "link")));
			printf("%-17s%s\n", "internet", json_is_true(json_object_get(o, "allow_internet_access")) ? "yes" : "no");
			print_list("allow out", json_object_get(o, "allowOut"));
			print_list("deny out", json_object_get(o, "denyOut"));
			printf("%-17s%s\n", "public traffic",
			       json_is_true(json_object_get(o, "allowPublicTraffic")) ? "yes" : "token required");
			printf("%-17s%lld of %lld\n", "learned (DNS)",
			       (long long)json_integer_value(json_object_get(o, "learnedAddresses")),
			       (long long)json_integer_value(json_object_get(o, "learnedLimit")));
		}
		json_decref(o);
	}
	cli_response_free(&resp);
	return rc;
}

static int net_set(const struct cli_ctx *ctx, const char *path, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"no-internet", no_argument, 0, 'n'}, {"allow-out", required_argument, 0, 'a'},
		{"deny-out", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	json_t *body = json_pack("{s:[],s:[]}", "allowOut", "denyOut");
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n': json_object_set_new(body, "allow_internet_access", json_false()); break;
		case 'a': json_array_append_new(json_object_get(body, "allowOut"), json_string(optarg)); break;
		case 'd': json_array_append_new(json_object_get(body, "denyOut"), json_string(optarg)); break;
		case 'h': usage(stdout); json_decref(body); return CLI_OK;
		default: usage(stderr); json_decref(body); return CLI_UNREACHABLE;
		}
	}
	if (optind < argc) {
		cli_err("sandbox network set: unexpected argument '%s'", argv[optind]);
		json_decref(body);
		return CLI_UNREACHABLE;
	}
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	struct cli_response resp;
	int rc = cli_request(ctx, "PUT", path, text, &resp);
	free(text);
	if (rc != 0)
		return rc;
	rc = cli_check_status(&resp);
	cli_response_free(&resp);
	if (rc == 0 && !ctx->json)
		printf("network policy replaced\n");
	return rc;
}

int cmd_sandbox_network(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	struct cli_ctx ctx = *ctx_in;
	/* argv: sandbox network get|set ID [flags]; --json may follow anywhere */
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			ctx.json = 1;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return CLI_OK;
	}
	if (argc < 4 || strcmp(argv[1], "network") != 0 || (strcmp(argv[2], "get") && strcmp(argv[2], "set"))) {
		usage(stderr);
		return CLI_UNREACHABLE;
	}
	char *id = cli_url_encode(argv[3]);
	char path[512];
	snprintf(path, sizeof path, "/sandboxes/%s/network", id ? id : "");
	free(id);
	if (!strcmp(argv[2], "get")) {
		if (argc > 4) {
			cli_err("sandbox network get: unexpected argument '%s'", argv[4]);
			return CLI_UNREACHABLE;
		}
		return net_get(&ctx, path);
	}
	return net_set(&ctx, path, argc - 3, argv + 3);
}
