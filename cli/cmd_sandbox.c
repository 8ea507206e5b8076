/* Sandbox commands: `list` (all pages of GET /v2/sandboxes, with metadata and state filters), `info ID`
 * (GET /sandboxes/{id} plus its current metrics) and `cubebox destroy|rm ID...` (DELETE each). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

/* ---- list ---- */

static void list_usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli list [--metadata KEY=VALUE]... [--state running|paused] [--json]\n"
		"List sandboxes, newest first. Several --metadata filters must all match.\n");
}

/* The metadata query value exactly as the E2B SDK encodes it (§1.9): each key and value
 * URI-encoded, the pairs form-encoded, and the whole string encoded once more for the URL. */
static char *metadata_param(char **pairs, int n)
{
	size_t cap = 1;
	for (int i = 0; i < n; i++)
		cap += 3 * strlen(pairs[i]) + 2;
	char *inner = calloc(1, cap);
	if (!inner)
		return NULL;
	for (int i = 0; i < n; i++) {
		char *eq = strchr(pairs[i], '=');
		*eq = '\0';
		char *k = cli_url_encode(pairs[i]), *v = cli_url_encode(eq + 1);
		*eq = '=';
		if (i)
			strcat(inner, "&");
		strcat(inner, k ? k : "");
		strcat(inner, "=");
		strcat(inner, v ? v : "");
		free(k);
		free(v);
	}
	char *once = cli_url_encode(inner);
	char *twice = once ? cli_url_encode(once) : NULL;
	free(inner);
	free(once);
	return twice;
}

static void metadata_text(json_t *meta, char *out, size_t len)
{
	const char *k;
	json_t *v;
	size_t o = 0;
	out[0] = '\0';
	json_object_foreach(meta, k, v) {
		int n = snprintf(out + o, len - o, "%s%s=%s", o ? "," : "", k, json_string_value(v) ? json_string_value(v) : "");
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
}

/* "paused (memory)" or "paused (disk)": they resume differently (thaw, or a boot from the files). */
static const char *state_text(json_t *s)
{
	const char *state = json_string_value(json_object_get(s, "state"));
	const char *to = json_string_value(json_object_get(s, "pausedTo"));
	if (state && !strcmp(state, "paused") && to)
		return !strcmp(to, "disk") ? "paused (disk)" : "paused (memory)";
	return state;
}

static int print_sandbox_table(json_t *all)
{
	size_t n = json_array_size(all), ncols = 8;
	const char **cells = calloc((n + 1) * ncols, sizeof *cells);
	char(*text)[4][512] = calloc(n ? n : 1, sizeof *text);
	if (!cells || !text) {
		free(cells);
		free(text);
		return CLI_API_ERROR;
	}
	static const char *const head[] = {"SANDBOX ID", "TEMPLATE", "STATE", "STARTED", "EXPIRES", "CPU", "MEM(MB)", "METADATA"};
	memcpy(cells, head, sizeof head);
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(all, i);
		const char **row = cells + (i + 1) * ncols;
		cli_format_time(json_string_value(json_object_get(s, "startedAt")), text[i][0], sizeof text[i][0]);
		if (json_object_get(s, "pausedTo")) /* a paused sandbox does not expire */
			snprintf(text[i][1], sizeof text[i][1], "-");
		else
			cli_format_until(json_string_value(json_object_get(s, "endAt")), text[i][1], sizeof text[i][1]);
		snprintf(text[i][2], 32, "%lld", (long long)json_integer_value(json_object_get(s, "cpuCount")));
		snprintf(text[i][2] + 32, 32, "%lld", (long long)json_integer_value(json_object_get(s, "memoryMB")));
		metadata_text(json_object_get(s, "metadata"), text[i][3], sizeof text[i][3]);
		row[0] = json_string_value(json_object_get(s, "sandboxID"));
		row[1] = json_string_value(json_object_get(s, "templateID"));
		row[2] = state_text(s);
		row[3] = text[i][0];
		row[4] = text[i][1];
		row[5] = text[i][2];
		row[6] = text[i][2] + 32;
		row[7] = text[i][3][0] ? text[i][3] : "-";
	}
	cli_print_table(cells, n + 1, ncols);
	free(cells);
	free(text);
	return CLI_OK;
}

