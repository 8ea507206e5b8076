/* image/layer_copy: a copy keeps what overlay reads (attributes, symlinks, whiteouts, opaque markers) and
 * hard links, and drops the runtime's entries; a merge of three stacked layers shows what the stack showed: topmost entry
 * wins, directories gather their lower namesakes, and become opaque where the stack hid what lies below
 * (an opaque dir, a dir over a file or over a whiteout); whiteouts stay. Needs root (mknod, trusted.*
 * xattrs, chown); skipped otherwise. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "image/layer_copy.h"
#include "image/layer_store.h"

static char top[PATH_MAX]; /* <top>/l0, l1, l2 (topmost first), <top>/out */

static void at(char *buf, const char *layer, const char *rel)
{
	snprintf(buf, PATH_MAX, "%s/%s/%s", top, layer, rel);
}

static void mkdirs(const char *layer, const char *rel)
{
	char p[PATH_MAX];
	at(p, layer, rel);
	assert_int_equal(cube_mkdir_p(p, 0755), 0);
}

static void put(const char *layer, const char *rel, const char *text, mode_t mode)
{
	char p[PATH_MAX];
	at(p, layer, rel);
	char *slash = strrchr(p, '/');
	*slash = '\0';
	assert_int_equal(cube_mkdir_p(p, 0755), 0);
	*slash = '/';
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void whiteout(const char *layer, const char *rel)
{
	char p[PATH_MAX];
	at(p, layer, rel);
	assert_int_equal(mknod(p, S_IFCHR | 0, makedev(0, 0)), 0);
}

static void opaque(const char *layer, const char *rel)
{
	char p[PATH_MAX];
	at(p, layer, rel);
	assert_int_equal(setxattr(p, "trusted.overlay.opaque", "y", 1, 0), 0);
}

static char *content(const char *rel)
{
	static char buf[256];
	char p[PATH_MAX];
	at(p, "out/rootfs", rel);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static bool exists(const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	at(p, "out/rootfs", rel);
	return lstat(p, &st) == 0;
}

static bool is_whiteout(const char *rel)
{
	char p[PATH_MAX];
	struct stat st;
	at(p, "out/rootfs", rel);
	return lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static bool is_opaque(const char *rel)
{
	char p[PATH_MAX], v[4];
	at(p, "out/rootfs", rel);
	return getxattr(p, "trusted.overlay.opaque", v, sizeof v) == 1 && v[0] == 'y';
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	snprintf(top, sizeof top, "/tmp/cube-test-layercopy-XXXXXX");
	assert_non_null(mkdtemp(top));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (top[0])
		layer_store_remove_tree(top);
	return 0;
}

static void test_copy(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	cube_err err = {0};
	char p[PATH_MAX], out[PATH_MAX];
	put("c0", "home/user/a.txt", "alpha", 0640);
	put("c0", "etc/hostname", "host", 0644);   /* the runtime's: left out */
	put("c0", "etc/keep.conf", "conf", 0644);
	put("c0", "tmp/scratch", "tmp is the user's", 0600);
	mkdirs("c0", "dev");
	mkdirs("c0", "opaq");
	opaque("c0", "opaq");
	whiteout("c0", "home/gone");
	at(p, "c0", "home/user/a.txt");
	assert_int_equal(chown(p, 1234, 5678), 0);
	at(p, "c0", "home/link");
	assert_int_equal(symlink("/etc/passwd", p), 0);
	char p2[PATH_MAX];
	at(p, "c0", "home/user/a.txt");
	at(p2, "c0", "opaq/same-file");
	assert_int_equal(link(p, p2), 0); /* a second name, in another directory */
	at(p, "c0", "");
	snprintf(out, sizeof out, "%s/out", top);
	assert_int_equal(layer_copy(p, out, &err), 0);
	assert_string_equal(content("home/user/a.txt"), "alpha");
	assert_string_equal(content("etc/keep.conf"), "conf");
	assert_string_equal(content("tmp/scratch"), "tmp is the user's");
	assert_false(exists("etc/hostname"));
	assert_false(exists("dev"));
	assert_true(is_opaque("opaq"));
	assert_true(is_whiteout("home/gone"));
	struct stat st;
	at(p, "out/rootfs", "home/user/a.txt");
	assert_int_equal(lstat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_uid, 1234);
	assert_int_equal(st.st_gid, 5678);
	char target[64] = {0};
	at(p, "out/rootfs", "home/link");
	assert_int_equal(readlink(p, target, sizeof target - 1), 11);
	assert_string_equal(target, "/etc/passwd"); /* copied as a link, never followed */
	struct stat s1, s2;
	at(p, "out/rootfs", "home/user/a.txt");
	at(p2, "out/rootfs", "opaq/same-file");
	assert_int_equal(lstat(p, &s1), 0);
	assert_int_equal(lstat(p2, &s2), 0);
	assert_int_equal(s1.st_ino, s2.st_ino); /* still one file with two names */
	assert_int_equal(s1.st_nlink, 2);
	/* no layer: 409; the scratch dir is never left behind */
	at(p, "nosuch", "");
	assert_int_equal(layer_copy(p, out, &err), -1);
	assert_int_equal(err.status, 409);
	layer_store_remove_tree(out);
}

static void test_merge(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	cube_err err = {0};
	/* l2: the oldest saved layer */
	put("l2", "keep", "2", 0644);
	put("l2", "gone", "2", 0644);
	put("l2", "a/x", "x2", 0644);
	put("l2", "a/y", "y2", 0644);
	whiteout("l2", "a/z");          /* deleted a template file */
	put("l2", "o/old", "old", 0644);
	put("l2", "w/r", "r2", 0644);
	put("l2", "f", "file below a dir", 0644);
	put("l2", "g/h", "dir below a file", 0644);
	put("l2", "deep/1/2/three", "3", 0600);
	/* l1 */
	put("l1", "keep", "1", 0644);
	whiteout("l1", "gone");
	put("l1", "a/x", "x1", 0644);
	put("l1", "o/mid", "mid", 0644);
	whiteout("l1", "w");
	put("l1", "deep/1/two", "2", 0644);
	/* l0: the writable layer */
	put("l0", "a/new", "new", 0644);
	mkdirs("l0", "o");
	opaque("l0", "o");
	put("l0", "o/n", "n0", 0644);
	put("l0", "w/q", "q0", 0644);    /* recreated over l1's whiteout */
	put("l0", "f/z", "z0", 0644);    /* a dir over l2's file */
	put("l0", "g", "file over a dir", 0600);
	put("l0", "etc/resolv.conf", "runtime's", 0644);
	char h1[PATH_MAX], h2[PATH_MAX];
	at(h1, "l0", "a/new");
	at(h2, "l0", "hardlink-to-new");
	assert_int_equal(link(h1, h2), 0);
	mkdirs("l0", "proc");
	char l0[PATH_MAX], l1[PATH_MAX], l2[PATH_MAX], out[PATH_MAX];
	at(l0, "l0", "");
	at(l1, "l1", "");
	at(l2, "l2", "");
	snprintf(out, sizeof out, "%s/out", top);
	const char *stack[] = {l0, l1, l2};
	assert_int_equal(layer_merge(stack, 3, out, &err), 0);

	assert_string_equal(content("keep"), "1");            /* topmost wins */
	assert_true(is_whiteout("gone"));                     /* may hide a template file below */
	assert_string_equal(content("a/new"), "new");         /* a dir gathers all three */
	assert_string_equal(content("a/x"), "x1");
	assert_string_equal(content("a/y"), "y2");
	assert_true(is_whiteout("a/z"));
	assert_false(is_opaque("a"));                         /* template files below still show */
	assert_true(is_opaque("o"));                          /* opaque stays opaque ... */
	assert_string_equal(content("o/n"), "n0");
	assert_false(exists("o/mid"));                        /* ... and hides l1 and l2 */
	assert_false(exists("o/old"));
	assert_true(is_opaque("w"));                          /* recreated over a whiteout */
	assert_string_equal(content("w/q"), "q0");
	assert_false(exists("w/r"));
	assert_true(is_opaque("f"));                          /* a dir over a file */
	assert_string_equal(content("f/z"), "z0");
	assert_string_equal(content("g"), "file over a dir"); /* a file over a dir */
	assert_false(exists("g/h"));
	assert_string_equal(content("deep/1/two"), "2");
	assert_string_equal(content("deep/1/2/three"), "3");
	assert_false(exists("etc/resolv.conf"));              /* the runtime's entries stay out */
	assert_false(exists("proc"));
	struct stat st;
	char p[PATH_MAX];
	at(p, "out/rootfs", "deep/1/2/three");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	struct stat sa, sb;
	at(h1, "out/rootfs", "a/new");
	at(h2, "out/rootfs", "hardlink-to-new");
	assert_int_equal(lstat(h1, &sa), 0);
	assert_int_equal(lstat(h2, &sb), 0);
	assert_int_equal(sa.st_ino, sb.st_ino);
	layer_store_remove_tree(out);
	/* a single layer merges into a copy of itself; too many or missing layers are refused */
	assert_int_equal(layer_merge(stack + 2, 1, out, &err), 0);
	assert_string_equal(content("a/x"), "x2");
	layer_store_remove_tree(out);
	const char *missing[] = {l0, "/nonexistent-layer"};
	assert_int_equal(layer_merge(missing, 2, out, &err), -1);
	assert_int_equal(err.status, 409);
	assert_int_equal(layer_merge(stack, LAYER_MERGE_MAX + 1, out, &err), -1);
	assert_false(exists(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_merge),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
