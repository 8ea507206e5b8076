/* Users and the access token. envd is static, so users come straight from the sandbox's /etc/passwd
 * and /etc/group (fgetpwent/fgetgrent: no NSS modules to load). */
#include "envd/envd.h"

#include "common/util.h"

#include <grp.h>
#include <openssl/crypto.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

static const char *passwd_file = "/etc/passwd";
static const char *group_file = "/etc/group";

void envd_users_set_files(const char *passwd, const char *group)
{
	if (passwd)
		passwd_file = passwd;
	if (group)
		group_file = group;
}

static void add_group(struct envd_user *u, gid_t gid)
{
	for (int i = 0; i < u->ngroups; i++)
		if (u->groups[i] == gid)
			return;
	if (u->ngroups < (int)CUBE_ARRAY_LEN(u->groups))
		u->groups[u->ngroups++] = gid;
}

int envd_user_lookup(const char *name, struct envd_user *out, cube_err *err)
{
	if (!name || !*name || strlen(name) >= sizeof out->name)
		return cube_fail(err, 401, 0, "invalid username: '%s'", name ? name : "");
	cleanup_fclose FILE *pf = fopen(passwd_file, "re");
	if (!pf)
		return cube_fail(err, 500, errno, "cannot read %s", passwd_file);
	struct passwd *pw;
	int found = 0;
	while ((pw = fgetpwent(pf)))
		if (strcmp(pw->pw_name, name) == 0) {
			found = 1;
			break;
		}
	if (!found)
		return cube_fail(err, 401, 0, "invalid username: '%s'", name);
	memset(out, 0, sizeof *out);
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	snprintf(out->name, sizeof out->name, "%s", pw->pw_name);
	snprintf(out->home, sizeof out->home, "%s", pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
	snprintf(out->shell, sizeof out->shell, "%s", pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh");
	add_group(out, out->gid);

	/* Supplementary groups: every group that lists the user as a member. */
	cleanup_fclose FILE *gf = fopen(group_file, "re");
	struct group *gr;
	while (gf && (gr = fgetgrent(gf)))
		for (char **m = gr->gr_mem; m && *m; m++)
			if (strcmp(*m, name) == 0) {
				add_group(out, gr->gr_gid);
				break;
			}
	return 0;
}

int envd_token_ok(http_req *req)
{
	if (!envd.access_token || !*envd.access_token)
		return 1;
	const char *got = http_req_header(req, "X-Access-Token");
	if (!got)
		return 0;
	size_t lg = strlen(got), lt = strlen(envd.access_token);
	/* Lengths are not secret; the contents are compared in constant time. */
	return lg == lt && CRYPTO_memcmp(got, envd.access_token, lt) == 0;
}
