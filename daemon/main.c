/* cubed: one daemon per node. It serves the E2B-compatible control plane (TCP), the same API plus
 * administration on a root-only unix socket, and the data-plane proxy into sandboxes, all on one
 * libuv loop; sandbox creation and destruction run in the loop's threadpool. */
#include <getopt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/util.h"
#include "daemon/admission.h"
#include "daemon/eviction.h"
#include "daemon/pool.h"
#include "daemon/sandboxes.h"
#include "daemon/snapshots.h"
#include "daemon/templates.h"
#include "image/template.h"
#include "net/net.h"
#include "proxy/proxy.h"
#include "runtime/criu.h"
#include "runtime/runtime.h"

struct options {
	const char *api, *proxy, *state_dir, *templates_dir, *envd, *domain, *net_pool, *dns_upstream;
	const char *criu;  /* --criu PATH (default: `criu` on PATH) */
	int local_auth, no_criu;
	unsigned uid_base, uid_count, max_timeout_s, max_sandboxes;
	unsigned long long max_upload_bytes;
	long long memory_reserve_mb; /* -1: default */
	long long sandboxes_memory_mb; /* -1: default */
	unsigned evict_after_s, evict_above_pct;
	long long evict_below_mb; /* -1: default */
};

static uv_loop_t *loop;
static uv_signal_t sig_chld, sig_term, sig_int;

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: cubed [OPTIONS]\n"
		"E2B-compatible sandbox service for one node.\n\n"
		"  --api HOST:PORT          control-plane listener (default 127.0.0.1:3000)\n"
		"  --proxy HOST:PORT        data-plane proxy listener (default 127.0.0.1:3001)\n"
		"  --state-dir DIR          state: database, admin socket, sandboxes (default /var/lib/cubesandbox)\n"
		"  --templates-dir DIR      templates, one folder each (default STATE-DIR/templates)\n"
		"  --envd PATH              cube-envd binary (default: next to cubed)\n"
		"  --domain DOMAIN          sandbox domain for <port>-<id>.DOMAIN routing (default localhost)\n"
		"  --local-auth             accept ANY non-empty API key (laptop mode; never in production)\n"
		"  --uid-base N             host uid that sandbox root maps to (default 200000000)\n"
		"  --max-timeout SECONDS    longest sandbox lifetime a request may ask for (default 86400)\n"
		"  --max-upload-bytes N     largest file upload envd accepts (default 1073741824)\n"
		"  --max-sandboxes N        node limit on sandboxes, pooled ones included; 0 = none (default 1000)\n"
		"  --memory-reserve-mb N    refuse creates (429) while host MemAvailable is below N MiB\n"
		"                           (default 5%% of RAM, at least 256; 0 = off)\n"
		"  --sandboxes-memory-mb N  memory limit of all sandboxes together (kernel-enforced)\n"
		"                           (default RAM minus the reserve; 0 = none)\n"
