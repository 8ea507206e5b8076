/* Template commands: `tpl create-from-image` submits a build job (POST /templates/jobs) and, unless
 * detached, follows it like `tpl watch`: one line per phase, a progress line per layer while pulling;
 * `tpl list`, `tpl info ID`, `tpl delete ID [--force]`. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void tpl_usage(FILE *out)
{
	fprintf(out,
		"Usage: cubemastercli tpl create-from-image --image REF --writable-layer-size SIZE [options]\n"
		"       cubemastercli tpl create-from-archive PATH --writable-layer-size SIZE [options]\n"
		"       cubemastercli tpl watch --job-id ID [--interval SECONDS]\n"
		"       cubemastercli tpl list|ls\n"
		"       cubemastercli tpl info ID|ALIAS\n"
		"       cubemastercli tpl delete|rm ID|ALIAS [--force]\n"
		"create-from-image options:\n"
		"  --expose-port P            (repeatable) ports the template serves\n"
		"  --probe PORT [--probe-path PATH] [--probe-timeout SECONDS]\n"
		"                             READY only once GET PATH on PORT answers 2xx inside a sandbox (30 s)\n"
		"  --cpu MILLICORES (2000)   --memory MB (2000)   --env K=V (repeatable)   --cmd COMMAND\n"
		"  --alias NAME               name to use as templateID in Sandbox.create\n"
		"  --registry-user U --registry-password P | --registry-auth-file F (a JSON {\"username\",\"password\"})\n"
		"  --registry-ca FILE         extra CA for the registry's HTTPS certificate (path on the cubed host)\n"
		"  --insecure-registry        allow plain HTTP to the registry\n"
		"  --detach                   print the job id and return\n"
		"SIZE: bytes or with a K, M, G, T suffix (binary), e.g. 1G, 512M.\n");
}

static long long parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v <= 0)
		return -1;
	long long mult = 1;
	switch (*end) {
	case 'k': case 'K': mult = 1LL << 10; end++; break;
	case 'm': case 'M': mult = 1LL << 20; end++; break;
	case 'g': case 'G': mult = 1LL << 30; end++; break;
	case 't': case 'T': mult = 1LL << 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'I')
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	return *end ? -1 : (long long)(v * (double)mult);
}

static json_t *get_json(const struct cli_ctx *ctx, const char *path, int *rc)
{
	struct cli_response resp;
	if ((*rc = cli_request(ctx, "GET", path, NULL, &resp)) != 0)
		return NULL;
	json_t *doc = NULL;
	if ((*rc = cli_check_status(&resp)) == 0 && !(doc = cli_response_json(&resp)))
		*rc = CLI_API_ERROR;
	cli_response_free(&resp);
	return doc;
}

static void print_progress(json_t *job)
{
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(job, "layers"), i, l) {
		long long size = json_integer_value(json_object_get(l, "size"));
		long long done = json_integer_value(json_object_get(l, "done"));
		int pct = size > 0 ? (int)(done * 100 / size) : 100;
		char bar[21];
		for (int k = 0; k < 20; k++)
			bar[k] = k < pct / 5 ? '#' : '.';
		bar[20] = '\0';
		const char *dg = json_string_value(json_object_get(l, "digest"));
		printf("  layer %zu %.19s [%s] %3d%% %lld/%lld bytes%s\n", i, dg ? dg : "", bar, pct, done, size,
		       json_is_true(json_object_get(l, "cached")) ? " (cached)" : "");
	}
	json_t *bps = json_object_get(job, "bytesPerSecond");
	if (bps)
		printf("  %lld bytes/s\n", (long long)json_integer_value(bps));
}

/* Poll the job until READY or FAILED: a line per phase (from the job's phase history, so none is missed
 * between polls), live per-layer progress while PULLING and the final figures once it is over. */
