/* Path resolution shared by every envd path parameter (§3.8): empty -> default workdir or home,
 * ~ and ~/x -> home, ~name -> error, relative -> joined with home; the result is cleaned lexically
 * (like Go's filepath.Clean), so ".." cannot climb above "/". */
#include "envd/envd.h"

#include <stdio.h>
#include <string.h>

/* Clean an absolute path in place: collapse "//", drop ".", resolve ".." lexically. */
static void clean_path(char *p)
{
	char *out = p;   /* write cursor; p[0] == '/' */
	const char *in = p;
	size_t len = 0;
	while (*in) {
		while (*in == '/')
			in++;
		const char *seg = in;
		while (*in && *in != '/')
			in++;
		size_t sl = (size_t)(in - seg);
		if (sl == 0 || (sl == 1 && seg[0] == '.'))
			continue;
		if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 0)
				len--; /* the slash before the dropped segment */
			continue;
		}
		out[len++] = '/';
		memmove(out + len, seg, sl);
		len += sl;
	}
	if (len == 0)
		out[len++] = '/';
	out[len] = '\0';
}

int envd_resolve_path(const char *in, const struct envd_user *u, char *out, size_t outlen, cube_err *err)
{
	const char *home = u && u->home[0] ? u->home : "/";
	int n;
	if (!in || !*in) {
		const char *base = envd.default_workdir && *envd.default_workdir ? envd.default_workdir : home;
		n = snprintf(out, outlen, "%s%s", base[0] == '/' ? "" : "/", base);
	} else if (in[0] == '~') {
		if (in[1] && in[1] != '/')
			return cube_fail(err, 400, 0, "path '%s' is invalid: home of another user is not supported", in);
		n = snprintf(out, outlen, "%s/%s", home, in + 1);
	} else if (in[0] == '/') {
		n = snprintf(out, outlen, "%s", in);
	} else {
		n = snprintf(out, outlen, "%s/%s", home, in);
	}
	if (n < 0 || (size_t)n >= outlen)
		return cube_fail(err, 400, 0, "path '%s' is too long", in ? in : "");
	if (out[0] != '/')
		return cube_fail(err, 400, 0, "path '%s' is not absolute", out);
	clean_path(out);
	return 0;
}
