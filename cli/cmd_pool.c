/* Pre-warmed pool commands: `pool set TEMPLATE --min N --max N`, `pool get TEMPLATE`, `pool list`.
 * They use the admin routes /admin/pool (admin socket only); settings are persisted by cubed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void pool_usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli pool set TEMPLATE --min N --max N [--json]\n"
		"       cubemastercli pool get TEMPLATE [--json]\n"
		"       cubemastercli pool list [--json]\n"
		"Pre-warmed sandboxes per template (admin socket only). cubed keeps between MIN and MAX idle\n"
		"sandboxes booted, following the claim rate; max 0 turns the pool off for the template.\n");
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	return *s && !*end && v >= 0 ? v : -1;
}

static void print_rows(json_t *arr)
{
	size_t n = json_array_size(arr), ncols = 8;
	const char **cells = calloc((n + 1) * ncols, sizeof *cells);
	char(*nums)[7][24] = calloc(n ? n : 1, sizeof *nums);
	if (!cells || !nums) {
		free(cells);
		free(nums);
		return;
	}
	static const char *const head[] = {"TEMPLATE", "MIN", "MAX", "TARGET", "IDLE", "WARMING", "HITS", "MISSES"};
	static const char *const keys[] = {"min", "max", "target", "idle", "warming", "hits", "misses"};
	memcpy(cells, head, sizeof head);
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_array_get(arr, i);
		const char **row = cells + (i + 1) * ncols;
		row[0] = json_string_value(json_object_get(p, "templateID"));
		for (size_t k = 0; k < 7; k++) {
			snprintf(nums[i][k], sizeof nums[i][k], "%lld", (long long)json_integer_value(json_object_get(p, keys[k])));
			row[k + 1] = nums[i][k];
		}
	}
	cli_print_table(cells, n + 1, ncols);
	free(cells);
	free(nums);
}

static int show(const struct cli_ctx *ctx, struct cli_response *resp)
{
	int rc = cli_check_status(resp);
	if (rc == 0) {
		json_t *v = cli_response_json(resp);
		if (!v) {
			rc = CLI_API_ERROR;
		} else if (ctx->json) {
			cli_print_json(v);
		} else if (json_is_array(v)) {
			print_rows(v);
		} else {
			json_t *a = json_pack("[O]", v);
			print_rows(a);
			json_decref(a);
		}
		json_decref(v);
	}
	cli_response_free(resp);
	return rc;
}

int cmd_pool(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"min", required_argument, 0, 'm'}, {"max", required_argument, 0, 'M'},
		{"json", no_argument, 0, 'j'},      {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		pool_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	const char *sub = argv[1];
	long min = -1, max = -1;
	argc--;
	argv++;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if ((min = num(optarg)) < 0) {
				cli_err("pool: --min needs a non-negative integer");
				return CLI_UNREACHABLE;
			}
			break;
		case 'M':
			if ((max = num(optarg)) < 0) {
				cli_err("pool: --max needs a non-negative integer");
				return CLI_UNREACHABLE;
			}
			break;
		case 'j': ctx.json = 1; break;
		case 'h': pool_usage(stdout); return CLI_OK;
		default: pool_usage(stderr); return CLI_UNREACHABLE;
		}
	}
	int nargs = argc - optind;
	struct cli_response resp;
	int rc;
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0) {
		if (nargs) {
			cli_err("pool list: unexpected argument '%s'", argv[optind]);
			return CLI_UNREACHABLE;
		}
		if ((rc = cli_request(&ctx, "GET", "/admin/pool", NULL, &resp)))
			return rc;
		return show(&ctx, &resp);
	}
	if (strcmp(sub, "get") == 0) {
		if (nargs != 1) {
			cli_err("pool get: needs exactly one TEMPLATE");
			return CLI_UNREACHABLE;
		}
		char *enc = cli_url_encode(argv[optind]), path[512];
		snprintf(path, sizeof path, "/admin/pool?templateID=%s", enc ? enc : "");
		free(enc);
		if ((rc = cli_request(&ctx, "GET", path, NULL, &resp)))
			return rc;
		return show(&ctx, &resp);
	}
	if (strcmp(sub, "set") == 0) {
		if (nargs != 1 || max < 0) {
			cli_err("pool set: needs TEMPLATE and --max N (and optionally --min N, default 0)");
			return CLI_UNREACHABLE;
		}
		json_t *req = json_pack("{s:s,s:I,s:I}", "templateID", argv[optind], "min", (json_int_t)(min < 0 ? 0 : min),
					"max", (json_int_t)max);
		char *body = json_dumps(req, JSON_COMPACT);
		json_decref(req);
		rc = cli_request(&ctx, "PUT", "/admin/pool", body, &resp);
		free(body);
		if (rc)
			return rc;
		return show(&ctx, &resp);
	}
	cli_err("pool: unknown subcommand '%s' (set, get or list)", sub);
	return CLI_UNREACHABLE;
}