"  --evict-paused-after S   move sandboxes paused in memory for S seconds to disk (default 0 = never)\n"
		"  --evict-below-mb N       move paused sandboxes to disk while host MemAvailable is below N MiB\n"
		"                           (default twice the memory reserve; 0 = never)\n"
		"  --evict-above-pct P      ... and while all sandboxes use P%% of their memory cap (default 90; 0 = never)\n"
		"  --net-pool CIDR          sandbox addresses, a /30 each (default " NET_DEFAULT_POOL ")\n"
		"  --dns-upstream IP[:PORT] where the sandboxes' resolver forwards (default: /etc/resolv.conf)\n"
		"  --criu PATH              criu binary for process checkpoints on eviction to disk (default: criu\n"
		"                           on PATH; used only if `criu check` passes at start)\n"
		"  --no-criu                never checkpoint processes (evictions to disk keep files only)\n"
		"  --log-level LEVEL        debug, info, warn or error (default info)\n"
		"  --help, --version\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"api", required_argument, 0, 'a'},         {"proxy", required_argument, 0, 'p'},
		{"state-dir", required_argument, 0, 's'},   {"templates-dir", required_argument, 0, 't'},
		{"envd", required_argument, 0, 'e'},        {"domain", required_argument, 0, 'd'},
		{"local-auth", no_argument, 0, 'L'},        {"uid-base", required_argument, 0, 'u'},
		{"max-timeout", required_argument, 0, 'T'}, {"max-upload-bytes", required_argument, 0, 'U'},
		{"log-level", required_argument, 0, 'l'},   {"help", no_argument, 0, 'h'},
		{"max-sandboxes", required_argument, 0, 'M'}, {"memory-reserve-mb", required_argument, 0, 'R'},
		{"sandboxes-memory-mb", required_argument, 0, 'C'},
		{"evict-paused-after", required_argument, 0, 'E'}, {"evict-below-mb", required_argument, 0, 'B'},
		{"evict-above-pct", required_argument, 0, 'P'},
		{"net-pool", required_argument, 0, 'N'},      {"dns-upstream", required_argument, 0, 'D'},
		{"criu", required_argument, 0, 'K'},          {"no-criu", no_argument, 0, 'k'},
		{"version", no_argument, 0, 'V'},           {0, 0, 0, 0},
	};
	*o = (struct options){
		.api = "127.0.0.1:3000", .proxy = "127.0.0.1:3001", .state_dir = "/var/lib/cubesandbox",
		.domain = "localhost", .uid_base = 200000000, .uid_count = 65536, .max_timeout_s = 86400,
		.max_upload_bytes = 1ULL << 30, .max_sandboxes = 1000, .memory_reserve_mb = -1,
		.sandboxes_memory_mb = -1, .evict_below_mb = -1, .evict_above_pct = 90,
	};
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a': o->api = optarg; break;
		case 'p': o->proxy = optarg; break;
		case 's': o->state_dir = optarg; break;
		case 't': o->templates_dir = optarg; break;
		case 'e': o->envd = optarg; break;
		case 'd': o->domain = optarg; break;
		case 'L': o->local_auth = 1; break;
		case 'u': o->uid_base = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'T': o->max_timeout_s = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'U': o->max_upload_bytes = strtoull(optarg, NULL, 10); break;
		case 'M': o->max_sandboxes = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'R': o->memory_reserve_mb = strtoll(optarg, NULL, 10); break;
		case 'C': o->sandboxes_memory_mb = strtoll(optarg, NULL, 10); break;
		case 'E': o->evict_after_s = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'B': o->evict_below_mb = strtoll(optarg, NULL, 10); break;
		case 'P': o->evict_above_pct = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'N': o->net_pool = optarg; break;
		case 'D': o->dns_upstream = optarg; break;
		case 'K': o->criu = optarg; break;
		case 'k': o->no_criu = 1; break;
		case 'l':
			if (!strcmp(optarg, "debug")) cube_log_set_level(CUBE_LOG_DEBUG);
			else if (!strcmp(optarg, "warn")) cube_log_set_level(CUBE_LOG_WARN);
			else if (!strcmp(optarg, "error")) cube_log_set_level(CUBE_LOG_ERROR);
			else if (strcmp(optarg, "info")) { fprintf(stderr, "cubed: unknown log level '%s'\n", optarg); return -1; }
			break;
		case 'h': usage(stdout); exit(0);
		case 'V': printf("cubed %s\n", CUBE_VERSION); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cubed: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (o->uid_base < 65536) {
		fprintf(stderr, "cubed: --uid-base must be at least 65536 so sandbox root is never a host user\n");
		return -1;
	}
	return 0;
}

/* 12 hex digits of SHA-256(realpath(state dir)): names this instance's cgroups, so instances with
 * different state dirs never reclaim each other's sandboxes. */
