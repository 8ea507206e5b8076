/* The egress eBPF program and its maps (layouts in net/bpf_maps.h), loaded once per cubed with libbpf
 * and attached to every sandbox's host-side veth (tc clsact ingress). Thread-safe (bpf syscalls). */
#ifndef CUBE_NET_BPF_H
#define CUBE_NET_BPF_H

#include <stdint.h>

#include "common/error.h"
#include "net/bpf_maps.h"

int egress_load(uint32_t pool_net, uint32_t pool_mask, cube_err *err);
/* Attach (or replace, after a restart) the program on ifindex's ingress. */
int egress_attach(int ifindex, cube_err *err);
int egress_sandbox_set(int ifindex, const struct egress_sandbox *sb, cube_err *err);
/* Remove the sandbox and every entry keyed by ifindex. */
void egress_sandbox_forget(int ifindex);
int egress_cidr_add(int ifindex, int deny, uint32_t addr, int len, cube_err *err);
/* Remove every allow/deny CIDR of ifindex (before loading a new policy). */
void egress_cidrs_clear(int ifindex);
int egress_learned_put(int ifindex, uint32_t addr, uint64_t expiry_ns, cube_err *err);
void egress_learned_del(int ifindex, uint32_t addr);
uint64_t egress_now_ns(void);   /* the clock the program compares expiries with */

#endif
