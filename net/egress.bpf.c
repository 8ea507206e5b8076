/* Sandbox egress policy, attached at tc ingress of each sandbox's host-side veth (= everything the
 * sandbox sends). Order: sandbox-to-sandbox drop > allowOut (CIDRs, then addresses learned from DNS
 * answers for allowed domains) > denyOut > default (internet on: everything but the closed ranges).
 * All IPv4 protocols are policed by destination; IPv6 is dropped; ARP passes. Compiled by the meson
 * build with clang -target bpf and embedded in cubed (net/bpf.c). Maps are explained in net/bpf.h. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "net/bpf_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);                   /* host-side ifindex */
	__type(value, struct egress_sandbox);
	__uint(max_entries, EGRESS_MAX_SANDBOXES);
} sandboxes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct egress_key);
	__type(value, __u8);
	__uint(max_entries, EGRESS_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} allow_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct egress_key);
	__type(value, __u8);
	__uint(max_entries, EGRESS_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} deny_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct egress_learned_key);
	__type(value, __u64);                 /* expiry, bpf_ktime_get_ns() clock */
	__uint(max_entries, EGRESS_MAX_LEARNED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} learned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct egress_closed_key);
	__type(value, __u8);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} closed SEC(".maps");

SEC("tc")
int cube_egress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct egress_sandbox *sb = bpf_map_lookup_elem(&sandboxes, &ifindex);
	if (!sb)
		return TC_ACT_SHOT; /* not (or no longer) a sandbox we know: fail closed */
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return TC_ACT_SHOT;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_SHOT;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return TC_ACT_SHOT;
	if (ip->saddr != sb->addr)
		return TC_ACT_SHOT; /* spoofed source */
	__u32 dst = ip->daddr;
	if (dst == sb->gateway)
		return TC_ACT_OK;   /* the host: its input chain admits DNS only (net/nft.c) */
	if ((dst & sb->pool_mask) == sb->pool_net)
		return TC_ACT_SHOT; /* other sandboxes, always */
	struct egress_key k = {.prefixlen = 64, .ifindex = ifindex, .addr = dst};
	if (bpf_map_lookup_elem(&allow_cidrs, &k))
		return TC_ACT_OK;
	struct egress_learned_key lk = {.ifindex = ifindex, .addr = dst};
	__u64 *exp = bpf_map_lookup_elem(&learned, &lk);
	if (exp && *exp > bpf_ktime_get_ns())
		return TC_ACT_OK;
	if (bpf_map_lookup_elem(&deny_cidrs, &k))
		return TC_ACT_SHOT;
	if (!(sb->flags & EGRESS_F_INTERNET))
		return TC_ACT_SHOT;
	struct egress_closed_key ck = {.prefixlen = 32, .addr = dst};
	if (bpf_map_lookup_elem(&closed, &ck))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
