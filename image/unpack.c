/* Layer unpacking with libarchive (tar + gzip/zstd/none). Parents are resolved with openat2 beneath the
 * layer root and never through a symlink, leaves are created with *at() calls on that parent without
 * following anything, so a hostile archive can only ever write inside its own layer directory. */
#include "image/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"

#define DEFAULT_MAX_BYTES (64ULL << 30)

struct ctx {
	int root;
	const struct unpack_opts *o;
	struct unpack_stats *st;
	unsigned long long max;
	cube_err *err;
	const char *entry; /* the archive's name of the entry being unpacked, for messages */
};

static int bad(struct ctx *c, const char *why)
{
	return cube_fail(c->err, 422, 0, "layer entry '%s': %s", c->entry, why);
}

static int host_fail(struct ctx *c, const char *what)
{
	return cube_fail(c->err, 500, errno, "layer entry '%s': %s", c->entry, what);
}

static int beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {.flags = (unsigned long long)flags | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* Normalise an archive path into rel (no leading "./" or "/", no "." parts, no trailing '/'). Refuses
 * absolute paths and any ".." part. */
static int clean_path(struct ctx *c, const char *in, char *rel, size_t cap)
{
	if (in[0] == '/')
		return bad(c, "absolute path");
	size_t n = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return bad(c, "path leaves the layer ('..')");
		if (len && !(len == 1 && p[0] == '.')) {
			if (n + len + 2 > cap)
				return bad(c, "path too long");
			if (n)
				rel[n++] = '/';
			memcpy(rel + n, p, len);
			n += len;
		}
		p = e;
	}
	rel[n] = '\0';
	return 0;
}

static uid_t shift(struct ctx *c, long long id, bool *ok)
{
	if (id < 0 || (unsigned long long)id >= c->o->uid_count) {
		*ok = false;
		return 0;
	}
	return (uid_t)(c->o->uid_base + (unsigned long long)id);
}

/* Open the parent directory of rel beneath the root, creating missing directories (archives may omit
 * them); *leaf points at the last component. */
static int open_parent(struct ctx *c, char *rel, const char **leaf)
{
	char *slash = strrchr(rel, '/');
	if (!slash) {
		*leaf = rel;
		return fcntl(c->root, F_DUPFD_CLOEXEC, 3);
	}
	*slash = '\0';
	*leaf = slash + 1;
	int fd = beneath(c->root, rel, O_PATH | O_DIRECTORY);
	if (fd >= 0 || errno != ENOENT) {
		if (fd < 0)
			bad(c, errno == ELOOP || errno == EXDEV ? "path goes through a symlink" :
			       errno == ENOTDIR ? "a parent is not a directory" : strerror(errno));
		*slash = '/';
		return fd;
	}
	/* Walk down, creating what is missing. */
	int cur = fcntl(c->root, F_DUPFD_CLOEXEC, 3);
	char *p = rel;
	while (cur >= 0 && p) {
		char *next = strchr(p, '/');
		if (next)
			*next = '\0';
		if (mkdirat(cur, p, 0755) == 0 &&
		    fchownat(cur, p, c->o->uid_base, c->o->uid_base, AT_SYMLINK_NOFOLLOW) < 0) {
			host_fail(c, "chown implicit directory");
			close(cur);
			cur = -1;
			break;
		}
		int sub = beneath(cur, p, O_PATH | O_DIRECTORY);
		if (sub < 0)
			bad(c, errno == ELOOP || errno == EXDEV ? "path goes through a symlink" :
			       "a parent is not a directory");
		close(cur);
		cur = sub;
		if (next)
			*next = '/';
		p = next ? next + 1 : NULL;
	}
	*slash = '/';
	return cur;
}

/* Make room for a new leaf: an earlier entry of this layer with the same name is replaced (directories
 * only when empty, as tar does). */