int cmd_list(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"metadata", required_argument, 0, 'm'}, {"state", required_argument, 0, 's'},
		{"json", no_argument, 0, 'j'},           {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	char *pairs[64];
	int npairs = 0;
	const char *state = NULL;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!strchr(optarg, '=') || optarg[0] == '=') {
				cli_err("list: --metadata wants KEY=VALUE, got '%s'", optarg);
				return CLI_UNREACHABLE;
			}
			if (npairs < 64)
				pairs[npairs++] = optarg;
			break;
		case 's': state = optarg; break;
		case 'j': ctx.json = 1; break;
		case 'h': list_usage(stdout); return CLI_OK;
		default: list_usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (optind < argc) {
		cli_err("list: unexpected argument '%s'", argv[optind]);
		return CLI_UNREACHABLE;
	}
	char *meta = npairs ? metadata_param(pairs, npairs) : NULL;
	char *state_enc = state ? cli_url_encode(state) : NULL;
	json_t *all = json_array();
	char *token = NULL;
	int rc = CLI_OK;
	for (int page = 0; page < 10000; page++) {
		char path[8192];
		int n = snprintf(path, sizeof path, "/v2/sandboxes?limit=100");
		if (meta)
			n += snprintf(path + n, sizeof path - (size_t)n, "&metadata=%s", meta);
		if (state_enc)
			n += snprintf(path + n, sizeof path - (size_t)n, "&state=%s", state_enc);
		if (token) {
			char *t = cli_url_encode(token);
			snprintf(path + n, sizeof path - (size_t)n, "&nextToken=%s", t ? t : "");
			free(t);
		}
		struct cli_response resp;
		if ((rc = cli_request(&ctx, "GET", path, NULL, &resp)) != 0)
			break;
		if ((rc = cli_check_status(&resp)) != 0) {
			cli_response_free(&resp);
			break;
		}
		json_t *items = cli_response_json(&resp);
		if (!json_is_array(items)) {
			json_decref(items);
			cli_response_free(&resp);
			rc = CLI_API_ERROR;
			break;
		}
		json_array_extend(all, items);
		json_decref(items);
		free(token);
		token = resp.next_token ? strdup(resp.next_token) : NULL;
		cli_response_free(&resp);
		if (!token)
			break;
	}
	free(token);
	free(meta);
	free(state_enc);
	if (rc == CLI_OK) {
		if (ctx.json)
			cli_print_json(all);
		else
			rc = print_sandbox_table(all);
	}
	json_decref(all);
	return rc;
}

/* ---- info ---- */

static void info_usage(FILE *out)
{
	fprintf(out, "Usage: cubemastercli info ID [--json]\nShow a sandbox and its current resource use.\n");
}

static void print_field(const char *name, const char *value)
{
	printf("%-14s %s\n", name, value && *value ? value : "-");
}

