/* image/unpack + image/layer_store + image_ref_parse: layers written with libarchive's writer (gzip, zstd,
 * plain) are unpacked into overlay form with shifted owners; hostile entries are refused and the store keeps
 * nothing of them; references parse as the registry client needs. Needs root (chown, mknod, trusted.*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image/layer_store.h"
#include "image/registry.h"
#include "image/unpack.h"

#define BASE 300000000u

static char top[PATH_MAX];

struct ent {
	const char *name;
	int type;              /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR; 0 = hard link */
	const char *data;      /* file data, or link target */
	int mode, uid;
};

static void write_tar(const char *path, const struct ent *e, size_t n, int filter)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (filter == 1)
		archive_write_add_filter_gzip(a);
	else if (filter == 2)
		archive_write_add_filter_zstd(a);
	assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname(ae, e[i].name);
		archive_entry_set_uid(ae, e[i].uid);
		archive_entry_set_gid(ae, e[i].uid);
		if (e[i].type == 0) {
			archive_entry_set_hardlink(ae, e[i].data);
		} else {
			archive_entry_set_filetype(ae, (unsigned)e[i].type);
			archive_entry_set_perm(ae, e[i].mode ? (mode_t)e[i].mode : 0644);
			if (e[i].type == AE_IFLNK)
				archive_entry_set_symlink(ae, e[i].data);
			if (e[i].type == AE_IFCHR)
				archive_entry_set_rdev(ae, makedev(1, 3));
			if (e[i].type == AE_IFREG)
				archive_entry_set_size(ae, (la_int64_t)strlen(e[i].data));
		}
		assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
		if (e[i].type == AE_IFREG)
			archive_write_data(a, e[i].data, strlen(e[i].data));
		archive_entry_free(ae);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static int store_unpack(const char *hex, const struct ent *e, size_t n, int filter, cube_err *err)
{
	char tar[PATH_MAX], store[PATH_MAX];
	snprintf(tar, sizeof tar, "%s/%s.tar", top, hex);
	snprintf(store, sizeof store, "%s/store", top);
	write_tar(tar, e, n, filter);
	struct unpack_opts o = {.uid_base = BASE, .uid_count = 65536};
	memset(err, 0, sizeof *err);
	return layer_store_unpack(store, hex, tar, &o, NULL, err);
}

static const char *layer_path(const char *hex, const char *rel)
{
	static char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/store/sha256/%s/rootfs/%s", top, hex, rel);
	return p;
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "unpack tests need root\n");
		return -1;
	}
	snprintf(top, sizeof top, "/tmp/cube-test-unpack-XXXXXX");
	return mkdtemp(top) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return layer_store_remove_tree(top);
}

#define HEX(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static void test_overlay_form_and_metadata(void **state)
{
	(void)state;
	static const struct ent e[] = {
		{"./", AE_IFDIR, NULL, 0755, 0},
		{"./etc/", AE_IFDIR, NULL, 0755, 0},
		{"./etc/.wh.gone", AE_IFREG, "", 0, 0},
		{"./opq/", AE_IFDIR, NULL, 0755, 0},
		{"./opq/.wh..wh..opq", AE_IFREG, "", 0, 0},
		{"./home/user/file", AE_IFREG, "hi\n", 0640, 1000}, /* implicit parents */
		{"bin/suid", AE_IFREG, "x", 04755, 0},
		{"bin/hard", 0, "bin/suid", 0, 0},
		{"bin/sh", AE_IFLNK, "/bin/busybox", 0777, 0}, /* absolute target: stored, not followed */
		{"dev/null", AE_IFCHR, NULL, 0666, 0},          /* skipped */
		{"bin/suid", AE_IFREG, "y", 04755, 0},          /* a later entry replaces an earlier one */
	};
	cube_err err;
	for (int filter = 0; filter < 3; filter++) {
		const char *hex = filter == 0 ? HEX("a") : filter == 1 ? HEX("b") : HEX("c");
		if (store_unpack(hex, e, sizeof e / sizeof e[0], filter, &err) < 0)
			fail_msg("filter %d: %s", filter, err.msg);
		struct stat st;
		assert_int_equal(lstat(layer_path(hex, "etc/gone"), &st), 0);
		assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
		char v[4] = "";
		assert_int_equal(getxattr(layer_path(hex, "opq"), "trusted.overlay.opaque", v, sizeof v), 1);
		assert_int_equal(v[0], 'y');
		assert_int_equal(stat(layer_path(hex, "home/user/file"), &st), 0);
		assert_int_equal(st.st_uid, BASE + 1000);
		assert_int_equal(st.st_mode & 07777, 0640);
		assert_int_equal(stat(layer_path(hex, "bin/suid"), &st), 0);
		assert_int_equal(st.st_mode & 07777, 04755);
		assert_int_equal(st.st_uid, BASE);
		assert_int_equal(st.st_size, 1);
		assert_int_equal(lstat(layer_path(hex, "bin/sh"), &st), 0);
		assert_true(S_ISLNK(st.st_mode));
		assert_int_equal(lstat(layer_path(hex, "dev/null"), &st), -1);
		assert_int_equal(stat(layer_path(hex, "."), &st), 0);
		assert_int_equal(st.st_uid, BASE);
	}
	/* bin/hard linked the first bin/suid, which the second entry replaced. */
	struct stat a, b;
	assert_int_equal(stat(layer_path(HEX("a"), "bin/hard"), &a), 0);
	assert_int_equal(stat(layer_path(HEX("a"), "bin/suid"), &b), 0);
	assert_int_equal(a.st_mode & 07777, 04755);
	char store[PATH_MAX];
	snprintf(store, sizeof store, "%s/store", top);
	assert_true(layer_store_has(store, HEX("a")));
	/* GC keeps what is referenced. */
	const char *keep[] = {HEX("a")};
	cube_err e2;
	assert_int_equal(layer_store_gc(store, keep, 1, &e2), 2);
	assert_true(layer_store_has(store, HEX("a")));
	assert_false(layer_store_has(store, HEX("b")));
}

