/* Layer copies (image/layer_copy.h). Everything works on directory fds with *at() calls and O_NOFOLLOW,
 * so a sandbox's symlinks never lead the copy outside the layer. */
#include "image/layer_copy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <search.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "image/layer_store.h"

#define OPAQUE_XATTR "trusted.overlay.opaque"

/* What the runtime itself puts in a writable layer: mount points and the files it writes at start.
 * /tmp is the user's (an ordinary directory of the overlay): it is copied like any other. */
static bool runtime_entry(int depth, const char *parent, const char *name)
{
	if (depth == 0)
		return !strcmp(name, ".cube") || !strcmp(name, "dev") || !strcmp(name, "proc") || !strcmp(name, "sys");
	return depth == 1 && !strcmp(parent, "etc") &&
	       (!strcmp(name, "hostname") || !strcmp(name, "hosts") || !strcmp(name, "resolv.conf"));
}

/* skip_opaque: leave the opaque marker out (a merge decides it anew). */
static int copy_xattrs(int src, int dst, bool skip_opaque)
{
	char names[4096], val[4096];
	ssize_t n = flistxattr(src, names, sizeof names);
	if (n < 0)
		return errno == ENOTSUP ? 0 : -1;
	for (char *k = names; k < names + n; k += strlen(k) + 1) {
		if (skip_opaque && !strcmp(k, OPAQUE_XATTR))
			continue;
		ssize_t v = fgetxattr(src, k, val, sizeof val);
		if (v < 0 || fsetxattr(dst, k, val, (size_t)v, 0) < 0)
			return -1;
	}
	return 0;
}

static bool is_opaque(int dirfd)
{
	char v[2];
	return fgetxattr(dirfd, OPAQUE_XATTR, v, sizeof v) == 1 && v[0] == 'y';
}

/* One copy or merge: the new root, and the files with several links copied so far, so their other
 * names become links again (tsearch tree keyed by source device and inode). */
struct copy_ctx {
	int root;
	void *links;
	cube_err *err;
};

struct link_seen {
	dev_t dev;
	ino_t ino;
	char rel[]; /* its first name in the copy, relative to the root */
};

