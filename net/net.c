/* Sandbox networking: address pool, per-sandbox veth, policy into the eBPF maps, state files so that
 * sandboxes adopted after a restart keep their network, and reclaim of whatever an earlier run left.
 * Address slot s of the pool is a /30: .4s+1 is the host end (gateway, DNS), .4s+2 the sandbox. */
#include "net/internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "net/bpf.h"
#include "net/netlink.h"
#include "net/nft.h"

#define LOCK_PATH "/run/cubesandbox-net.lock"

static struct {
	struct net_config cfg;
	char state_dir[4096];
	char prefix[IF_NAMESIZE];    /* "cb" + 6 hex of the instance */
	uint32_t pool_net, pool_mask; /* network order */
	unsigned nslots, cursor;
	unsigned char *used;
	pthread_mutex_t lock;
	int host_netns;
} G = {.lock = PTHREAD_MUTEX_INITIALIZER, .host_netns = -1};

static int write_proc(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? -1 : 0;
}

int net_init(const struct net_config *cfg, cube_err *err)
{
	G.cfg = *cfg;
	snprintf(G.state_dir, sizeof G.state_dir, "%s/net", cfg->state_dir);
	if (cube_mkdir_p(G.state_dir, 0700) < 0)
		return cube_fail(err, 500, errno, "create %s", G.state_dir);
	snprintf(G.prefix, sizeof G.prefix, "cb%.6s", cfg->instance);
	const char *pool = cfg->pool ? cfg->pool : NET_DEFAULT_POOL;
	struct net_cidr c;
	if (net_cidr_parse(pool, &c) < 0 || !strchr(pool, '/') || c.len < 8 || c.len > 28)
		return cube_fail(err, 400, 0, "address pool '%s' must be an IPv4 CIDR with a prefix of 8..28", pool);
	G.pool_net = c.addr;
	G.pool_mask = htonl(~0u << (32 - c.len));
	G.nslots = 1u << (32 - c.len - 2);
	if (G.nslots > 16384)
		G.nslots = 16384; /* the eBPF sandbox map's size */
	G.used = calloc(G.nslots, 1);
	if (!G.used)
		return cube_fail(err, 500, ENOMEM, "address pool");
	G.host_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (G.host_netns < 0)
		return cube_fail(err, 500, errno, "open the host network namespace");
	if (write_proc("/proc/sys/net/ipv4/ip_forward", "1") < 0)
		return cube_fail(err, 500, errno, "enable IPv4 forwarding (net.ipv4.ip_forward)");
	char poolstr[32], ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &G.pool_net, ip, sizeof ip);
	snprintf(poolstr, sizeof poolstr, "%s/%u", ip, c.len);
	if (nft_setup(cfg->instance, G.prefix, poolstr, err) < 0)
		return -1;
	if (egress_load(G.pool_net, G.pool_mask, err) < 0)
		return -1;
	if (dns_init(cfg->loop, cfg->dns_upstream, err) < 0)
		return -1;
	log_info("network: pool %s (%u sandboxes), links %s*, nft table ip cube_%s", poolstr, G.nslots, G.prefix,
		 cfg->instance);
	return 0;
}

/* ---- addresses ---- */

static uint32_t slot_addr(unsigned slot, unsigned host)
{
	return htonl(ntohl(G.pool_net) + slot * 4 + host);
}

static void mark_taken(uint32_t addr, int prefix, void *arg)
{
	(void)prefix;
	unsigned char *taken = arg;
	if ((addr & G.pool_mask) != G.pool_net)
		return;
	unsigned slot = (ntohl(addr) - ntohl(G.pool_net)) / 4;
	if (slot < G.nslots)
		taken[slot] = 1;
}

/* A slot no sandbox of ours uses and no address on the host (another cubed, an admin) overlaps.
 * The caller holds G.lock and the cross-process lock file until its address is configured. */
static int slot_alloc(unsigned *out, cube_err *err)
{
	unsigned char *taken = calloc(G.nslots, 1);
	if (!taken)
		return cube_fail(err, 500, ENOMEM, "address pool");
	if (nl_addrs_foreach(mark_taken, taken, err) < 0) {
		free(taken);
		return -1;
	}
	for (unsigned i = 0; i < G.nslots; i++) {
		unsigned s = (G.cursor + i) % G.nslots;
		if (!G.used[s] && !taken[s]) {
			G.used[s] = 1;
			G.cursor = s + 1; /* do not reuse a just-freed slot at once (conntrack entries) */
			*out = s;
			free(taken);
			return 0;
		}
	}
	free(taken);
	return cube_fail(err, 503, 0, "the sandbox address pool is exhausted (%u sandboxes)", G.nslots);
}