static int watch(const struct cli_ctx *ctx, const char *job_id, double interval)
{
	char path[256];
	char *enc = cli_url_encode(job_id);
	snprintf(path, sizeof path, "/templates/jobs/%s", enc);
	free(enc);
	size_t printed = 0;
	bool pulled = false;
	for (;;) {
		int rc;
		json_t *job = get_json(ctx, path, &rc);
		if (!job)
			return rc;
		const char *ph = json_string_value(json_object_get(job, "phase"));
		if (!ph)
			ph = "?";
		json_t *hist = json_object_get(job, "phases");
		if (ctx->json) {
			if (json_array_size(hist) != printed || strcmp(ph, "PULLING") == 0)
				cli_print_json(job);
			printed = json_array_size(hist);
		} else {
			for (; printed < json_array_size(hist); printed++) {
				const char *p = json_string_value(json_object_get(json_array_get(hist, printed), "phase"));
				if (!p)
					continue;
				if (strcmp(p, "PULLING") != 0 && !pulled && json_object_get(job, "layers")) {
					print_progress(job); /* final figures of the pull */
					pulled = true;
				}
				bool last = printed + 1 == json_array_size(hist);
				const char *reason = json_string_value(json_object_get(job, "reason"));
				printf("%s%s%s\n", p, last && reason ? ": " : "", last && reason ? reason : "");
			}
			if (strcmp(ph, "PULLING") == 0)
				print_progress(job);
		}
		fflush(stdout);
		int done = strcmp(ph, "READY") == 0 ? 0 : strcmp(ph, "FAILED") == 0 ? 1 : -1;
		if (done == 0 && !ctx->json)
			printf("template %s is ready\n", json_string_value(json_object_get(job, "templateID")));
		json_decref(job);
		if (done >= 0)
			return done ? CLI_API_ERROR : CLI_OK;
		usleep((useconds_t)(interval * 1e6));
	}
}

static int read_auth_file(const char *path, json_t *req)
{
	json_error_t e;
	json_t *doc = json_load_file(path, 0, &e);
	const char *u = json_string_value(json_object_get(doc, "username"));
	const char *p = json_string_value(json_object_get(doc, "password"));
	if (!u || !p) {
		cli_err("%s: expected a JSON object with \"username\" and \"password\"", path);
		json_decref(doc);
		return -1;
	}
	json_object_set_new(req, "registryUser", json_string(u));
	json_object_set_new(req, "registryPassword", json_string(p));
	json_decref(doc);
	return 0;
}

