/* Parsing, merging and printing of network policies. Nothing here touches the kernel. */
#include "net/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void net_policy_default(struct net_policy *p)
{
	memset(p, 0, sizeof *p);
	p->internet = 1;
	p->public_traffic = 1;
}

int net_cidr_parse(const char *s, struct net_cidr *out)
{
	char buf[64];
	if (!s || strlen(s) >= sizeof buf)
		return -1;
	snprintf(buf, sizeof buf, "%s", s);
	long len = 32;
	char *slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		char *end;
		if (!slash[1] || !isdigit((unsigned char)slash[1]))
			return -1;
		len = strtol(slash + 1, &end, 10);
		if (*end || len < 0 || len > 32)
			return -1;
	}
	struct in_addr a;
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -1;
	uint32_t mask = len ? htonl(~0u << (32 - len)) : 0;
	out->addr = a.s_addr & mask;
	out->len = (uint8_t)len;
	return 0;
}

/* A DNS name: labels of [a-z0-9-_], 1..63 bytes, at least two labels for a wildcard. */
static int parse_domain(const char *s, struct net_domain *out)
{
	memset(out, 0, sizeof *out);
	if (strncmp(s, "*.", 2) == 0) {
		out->wildcard = 1;
		s += 2;
	}
	size_t n = strlen(s);
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof out->name)
		return -1;
	size_t label = 0;
	int has_alpha = 0;
	for (size_t i = 0; i < n; i++) {
		char c = (char)tolower((unsigned char)s[i]);
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (isalnum((unsigned char)c) || c == '-' || c == '_') {
			if (++label > 63)
				return -1;
			if (isalpha((unsigned char)c))
				has_alpha = 1;
		} else {
			return -1;
		}
		out->name[i] = c;
	}
	if (label == 0 || !has_alpha)
		return -1;
	return 0;
}

int net_domain_match(const struct net_domain *d, const char *name)
{
	size_t dn = strlen(d->name), nn = strlen(name);
	if (!d->wildcard)
		return strcmp(d->name, name) == 0;
	/* "*.x" matches subdomains of x only, not x itself. */
	return nn > dn + 1 && name[nn - dn - 1] == '.' && strcmp(name + nn - dn, d->name) == 0;
}

int net_policy_domain_allowed(const struct net_policy *p, const char *name)
{
	for (unsigned i = 0; i < p->ndomains; i++)
		if (net_domain_match(&p->domains[i], name))
			return 1;
	return 0;
}

const struct net_header_rule *net_policy_header_rule(const struct net_policy *p, const char *host)
{
	char name[NET_DOMAIN_MAX];
	size_t n = 0;
	for (; host[n] && host[n] != ':' && n < sizeof name - 1; n++)
		name[n] = (char)tolower((unsigned char)host[n]);
	name[n] = '\0';
	if (n && name[n - 1] == '.')
		name[n - 1] = '\0';
	for (unsigned i = 0; i < p->nrules; i++)
		if (net_domain_match(&p->rules[i].host, name))
			return &p->rules[i];
	return NULL;
}

static int add_cidr(struct net_cidr *list, unsigned *n, struct net_cidr c)
{
	for (unsigned i = 0; i < *n; i++)
		if (list[i].addr == c.addr && list[i].len == c.len)
			return 0;
	if (*n >= NET_MAX_CIDRS)
		return -1;
	list[(*n)++] = c;
	return 0;
}

static int add_domain(struct net_policy *p, const struct net_domain *d)
{
	for (unsigned i = 0; i < p->ndomains; i++)
		if (p->domains[i].wildcard == d->wildcard && strcmp(p->domains[i].name, d->name) == 0)
			return 0;
	if (p->ndomains >= NET_MAX_DOMAINS)
		return -1;
	p->domains[p->ndomains++] = *d;
	return 0;
}

/* Header names and values end up in an HTTP request: no CR, LF or NUL, names are tokens. */
static int valid_header(const char *name, const char *value)
{
	if (!*name)
		return 0;
	for (const char *c = name; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr("!#$%&'*+-.^_`|~", *c))
			return 0;
	for (const char *c = value; *c; c++)
		if (*c == '\r' || *c == '\n')
			return 0;
	return 1;
}