static void slot_free(unsigned slot)
{
	pthread_mutex_lock(&G.lock);
	if (slot < G.nslots)
		G.used[slot] = 0;
	pthread_mutex_unlock(&G.lock);
}

/* ---- state files: <state>/net/<id>.json ---- */

static void state_path(const char *id, char *out, size_t n)
{
	snprintf(out, n, "%s/%s.json", G.state_dir, id);
}

static int state_write(const struct net_sbx *ns, cube_err *err)
{
	json_t *o = json_pack("{s:i,s:s,s:o,s:s}", "slot", (int)ns->slot, "link", ns->link, "policy",
			      net_policy_to_json(&ns->policy, 1), "trafficToken", ns->traffic_token);
	char path[4200], tmp[4300];
	state_path(ns->id, path, sizeof path);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int rc = o ? json_dump_file(o, tmp, JSON_COMPACT) : -1;
	json_decref(o);
	if (rc < 0 || rename(tmp, path) < 0)
		return cube_fail(err, 500, errno, "write network state %s", path);
	return 0;
}

/* ---- policy into the maps ---- */

static int apply_policy(struct net_sbx *ns, cube_err *err)
{
	struct egress_sandbox es = {.addr = ns->addr, .gateway = ns->gw, .pool_net = G.pool_net,
				    .pool_mask = G.pool_mask, .flags = ns->policy.internet ? EGRESS_F_INTERNET : 0};
	/* Fail closed while the lists change: no internet, no list entries, then the new lists, then
	 * the final flags. A connection opened in between is refused, never wrongly allowed. */
	struct egress_sandbox closed = es;
	closed.flags = 0;
	if (egress_sandbox_set(ns->ifindex, &closed, err) < 0)
		return -1;
	egress_cidrs_clear(ns->ifindex);
	for (unsigned i = 0; i < ns->policy.ndeny; i++)
		if (egress_cidr_add(ns->ifindex, 1, ns->policy.deny[i].addr, ns->policy.deny[i].len, err) < 0)
			return -1;
	for (unsigned i = 0; i < ns->policy.nallow; i++)
		if (egress_cidr_add(ns->ifindex, 0, ns->policy.allow[i].addr, ns->policy.allow[i].len, err) < 0)
			return -1;
	return egress_sandbox_set(ns->ifindex, &es, err);
}

/* ---- create ---- */

static int enter_netns(int fd)
{
	return setns(fd, CLONE_NEWNET);
}

static void leave_netns(void)
{
	if (setns(G.host_netns, CLONE_NEWNET) < 0) {
		/* A thread stuck in a sandbox's netns would configure the wrong namespace: never continue. */
		log_error("network: cannot return to the host network namespace: %s", strerror(errno));
		abort();
	}
}

static int configure_inside(int netns_fd, uint32_t addr, uint32_t gw, cube_err *err)
{
	if (enter_netns(netns_fd) < 0)
		return cube_fail(err, 500, errno, "enter the sandbox network namespace");
	int rc = -1, idx = nl_link_index("eth0"), lo = nl_link_index("lo");
	if (idx <= 0)
		cube_fail(err, 500, ENODEV, "eth0 missing in the sandbox");
	else if (nl_addr_add(idx, addr, 30, err) == 0 && nl_link_up(idx, err) == 0 &&
		 (lo <= 0 || nl_link_up(lo, err) == 0) && nl_route_default(idx, gw, err) == 0)
		rc = 0;
	leave_netns();
	return rc;
}

/* /etc/resolv.conf of the sandbox names its gateway; written through /proc/<pid>/root before any
 * user process runs, owned by the sandbox's root. */