static int link_cmp(const void *a, const void *b)
{
	const struct link_seen *x = a, *y = b;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

static void ctx_free(struct copy_ctx *c)
{
	tdestroy(c->links, free);
	c->links = NULL;
}

/* The relative path of `name` in the directory at `rel` ("" is the root). */
static void join(char *out, size_t len, const char *rel, const char *name)
{
	snprintf(out, len, "%s%s%s", rel, rel[0] ? "/" : "", name);
}

/* A regular file with other names: 1 when it was linked to its earlier copy, 0 when it must be copied
 * (and is now remembered), -1 on error. */
static int link_again(struct copy_ctx *c, int dfd, const char *n, const char *rel_n, const struct stat *st)
{
	if (st->st_nlink < 2)
		return 0;
	struct link_seen key = {.dev = st->st_dev, .ino = st->st_ino};
	void *found = tfind(&key, &c->links, link_cmp);
	if (found) {
		const struct link_seen *first = *(struct link_seen **)found;
		return linkat(c->root, first->rel, dfd, n, 0) < 0 ? -1 : 1;
	}
	size_t len = strlen(rel_n) + 1;
	struct link_seen *e = malloc(sizeof *e + len);
	if (!e)
		return -1;
	e->dev = st->st_dev;
	e->ino = st->st_ino;
	memcpy(e->rel, rel_n, len);
	if (!tsearch(e, &c->links, link_cmp)) {
		free(e);
		return -1;
	}
	return 0;
}

static int copy_tree(struct copy_ctx *c, int sfd, int dfd, int depth, const char *rel);

/* Owner, mode, times of a finished directory, then make it durable. */
static int finish_dir(int d2, const struct stat *st)
{
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	return fchown(d2, st->st_uid, st->st_gid) < 0 || fchmod(d2, st->st_mode & 07777) < 0 || fsync(d2) < 0 ||
	       futimens(d2, ts) < 0 ? -1 : 0;
}

/* Copy the entry `n` (st from fstatat) of directory sfd (at `rel` in the copy) into dfd; a directory
 * with everything below. */
static int copy_entry(struct copy_ctx *c, int sfd, int dfd, const char *n, const struct stat *st, int depth,
		      const char *rel)
{
	cube_err *err = c->err;
	char rel_n[PATH_MAX];
	int rc = 0, linked = 0;
	struct timespec ts[2] = {st->st_atim, st->st_mtim};
	join(rel_n, sizeof rel_n, rel, n);
	if (S_ISREG(st->st_mode) && (linked = link_again(c, dfd, n, rel_n, st)) != 0)
		return linked < 0 ? cube_fail(err, errno == ENOSPC ? 507 : 500, errno, "link %s", n) : 0;
	if (S_ISDIR(st->st_mode)) {
		int s2 = -1, d2 = -1;
		if (mkdirat(dfd, n, 0700) < 0 || (s2 = openat(sfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
		    (d2 = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 || copy_xattrs(s2, d2, false) < 0)
			rc = cube_fail(err, 500, errno, "copy dir %s", n);
		if (rc == 0)
			rc = copy_tree(c, s2, d2, depth + 1, rel_n);
		if (rc == 0 && finish_dir(d2, st) < 0)
			rc = cube_fail(err, 500, errno, "finish dir %s", n);
		if (s2 >= 0)
			close(s2);
		if (d2 >= 0)
			close(d2);
	} else if (S_ISREG(st->st_mode)) {
		int s2 = openat(sfd, n, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		int d2 = s2 < 0 ? -1 : openat(dfd, n, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (d2 < 0 || cube_copy_fd(s2, d2) < 0 || copy_xattrs(s2, d2, false) < 0 || fchown(d2, st->st_uid, st->st_gid) < 0 ||
		    fchmod(d2, st->st_mode & 07777) < 0 || futimens(d2, ts) < 0 || fsync(d2) < 0)
			rc = cube_fail(err, errno == ENOSPC ? 507 : 500, errno, "copy file %s", n);
		if (s2 >= 0)
			close(s2);
		if (d2 >= 0)
			close(d2);
	} else if (S_ISLNK(st->st_mode)) {
		char target[PATH_MAX];
		ssize_t len = readlinkat(sfd, n, target, sizeof target - 1);
		if (len < 0 || (target[len] = '\0', symlinkat(target, dfd, n) < 0) ||
		    fchownat(dfd, n, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
		    utimensat(dfd, n, ts, AT_SYMLINK_NOFOLLOW) < 0)
			rc = cube_fail(err, 500, errno, "copy symlink %s", n);
	} else {
		/* Whiteouts (char 0/0), fifos, sockets, device nodes: cubed may create them in the init namespace. */
		if (mknodat(dfd, n, st->st_mode, st->st_rdev) < 0 ||
		    fchownat(dfd, n, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
			rc = cube_fail(err, 500, errno, "copy node %s", n);
	}
	return rc;
}

/* Directory fds are dup'd for readdir so the caller keeps its own. */
static DIR *open_listing(int fd)
{
	int d = dup(fd);
	DIR *dir = d >= 0 ? fdopendir(d) : NULL;
	if (!dir && d >= 0)
		close(d);
	return dir;
}

/* The last component of a relative path (the directory's own name, for runtime_entry). */
static const char *base_of(const char *rel)
{
	const char *slash = strrchr(rel, '/');
	return slash ? slash + 1 : rel;
}

/* Copy the directory sfd (at `rel` in the copy) into the (new, empty) directory dfd. */
static int copy_tree(struct copy_ctx *c, int sfd, int dfd, int depth, const char *rel)
{
	DIR *d = open_listing(sfd);
	if (!d)
		return cube_fail(c->err, 500, errno, "read layer dir");
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		const char *n = e->d_name;
		if (!strcmp(n, ".") || !strcmp(n, "..") || runtime_entry(depth, base_of(rel), n))
			continue;
		struct stat st;
		if (fstatat(sfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
			rc = cube_fail(c->err, 500, errno, "stat %s", n);
		else
			rc = copy_entry(c, sfd, dfd, n, &st, depth, rel);
	}
	closedir(d);
	return rc;
}

/* Create scratch/rootfs with the root's attributes, run fill on it, clean up on failure. */
static int with_new_root(const char *scratch, int src_root, cube_err *err,
			 int (*fill)(struct copy_ctx *c, void *arg), void *arg)
{
	struct copy_ctx c = {.root = -1, .err = err};
	char root[PATH_MAX + 80];
	snprintf(root, sizeof root, "%s/rootfs", scratch);
	int rc = -1, dfd = -1;
	struct stat st;
	layer_store_remove_tree(scratch);
	if (mkdir(scratch, 0700) < 0 || mkdir(root, 0700) < 0 ||
	    (dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fstat(src_root, &st) < 0) {
		cube_fail(err, 500, errno, "create %s", root);
	} else if ((c.root = dfd, fill(&c, arg) == 0) && copy_xattrs(src_root, dfd, true) == 0 &&
		   fchown(dfd, st.st_uid, st.st_gid) == 0 && fchmod(dfd, st.st_mode & 07777) == 0 && fsync(dfd) == 0) {
		rc = 0;
	} else if (!err->msg[0]) {
		cube_fail(err, 500, errno, "copy the root of the layer");
	}
	ctx_free(&c);
	if (dfd >= 0)
		close(dfd);
	if (rc < 0)
		layer_store_remove_tree(scratch);
	return rc;
}

static int fill_copy(struct copy_ctx *c, void *arg)
{
	return copy_tree(c, *(int *)arg, c->root, 0, "");
}

int layer_copy(const char *upper, const char *scratch, cube_err *err)
{
	int sfd = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0)
		return cube_fail(err, 409, errno, "no writable layer at %s", upper);
	int rc = with_new_root(scratch, sfd, err, fill_copy, &sfd);
	close(sfd);
	return rc;
}

/* ---- merging a stack ---- */

static int merge_dirs(struct copy_ctx *c, const int *fds, size_t n, int dfd, int depth, const char *rel);

/* The directory `name`, topmost in layer 0 of fds[0..n): gather its namesakes below until one is
 * opaque, or a layer has something else there (a file or a whiteout hides everything under it). */
static int merge_one_dir(struct copy_ctx *c, const int *fds, size_t n, int dfd, const char *name, const struct stat *st,
			 int depth, const char *rel)
{
	cube_err *err = c->err;
	char rel_n[PATH_MAX];
	join(rel_n, sizeof rel_n, rel, name);
	int chain[LAYER_MERGE_MAX];
	size_t m = 0;
	int rc = 0, hides_below = 0, d2 = -1;
	for (size_t j = 0; j < n && !hides_below && rc == 0; j++) {
		struct stat sj;
		if (fstatat(fds[j], name, &sj, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				rc = cube_fail(err, 500, errno, "stat %s", name);
			continue; /* not in this layer: look further down */
		}
		if (!S_ISDIR(sj.st_mode)) {
			hides_below = 1; /* overlay stops merging at a non-directory or a whiteout */
			break;
		}
		int c = openat(fds[j], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (c < 0) {
			rc = cube_fail(err, 500, errno, "open dir %s", name);
			break;
		}
		chain[m++] = c;
		hides_below = is_opaque(c);
	}
	if (rc == 0 && m == 0)
		rc = cube_fail(err, 500, ENOENT, "merge dir %s: gone", name);
	if (rc == 0 && (mkdirat(dfd, name, 0700) < 0 ||
			(d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
			copy_xattrs(chain[0], d2, true) < 0 ||
			(hides_below && fsetxattr(d2, OPAQUE_XATTR, "y", 1, 0) < 0)))
		rc = cube_fail(err, 500, errno, "merge dir %s", name);
	if (rc == 0)
		rc = merge_dirs(c, chain, m, d2, depth + 1, rel_n);
	if (rc == 0 && finish_dir(d2, st) < 0)
		rc = cube_fail(err, 500, errno, "finish dir %s", name);
	for (size_t j = 0; j < m; j++)
		close(chain[j]);
	if (d2 >= 0)
		close(d2);
	return rc;
}

/* Merge the directories fds[0..n) (topmost first, all the same path) into the new directory dfd. */
static int merge_dirs(struct copy_ctx *c, const int *fds, size_t n, int dfd, int depth, const char *rel)
{
	cube_err *err = c->err;
	int rc = 0;
	for (size_t k = 0; k < n && rc == 0; k++) {
		DIR *d = open_listing(fds[k]);
		if (!d)
			return cube_fail(err, 500, errno, "read layer dir");
		struct dirent *e;
		while (rc == 0 && (e = readdir(d))) {
			const char *name = e->d_name;
			if (!strcmp(name, ".") || !strcmp(name, "..") || runtime_entry(depth, base_of(rel), name))
				continue;
			bool above = false; /* a higher layer has it: decided there */
			struct stat st;
			for (size_t j = 0; j < k && !above; j++)
				above = fstatat(fds[j], name, &st, AT_SYMLINK_NOFOLLOW) == 0;
			if (above)
				continue;
			if (fstatat(fds[k], name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				rc = cube_fail(err, 500, errno, "stat %s", name);
			else if (S_ISDIR(st.st_mode) && k + 1 < n)
				rc = merge_one_dir(c, fds + k, n - k, dfd, name, &st, depth, rel);
			else
				rc = copy_entry(c, fds[k], dfd, name, &st, depth, rel); /* whiteouts too */
		}
		closedir(d);
	}
	return rc;
}

struct merge_arg {
	const int *fds;
	size_t n;
};

static int fill_merge(struct copy_ctx *c, void *arg)
{
	struct merge_arg *m = arg;
	return merge_dirs(c, m->fds, m->n, c->root, 0, "");
}

int layer_merge(const char *const *layers, size_t n, const char *scratch, cube_err *err)
{
	int fds[LAYER_MERGE_MAX];
	size_t opened = 0;
	int rc = 0;
	if (n == 0 || n > LAYER_MERGE_MAX)
		return cube_fail(err, 500, 0, "merge of %zu layers", n);
	for (; opened < n; opened++) {
		fds[opened] = open(layers[opened], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fds[opened] < 0) {
			rc = cube_fail(err, 409, errno, "no layer at %s", layers[opened]);
			break;
		}
	}
	if (rc == 0) {
		struct merge_arg m = {.fds = fds, .n = n};
		rc = with_new_root(scratch, fds[0], err, fill_merge, &m);
	}
	for (size_t i = 0; i < opened; i++)
		close(fds[i]);
	return rc;
}