static int clear_leaf(struct ctx *c, int dir, const char *leaf)
{
	if (unlinkat(dir, leaf, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno == EISDIR || errno == EPERM) && unlinkat(dir, leaf, AT_REMOVEDIR) == 0)
		return 0;
	return host_fail(c, "replace earlier entry");
}

/* Only xattrs that cannot steer the host: user.* and file capabilities. trusted.* (overlay metadata such
 * as redirects) and security labels from an image are dropped. */
static int apply_xattrs(struct ctx *c, struct archive_entry *e, int fd)
{
	const char *name;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		if (strncmp(name, "user.", 5) != 0 && strcmp(name, "security.capability") != 0)
			continue;
		if (fsetxattr(fd, name, value, size, 0) < 0 && errno != ENOTSUP)
			return host_fail(c, name);
	}
	return 0;
}

static int write_data(struct ctx *c, struct archive *a, int fd, long long size)
{
	const void *buf;
	size_t len;
	la_int64_t off;
	int r;
	while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
		c->st->bytes += len;
		if (c->st->bytes > c->max)
			return cube_fail(c->err, 422, EFBIG, "layer entry '%s': layer expands past %llu bytes", c->entry,
					 c->max);
		const char *p = buf;
		while (len) {
			ssize_t w = pwrite(fd, p, len, off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return host_fail(c, "write");
			p += w;
			off += w;
			len -= (size_t)w;
		}
	}
	if (r != ARCHIVE_EOF)
		return cube_fail(c->err, 422, 0, "layer entry '%s': %s", c->entry, archive_error_string(a));
	/* Sparse tails: the archive's size is the file's size. */
	if (ftruncate(fd, size) < 0)
		return host_fail(c, "truncate");
	return 0;
}

/* Owner, xattrs, then mode: chown clears setuid bits and capabilities, so it goes first. */
static int apply_meta(struct ctx *c, struct archive_entry *e, int fd, uid_t uid, gid_t gid, bool times)
{
	if (fchown(fd, uid, gid) < 0)
		return host_fail(c, "chown");
	if (apply_xattrs(c, e, fd) < 0)
		return -1;
	if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
		return host_fail(c, "chmod");
	if (times) {
		struct timespec ts[2] = {{.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)},
					 {.tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e)}};
		futimens(fd, ts);
	}
	return 0;
}

static int whiteout(struct ctx *c, int dir, const char *leaf)
{
	if (strcmp(leaf, ".wh..wh..opq") == 0) {
		int fd = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) < 0) {
			host_fail(c, "mark directory opaque");
			if (fd >= 0)
				close(fd);
			return -1;
		}
		close(fd);
		return 0;
	}
	const char *name = leaf + 4;
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return bad(c, "invalid whiteout");
	if (clear_leaf(c, dir, name) < 0)
		return -1;
	if (mknodat(dir, name, S_IFCHR, makedev(0, 0)) < 0 ||
	    fchownat(dir, name, c->o->uid_base, c->o->uid_base, AT_SYMLINK_NOFOLLOW) < 0)
		return host_fail(c, "create whiteout");
	return 0;
}