static int write_resolv_conf(pid_t pid, unsigned root_uid, uint32_t gw, cube_err *err)
{
	char dir[64], ip[INET_ADDRSTRLEN], text[128];
	snprintf(dir, sizeof dir, "/proc/%d/root/etc", (int)pid);
	inet_ntop(AF_INET, &gw, ip, sizeof ip);
	int n = snprintf(text, sizeof text, "# written by cubed: the sandbox's resolver\nnameserver %s\n", ip);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return cube_fail(err, 500, errno, "open the sandbox's /etc");
	unlinkat(dfd, "resolv.conf", 0); /* may be a symlink into the template */
	int fd = openat(dfd, "resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int rc = 0;
	if (fd < 0 || write(fd, text, (size_t)n) != n || fchown(fd, root_uid, root_uid) < 0)
		rc = cube_fail(err, 500, errno, "write the sandbox's /etc/resolv.conf");
	if (fd >= 0)
		close(fd);
	close(dfd);
	return rc;
}

static struct net_sbx *sbx_new(const char *id)
{
	struct net_sbx *ns = calloc(1, sizeof *ns);
	if (ns)
		snprintf(ns->id, sizeof ns->id, "%s", id);
	return ns;
}

static void sbx_free(struct net_sbx *ns)
{
	net_policy_free(&ns->policy);
	free(ns->learned);
	free(ns);
}

int net_sandbox_create(const char *id, int netns_fd, pid_t pid, unsigned root_uid, const struct net_policy *policy,
		       struct net_sbx **out, cube_err *err)
{
	struct net_sbx *ns = sbx_new(id);
	if (!ns)
		return cube_fail(err, 500, ENOMEM, "sandbox network");
	net_policy_copy(&ns->policy, policy);
	if (!policy->public_traffic)
		cube_random_hex(ns->traffic_token, 20);
	int lockfd = open(LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd >= 0)
		flock(lockfd, LOCK_EX);
	pthread_mutex_lock(&G.lock);
	int rc = slot_alloc(&ns->slot, err);
	pthread_mutex_unlock(&G.lock);
	if (rc < 0)
		goto fail_unlock;
	snprintf(ns->link, sizeof ns->link, "%s%u", G.prefix, ns->slot);
	ns->gw = slot_addr(ns->slot, 1);
	ns->addr = slot_addr(ns->slot, 2);
	nl_link_delete(ns->link, NULL); /* a leftover of a crashed run with the same name */
	if (nl_veth_create(ns->link, "eth0", netns_fd, err) < 0)
		goto fail_slot;
	ns->ifindex = nl_link_index(ns->link);
	char path[128];
	snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", ns->link);
	write_proc(path, "1");
	if (ns->ifindex <= 0 || nl_addr_add(ns->ifindex, ns->gw, 30, err) < 0)
		goto fail_link;
	if (lockfd >= 0)
		close(lockfd); /* the address is on the host now: other instances see it */
	lockfd = -1;
	/* Policy and program before the link comes up: no packet ever passes unpoliced. */
	if (apply_policy(ns, err) < 0 || egress_attach(ns->ifindex, err) < 0 || nl_link_up(ns->ifindex, err) < 0 ||
	    configure_inside(netns_fd, ns->addr, ns->gw, err) < 0 || write_resolv_conf(pid, root_uid, ns->gw, err) < 0 ||
	    state_write(ns, err) < 0)
		goto fail_link;
	*out = ns;
	return 0;
fail_link:
	egress_sandbox_forget(ns->ifindex);
	nl_link_delete(ns->link, NULL);
fail_slot:
	slot_free(ns->slot);
fail_unlock:
	if (lockfd >= 0)
		close(lockfd);
	sbx_free(ns);
	return cube_wrap(err, "sandbox network");
}

/* The header-injecting forwarder runs exactly while the policy has header rules. */
static int sync_forwarder(struct net_sbx *ns, cube_err *err)
{
	if (ns->policy.nrules && !ns->fwd) {
		ns->fwd = http_fwd_start(G.cfg.loop, ns, err);
		if (!ns->fwd)
			return -1;
	} else if (!ns->policy.nrules && ns->fwd) {
		http_fwd_stop(ns->fwd);
		ns->fwd = NULL;
	}
	return 0;
}

void net_sandbox_activate(struct net_sbx *ns)
{
	cube_err err = {0};
	ns->dns = dns_listen(ns, &err);
	if (!ns->dns)
		log_error("sandbox %s: DNS resolver: %s", ns->id, err.msg);
	if (sync_forwarder(ns, &err) < 0)
		log_error("sandbox %s: header rules: %s", ns->id, err.msg);
}

/* ---- adopt and reclaim after a restart ---- */

int net_sandbox_adopt(const char *id, struct net_sbx **out, cube_err *err)
{
	char path[4200];
	state_path(id, path, sizeof path);
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je);
	if (!o)
		return cube_fail(err, 500, ENOENT, "no network state for %s (%s)", id, je.text);
	struct net_sbx *ns = sbx_new(id);
	json_t *pol = json_object_get(o, "policy");
	json_int_t slot = json_integer_value(json_object_get(o, "slot"));
	const char *tok = json_string_value(json_object_get(o, "trafficToken"));
	int rc = -1;
	if (!ns || slot < 0 || (unsigned)slot >= G.nslots) {
		cube_fail(err, 500, 0, "bad network state for %s", id);
		goto out;
	}
	ns->slot = (unsigned)slot;
	snprintf(ns->link, sizeof ns->link, "%s%u", G.prefix, ns->slot);
	snprintf(ns->traffic_token, sizeof ns->traffic_token, "%s", tok ? tok : "");
	ns->gw = slot_addr(ns->slot, 1);
	ns->addr = slot_addr(ns->slot, 2);
	ns->ifindex = nl_link_index(ns->link);
	if (ns->ifindex <= 0) {
		cube_fail(err, 500, ENODEV, "link %s of %s is gone", ns->link, id);
		goto out;
	}
	if (net_policy_parse(json_object_get(pol, "allow_internet_access"), pol, &ns->policy, err) < 0)
		goto out;
	/* The old program (and its maps) stay attached until replaced: fill the new maps first. */
	if (apply_policy(ns, err) < 0 || egress_attach(ns->ifindex, err) < 0)
		goto out;
	pthread_mutex_lock(&G.lock);
	G.used[ns->slot] = 1;
	pthread_mutex_unlock(&G.lock);
	*out = ns;
	ns = NULL;
	rc = 0;
out:
	json_decref(o);
	if (ns)
		sbx_free(ns);
	return rc;
}