/* create-from-image, and create-from-archive PATH (argv[1]) with the same options. */
static int create_from_image(const struct cli_ctx *ctx, int argc, char **argv)
{
	char archive[PATH_MAX] = "";
	if (strcmp(argv[0], "create-from-archive") == 0) {
		if (argc < 2 || argv[1][0] == '-') {
			cli_err("tpl create-from-archive needs a PATH (a docker save tarball or an OCI layout directory)");
			return CLI_UNREACHABLE;
		}
		if (!realpath(argv[1], archive)) {
			cli_err("%s: %s", argv[1], strerror(errno));
			return CLI_UNREACHABLE;
		}
		argv[1] = argv[0];
		argc--;
		argv++;
	}
	static const struct option opts[] = {
		{"image", required_argument, 0, 'i'}, {"writable-layer-size", required_argument, 0, 'w'},
		{"expose-port", required_argument, 0, 'e'}, {"probe", required_argument, 0, 'p'},
		{"probe-path", required_argument, 0, 'P'}, {"probe-timeout", required_argument, 0, 'T'},
		{"cpu", required_argument, 0, 'c'}, {"memory", required_argument, 0, 'm'},
		{"env", required_argument, 0, 'E'}, {"cmd", required_argument, 0, 'C'},
		{"alias", required_argument, 0, 'a'}, {"registry-user", required_argument, 0, 'u'},
		{"registry-password", required_argument, 0, 'W'}, {"registry-auth-file", required_argument, 0, 'f'},
		{"registry-ca", required_argument, 0, 'r'}, {"insecure-registry", no_argument, 0, 'k'},
		{"detach", no_argument, 0, 'd'}, {"no-wait", no_argument, 0, 'd'},
		{"interval", required_argument, 0, 'I'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
	};
	json_t *req = json_object(), *ports = json_array(), *env = json_object();
	int detach = 0, c, rc = CLI_API_ERROR;
	double interval = 1;
	long long wsize = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': json_object_set_new(req, "image", json_string(optarg)); break;
		case 'w':
			if ((wsize = parse_size(optarg)) < (1 << 20)) {
				cli_err("--writable-layer-size: '%s' is not a size of at least 1M", optarg);
				goto out;
			}
			json_object_set_new(req, "diskSizeMB", json_integer(wsize >> 20));
			break;
		case 'e': json_array_append_new(ports, json_integer(atoi(optarg))); break;
		case 'p': json_object_set_new(req, "probePort", json_integer(atoi(optarg))); break;
		case 'P': json_object_set_new(req, "probePath", json_string(optarg)); break;
		case 'T': json_object_set_new(req, "probeTimeoutMs", json_integer((json_int_t)(atof(optarg) * 1000))); break;
		case 'c': json_object_set_new(req, "cpuMillis", json_integer(atoi(optarg))); break;
		case 'm': json_object_set_new(req, "memoryMB", json_integer(atoi(optarg))); break;
		case 'E': {
			char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg) {
				cli_err("--env: expected K=V, got '%s'", optarg);
				goto out;
			}
			*eq = '\0';
			json_object_set_new(env, optarg, json_string(eq + 1));
			break;
		}
		case 'C': json_object_set_new(req, "cmd", json_string(optarg)); break;
		case 'a': json_object_set_new(req, "alias", json_string(optarg)); break;
		case 'u': json_object_set_new(req, "registryUser", json_string(optarg)); break;
		case 'W': json_object_set_new(req, "registryPassword", json_string(optarg)); break;
		case 'f':
			if (read_auth_file(optarg, req) < 0)
				goto out;
			break;
		case 'r': json_object_set_new(req, "caFile", json_string(optarg)); break;
		case 'k': json_object_set_new(req, "insecureRegistry", json_true()); break;
		case 'd': detach = 1; break;
		case 'I': interval = atof(optarg) > 0 ? atof(optarg) : 1; break;
		case 'h': tpl_usage(stdout); rc = CLI_OK; goto out;
		default: tpl_usage(stderr); rc = CLI_UNREACHABLE; goto out;
		}
	}
	if (archive[0])
		json_object_set_new(req, "archive", json_string(archive));
	if ((!json_object_get(req, "image") && !archive[0]) || wsize < 0) {
		cli_err("tpl create-from-image needs --image and --writable-layer-size");
		rc = CLI_UNREACHABLE;
		goto out;
	}
	if (json_object_get(req, "registryPassword") && !json_object_get(req, "registryUser")) {
		cli_err("--registry-password needs --registry-user");
		rc = CLI_UNREACHABLE;
		goto out;
	}
	if (json_array_size(ports))
		json_object_set(req, "exposePorts", ports);
	if (json_object_size(env))
		json_object_set(req, "env", env);
	char *body = json_dumps(req, JSON_COMPACT);
	struct cli_response resp;
	rc = cli_request(ctx, "POST", "/templates/jobs", body, &resp);
	free(body);
	if (rc)
		goto out;
	json_t *job = NULL;
	if ((rc = cli_check_status(&resp)) == 0 && !(job = cli_response_json(&resp)))
		rc = CLI_API_ERROR;
	cli_response_free(&resp);
	if (!job)
		goto out;
	const char *id = json_string_value(json_object_get(job, "jobID"));
	if (ctx->json && detach)
		cli_print_json(job);
	else if (!ctx->json)
		printf("job %s: template %s\n", id, json_string_value(json_object_get(job, "templateID")));
	fflush(stdout);
	if (!detach)
		rc = watch(ctx, id, interval);
	json_decref(job);
out:
	json_decref(req);
	json_decref(ports);
	json_decref(env);
	return rc;
}

