/* The sandboxes' DNS resolver: one UDP socket per sandbox on its gateway address (so the socket says
 * which sandbox asked), forwarding to one upstream. Answers to names the sandbox's allowOut permits
 * have their A records put into the sandbox's learned map before the answer is passed on, which is
 * what makes domain rules work on every port. ldns parses the wire format. UDP only (TCP is refused by
 * the host's input chain, so clients fall back to UDP answers; truncated answers stay truncated). */
#include "net/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ldns/ldns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define MAX_PENDING 65536
#define PENDING_TIMEOUT_MS 5000
#define MAX_LEARN_PER_ANSWER 16

struct dns_listener {
	uv_udp_t udp;
	struct net_sbx *ns;     /* NULL once closed */
	unsigned serial;
	struct dns_listener *next;
};

struct pending {
	unsigned serial;        /* the listener that asked (0: free); looked up, never dereferenced */
	struct sockaddr_in client;
	uint16_t client_id;
	uint64_t at_ms;
	char qname[256];
};

static struct {
	uv_loop_t *loop;
	uv_udp_t up;
	struct sockaddr_in upstream;
	struct pending *pending;
	uint16_t next_id;
	unsigned serial;
	struct dns_listener *listeners;
} D;

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[65536];
	buf->base = slab;
	buf->len = sizeof slab;
}

/* Lowercase question name without the trailing dot; 0 if the packet has exactly one question. */
static int question_name(ldns_pkt *pkt, char *out, size_t n)
{
	ldns_rr_list *q = ldns_pkt_question(pkt);
	if (!q || ldns_rr_list_rr_count(q) != 1)
		return -1;
	char *s = ldns_rdf2str(ldns_rr_owner(ldns_rr_list_rr(q, 0)));
	if (!s)
		return -1;
	size_t len = strlen(s);
	if (len && s[len - 1] == '.')
		s[--len] = '\0';
	int rc = len < n ? 0 : -1;
	if (rc == 0)
		for (size_t i = 0; i <= len; i++)
			out[i] = (char)tolower((unsigned char)s[i]);
	free(s);
	return rc;
}

struct send_req {
	uv_udp_send_t req;
	char data[];
};

static void on_sent(uv_udp_send_t *req, int status)
{
	(void)status;
	free(req);
}

static void send_copy(uv_udp_t *udp, const void *data, size_t len, const struct sockaddr_in *to)
{
	struct send_req *r = malloc(sizeof *r + len);
	if (!r)
		return;
	memcpy(r->data, data, len);
	uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
	if (uv_udp_send(&r->req, udp, &b, 1, (const struct sockaddr *)to, on_sent) < 0)
		free(r);
}

/* A query from a sandbox: give it an id of ours and pass it upstream. */
static void on_query(uv_udp_t *udp, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
	struct dns_listener *l = udp->data;
	if (n < 12 || !from || from->sa_family != AF_INET || (flags & UV_UDP_PARTIAL) || !l->ns)
		return;
	ldns_pkt *pkt = NULL;
	char qname[256];
	if (ldns_wire2pkt(&pkt, (const uint8_t *)buf->base, (size_t)n) != LDNS_STATUS_OK)
		return;
	int ok = !ldns_pkt_qr(pkt) && question_name(pkt, qname, sizeof qname) == 0;
	ldns_pkt_free(pkt);
	if (!ok)
		return;
	uint16_t id = D.next_id++;
	struct pending *p = &D.pending[id]; /* the oldest query is dropped when 65536 are in flight */
	p->serial = l->serial;
	memcpy(&p->client, from, sizeof p->client);
	p->client_id = (uint16_t)(((uint8_t)buf->base[0] << 8) | (uint8_t)buf->base[1]);
	p->at_ms = uv_now(D.loop);
	snprintf(p->qname, sizeof p->qname, "%s", qname);
	buf->base[0] = (char)(id >> 8);
	buf->base[1] = (char)(id & 0xff);
	send_copy(&D.up, buf->base, (size_t)n, &D.upstream);
}