struct reclaim_ctx {
	const char *const *live;
	size_t n;
	int removed;
	char (*names)[IF_NAMESIZE]; /* links to remove, collected during the dump, removed after it */
	int *indexes;
	size_t nnames, cap;
};

static int is_live(const struct reclaim_ctx *c, const char *id)
{
	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->live[i], id) == 0)
			return 1;
	return 0;
}

static void reclaim_link(const char *name, int ifindex, void *arg)
{
	struct reclaim_ctx *c = arg;
	const char *num = name + strlen(G.prefix);
	char *end;
	unsigned long slot = strtoul(num, &end, 10);
	if (!*num || *end)
		return; /* another instance whose id shares our prefix but not our naming */
	pthread_mutex_lock(&G.lock);
	int used = slot < G.nslots && G.used[slot];
	pthread_mutex_unlock(&G.lock);
	if (used)
		return;
	for (size_t i = 0; i < c->nnames; i++)
		if (strcmp(c->names[i], name) == 0)
			return; /* seen before the dump was restarted */
	if (c->nnames == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 16;
		void *nn = realloc(c->names, nc * sizeof *c->names), *ni = nn ? realloc(c->indexes, nc * sizeof *c->indexes) : NULL;
		if (nn)
			c->names = nn;
		if (!ni)
			return;
		c->indexes = ni;
		c->cap = nc;
	}
	snprintf(c->names[c->nnames], IF_NAMESIZE, "%s", name);
	c->indexes[c->nnames++] = ifindex;
}