static int parse_rules(json_t *rules, struct net_policy *out, cube_err *err)
{
	if (!json_is_object(rules))
		return cube_fail(err, 400, 0, "network.rules must be an object");
	const char *key;
	json_t *arr;
	json_object_foreach(rules, key, arr) {
		struct net_header_rule r = {0};
		if (parse_domain(key, &r.host) < 0)
			return cube_fail(err, 400, 0, "network.rules: '%s' is not a domain or *.domain", key);
		if (!json_is_array(arr))
			return cube_fail(err, 400, 0, "network.rules['%s'] must be an array", key);
		if (out->nrules >= NET_MAX_HEADER_RULES)
			return cube_fail(err, 400, 0, "network.rules: at most %d domains", NET_MAX_HEADER_RULES);
		r.headers = json_object();
		size_t i;
		json_t *rule;
		json_array_foreach(arr, i, rule) {
			json_t *tr = json_is_object(rule) ? json_object_get(rule, "transform") : NULL;
			json_t *hs = json_is_object(tr) ? json_object_get(tr, "headers") : NULL;
			if (!json_is_object(rule) || (tr && !json_is_object(tr)) || (hs && !json_is_object(hs))) {
				json_decref(r.headers);
				return cube_fail(err, 400, 0, "network.rules['%s'][%zu] must be {transform:{headers:{...}}}",
						 key, i);
			}
			const char *hn;
			json_t *hv;
			json_object_foreach(hs, hn, hv) {
				if (!json_is_string(hv) || !valid_header(hn, json_string_value(hv))) {
					json_decref(r.headers);
					return cube_fail(err, 400, 0, "network.rules['%s']: header '%s' is not a valid "
							 "name with a string value", key, hn);
				}
				json_object_set(r.headers, hn, hv);
			}
		}
		out->rules[out->nrules++] = r;
		/* A rule's host must be reachable for the rule to mean anything (CubeEgress semantics). */
		if (add_domain(out, &r.host) < 0)
			return cube_fail(err, 400, 0, "network: too many domains (at most %d)", NET_MAX_DOMAINS);
	}
	return 0;
}

static int parse_list(json_t *network, const char *field, int domains_ok, struct net_policy *out, cube_err *err)
{
	json_t *arr = json_object_get(network, field);
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return cube_fail(err, 400, 0, "network.%s must be an array of strings", field);
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (!s)
			return cube_fail(err, 400, 0, "network.%s[%zu] must be a string", field, i);
		struct net_cidr c;
		struct net_domain d;
		int deny = !domains_ok;
		if (net_cidr_parse(s, &c) == 0) {
			if (add_cidr(deny ? out->deny : out->allow, deny ? &out->ndeny : &out->nallow, c) < 0)
				return cube_fail(err, 400, 0, "network.%s: at most %d entries", field, NET_MAX_CIDRS);
		} else if (domains_ok && parse_domain(s, &d) == 0) {
			if (add_domain(out, &d) < 0)
				return cube_fail(err, 400, 0, "network.%s: at most %d domains", field, NET_MAX_DOMAINS);
		} else {
			return cube_fail(err, 400, 0, "network.%s[%zu]: '%s' is not %s", field, i, s,
					 domains_ok ? "an IPv4 address, CIDR, domain or *.domain" : "an IPv4 address or CIDR");
		}
	}
	return 0;
}

int net_policy_parse(json_t *allow_internet, json_t *network, struct net_policy *out, cube_err *err)
{
	net_policy_default(out);
	if (allow_internet && !json_is_null(allow_internet)) {
		if (!json_is_boolean(allow_internet))
			return cube_fail(err, 400, 0, "allow_internet_access must be a boolean");
		out->internet = json_is_true(allow_internet);
		out->internet_set = 1;
	}
	if (!network || json_is_null(network))
		return 0;
	if (!json_is_object(network))
		return cube_fail(err, 400, 0, "network must be an object");
	json_t *pub = json_object_get(network, "allowPublicTraffic");
	if (pub && !json_is_null(pub)) {
		if (!json_is_boolean(pub))
			return cube_fail(err, 400, 0, "network.allowPublicTraffic must be a boolean");
		out->public_traffic = json_is_true(pub);
	}
	json_t *proxy = json_object_get(network, "egressProxy");
	if (proxy && !json_is_null(proxy))
		return cube_fail(err, 400, 0, "network.egressProxy is not supported by this server");
	json_t *rules = json_object_get(network, "rules");
	if (parse_list(network, "allowOut", 1, out, err) < 0 || parse_list(network, "denyOut", 0, out, err) < 0 ||
	    (rules && !json_is_null(rules) && parse_rules(rules, out, err) < 0)) {
		net_policy_free(out);
		return -1;
	}
	return 0;
}