static int list(const struct cli_ctx *ctx)
{
	int rc;
	json_t *arr = get_json(ctx, "/templates", &rc);
	if (!arr)
		return rc;
	if (ctx->json) {
		cli_print_json(arr);
	} else {
		size_t n = json_array_size(arr), ncols = 6;
		const char **cells = calloc((n + 1) * ncols, sizeof *cells);
		char(*num)[3][32] = calloc(n ? n : 1, sizeof *num);
		char(*al)[160] = calloc(n ? n : 1, sizeof *al);
		static const char *const head[] = {"TEMPLATE", "ALIASES", "CPU", "MEMORY MB", "DISK MB", "LAYERS"};
		memcpy(cells, head, sizeof head);
		for (size_t i = 0; i < n; i++) {
			json_t *t = json_array_get(arr, i);
			const char **row = cells + (i + 1) * ncols;
			size_t k;
			json_t *a;
			json_array_foreach(json_object_get(t, "aliases"), k, a) {
				size_t used = strlen(al[i]);
				snprintf(al[i] + used, sizeof al[i] - used, "%s%s", k ? "," : "", json_string_value(a));
			}
			snprintf(num[i][0], 32, "%lld", (long long)json_integer_value(json_object_get(t, "cpuCount")));
			snprintf(num[i][1], 32, "%lld", (long long)json_integer_value(json_object_get(t, "memoryMB")));
			snprintf(num[i][2], 32, "%lld", (long long)json_integer_value(json_object_get(t, "diskSizeMB")));
			row[0] = json_string_value(json_object_get(t, "templateID"));
			row[1] = al[i][0] ? al[i] : "-";
			row[2] = num[i][0];
			row[3] = num[i][1];
			row[4] = num[i][2];
			char *lay = malloc(16);
			snprintf(lay, 16, "%zu", json_array_size(json_object_get(t, "layers")));
			row[5] = lay;
		}
		cli_print_table(cells, n + 1, ncols);
		for (size_t i = 0; i < n; i++)
			free((char *)cells[(i + 1) * ncols + 5]);
		free(cells);
		free(num);
		free(al);
	}
	json_decref(arr);
	return CLI_OK;
}

static int info(const struct cli_ctx *ctx, const char *id)
{
	char path[512];
	char *enc = cli_url_encode(id);
	snprintf(path, sizeof path, "/templates/%s", enc);
	free(enc);
	int rc;
	json_t *t = get_json(ctx, path, &rc);
	if (!t)
		return rc;
	cli_print_json(t);
	json_decref(t);
	return CLI_OK;
}

static int delete_tpl(const struct cli_ctx *ctx, int argc, char **argv)
{
	int force = 0;
	const char *id = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0)
			force = 1;
		else if (!id)
			id = argv[i];
	}
	if (!id) {
		tpl_usage(stderr);
		return CLI_UNREACHABLE;
	}
	char path[512];
	char *enc = cli_url_encode(id);
	snprintf(path, sizeof path, "/templates/%s%s", enc, force ? "?force=true" : "");
	free(enc);
	struct cli_response resp;
	int rc = cli_request(ctx, "DELETE", path, NULL, &resp);
	if (rc)
		return rc;
	rc = cli_check_status(&resp);
	cli_response_free(&resp);
	if (rc == 0 && !ctx->json)
		printf("template %s deleted\n", id);
	return rc;
}

int cmd_tpl(const struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		tpl_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_UNREACHABLE : CLI_OK;
	}
	const char *sub = argv[1];
	if (strcmp(sub, "create-from-image") == 0 || strcmp(sub, "create-from-archive") == 0)
		return create_from_image(ctx, argc - 1, argv + 1);
	if (strcmp(sub, "watch") == 0 || strcmp(sub, "status") == 0) {
		const char *job = NULL;
		double interval = 1;
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--job-id") == 0 && i + 1 < argc)
				job = argv[++i];
			else if (strncmp(argv[i], "--job-id=", 9) == 0)
				job = argv[i] + 9;
			else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc)
				interval = atof(argv[++i]) > 0 ? atof(argv[i]) : 1;
		}
		if (!job) {
			cli_err("tpl watch needs --job-id");
			return CLI_UNREACHABLE;
		}
		return watch(ctx, job, interval);
	}
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return list(ctx);
	if (strcmp(sub, "info") == 0 && argc >= 3)
		return info(ctx, argv[2]);
	if (strcmp(sub, "delete") == 0 || strcmp(sub, "rm") == 0)
		return delete_tpl(ctx, argc - 1, argv + 1);
	cli_err("tpl: unknown subcommand '%s'", sub);
	tpl_usage(stderr);
	return CLI_UNREACHABLE;
}
