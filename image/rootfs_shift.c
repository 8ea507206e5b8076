/* Shifts a template rootfs's file owners into the sandbox uid range (see rootfs_shift.h).
 * The walk uses *at() calls relative to directory fds and never follows symlinks or crosses mounts.
 * Why it is safe to re-run after a crash: the source and target ranges never overlap, so an entry already
 * moved is outside the source range and left alone; the marker is written only after syncfs(). */
#include "image/rootfs_shift.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define SHIFT_MARKER "/.shifted"
#define CAP_XATTR "security.capability"

struct shift_walk {
	unsigned from, to, count;
	dev_t dev;               /* the rootfs filesystem; other mounts below it are skipped */
	unsigned long changed;   /* entries re-owned */
	unsigned long outside;   /* entries whose ids are in neither range: left as they are */
	unsigned long caps;      /* file capabilities rewritten */
	cube_err *err;
};

static bool in_range(unsigned id, unsigned base, unsigned count)
{
	return id >= base && id - base < count;
}

/* id in the source range -> the same offset in the target range; other ids are kept. */
static unsigned map_id(const struct shift_walk *w, unsigned id)
{
	return in_range(id, w->from, w->count) ? id - w->from + w->to : id;
}

/* Rewrite a security.capability value for the new owner: the v3 format carries the host uid of the
 * user-namespace root the capabilities are valid for (v2 means host root). The kernel drops the xattr on
 * chown, so the caller reads it first and writes the converted value back after. */
static size_t convert_caps(const struct shift_walk *w, const unsigned char *in, ssize_t len,
			   unsigned char *out)
{
	struct vfs_ns_cap_data caps = {0};
	if (len != (ssize_t)XATTR_CAPS_SZ_2 && len != (ssize_t)XATTR_CAPS_SZ_3)
		return 0;
	memcpy(&caps, in, (size_t)len);
	uint32_t magic = le32toh(caps.magic_etc);
	uint32_t rev = magic & VFS_CAP_REVISION_MASK;
	uint32_t rootid;
	if (rev == VFS_CAP_REVISION_2 && len == (ssize_t)XATTR_CAPS_SZ_2)
		rootid = 0;
	else if (rev == VFS_CAP_REVISION_3 && len == (ssize_t)XATTR_CAPS_SZ_3)
		rootid = le32toh(caps.rootid);
	else
		return 0;
	rootid = map_id(w, rootid);
	uint32_t flags = magic & VFS_CAP_FLAGS_MASK;
	if (rootid == 0) {
		caps.magic_etc = htole32(VFS_CAP_REVISION_2 | flags);
		memcpy(out, &caps, XATTR_CAPS_SZ_2);
		return XATTR_CAPS_SZ_2;
	}
	caps.magic_etc = htole32(VFS_CAP_REVISION_3 | flags);
	caps.rootid = htole32(rootid);
	memcpy(out, &caps, XATTR_CAPS_SZ_3);
	return XATTR_CAPS_SZ_3;
}

/* Regular files go through an fd so the capability xattr and the mode can be restored on the same inode. */
static int shift_regular(struct shift_walk *w, int dirfd, const char *name, const struct stat *st,
			 uid_t uid, gid_t gid)
{
	cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return cube_fail(w->err, 500, errno, "open %s", name);
	unsigned char cap_in[XATTR_CAPS_SZ_3 + 8], cap_out[XATTR_CAPS_SZ_3];
	ssize_t cap_len = fgetxattr(fd, CAP_XATTR, cap_in, sizeof cap_in);
	if (cap_len < 0 && errno != ENODATA && errno != ENOTSUP)
		return cube_fail(w->err, 500, errno, "read file capabilities of %s", name);
	if (fchown(fd, uid, gid) < 0)
		return cube_fail(w->err, 500, errno, "chown %s", name);
	/* chown clears setuid/setgid on non-directories. */
	if ((st->st_mode & (S_ISUID | S_ISGID)) && fchmod(fd, st->st_mode & 07777) < 0)
		return cube_fail(w->err, 500, errno, "restore mode of %s", name);
	if (cap_len > 0) {
		size_t out_len = convert_caps(w, cap_in, cap_len, cap_out);
		if (out_len == 0) {
			log_warn("rootfs shift: %s has file capabilities in an unknown format; dropped", name);
		} else {
			if (fsetxattr(fd, CAP_XATTR, cap_out, out_len, 0) < 0)
				return cube_fail(w->err, 500, errno, "restore file capabilities of %s", name);
			w->caps++;
		}
	}
	return 0;
}

static int shift_entry(struct shift_walk *w, int dirfd, const char *name, const struct stat *st)
{
	uid_t uid = map_id(w, st->st_uid);
	gid_t gid = map_id(w, st->st_gid);
	if (uid == st->st_uid && gid == st->st_gid) {
		if (!in_range(st->st_uid, w->to, w->count) || !in_range(st->st_gid, w->to, w->count))
			w->outside++;
		return 0;
	}
	w->changed++;
	if (S_ISREG(st->st_mode))
		return shift_regular(w, dirfd, name, st, uid, gid);
	if (fchownat(dirfd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
		return cube_fail(w->err, 500, errno, "chown %s", name);
	if (!S_ISLNK(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)) &&
	    fchmodat(dirfd, name, st->st_mode & 07777, 0) < 0)
		return cube_fail(w->err, 500, errno, "restore mode of %s", name);
	return 0;
}

/* Shift every entry inside the directory open at dirfd (the directory itself is done by the caller).
 * Takes ownership of dirfd. path is for messages only. */
static int shift_dir(struct shift_walk *w, int dirfd, const char *path)
{
	cleanup_dir DIR *dir = fdopendir(dirfd);
	if (!dir) {
		int e = errno;
		close(dirfd);
		return cube_fail(w->err, 500, e, "open directory %s", path);
	}
	struct dirent *de;
	for (errno = 0; (de = readdir(dir)); errno = 0) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		char child[PATH_MAX];
		snprintf(child, sizeof child, "%s/%s", path, name);
		struct stat st;
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return cube_fail(w->err, 500, errno, "stat %s", child);
		if (st.st_dev != w->dev)
			continue;  /* a mount point inside the tree: not ours to touch */
		if (shift_entry(w, dirfd, name, &st) < 0)
			return cube_wrap(w->err, "%s", path);
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0)
				return cube_fail(w->err, 500, errno, "open directory %s", child);
			if (shift_dir(w, sub, child) < 0)
				return -1;
		}
	}
	if (errno)
		return cube_fail(w->err, 500, errno, "read directory %s", path);
	return 0;
}

