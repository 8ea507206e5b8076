/* A sandbox's network policy (E2B's allow_internet_access + SandboxNetworkConfig): parsed and
 * normalised from JSON, merged with a template's defaults, and written back as JSON. Pure code (no
 * kernel state), unit-tested as tables in tests/unit/net/. Semantics: docs/security.md "Network". */
#ifndef CUBE_NET_POLICY_H
#define CUBE_NET_POLICY_H

#include <jansson.h>
#include <stdint.h>

#include "common/error.h"

#define NET_MAX_CIDRS 256      /* per list (allowOut CIDRs, denyOut) */
#define NET_MAX_DOMAINS 64     /* domain patterns in allowOut */
#define NET_MAX_HEADER_RULES 16
#define NET_DOMAIN_MAX 254

struct net_cidr {
	uint32_t addr;  /* network byte order, host bits cleared */
	uint8_t len;    /* 0..32 */
};

struct net_domain {
	char name[NET_DOMAIN_MAX]; /* lowercase, no trailing dot, without the "*." */
	int wildcard;              /* "*.name": subdomains only */
};

struct net_header_rule {
	struct net_domain host;
	json_t *headers;           /* object name -> value (strings) */
};

struct net_policy {
	int internet;              /* allow_internet_access (default 1) */
	int internet_set;          /* it was given explicitly */
	int public_traffic;        /* network.allowPublicTraffic (default 1) */
	struct net_cidr allow[NET_MAX_CIDRS], deny[NET_MAX_CIDRS];
	unsigned nallow, ndeny;
	struct net_domain domains[NET_MAX_DOMAINS];
	unsigned ndomains;
	struct net_header_rule rules[NET_MAX_HEADER_RULES];
	unsigned nrules;
};

void net_policy_default(struct net_policy *p);
/* allow_internet may be NULL (unset); network may be NULL. Errors are 400 naming the entry. */
int net_policy_parse(json_t *allow_internet, json_t *network, struct net_policy *out, cube_err *err);
/* The template's defaults under the request: the request's internet flag wins when given, lists are
 * appended without duplicates, request rules before template rules. */
int net_policy_merge(struct net_policy *req, const struct net_policy *tpl, cube_err *err);
/* The policy a create gets: the request's (NULL = default) over the template's defaults (template.json
 * "allowInternetAccess" / "network", either may be NULL), merged as above. out is freed on failure. */
int net_policy_for_create(const struct net_policy *req, json_t *tpl_allow_internet, json_t *tpl_network,
			  struct net_policy *out, cube_err *err);
void net_policy_free(struct net_policy *p);   /* the header-rule objects */
int net_policy_copy(struct net_policy *dst, const struct net_policy *src);
/* {"allow_internet_access":..,"allowOut":[..],"denyOut":[..],"allowPublicTraffic":..,"rules":{..}} */
json_t *net_policy_to_json(const struct net_policy *p, int with_secrets);
/* "1.2.3.0/24" or a bare IP (= /32). 0 if it is one. */
int net_cidr_parse(const char *s, struct net_cidr *out);
/* Does name (lowercase, no trailing dot) match one of the policy's domain patterns? */
int net_policy_domain_allowed(const struct net_policy *p, const char *name);
int net_domain_match(const struct net_domain *d, const char *name);
/* The header rule for an HTTP Host (port stripped), or NULL. */
const struct net_header_rule *net_policy_header_rule(const struct net_policy *p, const char *host);

#endif