int net_policy_merge(struct net_policy *req, const struct net_policy *tpl, cube_err *err)
{
	if (!req->internet_set) {
		req->internet = tpl->internet;
		req->internet_set = tpl->internet_set;
	}
	for (unsigned i = 0; i < tpl->nallow; i++)
		if (add_cidr(req->allow, &req->nallow, tpl->allow[i]) < 0)
			return cube_fail(err, 400, 0, "allowOut: at most %d entries with the template's", NET_MAX_CIDRS);
	for (unsigned i = 0; i < tpl->ndeny; i++)
		if (add_cidr(req->deny, &req->ndeny, tpl->deny[i]) < 0)
			return cube_fail(err, 400, 0, "denyOut: at most %d entries with the template's", NET_MAX_CIDRS);
	for (unsigned i = 0; i < tpl->ndomains; i++)
		if (add_domain(req, &tpl->domains[i]) < 0)
			return cube_fail(err, 400, 0, "allowOut: at most %d domains with the template's", NET_MAX_DOMAINS);
	for (unsigned i = 0; i < tpl->nrules && req->nrules < NET_MAX_HEADER_RULES; i++) {
		req->rules[req->nrules].host = tpl->rules[i].host;
		req->rules[req->nrules++].headers = json_deep_copy(tpl->rules[i].headers);
	}
	return 0;
}

int net_policy_for_create(const struct net_policy *req, json_t *tpl_allow_internet, json_t *tpl_network,
			  struct net_policy *out, cube_err *err)
{
	if (req)
		net_policy_copy(out, req);
	else
		net_policy_default(out);
	if (!tpl_allow_internet && !tpl_network)
		return 0;
	struct net_policy *tp = malloc(sizeof *tp);
	if (!tp) {
		net_policy_free(out);
		return cube_fail(err, 500, ENOMEM, "network policy");
	}
	int rc = net_policy_parse(tpl_allow_internet, tpl_network, tp, err);
	if (rc == 0) {
		rc = net_policy_merge(out, tp, err);
		net_policy_free(tp);
	}
	free(tp);
	if (rc < 0)
		net_policy_free(out);
	return rc;
}

void net_policy_free(struct net_policy *p)
{
	for (unsigned i = 0; i < p->nrules; i++)
		json_decref(p->rules[i].headers);
	p->nrules = 0;
}

int net_policy_copy(struct net_policy *dst, const struct net_policy *src)
{
	*dst = *src;
	for (unsigned i = 0; i < dst->nrules; i++)
		dst->rules[i].headers = json_deep_copy(src->rules[i].headers);
	return 0;
}

static json_t *cidr_json(const struct net_cidr *c)
{
	char ip[INET_ADDRSTRLEN], s[32];
	inet_ntop(AF_INET, &c->addr, ip, sizeof ip);
	if (c->len == 32)
		return json_string(ip);
	snprintf(s, sizeof s, "%s/%u", ip, c->len);
	return json_string(s);
}

static json_t *domain_json(const struct net_domain *d)
{
	char s[NET_DOMAIN_MAX + 2];
	snprintf(s, sizeof s, "%s%s", d->wildcard ? "*." : "", d->name);
	return json_string(s);
}

json_t *net_policy_to_json(const struct net_policy *p, int with_secrets)
{
	json_t *allow = json_array(), *deny = json_array(), *rules = json_object();
	for (unsigned i = 0; i < p->nallow; i++)
		json_array_append_new(allow, cidr_json(&p->allow[i]));
	for (unsigned i = 0; i < p->ndomains; i++)
		json_array_append_new(allow, domain_json(&p->domains[i]));
	for (unsigned i = 0; i < p->ndeny; i++)
		json_array_append_new(deny, cidr_json(&p->deny[i]));
	for (unsigned i = 0; i < p->nrules; i++) {
		json_t *hs = json_object();
		const char *k;
		json_t *v;
		json_object_foreach(p->rules[i].headers, k, v)
			json_object_set_new(hs, k, with_secrets ? json_copy(v) : json_string("***"));
		json_t *name = domain_json(&p->rules[i].host);
		json_object_set_new(rules, json_string_value(name), json_pack("[{s:{s:o}}]", "transform", "headers", hs));
		json_decref(name);
	}
	return json_pack("{s:b,s:o,s:o,s:b,s:o}", "allow_internet_access", p->internet, "allowOut", allow,
			 "denyOut", deny, "allowPublicTraffic", p->public_traffic, "rules", rules);
}
