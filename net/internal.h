/* Shared between net.c and dns.c only. */
#ifndef CUBE_NET_INTERNAL_H
#define CUBE_NET_INTERNAL_H

#include <net/if.h>
#include <stdint.h>
#include <uv.h>

#include "net/net.h"

struct dns_listener;
struct http_fwd;

struct net_learned {
	uint32_t addr;
	uint64_t expiry_ns;
};

struct net_sbx {
	char id[32];
	unsigned slot;
	char link[IF_NAMESIZE];
	int ifindex;
	uint32_t addr, gw;          /* network order */
	struct net_policy policy;
	char traffic_token[48];
	struct net_learned *learned;
	unsigned nlearned;
	unsigned long long learned_refused;  /* answers not learned because the limit was reached */
	struct dns_listener *dns;
	struct http_fwd *fwd;       /* only while the policy has header rules */
};

/* dns.c */
int dns_init(uv_loop_t *loop, const char *upstream, cube_err *err);
struct dns_listener *dns_listen(struct net_sbx *ns, cube_err *err);
void dns_close(struct dns_listener *l);

/* http_fwd.c: the header-injecting forwarder of one sandbox (loop thread). */
struct http_fwd *http_fwd_start(uv_loop_t *loop, struct net_sbx *ns, cube_err *err);
void http_fwd_stop(struct http_fwd *f);

/* net.c: addresses of an answer for an allowed name; returns how many were learned. */
unsigned net_learn(struct net_sbx *ns, const uint32_t *addrs, const uint32_t *ttls, unsigned n);

#endif
