/* Map layouts shared by the eBPF program (net/egress.bpf.c) and cubed (net/bpf.c). One set of maps
 * serves every sandbox: keys start with the host-side ifindex, so an LPM key with prefixlen 32 + n
 * matches one sandbox's a.b.c.d/n only. */
#ifndef CUBE_NET_BPF_MAPS_H
#define CUBE_NET_BPF_MAPS_H

#include <linux/types.h>

#define EGRESS_MAX_SANDBOXES 16384
#define EGRESS_MAX_CIDRS 65536
#define EGRESS_MAX_LEARNED 65536

#define EGRESS_F_INTERNET 1u

struct egress_sandbox {
	__u32 addr;       /* the sandbox's address (network order) */
	__u32 gateway;    /* its host-side address, also its DNS server */
	__u32 pool_net, pool_mask;
	__u32 flags;
};

struct egress_key {
	__u32 prefixlen;  /* 32 + CIDR length */
	__u32 ifindex;
	__u32 addr;
};

struct egress_learned_key {
	__u32 ifindex;
	__u32 addr;
};

struct egress_closed_key {
	__u32 prefixlen;
	__u32 addr;
};

#endif
