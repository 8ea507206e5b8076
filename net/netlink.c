/* rtnetlink over libmnl: build one request, send it, read until the ack (or the end of a dump). */
#include "net/netlink.h"

#include <net/if.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*nl_cb)(const struct nlmsghdr *nlh, void *arg);

/* Send nlh and run cb on every reply until the ack or NLMSG_DONE. Returns -errno on failure. */
static int nl_talk_once(struct nlmsghdr *nlh, nl_cb cb, void *arg)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	if (!nl)
		return -errno;
	int rc = 0;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		goto out;
	}
	unsigned portid = mnl_socket_get_portid(nl);
	nlh->nlmsg_seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		goto out;
	}
	char *buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl, buf, MNL_SOCKET_BUFFER_SIZE);
		if (n < 0 && errno == EINTR)
			continue; /* a signal, not an answer */
		if (n < 0) {
			rc = -errno;
			break;
		}
		int r = mnl_cb_run(buf, (size_t)n, nlh->nlmsg_seq, portid, (mnl_cb_t)cb, arg);
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == MNL_CB_STOP)
			break;
	}
	free(buf);
out:
	mnl_socket_close(nl);
	return rc;
}

/* A dump that raced with a change of the table ends with NLM_F_DUMP_INTR (libmnl: EINTR): the links of
 * other sandboxes come and go all the time, so ask again. Callbacks must tolerate seeing entries twice. */
static int nl_talk(struct nlmsghdr *nlh, nl_cb cb, void *arg)
{
	int rc;
	for (int i = 0; i < 20; i++) {
		rc = nl_talk_once(nlh, cb, arg);
		if (rc != -EINTR || !(nlh->nlmsg_flags & NLM_F_DUMP))
			break;
	}
	return rc;
}

static struct nlmsghdr *put_header(char *buf, int type, int flags)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (uint16_t)type;
	nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
	return nlh;
}

int nl_veth_create(const char *host, const char *peer, int netns_fd, cube_err *err)
{
	char buf[1024];
	struct nlmsghdr *nlh = put_header(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, host);
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
	struct nlattr *pn = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(nlh, sizeof *pifm);
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, peer);
	mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
	mnl_attr_nest_end(nlh, pn);
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, info);
	int rc = nl_talk(nlh, NULL, NULL);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "create veth %s", host);
	return 0;
}

int nl_link_index(const char *name)
{
	return (int)if_nametoindex(name);
}

int nl_link_delete(const char *name, cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_DELLINK, NLM_F_ACK);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	int rc = nl_talk(nlh, NULL, NULL);
	if (rc < 0 && rc != -ENODEV)
		return cube_fail(err, 500, -rc, "delete link %s", name);
	return 0;
}

int nl_link_up(int ifindex, cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_NEWLINK, NLM_F_ACK);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = ifindex;
	ifm->ifi_flags = IFF_UP;
	ifm->ifi_change = IFF_UP;
	int rc = nl_talk(nlh, NULL, NULL);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "set link %d up", ifindex);
	return 0;
}

int nl_addr_add(int ifindex, uint32_t addr, int prefix, cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (uint8_t)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put_u32(nlh, IFA_LOCAL, addr);
	mnl_attr_put_u32(nlh, IFA_ADDRESS, addr);
	int rc = nl_talk(nlh, NULL, NULL);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "add address to link %d", ifindex);
	return 0;
}

int nl_route_default(int ifindex, uint32_t gw, cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK);
	struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof *rtm);
	rtm->rtm_family = AF_INET;
	rtm->rtm_dst_len = 0;
	rtm->rtm_table = RT_TABLE_MAIN;
	rtm->rtm_protocol = RTPROT_STATIC;
	rtm->rtm_scope = RT_SCOPE_UNIVERSE;
	rtm->rtm_type = RTN_UNICAST;
	mnl_attr_put_u32(nlh, RTA_GATEWAY, gw);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	int rc = nl_talk(nlh, NULL, NULL);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "add default route");
	return 0;
}

struct link_walk {
	const char *prefix;
	void (*fn)(const char *name, int ifindex, void *arg);
	void *arg;
};

static int link_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct link_walk *w = arg;
	struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
	struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof *ifm) {
		if (mnl_attr_get_type(a) == IFLA_IFNAME) {
			const char *name = mnl_attr_get_str(a);
			if (strncmp(name, w->prefix, strlen(w->prefix)) == 0)
				w->fn(name, ifm->ifi_index, w->arg);
		}
	}
	return MNL_CB_OK;
}

int nl_links_foreach(const char *prefix, void (*fn)(const char *name, int ifindex, void *arg), void *arg,
		     cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_GETLINK, NLM_F_DUMP);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof *ifm);
	ifm->ifi_family = AF_UNSPEC;
	struct link_walk w = {prefix, fn, arg};
	int rc = nl_talk(nlh, link_cb, &w);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "list links");
	return 0;
}

struct addr_walk {
	void (*fn)(uint32_t addr, int prefix, void *arg);
	void *arg;
};

static int addr_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct addr_walk *w = arg;
	struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	if (ifa->ifa_family != AF_INET)
		return MNL_CB_OK;
	struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof *ifa) {
		if (mnl_attr_get_type(a) == IFA_LOCAL && mnl_attr_get_payload_len(a) == 4)
			w->fn(mnl_attr_get_u32(a), ifa->ifa_prefixlen, w->arg);
	}
	return MNL_CB_OK;
}

int nl_addrs_foreach(void (*fn)(uint32_t addr, int prefix, void *arg), void *arg, cube_err *err)
{
	char buf[256];
	struct nlmsghdr *nlh = put_header(buf, RTM_GETADDR, NLM_F_DUMP);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof *ifa);
	ifa->ifa_family = AF_INET;
	struct addr_walk w = {fn, arg};
	int rc = nl_talk(nlh, addr_cb, &w);
	if (rc < 0)
		return cube_fail(err, 500, -rc, "list addresses");
	return 0;
}