int net_reclaim(const char *const *live, size_t n, cube_err *err)
{
	struct reclaim_ctx c = {.live = live, .n = n};
	int rc = nl_links_foreach(G.prefix, reclaim_link, &c, err);
	for (size_t i = 0; rc == 0 && i < c.nnames; i++) {
		egress_sandbox_forget(c.indexes[i]);
		cube_err e = {0};
		if (nl_link_delete(c.names[i], &e) < 0)
			log_warn("network: reclaim link %s: %s", c.names[i], e.msg);
		else
			c.removed++;
	}
	free(c.names);
	free(c.indexes);
	if (rc < 0)
		return -1;
	DIR *d = opendir(G.state_dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char id[64];
		size_t len = strlen(e->d_name);
		if (len < 6 || len - 5 >= sizeof id || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		memcpy(id, e->d_name, len - 5);
		id[len - 5] = '\0';
		if (!is_live(&c, id)) {
			char path[4200];
			state_path(id, path, sizeof path);
			unlink(path);
		}
	}
	if (d)
		closedir(d);
	return c.removed;
}

/* ---- destroy, update ---- */

void net_sandbox_destroy(struct net_sbx *ns)
{
	if (!ns)
		return;
	if (ns->dns)
		dns_close(ns->dns);
	if (ns->fwd)
		http_fwd_stop(ns->fwd);
	egress_sandbox_forget(ns->ifindex);
	cube_err err = {0};
	if (nl_link_delete(ns->link, &err) < 0)
		log_warn("sandbox %s: %s", ns->id, err.msg);
	char path[4200];
	state_path(ns->id, path, sizeof path);
	unlink(path);
	slot_free(ns->slot);
	sbx_free(ns);
}

int net_sandbox_set_policy(struct net_sbx *ns, const struct net_policy *policy, cube_err *err)
{
	struct net_policy old = ns->policy;
	net_policy_copy(&ns->policy, policy);
	ns->policy.public_traffic = old.public_traffic; /* fixed at create (the token was issued then) */
	net_policy_free(&old);
	/* Learned addresses belong to the old domain list: forget them, the next lookup relearns. */
	for (unsigned i = 0; i < ns->nlearned; i++)
		egress_learned_del(ns->ifindex, ns->learned[i].addr);
	ns->nlearned = 0;
	if (apply_policy(ns, err) < 0 || sync_forwarder(ns, err) < 0)
		return -1;
	return state_write(ns, err);
}

int net_sandbox_claim(struct net_sbx *ns, const struct net_policy *policy, cube_err *err)
{
	if (net_sandbox_set_policy(ns, policy, err) < 0)
		return -1;
	ns->policy.public_traffic = policy->public_traffic;
	ns->traffic_token[0] = '\0';
	if (!policy->public_traffic)
		cube_random_hex(ns->traffic_token, 20);
	return state_write(ns, err);
}

const struct net_policy *net_sandbox_policy(const struct net_sbx *ns)
{
	return &ns->policy;
}

int net_sandbox_set_traffic_token(struct net_sbx *ns, const char *token, cube_err *err)
{
	if (!ns || !ns->traffic_token[0])
		return 0; /* the policy allows public traffic: no token to keep */
	snprintf(ns->traffic_token, sizeof ns->traffic_token, "%s", token);
	return state_write(ns, err);
}

const char *net_sandbox_traffic_token(const struct net_sbx *ns)
{
	return ns ? ns->traffic_token : "";
}

json_t *net_sandbox_json(const struct net_sbx *ns)
{
	json_t *o = net_policy_to_json(&ns->policy, 0);
	char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &ns->addr, a, sizeof a);
	inet_ntop(AF_INET, &ns->gw, g, sizeof g);
	json_object_set_new(o, "address", json_string(a));
	json_object_set_new(o, "gateway", json_string(g));
	json_object_set_new(o, "link", json_string(ns->link));
	uint64_t now = egress_now_ns();
	unsigned live = 0;
	for (unsigned i = 0; i < ns->nlearned; i++)
		live += ns->learned[i].expiry_ns > now;
	json_object_set_new(o, "learnedAddresses", json_integer(live));
	json_object_set_new(o, "learnedLimit", json_integer(NET_LEARNED_MAX));
	return o;
}

/* ---- DNS learning ---- */

unsigned net_learn(struct net_sbx *ns, const uint32_t *addrs, const uint32_t *ttls, unsigned n)
{
	uint64_t now = egress_now_ns();
	unsigned learned = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t ttl = ttls[i] < NET_LEARNED_TTL_MIN ? NET_LEARNED_TTL_MIN : ttls[i];
		if (ttl > NET_LEARNED_TTL_MAX)
			ttl = NET_LEARNED_TTL_MAX;
		uint64_t exp = now + (uint64_t)ttl * 1000000000ull;
		struct net_learned *slot = NULL;
		for (unsigned j = 0; j < ns->nlearned && !slot; j++)
			if (ns->learned[j].addr == addrs[i])
				slot = &ns->learned[j];
		for (unsigned j = 0; j < ns->nlearned && !slot; j++)
			if (ns->learned[j].expiry_ns <= now)
				slot = &ns->learned[j]; /* reuse an expired entry */
		if (!slot && ns->nlearned < NET_LEARNED_MAX) {
			if (!ns->learned && !(ns->learned = calloc(NET_LEARNED_MAX, sizeof *ns->learned)))
				break;
			slot = &ns->learned[ns->nlearned++];
		}
		if (!slot) {
			ns->learned_refused++;
			continue;
		}
		if (slot->addr == addrs[i] && slot->expiry_ns > exp)
			exp = slot->expiry_ns; /* never shorten what another answer granted */
		else if (slot->addr != addrs[i] && slot->expiry_ns)
			egress_learned_del(ns->ifindex, slot->addr);
		cube_err err = {0};
		if (egress_learned_put(ns->ifindex, addrs[i], exp, &err) < 0) {
			log_warn("sandbox %s: %s", ns->id, err.msg);
			continue;
		}
		slot->addr = addrs[i];
		slot->expiry_ns = exp;
		learned++;
	}
	return learned;
}

void net_shutdown(size_t live)
{
	/* Links, programs and maps stay with running sandboxes until the next cubed adopts them. */
	nft_teardown(live == 0);
}
