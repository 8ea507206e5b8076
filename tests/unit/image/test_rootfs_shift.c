/* image/rootfs_shift: builds a small tree (dirs, files, symlinks, a setuid file, hard links, a FIFO, a file
 * capability, ids outside the range) and checks owners, modes and capabilities after a shift, a repeated
 * shift, a resumed shift, a re-base and a shift back. Needs root (chown); skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "image/rootfs_shift.h"

#define BASE 300000000u
#define BASE2 400000000u
#define COUNT 65536u

static char top[PATH_MAX];      /* temp dir: <top>/tpl/rootfs and <top>/outside */
static char tpl_dir[PATH_MAX];

static void pathf(char *buf, const char *rel)
{
	snprintf(buf, PATH_MAX, "%s/rootfs/%s", tpl_dir, rel);
}

static void make_file(const char *rel, unsigned uid, unsigned gid, mode_t mode)
{
	char p[PATH_MAX];
	pathf(p, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(lchown(p, uid, gid), 0);
	assert_int_equal(chmod(p, mode), 0);  /* after chown: chown would clear setuid */
}

static void make_dir(const char *rel, unsigned uid, unsigned gid, mode_t mode)
{
	char p[PATH_MAX];
	pathf(p, rel);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(lchown(p, uid, gid), 0);
	assert_int_equal(chmod(p, mode), 0);
}

static void make_symlink(const char *target, const char *rel, unsigned uid, unsigned gid)
{
	char p[PATH_MAX];
	pathf(p, rel);
	assert_int_equal(symlink(target, p), 0);
	assert_int_equal(lchown(p, uid, gid), 0);
}

static struct stat stat_of(const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	pathf(p, rel);
	assert_int_equal(lstat(p, &st), 0);
	return st;
}

static void assert_owner(const char *rel, unsigned uid, unsigned gid)
{
	struct stat st = stat_of(rel);
	if (st.st_uid != uid || st.st_gid != gid)
		fail_msg("%s: owner %u:%u, expected %u:%u", rel, st.st_uid, st.st_gid, uid, gid);
}

/* Returns the capability rootid (0 for v2), or -1 when the file has no capability xattr. */
static long cap_rootid(const char *rel)
{
	char p[PATH_MAX];
	struct vfs_ns_cap_data caps;
	pathf(p, rel);
	ssize_t n = lgetxattr(p, "security.capability", &caps, sizeof caps);
	if (n < 0)
		return -1;
	uint32_t rev = le32toh(caps.magic_etc) & VFS_CAP_REVISION_MASK;
	if (rev == VFS_CAP_REVISION_2) {
		assert_int_equal(n, XATTR_CAPS_SZ_2);
		return 0;
	}
	assert_int_equal(rev, VFS_CAP_REVISION_3);
	assert_int_equal(n, XATTR_CAPS_SZ_3);
	assert_int_equal(le32toh(caps.data[0].permitted), 1u << CAP_NET_RAW);
	return (long)le32toh(caps.rootid);
}

static bool caps_supported = true;

static int setup_tree(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	snprintf(top, sizeof top, "/var/tmp/cube-test-shift-XXXXXX");
	assert_non_null(mkdtemp(top));
	snprintf(tpl_dir, sizeof tpl_dir, "%s/tpl", top);
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/rootfs", tpl_dir);
	assert_int_equal(cube_mkdir_p(p, 0755), 0);
	assert_int_equal(chmod(p, 0755), 0);

	make_dir("etc", 0, 0, 0755);
	make_file("etc/passwd", 0, 0, 0644);
	make_dir("bin", 0, 0, 0755);
	make_file("bin/su", 0, 0, 04755);
	make_file("bin/wall", 0, 5, 02755);          /* setgid, group tty */
	make_file("bin/ping", 0, 0, 0755);           /* gets a file capability below */
	make_dir("home", 0, 0, 0755);
	make_dir("home/user", 1000, 1000, 0750);
	make_file("home/user/notes", 1000, 1000, 0600);
	make_dir("tmp", 0, 0, 01777);
	make_dir("srv", 0, 2000, 02775);             /* setgid directory */
	make_file("srv/odd", 70000, 70001, 0644);    /* ids beyond the range: left alone */
	make_file("etc/nobody", 65534, 65534, 0644);

	char a[PATH_MAX], b[PATH_MAX];
	pathf(a, "bin/su");
	pathf(b, "bin/su-hardlink");
	assert_int_equal(link(a, b), 0);
	pathf(a, "home/user/notes");
	pathf(b, "etc/notes-hardlink");
	assert_int_equal(link(a, b), 0);

	/* A file outside the rootfs, reached through an absolute symlink: must never be touched. */
	snprintf(a, sizeof a, "%s/outside", top);
	int fd = open(a, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(chown(a, 0, 0), 0);
	make_symlink(a, "escape", 0, 0);
	make_symlink("../etc/passwd", "bin/rel-link", 1000, 1000);
	make_symlink("/nonexistent", "dangling", 0, 0);

	pathf(a, "etc/fifo");
	assert_int_equal(mkfifo(a, 0600), 0);

	struct vfs_cap_data caps = {0};
	caps.magic_etc = htole32(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE);
	caps.data[0].permitted = htole32(1u << CAP_NET_RAW);
	pathf(a, "bin/ping");
	if (setxattr(a, "security.capability", &caps, XATTR_CAPS_SZ_2, 0) < 0)
		caps_supported = false;
	return 0;
}

static int teardown_tree(void **state)
{
	(void)state;
	if (top[0]) {
		char cmd[PATH_MAX + 32];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
		if (system(cmd) != 0)
			return -1;
	}
	return 0;
}

static void assert_shifted_to(unsigned base)
{
	assert_owner(".", base, base);
	assert_owner("etc/passwd", base, base);
	assert_owner("bin/su", base, base);
	assert_owner("bin/su-hardlink", base, base);
	assert_owner("bin/wall", base, base + 5);
	assert_owner("home/user", base + 1000, base + 1000);
	assert_owner("home/user/notes", base + 1000, base + 1000);
	assert_owner("etc/notes-hardlink", base + 1000, base + 1000);
	assert_owner("etc/nobody", base + 65534, base + 65534);
	assert_owner("srv", base, base + 2000);
	assert_owner("srv/odd", 70000, 70001);
	assert_owner("escape", base, base);
	assert_owner("bin/rel-link", base + 1000, base + 1000);
	assert_owner("dangling", base, base);
	assert_owner("etc/fifo", base, base);

	assert_int_equal(stat_of("bin/su").st_mode & 07777, 04755);
	assert_int_equal(stat_of("bin/wall").st_mode & 07777, 02755);
	assert_int_equal(stat_of("srv").st_mode & 07777, 02775);
	assert_int_equal(stat_of("tmp").st_mode & 07777, 01777);
	assert_int_equal(stat_of("home/user/notes").st_mode & 07777, 0600);

	char outside[PATH_MAX];
	struct stat st;
	snprintf(outside, sizeof outside, "%s/outside", top);
	assert_int_equal(stat(outside, &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_gid, 0);

	if (caps_supported)
		assert_int_equal(cap_rootid("bin/ping"), (long)base);
}

static void test_shift_once_and_idempotent(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	cube_err err = {0};
	assert_int_equal(tpl_rootfs_shifted_base(tpl_dir, &err), 0);
	assert_int_equal(tpl_rootfs_shift(tpl_dir, BASE, COUNT, &err), 0);
	assert_shifted_to(BASE);
	assert_int_equal(tpl_rootfs_shifted_base(tpl_dir, &err), (long)BASE);

	/* Same base again: the marker makes it a no-op. */
	struct stat before = stat_of("etc/passwd");
	assert_int_equal(tpl_rootfs_shift(tpl_dir, BASE, COUNT, &err), 0);
	struct stat after = stat_of("etc/passwd");
	assert_int_equal(before.st_ctim.tv_sec, after.st_ctim.tv_sec);
	assert_int_equal(before.st_ctim.tv_nsec, after.st_ctim.tv_nsec);
	assert_shifted_to(BASE);

	/* A crash before the marker was written: re-running from scratch must not shift twice. */
	char marker[PATH_MAX];
	snprintf(marker, sizeof marker, "%s/.shifted", tpl_dir);
	assert_int_equal(unlink(marker), 0);
	assert_int_equal(tpl_rootfs_shift(tpl_dir, BASE, COUNT, &err), 0);
	assert_shifted_to(BASE);
}

static void test_rebase_and_back(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	cube_err err = {0};
	assert_int_equal(tpl_rootfs_shift(tpl_dir, BASE2, COUNT, &err), 0);
	assert_shifted_to(BASE2);
	assert_int_equal(tpl_rootfs_shifted_base(tpl_dir, &err), (long)BASE2);

	/* Back to plain ids: the original tree, v2 capability again, no marker. */
	assert_int_equal(tpl_rootfs_shift(tpl_dir, 0, COUNT, &err), 0);
	assert_owner(".", 0, 0);
	assert_owner("bin/wall", 0, 5);
	assert_owner("home/user/notes", 1000, 1000);
	assert_owner("srv/odd", 70000, 70001);
	assert_int_equal(stat_of("bin/su").st_mode & 07777, 04755);
	if (caps_supported)
		assert_int_equal(cap_rootid("bin/ping"), 0);
	assert_int_equal(tpl_rootfs_shifted_base(tpl_dir, &err), 0);
	char marker[PATH_MAX];
	snprintf(marker, sizeof marker, "%s/.shifted", tpl_dir);
	assert_int_equal(access(marker, F_OK), -1);
}

static void test_overlapping_ranges_rejected(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	cube_err err = {0};
	assert_int_equal(tpl_rootfs_shift(tpl_dir, 1000, COUNT, &err), -1);
	assert_non_null(strstr(err.msg, "overlap"));
	assert_owner("etc/passwd", 0, 0);
}

static void test_bad_marker(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	char marker[PATH_MAX];
	snprintf(marker, sizeof marker, "%s/.shifted", tpl_dir);
	FILE *f = fopen(marker, "w");
	assert_non_null(f);
	fputs("garbage\n", f);
	fclose(f);
	cube_err err = {0};
	assert_int_equal(tpl_rootfs_shift(tpl_dir, BASE, COUNT, &err), -1);
	assert_non_null(strstr(err.msg, "shift marker"));
	assert_int_equal(unlink(marker), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlapping_ranges_rejected),
		cmocka_unit_test(test_bad_marker),
		cmocka_unit_test(test_shift_once_and_idempotent),
		cmocka_unit_test(test_rebase_and_back),
	};
	return cmocka_run_group_tests(tests, setup_tree, teardown_tree);
}