/* An answer from upstream: learn what the policy allows, then pass it to the sandbox that asked. */
static void on_answer(uv_udp_t *udp, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
	(void)udp;
	if (n < 12 || !from || from->sa_family != AF_INET || (flags & UV_UDP_PARTIAL))
		return;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)from;
	if (sin->sin_addr.s_addr != D.upstream.sin_addr.s_addr || sin->sin_port != D.upstream.sin_port)
		return;
	uint16_t id = (uint16_t)(((uint8_t)buf->base[0] << 8) | (uint8_t)buf->base[1]);
	struct pending *p = &D.pending[id];
	struct dns_listener *l = D.listeners;
	while (p->serial && l && l->serial != p->serial)
		l = l->next;
	if (!p->serial || !l || !l->ns || uv_now(D.loop) - p->at_ms > PENDING_TIMEOUT_MS)
		return;
	ldns_pkt *pkt = NULL;
	char qname[256];
	if (ldns_wire2pkt(&pkt, (const uint8_t *)buf->base, (size_t)n) != LDNS_STATUS_OK)
		return;
	if (question_name(pkt, qname, sizeof qname) < 0 || strcmp(qname, p->qname) != 0) {
		ldns_pkt_free(pkt); /* not the answer to that query */
		return;
	}
	struct net_sbx *ns = l->ns;
	if (net_policy_domain_allowed(&ns->policy, qname)) {
		uint32_t addrs[MAX_LEARN_PER_ANSWER], ttls[MAX_LEARN_PER_ANSWER];
		unsigned k = 0;
		ldns_rr_list *ans = ldns_pkt_answer(pkt);
		for (size_t i = 0; ans && i < ldns_rr_list_rr_count(ans) && k < MAX_LEARN_PER_ANSWER; i++) {
			ldns_rr *rr = ldns_rr_list_rr(ans, i);
			ldns_rdf *rd = ldns_rr_rd_count(rr) ? ldns_rr_rdf(rr, 0) : NULL;
			if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_A || !rd || ldns_rdf_size(rd) != 4)
				continue;
			memcpy(&addrs[k], ldns_rdf_data(rd), 4);
			ttls[k++] = ldns_rr_ttl(rr);
		}
		if (k)
			net_learn(ns, addrs, ttls, k);
	}
	ldns_pkt_free(pkt);
	buf->base[0] = (char)(p->client_id >> 8);
	buf->base[1] = (char)(p->client_id & 0xff);
	send_copy(&l->udp, buf->base, (size_t)n, &p->client);
	p->serial = 0;
}

static int parse_upstream(const char *s, struct sockaddr_in *out)
{
	char host[64];
	int port = 53;
	snprintf(host, sizeof host, "%s", s);
	char *colon = strchr(host, ':');
	if (colon) {
		*colon = '\0';
		port = atoi(colon + 1);
	}
	return uv_ip4_addr(host, port, out) == 0 && port > 0 && port < 65536 ? 0 : -1;
}

/* The first IPv4 nameserver of the host's resolv.conf. */
static int host_upstream(struct sockaddr_in *out)
{
	FILE *f = fopen("/etc/resolv.conf", "re");
	char line[256];
	int rc = -1;
	while (f && rc < 0 && fgets(line, sizeof line, f)) {
		char ip[64];
		if (sscanf(line, " nameserver %63s", ip) == 1 && parse_upstream(ip, out) == 0)
			rc = 0;
	}
	if (f)
		fclose(f);
	return rc;
}

int dns_init(uv_loop_t *loop, const char *upstream, cube_err *err)
{
	D.loop = loop;
	D.pending = calloc(MAX_PENDING, sizeof *D.pending);
	if (!D.pending)
		return cube_fail(err, 500, ENOMEM, "DNS resolver");
	if (upstream ? parse_upstream(upstream, &D.upstream) < 0 : host_upstream(&D.upstream) < 0) {
		if (upstream)
			return cube_fail(err, 400, 0, "--dns-upstream '%s' is not IPv4[:port]", upstream);
		log_warn("network: no IPv4 nameserver in /etc/resolv.conf; sandboxes get no DNS answers");
	}
	struct sockaddr_in any;
	uv_ip4_addr("0.0.0.0", 0, &any);
	int rc;
	if ((rc = uv_udp_init(loop, &D.up)) < 0 || (rc = uv_udp_bind(&D.up, (const struct sockaddr *)&any, 0)) < 0 ||
	    (rc = uv_udp_recv_start(&D.up, alloc_buf, on_answer)) < 0)
		return cube_fail(err, 500, -rc, "DNS upstream socket: %s", uv_strerror(rc));
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &D.upstream.sin_addr, ip, sizeof ip);
	log_info("network: sandboxes' DNS forwards to %s:%d", ip, ntohs(D.upstream.sin_port));
	return 0;
}

struct dns_listener *dns_listen(struct net_sbx *ns, cube_err *err)
{
	struct dns_listener *l = calloc(1, sizeof *l);
	if (!l) {
		cube_fail(err, 500, ENOMEM, "DNS listener");
		return NULL;
	}
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = ns->gw};
	int rc = uv_udp_init(D.loop, &l->udp);
	if (rc < 0) {
		free(l);
		cube_fail(err, 500, -rc, "DNS socket: %s", uv_strerror(rc));
		return NULL;
	}
	l->udp.data = l;
	l->ns = ns;
	l->serial = ++D.serial ? D.serial : ++D.serial;
	l->next = D.listeners;
	D.listeners = l;
	if ((rc = uv_udp_bind(&l->udp, (const struct sockaddr *)&a, 0)) < 0 ||
	    (rc = uv_udp_recv_start(&l->udp, alloc_buf, on_query)) < 0) {
		cube_fail(err, 500, -rc, "DNS socket on the gateway: %s", uv_strerror(rc));
		l->ns = NULL;
		dns_close(l);
		return NULL;
	}
	return l;
}

static void on_closed(uv_handle_t *h)
{
	free(h->data);
}

void dns_close(struct dns_listener *l)
{
	for (struct dns_listener **pp = &D.listeners; *pp; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	l->ns = NULL; /* pending answers for it find no listener and are dropped */
	uv_close((uv_handle_t *)&l->udp, on_closed);
}
