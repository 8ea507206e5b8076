/* The nftables table this cubed instance owns ("ip cube_<instance>"), through libnftables: NAT for
 * sandbox egress, the host closed to sandboxes except their DNS resolver, and per-sandbox redirects of
 * plain HTTP to the header-injecting forwarder. The table is replaced whole at start-up. */
#ifndef CUBE_NET_NFT_H
#define CUBE_NET_NFT_H

#include "common/error.h"

/* link_prefix: every sandbox host link starts with it; pool: "198.18.0.0/16". */
int nft_setup(const char *instance, const char *link_prefix, const char *pool, cube_err *err);
/* Redirect TCP port 80 arriving on link to the local forwarder's port (and admit it to the host). */
int nft_http_redirect(const char *link, unsigned port, cube_err *err);
void nft_http_redirect_remove(const char *link, unsigned port);
/* remove_table: also delete the table (no sandbox is left that needs its NAT). */
void nft_teardown(int remove_table);

#endif
