/* The few rtnetlink operations sandbox networking needs, over libmnl (no `ip` processes). Each call
 * opens its own socket in the calling thread's network namespace, so they are thread-safe. */
#ifndef CUBE_NET_NETLINK_H
#define CUBE_NET_NETLINK_H

#include <stdint.h>

#include "common/error.h"

/* A veth pair: host end `host` in this namespace, peer `peer` created directly in netns_fd. */
int nl_veth_create(const char *host, const char *peer, int netns_fd, cube_err *err);
int nl_link_delete(const char *name, cube_err *err);     /* ENODEV is success */
int nl_link_index(const char *name);                     /* 0 if absent */
int nl_link_up(int ifindex, cube_err *err);
int nl_addr_add(int ifindex, uint32_t addr, int prefix, cube_err *err);     /* addr in network order */
int nl_route_default(int ifindex, uint32_t gw, cube_err *err);
/* Call fn for every link whose name starts with prefix. */
int nl_links_foreach(const char *prefix, void (*fn)(const char *name, int ifindex, void *arg), void *arg,
		     cube_err *err);
/* Call fn for every IPv4 address of this namespace (network order). */
int nl_addrs_foreach(void (*fn)(uint32_t addr, int prefix, void *arg), void *arg, cube_err *err);

#endif