int cmd_info(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx.json = 1; break;
		case 'h': info_usage(stdout); return CLI_OK;
		default: info_usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (argc - optind != 1) {
		info_usage(stderr);
		return CLI_UNREACHABLE;
	}
	char *id = cli_url_encode(argv[optind]);
	char path[512];
	snprintf(path, sizeof path, "/sandboxes/%s", id ? id : "");
	struct cli_response resp;
	int rc = cli_request(&ctx, "GET", path, NULL, &resp);
	if (rc == 0 && (rc = cli_check_status(&resp)) == 0) {
		json_t *s = cli_response_json(&resp);
		if (!s) {
			rc = CLI_API_ERROR;
		} else if (ctx.json) {
			cli_print_json(s);
		} else {
			char buf[1024];
			print_field("Sandbox ID", json_string_value(json_object_get(s, "sandboxID")));
			print_field("Template", json_string_value(json_object_get(s, "templateID")));
			print_field("State", state_text(s));
			cli_format_time(json_string_value(json_object_get(s, "startedAt")), buf, sizeof buf);
			print_field("Started", buf);
			char until[64];
			cli_format_time(json_string_value(json_object_get(s, "endAt")), buf, sizeof buf);
			cli_format_until(json_string_value(json_object_get(s, "endAt")), until, sizeof until);
			if (json_object_get(s, "pausedTo"))
				snprintf(buf, sizeof buf, "- (paused sandboxes do not expire)");
			else
				snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " (%s)", until);
			print_field("Expires", buf);
			snprintf(buf, sizeof buf, "%lld CPU, %lld MB memory, %lld MB disk",
				 (long long)json_integer_value(json_object_get(s, "cpuCount")),
				 (long long)json_integer_value(json_object_get(s, "memoryMB")),
				 (long long)json_integer_value(json_object_get(s, "diskSizeMB")));
			print_field("Resources", buf);
			print_field("envd version", json_string_value(json_object_get(s, "envdVersion")));
			print_field("Secure", json_object_get(s, "envdAccessToken") ? "yes (envd access token)" : "no");
			metadata_text(json_object_get(s, "metadata"), buf, sizeof buf);
			print_field("Metadata", buf);
			/* current use, best effort */
			struct cli_response m;
			snprintf(path, sizeof path, "/sandboxes/%s/metrics", id ? id : "");
			if (cli_request(&ctx, "GET", path, NULL, &m) == 0) {
				json_t *arr = m.status == 200 ? json_loadb(m.body, m.len, 0, NULL) : NULL;
				json_t *x = json_array_get(arr, 0);
				if (x) {
					snprintf(buf, sizeof buf, "%.1f%%", json_number_value(json_object_get(x, "cpuUsedPct")));
					print_field("CPU used", buf);
					snprintf(buf, sizeof buf, "%.1f / %.1f MB",
						 (double)json_integer_value(json_object_get(x, "memUsed")) / 1048576.0,
						 (double)json_integer_value(json_object_get(x, "memTotal")) / 1048576.0);
					print_field("Memory used", buf);
					snprintf(buf, sizeof buf, "%.1f / %.1f MB",
						 (double)json_integer_value(json_object_get(x, "diskUsed")) / 1048576.0,
						 (double)json_integer_value(json_object_get(x, "diskTotal")) / 1048576.0);
					print_field("Disk used", buf);
				}
				json_decref(arr);
				cli_response_free(&m);
			}
		}
		json_decref(s);
	}
	if (resp.body)
		cli_response_free(&resp);
	free(id);
	return rc;
}

/* ---- cubebox destroy|rm ---- */

static void cubebox_usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli cubebox destroy|rm ID... [--json]\n"
		"Kill sandboxes. Exit status 1 if any of them could not be killed (e.g. unknown id).\n");
}

int cmd_cubebox(const struct cli_ctx *ctx_in, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	struct cli_ctx ctx = *ctx_in;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		cubebox_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	if (strcmp(argv[1], "destroy") != 0 && strcmp(argv[1], "rm") != 0) {
		cli_err("cubebox: unknown subcommand '%s' (destroy or rm)", argv[1]);
		return CLI_UNREACHABLE;
	}
	int c;
	optind = 0;
	argc--;
	argv++;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': ctx.json = 1; break;
		case 'h': cubebox_usage(stdout); return CLI_OK;
		default: cubebox_usage(stderr); return CLI_UNREACHABLE;
		}
	}
	if (optind >= argc) {
		cubebox_usage(stderr);
		return CLI_UNREACHABLE;
	}
	return cli_each_id(&ctx, "DELETE", "/sandboxes/%s", NULL, argv + optind, argc - optind, "destroyed", NULL);
}