static int instance_id(const char *state_dir, char out[13])
{
	char real[PATH_MAX];
	if (!realpath(state_dir, real))
		return -1;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (!EVP_Digest(real, strlen(real), md, &mdlen, EVP_sha256(), NULL))
		return -1;
	for (int i = 0; i < 6; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

static unsigned long long mem_total_mb(void)
{
	unsigned long long kb = 0;
	char line[128];
	FILE *f = fopen("/proc/meminfo", "re");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb / 1024;
}

/* 5% of RAM, at least 256 MiB: what the host keeps for itself when admitting sandboxes. */
static unsigned long long default_reserve_mb(void)
{
	unsigned long long mb = mem_total_mb() / 20;
	return mb < 256 ? 256 : mb;
}

static void on_api(http_req *req, void *ctx) { (void)ctx; api_handle(req, 0); }
static void on_admin(http_req *req, void *ctx) { (void)ctx; api_handle(req, 1); }
static void on_proxy(http_req *req, void *ctx) { (void)ctx; proxy_handle(req); }

static void on_sigchld(uv_signal_t *s, int signum)
{
	(void)s;
	(void)signum;
	rt_reap();
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
	(void)s;
	log_info("signal %d: stopping; sandboxes keep running and are adopted on the next start", signum);
	uv_stop(loop);
}

static int die(const char *what, const cube_err *err)
{
	log_error("%s: %s", what, err->msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct options o;
	if (parse_options(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	if (!getenv("UV_THREADPOOL_SIZE"))
		setenv("UV_THREADPOOL_SIZE", "16", 0); /* creates block in clone/mount: let several overlap */

	char templates[PATH_MAX], envd_path[PATH_MAX], sock[PATH_MAX], idfile[PATH_MAX], instance[13];
	if (cube_mkdir_p(o.state_dir, 0700) < 0) {
		log_error("create state dir %s: %s", o.state_dir, strerror(errno));
		return 1;
	}
	chmod(o.state_dir, 0700);
	snprintf(templates, sizeof templates, "%s", o.templates_dir ? o.templates_dir : "");
	if (!o.templates_dir)
		snprintf(templates, sizeof templates, "%s/templates", o.state_dir);
	if (o.envd) {
		snprintf(envd_path, sizeof envd_path, "%s", o.envd);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		self[n > 0 ? n : 0] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(envd_path, sizeof envd_path, "%s/cube-envd", self);
	}
	if (access(envd_path, X_OK) < 0) {
		log_error("cube-envd not found at %s (use --envd PATH)", envd_path);
		return 1;
	}
	if (instance_id(o.state_dir, instance) < 0) {
		log_error("resolve state dir %s: %s", o.state_dir, strerror(errno));
		return 1;
	}
	snprintf(idfile, sizeof idfile, "%s/instance-id", o.state_dir);
	FILE *f = fopen(idfile, "w");
	if (f) {
		fprintf(f, "%s\n", instance);
		fclose(f);
	}

	loop = uv_default_loop();
	cube_err err = {0};
	struct rt_config rtc = {.state_dir = o.state_dir, .instance = instance, .uid_base = o.uid_base,
				.uid_count = o.uid_count, .envd_path = envd_path};
	if (rt_init(&rtc, &err) < 0)
		return die("runtime", &err);
	rt_criu_detect(o.criu, o.no_criu, RT_CRIU_CHECK_TIMEOUT_MS);
	char layers[PATH_MAX];
	snprintf(layers, sizeof layers, "%s/layers", o.state_dir);
	tpl_set_layer_store(layers);
	if (tpl_registry_load(templates, o.uid_base, o.uid_count, &err) < 0)
		return die("templates", &err);
	struct adm_config adc = {.max_sandboxes = o.max_sandboxes,
				 .reserve_mb = o.memory_reserve_mb >= 0 ? (unsigned long long)o.memory_reserve_mb
									: default_reserve_mb()};
	adm_init(&adc);
	/* Sandboxes together never take the host's reserve, however much each grows after admission. */
	unsigned long long total = mem_total_mb();
	unsigned long long cap_mb = o.sandboxes_memory_mb >= 0 ? (unsigned long long)o.sandboxes_memory_mb
				    : total > adc.reserve_mb ? total - adc.reserve_mb : 0;
	if (rt_set_memory_cap(cap_mb << 20, &err) < 0) /* e.g. adopted sandboxes already use more */
		log_warn("memory cap of all sandboxes not set: %s", err.msg);
	struct net_config nc = {.loop = loop, .state_dir = o.state_dir, .instance = instance, .pool = o.net_pool,
				.dns_upstream = o.dns_upstream};
	if (net_init(&nc, &err) < 0)
		return die("network", &err);
	struct sbx_config sc = {.loop = loop, .state_dir = o.state_dir, .instance = instance,
				.max_timeout_s = o.max_timeout_s, .max_upload_bytes = o.max_upload_bytes,
				.uid_base = o.uid_base};
	if (sbx_init(&sc, &err) < 0)
		return die("state", &err);
	struct tjobs_config tc = {.loop = loop, .state_dir = o.state_dir, .templates_dir = templates,
				  .uid_base = o.uid_base, .uid_count = o.uid_count};
	if (tjobs_init(&tc, &err) < 0)
		return die("template jobs", &err);
	snap_sweep(); /* forks' snapshots whose last sandbox went while cubed was down */
	if (pool_init(loop, &err) < 0)
		return die("pool", &err);
	struct evict_config ec = {.idle_s = o.evict_after_s, .cap_pct = o.evict_above_pct,
				  .host_low_mb = o.evict_below_mb >= 0 ? (unsigned long long)o.evict_below_mb : 2 * adc.reserve_mb};
	evict_init(loop, &ec);

	struct api_config ac = {.local_auth = o.local_auth, .domain = o.domain, .max_timeout_s = o.max_timeout_s};
	api_init(&ac);
	struct proxy_config pc = {.domain = o.domain};
	proxy_init(loop, &pc);

	http_server *api = http_server_new(loop, on_api, NULL);
	http_server *admin = http_server_new(loop, on_admin, NULL);
	http_server *proxy = http_server_new(loop, on_proxy, NULL);
	snprintf(sock, sizeof sock, "%s/cubed.sock", o.state_dir);
	http_server_on_response(api, api_observe_response, NULL);
	http_server_on_response(proxy, api_observe_proxy_response, NULL);
	if (http_server_listen_tcp(api, o.api, &err) < 0)
		return die("api listener", &err);
	if (http_server_listen_unix(admin, sock, &err) < 0)
		return die("admin socket", &err);
	if (http_server_listen_tcp(proxy, o.proxy, &err) < 0)
		return die("proxy listener", &err);

	uv_signal_init(loop, &sig_chld);
	uv_signal_start(&sig_chld, on_sigchld, SIGCHLD);
	uv_signal_init(loop, &sig_term);
	uv_signal_start(&sig_term, on_stop_signal, SIGTERM);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_int, on_stop_signal, SIGINT);

	if (o.local_auth)
		log_warn("*** LOCAL AUTH MODE: ANY non-empty API key is accepted. Never expose this instance. ***");
	log_info("cubed %s: api %s, proxy %s, admin %s, state %s, instance %s, templates %s, envd %s",
		 CUBE_VERSION, o.api, o.proxy, sock, o.state_dir, instance, templates, envd_path);
	log_info("admission: at most %u sandboxes, memory reserve %llu MiB; all sandboxes capped at %llu MiB", adc.max_sandboxes,
		 adc.reserve_mb, cap_mb);
	uv_run(loop, UV_RUN_DEFAULT);
	evict_shutdown();
	pool_shutdown(); /* pooled sandboxes are never adopted: destroy them now */
	tjobs_shutdown();
	size_t live = sbx_count();
	sbx_shutdown();
	net_shutdown(live);
	unlink(sock);
	return 0;
}
