/* nftables through libnftables' command interface: whole-table replacement is one atomic batch. */
#include "net/nft.h"

#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static struct {
	struct nft_ctx *ctx;
	char table[64];
} N;

static int run(const char *cmd, cube_err *err)
{
	if (nft_run_cmd_from_buffer(N.ctx, cmd) != 0) {
		const char *e = nft_ctx_get_error_buffer(N.ctx);
		char first[300];
		snprintf(first, sizeof first, "%s", e ? e : "");
		first[strcspn(first, "\n")] = '\0';
		return cube_fail(err, 500, 0, "nftables: %s", first[0] ? first : "command failed");
	}
	return 0;
}

int nft_setup(const char *instance, const char *link_prefix, const char *pool, cube_err *err)
{
	N.ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!N.ctx)
		return cube_fail(err, 500, ENOMEM, "nftables context");
	nft_ctx_buffer_output(N.ctx);
	nft_ctx_buffer_error(N.ctx);
	snprintf(N.table, sizeof N.table, "cube_%s", instance);
	char cmd[4096];
	/* "add table" then "delete table" makes the delete succeed whether or not a previous run left one. */
	snprintf(cmd, sizeof cmd,
		 "add table ip %1$s\n"
		 "delete table ip %1$s\n"
		 "table ip %1$s {\n"
		 "  map http_fwd { type ifname : inet_service; }\n"
		 "  set http_fwd_in { type ifname . inet_service; }\n"
		 "  chain input {\n"
		 "    type filter hook input priority filter - 5; policy accept;\n"
		 "    iifname \"%2$s*\" ct state established,related accept\n"
		 "    iifname \"%2$s*\" udp dport 53 accept\n"
		 "    iifname . tcp dport @http_fwd_in accept\n"
		 "    iifname \"%2$s*\" counter drop\n"
		 "  }\n"

		 "  chain forward {\n"
		 "    type filter hook forward priority filter - 5; policy accept;\n"
		 "    iifname \"%2$s*\" oifname \"%2$s*\" drop\n"
		 "  }\n"
		 "  chain prerouting {\n"
		 "    type nat hook prerouting priority dstnat; policy accept;\n"
		 "    iifname \"%2$s*\" tcp dport 80 redirect to :iifname map @http_fwd\n"
		 "  }\n"
		 "  chain postrouting {\n"
		 "    type nat hook postrouting priority srcnat; policy accept;\n"
		 "    ip saddr %3$s oifname != \"%2$s*\" masquerade\n"
		 "  }\n"
		 "}\n",
		 N.table, link_prefix, pool);
	if (run(cmd, err) < 0)
		return cube_wrap(err, "create table ip %s", N.table);
	return 0;
}

int nft_http_redirect(const char *link, unsigned port, cube_err *err)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "add element ip %1$s http_fwd_in { \"%2$s\" . %3$u }\n"
		 "add element ip %1$s http_fwd { \"%2$s\" : %3$u }\n",
		 N.table, link, port);
	return run(cmd, err);
}

void nft_http_redirect_remove(const char *link, unsigned port)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "delete element ip %1$s http_fwd { \"%2$s\" }\n"
		 "delete element ip %1$s http_fwd_in { \"%2$s\" . %3$u }\n",
		 N.table, link, port);
	cube_err err = {0};
	if (run(cmd, &err) < 0)
		log_warn("network: remove the HTTP redirect of %s: %s", link, err.msg);
}

void nft_teardown(int remove_table)
{
	if (N.ctx && remove_table) {
		char cmd[128];
		cube_err err = {0};
		snprintf(cmd, sizeof cmd, "delete table ip %s\n", N.table);
		if (run(cmd, &err) < 0)
			log_warn("network: %s", err.msg);
	}
	if (N.ctx)
		nft_ctx_free(N.ctx);
	N.ctx = NULL;
}
