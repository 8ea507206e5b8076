/* Sandbox networking (issue 4): each sandbox's network namespace gets a veth pair to the host, an
 * address from the pool, NAT for permitted egress, a DNS resolver run by cubed, and an egress policy
 * enforced in the kernel by eBPF (allow_internet_access, allowOut incl. domains, denyOut) that can be
 * replaced while the sandbox runs. Model: docs/security.md "Network"; operations: docs/operations.md. */
#ifndef CUBE_NET_H
#define CUBE_NET_H

#include <jansson.h>
#include <sys/types.h>
#include <uv.h>

#include "common/error.h"
#include "net/policy.h"

#define NET_DEFAULT_POOL "198.18.0.0/16"
#define NET_LEARNED_MAX 1024   /* DNS-learned addresses per sandbox (the rest are not learned) */
#define NET_LEARNED_TTL_MIN 30 /* seconds: floor on a learned address's lifetime */
#define NET_LEARNED_TTL_MAX 3600

struct net_config {
	uv_loop_t *loop;
	const char *state_dir;
	const char *instance;       /* 12 hex; names the links (first 6), the nft table and state */
	const char *pool;           /* CIDR, prefix 8..28; NULL = NET_DEFAULT_POOL */
	const char *dns_upstream;   /* "IP" or "IP:port"; NULL = the host's /etc/resolv.conf */
};

struct net_sbx;

/* Loop thread, once: IP forwarding, the nftables table, the eBPF program, the resolver's upstream. */
int net_init(const struct net_config *cfg, cube_err *err);
/* Any thread (a create worker): connect the sandbox whose netns is netns_fd and whose init is pid
 * (its /etc/resolv.conf is written, owned by root_uid), and apply policy (copied). */
int net_sandbox_create(const char *id, int netns_fd, pid_t pid, unsigned root_uid, const struct net_policy *policy,
		       struct net_sbx **out, cube_err *err);
/* Loop thread: start serving DNS to it (after create or adopt). */
void net_sandbox_activate(struct net_sbx *ns);
/* Loop thread, at start-up: find the links and policy of a sandbox that survived a restart. */
int net_sandbox_adopt(const char *id, struct net_sbx **out, cube_err *err);
/* Loop thread, at start-up after adoption: remove links and state of every sandbox not in live. */
int net_reclaim(const char *const *live, size_t n, cube_err *err);
/* Loop thread: remove everything the sandbox had (links, map entries, rules, state); frees ns. */
void net_sandbox_destroy(struct net_sbx *ns);
/* Loop thread: replace the policy (new connections obey it when this returns). */
int net_sandbox_set_policy(struct net_sbx *ns, const struct net_policy *policy, cube_err *err);
/* Loop thread: a pre-warmed sandbox is claimed by a create: its whole policy becomes the create's
 * (build it with net_policy_for_create), allowPublicTraffic included (false issues a traffic token). */
int net_sandbox_claim(struct net_sbx *ns, const struct net_policy *policy, cube_err *err);
const struct net_policy *net_sandbox_policy(const struct net_sbx *ns);
/* Loop thread: keep an earlier token (a sandbox restarted in place, daemon/sandboxes.c sbx_restart). */
int net_sandbox_set_traffic_token(struct net_sbx *ns, const char *token, cube_err *err);
/* "" unless created with allowPublicTraffic=false. */
const char *net_sandbox_traffic_token(const struct net_sbx *ns);
/* {"address","gateway","link", policy fields...} for GET .../network and the CLI. */
json_t *net_sandbox_json(const struct net_sbx *ns);
/* On exit. With sandboxes still running everything stays for the next cubed; with none (live == 0)
 * the nftables table goes too, so a stopped instance leaves no rules behind. */
void net_shutdown(size_t live);

#endif