static int unpack_entry(struct ctx *c, struct archive *a, struct archive_entry *e)
{
	char rel[4096];
	c->entry = archive_entry_pathname(e);
	if (!c->entry)
		return cube_fail(c->err, 422, 0, "layer entry without a name");
	if (clean_path(c, c->entry, rel, sizeof rel) < 0)
		return -1;
	bool ok = true;
	uid_t uid = shift(c, archive_entry_uid(e), &ok);
	gid_t gid = shift(c, archive_entry_gid(e), &ok);
	if (!ok)
		return bad(c, "owner outside the sandbox's uid range");
	mode_t type = archive_entry_filetype(e);
	const char *hardlink = archive_entry_hardlink(e);
	c->st->entries++;

	if (rel[0] == '\0') { /* the layer root itself ("./") */
		if (type != AE_IFDIR)
			return bad(c, "the layer root must be a directory");
		int fd = openat(c->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int rc = fd < 0 ? host_fail(c, "open layer root") : apply_meta(c, e, fd, uid, gid, false);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	const char *leaf;
	cleanup_close int dir = open_parent(c, rel, &leaf);
	if (dir < 0)
		return -1;
	if (strncmp(leaf, ".wh.", 4) == 0)
		return whiteout(c, dir, leaf);

	if (hardlink) {
		char trel[4096];
		const char *saved = c->entry;
		if (clean_path(c, hardlink, trel, sizeof trel) < 0)
			return -1;
		if (!trel[0])
			return bad(c, "hard link to the layer root");
		const char *tleaf;
		cleanup_close int tdir = open_parent(c, trel, &tleaf);
		c->entry = saved;
		if (tdir < 0)
			return -1;
		if (clear_leaf(c, dir, leaf) < 0)
			return -1;
		if (linkat(tdir, tleaf, dir, leaf, 0) < 0)
			return errno == ENOENT ? bad(c, "hard link to a file not in this layer") : host_fail(c, "link");
		return 0;
	}

	switch (type) {
	case AE_IFDIR: {
		if (mkdirat(dir, leaf, 0700) < 0 && errno != EEXIST)
			return host_fail(c, "mkdir");
		int fd = openat(dir, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			/* An earlier non-directory of the same name: replace it. */
			if (clear_leaf(c, dir, leaf) < 0 || mkdirat(dir, leaf, 0700) < 0 ||
			    (fd = openat(dir, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
				return host_fail(c, "mkdir");
		}
		int rc = apply_meta(c, e, fd, uid, gid, false);
		close(fd);
		return rc;
	}
	case AE_IFREG: {
		if (clear_leaf(c, dir, leaf) < 0)
			return -1;
		int fd = openat(dir, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return host_fail(c, "create");
		int rc = write_data(c, a, fd, archive_entry_size(e));
		if (rc == 0)
			rc = apply_meta(c, e, fd, uid, gid, true);
		close(fd);
		return rc;
	}
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		if (!target)
			return bad(c, "symlink without a target");
		if (clear_leaf(c, dir, leaf) < 0)
			return -1;
		/* The target is stored, never followed here: the sandbox resolves it inside its own root. */
		if (symlinkat(target, dir, leaf) < 0 || fchownat(dir, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return host_fail(c, "symlink");
		return 0;
	}
	case AE_IFIFO:
		if (clear_leaf(c, dir, leaf) < 0)
			return -1;
		if (mknodat(dir, leaf, S_IFIFO | (archive_entry_perm(e) & 0777), 0) < 0 ||
		    fchownat(dir, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return host_fail(c, "mkfifo");
		return 0;
	default: /* character and block devices, sockets: the sandbox gets its own /dev */
		c->st->devices_skipped++;
		return 0;
	}
}

int layer_unpack(int archive_fd, int root_fd, const struct unpack_opts *o, struct unpack_stats *st, cube_err *err)
{
	struct unpack_stats local = {0};
	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	struct ctx c = {.root = root_fd, .o = o, .st = st, .err = err, .entry = "",
			.max = o->max_bytes ? o->max_bytes : DEFAULT_MAX_BYTES};
	struct archive *a = archive_read_new();
	if (!a)
		return cube_fail(err, 500, ENOMEM, "unpack layer");
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	archive_read_support_format_tar(a);
	int rc = 0;
	if (archive_read_open_fd(a, archive_fd, 1 << 16) != ARCHIVE_OK) {
		rc = cube_fail(err, 422, 0, "layer is not a tar archive: %s", archive_error_string(a));
		goto out;
	}
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (unpack_entry(&c, a, e) < 0) {
			rc = -1;
			goto out;
		}
	}
	if (r != ARCHIVE_EOF)
		rc = cube_fail(err, 422, 0, "layer archive is damaged: %s", archive_error_string(a));
out:
	archive_read_free(a);
	return rc;
}