long tpl_rootfs_shifted_base(const char *template_dir, cube_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s" SHIFT_MARKER, template_dir);
	cleanup_free char *text = cube_read_file(path, NULL);
	if (!text) {
		if (errno == ENOENT)
			return 0;
		return cube_fail(err, 500, errno, "read %s", path);
	}
	unsigned long base;
	if (sscanf(text, "uid_base=%lu", &base) != 1 || base > UINT32_MAX)
		return cube_fail(err, 500, 0, "%s: unreadable shift marker (expected uid_base=N)", path);
	return (long)base;
}

/* Replace the marker atomically: write a temporary file, fsync, rename, fsync the directory. */
static int write_marker(const char *template_dir, unsigned base, unsigned count, cube_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	snprintf(path, sizeof path, "%s" SHIFT_MARKER, template_dir);
	snprintf(tmp, sizeof tmp, "%s" SHIFT_MARKER ".tmp", template_dir);
	if (base == 0) {  /* unshifted trees carry no marker */
		if (unlink(path) < 0 && errno != ENOENT)
			return cube_fail(err, 500, errno, "remove %s", path);
		return 0;
	}
	char text[64];
	int n = snprintf(text, sizeof text, "uid_base=%u uid_count=%u\n", base, count);
	{
		cleanup_close int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return cube_fail(err, 500, errno, "create %s", tmp);
		if (cube_write_all(fd, text, (size_t)n) < 0 || fsync(fd) < 0)
			return cube_fail(err, 500, errno, "write %s", tmp);
	}
	if (rename(tmp, path) < 0)
		return cube_fail(err, 500, errno, "rename %s", tmp);
	cleanup_close int dfd = open(template_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

int tpl_rootfs_shift(const char *template_dir, unsigned uid_base, unsigned uid_count, cube_err *err)
{
	if (uid_count == 0 || (uint64_t)uid_base + uid_count > UINT32_MAX)
		return cube_fail(err, 500, 0, "invalid uid range %u+%u", uid_base, uid_count);
	/* Two cubed instances starting on one templates dir: the second waits, then finds the marker. */
	char lock_path[PATH_MAX];
	snprintf(lock_path, sizeof lock_path, "%s/.shift.lock", template_dir);
	cleanup_close int lockfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0)
		return cube_fail(err, 500, errno, "open %s", lock_path);
	if (flock(lockfd, LOCK_EX) < 0)
		return cube_fail(err, 500, errno, "lock %s", lock_path);
	long from = tpl_rootfs_shifted_base(template_dir, err);
	if (from < 0)
		return -1;
	if ((unsigned)from == uid_base)
		return 0;
	/* Disjoint ranges are what make a re-run after a crash harmless (see the top of this file). */
	if ((unsigned)from < uid_base + (uint64_t)uid_count && uid_base < (uint64_t)from + uid_count)
		return cube_fail(err, 500, 0, "%s: cannot shift uids from base %ld to %u: the ranges overlap "
				 "(uid base must be 0 or >= %u)", template_dir, from, uid_base, uid_count);

	char rootfs[PATH_MAX];
	snprintf(rootfs, sizeof rootfs, "%s/rootfs", template_dir);
	int rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (rootfd < 0)
		return cube_fail(err, 500, errno, "open %s", rootfs);
	struct stat st;
	if (fstat(rootfd, &st) < 0) {
		int e = errno;
		close(rootfd);
		return cube_fail(err, 500, e, "stat %s", rootfs);
	}
	struct shift_walk w = { .from = (unsigned)from, .to = uid_base, .count = uid_count, .dev = st.st_dev,
				.err = err };
	long long started = cube_mono_ms();
	log_info("shifting %s from uid base %u to %u", rootfs, w.from, w.to);

	/* The root directory itself, through its fd ("" with AT_EMPTY_PATH). */
	uid_t uid = map_id(&w, st.st_uid);
	gid_t gid = map_id(&w, st.st_gid);
	if ((uid != st.st_uid || gid != st.st_gid) && fchown(rootfd, uid, gid) < 0) {
		int e = errno;
		close(rootfd);
		return cube_fail(err, 500, e, "chown %s", rootfs);
	}
	int syncfd = dup(rootfd);
	if (shift_dir(&w, rootfd, rootfs) < 0) {
		if (syncfd >= 0)
			close(syncfd);
		return -1;
	}
	/* The new owners must be on disk before the marker claims they are. */
	if (syncfd >= 0) {
		syncfs(syncfd);
		close(syncfd);
	}
	if (write_marker(template_dir, uid_base, uid_count, err) < 0)
		return -1;
	log_info("shifted %s: %lu entries re-owned, %lu file capabilities rewritten, %lu left with ids outside "
		 "the range, %lld ms", rootfs, w.changed, w.caps, w.outside, cube_mono_ms() - started);
	return 0;
}