static void refused(const struct ent *e, size_t n, const char *needle)
{
	cube_err err;
	char store[PATH_MAX], tmpl[PATH_MAX];
	snprintf(store, sizeof store, "%s/store", top);
	assert_int_equal(store_unpack(HEX("d"), e, n, 1, &err), -1);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' lacks '%s'", err.msg, needle);
	assert_int_equal(err.status, 422);
	assert_false(layer_store_has(store, HEX("d")));
	/* no temporary left behind */
	snprintf(tmpl, sizeof tmpl, "ls -A %s/sha256 | grep -q '^\\.tmp' && exit 1; exit 0", store);
	assert_int_equal(system(tmpl), 0);
}

static void test_hostile_entries(void **state)
{
	(void)state;
	char outside[PATH_MAX];
	snprintf(outside, sizeof outside, "%s/outside", top);
	mkdir(outside, 0755);
	char evil[PATH_MAX + 32], abs_name[PATH_MAX + 32];
	snprintf(evil, sizeof evil, "../../../../..%s/x", outside);
	snprintf(abs_name, sizeof abs_name, "%s/y", outside);
	struct ent dotdot[] = {{evil, AE_IFREG, "x", 0, 0}};
	refused(dotdot, 1, "leaves the layer");
	struct ent absolute[] = {{abs_name, AE_IFREG, "x", 0, 0}};
	refused(absolute, 1, "absolute path");
	struct ent through[] = {{"link", AE_IFLNK, outside, 0777, 0}, {"link/z", AE_IFREG, "x", 0, 0}};
	refused(through, 2, "through a symlink");
	struct ent hard[] = {{"h", 0, "../../etc/passwd", 0, 0}};
	refused(hard, 1, "leaves the layer");
	struct ent owner[] = {{"f", AE_IFREG, "x", 0, 70000}};
	refused(owner, 1, "uid range");
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", outside);
	assert_int_equal(system(cmd), 0);
	/* Not a tar at all. */
	char junk[PATH_MAX], store[PATH_MAX];
	snprintf(junk, sizeof junk, "%s/junk", top);
	snprintf(store, sizeof store, "%s/store", top);
	FILE *f = fopen(junk, "w");
	fputs("this is not an archive", f);
	fclose(f);
	struct unpack_opts o = {.uid_base = BASE, .uid_count = 65536};
	cube_err err;
	assert_int_equal(layer_store_unpack(store, HEX("e"), junk, &o, NULL, &err), -1);
	assert_int_equal(err.status, 422);
}

static void test_image_refs(void **state)
{
	(void)state;
	struct image_ref r;
	cube_err err;
	assert_int_equal(image_ref_parse("debian", &r, &err), 0);
	assert_string_equal(r.registry, "registry-1.docker.io");
	assert_string_equal(r.repo, "library/debian");
	assert_string_equal(r.ref, "latest");
	assert_int_equal(image_ref_parse("127.0.0.1:5000/team/app:v1.2", &r, &err), 0);
	assert_string_equal(r.registry, "127.0.0.1:5000");
	assert_string_equal(r.repo, "team/app");
	assert_string_equal(r.ref, "v1.2");
	assert_int_equal(image_ref_parse("localhost/app@sha256:" HEX("f"), &r, &err), 0);
	assert_string_equal(r.registry, "localhost");
	assert_string_equal(r.ref, "sha256:" HEX("f"));
	assert_int_equal(image_ref_parse("reg.example/a/../b", &r, &err), -1);
	assert_int_equal(err.status, 400);
	assert_int_equal(image_ref_parse("Upper/case", &r, &err), -1);
	assert_int_equal(image_ref_parse("app@md5:00", &r, &err), -1);
	assert_int_equal(image_ref_parse("", &r, &err), -1);
	assert_int_equal(image_ref_parse("app:bad tag", &r, &err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_overlay_form_and_metadata),
		cmocka_unit_test(test_hostile_entries),
		cmocka_unit_test(test_image_refs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
