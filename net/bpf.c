/* libbpf side of the egress policy: open the object embedded at build time (egress_bpf_obj.c,
 * generated from egress.bpf.c), load it, fill the global "closed ranges" map, attach per link. */
#include "net/bpf.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

extern const unsigned char cube_egress_bpf_obj[];
extern const unsigned long cube_egress_bpf_obj_len;

static struct {
	struct bpf_object *obj;
	int prog_fd, sandboxes_fd, allow_fd, deny_fd, learned_fd, closed_fd;
} B = {.prog_fd = -1};

/* Closed while the internet is allowed, unless explicitly allowed: RFC 1918, loopback, link-local
 * (incl. 169.254.169.254 metadata), CGNAT, "this network", multicast and reserved. */
static const char *const closed_ranges[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
	"192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
};

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	/* bpf_tc_hook_create on a link that already has its clsact qdisc (after a restart): expected */
	if (strstr(fmt, "Kernel error message")) {
		char probe[256];
		va_list cp;
		va_copy(cp, ap);
		vsnprintf(probe, sizeof probe, fmt, cp);
		va_end(cp);
		if (strstr(probe, "Exclusivity flag on"))
			return 0;
	}
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("libbpf: %s", msg);
	return 0;
}

static int map_fd(const char *name, cube_err *err)
{
	struct bpf_map *m = bpf_object__find_map_by_name(B.obj, name);
	int fd = m ? bpf_map__fd(m) : -1;
	if (fd < 0)
		return cube_fail(err, 500, ENOENT, "egress program: map %s missing", name);
	return fd;
}

int egress_load(uint32_t pool_net, uint32_t pool_mask, cube_err *err)
{
	(void)pool_net;
	(void)pool_mask;
	libbpf_set_print(libbpf_log);
	LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = "cube_egress");
	B.obj = bpf_object__open_mem(cube_egress_bpf_obj, cube_egress_bpf_obj_len, &oo);
	if (!B.obj)
		return cube_fail(err, 500, errno, "open the egress eBPF object");
	if (bpf_object__load(B.obj) < 0)
		return cube_fail(err, 500, errno, "load the egress eBPF program (needs root and a kernel with "
				 "BPF_SYSCALL and tc clsact)");
	struct bpf_program *p = bpf_object__find_program_by_name(B.obj, "cube_egress");
	B.prog_fd = p ? bpf_program__fd(p) : -1;
	if (B.prog_fd < 0)
		return cube_fail(err, 500, ENOENT, "egress program missing in the object");
	if ((B.sandboxes_fd = map_fd("sandboxes", err)) < 0 || (B.allow_fd = map_fd("allow_cidrs", err)) < 0 ||
	    (B.deny_fd = map_fd("deny_cidrs", err)) < 0 || (B.learned_fd = map_fd("learned", err)) < 0 ||
	    (B.closed_fd = map_fd("closed", err)) < 0)
		return -1;
	for (size_t i = 0; i < sizeof closed_ranges / sizeof *closed_ranges; i++) {
		char ip[32];
		snprintf(ip, sizeof ip, "%s", closed_ranges[i]);
		char *slash = strchr(ip, '/');
		*slash = '\0';
		struct egress_closed_key k = {.prefixlen = (unsigned)atoi(slash + 1)};
		inet_pton(AF_INET, ip, &k.addr);
		__u8 v = 1;
		if (bpf_map_update_elem(B.closed_fd, &k, &v, BPF_ANY) < 0)
			return cube_fail(err, 500, errno, "fill closed ranges");
	}
	return 0;
}

int egress_attach(int ifindex, cube_err *err)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	int rc = bpf_tc_hook_create(&hook);
	if (rc < 0 && rc != -EEXIST)
		return cube_fail(err, 500, -rc, "create clsact qdisc on link %d", ifindex);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1, .prog_fd = B.prog_fd, .flags = BPF_TC_F_REPLACE);
	rc = bpf_tc_attach(&hook, &opts);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "attach the egress program to link %d", ifindex);
	return 0;
}

int egress_sandbox_set(int ifindex, const struct egress_sandbox *sb, cube_err *err)
{
	__u32 k = (__u32)ifindex;
	if (bpf_map_update_elem(B.sandboxes_fd, &k, sb, BPF_ANY) < 0)
		return cube_fail(err, 500, errno, "egress map: sandbox %d", ifindex);
	return 0;
}

/* Delete every key of a map whose ifindex field matches: collect first, delete after, so the walk
 * never loses its place. */
static void delete_keys(int fd, size_t keysz, size_t ifoff, __u32 ifindex)
{
	unsigned char key[16], *found = NULL;
	size_t n = 0, cap = 0;
	int have = 0;
	while (bpf_map_get_next_key(fd, have ? key : NULL, key) == 0) {
		have = 1;
		__u32 idx;
		memcpy(&idx, key + ifoff, sizeof idx);
		if (idx != ifindex)
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			unsigned char *nf = realloc(found, nc * keysz);
			if (!nf)
				break;
			found = nf;
			cap = nc;
		}
		memcpy(found + n++ * keysz, key, keysz);
	}
	for (size_t i = 0; i < n; i++)
		bpf_map_delete_elem(fd, found + i * keysz);
	free(found);
}

void egress_cidrs_clear(int ifindex)
{
	delete_keys(B.allow_fd, sizeof(struct egress_key), offsetof(struct egress_key, ifindex), (__u32)ifindex);
	delete_keys(B.deny_fd, sizeof(struct egress_key), offsetof(struct egress_key, ifindex), (__u32)ifindex);
}

void egress_sandbox_forget(int ifindex)
{
	__u32 k = (__u32)ifindex;
	bpf_map_delete_elem(B.sandboxes_fd, &k);
	egress_cidrs_clear(ifindex);
	delete_keys(B.learned_fd, sizeof(struct egress_learned_key), offsetof(struct egress_learned_key, ifindex),
		    (__u32)ifindex);
}

int egress_cidr_add(int ifindex, int deny, uint32_t addr, int len, cube_err *err)
{
	struct egress_key k = {.prefixlen = 32 + (unsigned)len, .ifindex = (__u32)ifindex, .addr = addr};
	__u8 v = 1;
	if (bpf_map_update_elem(deny ? B.deny_fd : B.allow_fd, &k, &v, BPF_ANY) < 0)
		return cube_fail(err, 500, errno, "egress map: add CIDR");
	return 0;
}

int egress_learned_put(int ifindex, uint32_t addr, uint64_t expiry_ns, cube_err *err)
{
	struct egress_learned_key k = {.ifindex = (__u32)ifindex, .addr = addr};
	__u64 v = expiry_ns;
	if (bpf_map_update_elem(B.learned_fd, &k, &v, BPF_ANY) < 0)
		return cube_fail(err, 500, errno, "egress map: learned address");
	return 0;
}

void egress_learned_del(int ifindex, uint32_t addr)
{
	struct egress_learned_key k = {.ifindex = (__u32)ifindex, .addr = addr};
	bpf_map_delete_elem(B.learned_fd, &k);
}

uint64_t egress_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* bpf_ktime_get_ns() is CLOCK_MONOTONIC */
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
