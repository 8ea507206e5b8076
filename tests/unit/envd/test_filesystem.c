/* filesystem.Filesystem of cube-envd: Go FileMode strings, protojson timestamps, EntryInfo JSON, the
 * unary RPCs against a scratch directory (with a fake Connect layer), acting as an unprivileged user,
 * and inotify watchers driven by a real libuv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/fsuid.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/util.h"
#include "envd/fs_internal.h"

struct envd_state envd;

/* ---- a fake Connect layer: records what the handlers answer ---- */

struct envd_rpc {
	const struct envd_user *user;
	json_t *reply;          /* unary success */
	enum connect_code code; /* failure */
	char msg[512];
	int finished, ended;
	json_t *sent;           /* stream frames */
	json_t *keepalive;
	envd_rpc_cancel_fn cancel;
	void *cancel_arg;
};

const struct envd_user *envd_rpc_user(envd_rpc *rpc) { return rpc->user; }
void envd_rpc_reply(envd_rpc *rpc, json_t *msg)
{
	assert_false(rpc->finished);
	rpc->reply = msg;
	rpc->finished = 1;
}
void envd_rpc_fail(envd_rpc *rpc, enum connect_code code, const char *fmt, ...)
{
	assert_false(rpc->finished);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(rpc->msg, sizeof rpc->msg, fmt, ap);
	va_end(ap);
	rpc->code = code;
	rpc->finished = 1;
}
int envd_rpc_send(envd_rpc *rpc, json_t *msg)
{
	if (!rpc->sent)
		rpc->sent = json_array();
	json_array_append_new(rpc->sent, msg);
	return 0;
}
void envd_rpc_end(envd_rpc *rpc) { rpc->ended = 1; }
void envd_rpc_set_keepalive(envd_rpc *rpc, json_t *msg) { json_decref(rpc->keepalive); rpc->keepalive = msg; }
void envd_rpc_on_cancel(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg)
{
	rpc->cancel = cb;
	rpc->cancel_arg = arg;
}
size_t envd_rpc_pending(envd_rpc *rpc) { (void)rpc; return 0; }
int envd_resolve_path(const char *in, const struct envd_user *u, char *out, size_t outlen, cube_err *err)
{
	(void)u;
	if (in[0] != '/')
		return cube_fail(err, 400, 0, "test resolver: absolute paths only");
	snprintf(out, outlen, "%s", in);
	return 0;
}

static void rpc_reset(envd_rpc *rpc)
{
	json_decref(rpc->reply);
	json_decref(rpc->sent);
	json_decref(rpc->keepalive);
	const struct envd_user *u = rpc->user;
	memset(rpc, 0, sizeof *rpc);
	rpc->user = u;
}

static const struct envd_method *method(const char *name)
{
	char path[128];
	snprintf(path, sizeof path, "/filesystem.Filesystem/%s", name);
	for (const struct envd_method *m = envd_filesystem_methods; m->path; m++)
		if (strcmp(m->path, path) == 0)
			return m;
	fail_msg("no method %s", name);
	return NULL;
}

/* Call a method with a JSON request; the rpc holds the outcome. */
static void call(envd_rpc *rpc, const char *name, const char *fmt, ...)
{
	rpc_reset(rpc);
	va_list ap;
	va_start(ap, fmt);
	json_t *req = json_vpack_ex(NULL, 0, fmt, ap);
	va_end(ap);
	assert_non_null(req);
	method(name)->fn(rpc, req);
	json_decref(req);
}

static struct envd_user root_user = {.uid = 0, .gid = 0, .name = "root", .home = "/root"};
static struct envd_user plain_user = {.uid = 1000, .gid = 1000, .name = "user", .home = "/home/user"};
static char scratch[256];

static void path_in(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", scratch, rel);
}

static void write_text(const char *rel, const char *text)
{
	char p[512];
	path_in(p, sizeof p, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(scratch, sizeof scratch, "/tmp/cube-test-fs-XXXXXX");
	assert_non_null(mkdtemp(scratch));
	chmod(scratch, 0755);
	/* Our own passwd/group files, so names do not depend on the host. */
	write_text("passwd", "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n");
	write_text("group", "root:x:0:\nusers:x:100:\nuser:x:1000:\n");
	char pw[512], gr[512];
	path_in(pw, sizeof pw, "passwd");
	path_in(gr, sizeof gr, "group");
	fs_set_identity_files(pw, gr);
	envd.loop = uv_default_loop();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* ---- pure formatting ---- */

static void expect_mode(mode_t m, const char *want)
{
	char buf[32];
	fs_mode_string(m, buf, sizeof buf);
	assert_string_equal(buf, want);
}

static void test_mode_string(void **state)
{
	(void)state;
	expect_mode(S_IFREG | 0644, "-rw-r--r--");
	expect_mode(S_IFREG | 0, "----------");
	expect_mode(S_IFDIR | 0755, "drwxr-xr-x");
	expect_mode(S_IFLNK | 0777, "Lrwxrwxrwx");
	expect_mode(S_IFDIR | S_ISVTX | 0777, "dtrwxrwxrwx");
	expect_mode(S_IFCHR | 0666, "Dcrw-rw-rw-");
	expect_mode(S_IFBLK | 0660, "Drw-rw----");
	expect_mode(S_IFIFO | 0644, "prw-r--r--");
	expect_mode(S_IFSOCK | 0755, "Srwxr-xr-x");
	expect_mode(S_IFREG | S_ISUID | 0755, "urwxr-xr-x");
	expect_mode(S_IFDIR | S_ISGID | 0775, "dgrwxrwxr-x");
	expect_mode(S_IFREG | S_ISUID | S_ISGID | S_ISVTX | 0700, "ugtrwx------");
}

static void expect_time(long long s, long ns, const char *want)
{
	char buf[64];
	struct timespec ts = {.tv_sec = s, .tv_nsec = ns};
	fs_format_timestamp(&ts, buf, sizeof buf);
	assert_string_equal(buf, want);
}

static void test_timestamp(void **state)
{
	(void)state;
	expect_time(0, 0, "1970-01-01T00:00:00Z");
	expect_time(1795333958, 387000000, "2026-11-22T07:52:38.387Z");
	expect_time(1795333958, 387100000, "2026-11-22T07:52:38.387100Z");
	expect_time(1795333958, 1, "2026-11-22T07:52:38.000000001Z");
}

static void test_names(void **state)
{
	(void)state;
	char buf[64];
	fs_user_name(0, buf, sizeof buf);
	assert_string_equal(buf, "root");
	fs_user_name(1000, buf, sizeof buf);
	assert_string_equal(buf, "user");
	fs_user_name(4242, buf, sizeof buf);
	assert_string_equal(buf, "4242");
	fs_group_name(100, buf, sizeof buf);
	assert_string_equal(buf, "users");
	fs_group_name(77, buf, sizeof buf);
	assert_string_equal(buf, "77");
}

/* ---- EntryInfo ---- */

static void test_entry_info(void **state)
{
	(void)state;
	char p[512], l[512], real[4096];
	write_text("e.txt", "hello");
	path_in(p, sizeof p, "e.txt");
	chmod(p, 0640);
	struct timespec times[2] = {{0, UTIME_OMIT}, {1795333958, 387000000}};
	assert_int_equal(utimensat(AT_FDCWD, p, times, 0), 0);
	json_t *e = fs_entry_info(p);
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "name")), "e.txt");
	assert_string_equal(json_string_value(json_object_get(e, "type")), "FILE_TYPE_FILE");
	assert_string_equal(json_string_value(json_object_get(e, "path")), p);
	assert_string_equal(json_string_value(json_object_get(e, "size")), "5"); /* int64 as a string */
	assert_int_equal(json_integer_value(json_object_get(e, "mode")), 0640);
	assert_string_equal(json_string_value(json_object_get(e, "permissions")), "-rw-r-----");
	assert_string_equal(json_string_value(json_object_get(e, "modifiedTime")), "2026-11-22T07:52:38.387Z");
	assert_null(json_object_get(e, "symlinkTarget"));
	if (geteuid() == 0) {
		assert_string_equal(json_string_value(json_object_get(e, "owner")), "root");
		assert_string_equal(json_string_value(json_object_get(e, "group")), "root");
	}
	json_decref(e);

	/* Metadata from user.e2b.* xattrs, prefix stripped; other user xattrs are not metadata. */
	if (setxattr(p, "user.e2b.purpose", "test", 4, 0) == 0) {
		setxattr(p, "user.other", "x", 1, 0);
		e = fs_entry_info(p);
		json_t *meta = json_object_get(e, "metadata");
		assert_non_null(meta);
		assert_int_equal(json_object_size(meta), 1);
		assert_string_equal(json_string_value(json_object_get(meta, "purpose")), "test");
		json_decref(e);
	}

	/* A symlink reports the target's type and mode, its own permissions, the resolved target. */
	path_in(l, sizeof l, "e.link");
	assert_int_equal(symlink("e.txt", l), 0);
	e = fs_entry_info(l);
	assert_string_equal(json_string_value(json_object_get(e, "type")), "FILE_TYPE_FILE");
	assert_int_equal(json_integer_value(json_object_get(e, "mode")), 0640);
	assert_string_equal(json_string_value(json_object_get(e, "permissions")), "Lrwxrwxrwx");
	assert_non_null(realpath(p, real));
	assert_string_equal(json_string_value(json_object_get(e, "symlinkTarget")), real);
	json_decref(e);

	/* A dangling symlink: type unspecified (omitted), target = the link itself. */
	path_in(l, sizeof l, "dangling");
	assert_int_equal(symlink("nowhere", l), 0);
	e = fs_entry_info(l);
	assert_null(json_object_get(e, "type"));
	assert_null(json_object_get(e, "mode"));
	assert_string_equal(json_string_value(json_object_get(e, "symlinkTarget")), l);
	json_decref(e);

	/* A directory; empty file omits size (proto3 default). */
	path_in(p, sizeof p, "edir");
	assert_int_equal(mkdir(p, 0755), 0);
	e = fs_entry_info(p);
	assert_string_equal(json_string_value(json_object_get(e, "type")), "FILE_TYPE_DIRECTORY");
	assert_string_equal(json_string_value(json_object_get(e, "permissions")), "drwxr-xr-x");
	json_decref(e);
	write_text("empty", "");
	path_in(p, sizeof p, "empty");
	e = fs_entry_info(p);
	assert_null(json_object_get(e, "size"));
	json_decref(e);

	path_in(p, sizeof p, "missing");
	assert_null(fs_entry_info(p));
}

/* ---- unary RPCs ---- */

static void test_stat_rpc(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char p[512];
	write_text("s.txt", "abc");
	path_in(p, sizeof p, "s.txt");
	call(&rpc, "Stat", "{s:s}", "path", p);
	assert_non_null(rpc.reply);
	assert_string_equal(json_string_value(json_object_get(json_object_get(rpc.reply, "entry"), "size")), "3");
	path_in(p, sizeof p, "nope");
	call(&rpc, "Stat", "{s:s}", "path", p);
	assert_null(rpc.reply);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	assert_non_null(strstr(rpc.msg, "file not found"));
	/* A path through a file is "not found" too (exists() -> false). */
	path_in(p, sizeof p, "s.txt/x");
	call(&rpc, "Stat", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	/* Wrong types are invalid_argument. */
	call(&rpc, "Stat", "{s:i}", "path", 3);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	rpc_reset(&rpc);
}

static void test_make_dir_rpc(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char p[512];
	path_in(p, sizeof p, "m/a/b");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_non_null(rpc.reply);
	json_t *e = json_object_get(rpc.reply, "entry");
	assert_string_equal(json_string_value(json_object_get(e, "name")), "b");
	assert_string_equal(json_string_value(json_object_get(e, "type")), "FILE_TYPE_DIRECTORY");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_ALREADY_EXISTS);
	write_text("m/file", "x");
	path_in(p, sizeof p, "m/file");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	path_in(p, sizeof p, "m/file/sub");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	rpc_reset(&rpc);
}

static void test_list_dir_rpc(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char p[512], l[512];
	path_in(p, sizeof p, "ls/b/deep/deeper");
	assert_int_equal(cube_mkdir_p(p, 0755), 0);
	write_text("ls/c.txt", "c");
	write_text("ls/a.txt", "a");
	write_text("ls/b/x", "x");
	path_in(p, sizeof p, "ls");
	path_in(l, sizeof l, "ls.link");
	assert_int_equal(symlink(p, l), 0);

	call(&rpc, "ListDir", "{s:s,s:i}", "path", p, "depth", 1);
	json_t *entries = json_object_get(rpc.reply, "entries");
	assert_int_equal(json_array_size(entries), 3);
	const char *want1[] = {"a.txt", "b", "c.txt"};
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_string_value(json_object_get(json_array_get(entries, i), "name")), want1[i]);

	/* depth 0 means 1; depth as a string (uint32 may come quoted) */
	call(&rpc, "ListDir", "{s:s,s:s}", "path", p, "depth", "0");
	assert_int_equal(json_array_size(json_object_get(rpc.reply, "entries")), 3);

	/* Lexical depth-first, paths built on the requested (symlinked) path. */
	call(&rpc, "ListDir", "{s:s,s:i}", "path", l, "depth", 2);
	entries = json_object_get(rpc.reply, "entries");
	const char *want2[] = {"a.txt", "b", "b/deep", "b/x", "c.txt"};
	assert_int_equal(json_array_size(entries), 5);
	for (size_t i = 0; i < 5; i++) {
		char expect[600];
		snprintf(expect, sizeof expect, "%s/%s", l, want2[i]);
		assert_string_equal(json_string_value(json_object_get(json_array_get(entries, i), "path")), expect);
	}
	call(&rpc, "ListDir", "{s:s,s:i}", "path", p, "depth", 10);
	assert_int_equal(json_array_size(json_object_get(rpc.reply, "entries")), 6);

	path_in(p, sizeof p, "ls/a.txt");
	call(&rpc, "ListDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	path_in(p, sizeof p, "ls/none");
	call(&rpc, "ListDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	path_in(p, sizeof p, "loop");
	assert_int_equal(symlink("loop", p), 0);
	call(&rpc, "ListDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_FAILED_PRECONDITION);
	call(&rpc, "ListDir", "{s:s,s:i}", "path", scratch, "depth", -1);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	/* An empty directory answers {} (empty repeated fields are omitted). */
	path_in(p, sizeof p, "ls/b/deep/deeper");
	call(&rpc, "ListDir", "{s:s}", "path", p);
	assert_int_equal(json_object_size(rpc.reply), 0);
	rpc_reset(&rpc);
}

static void test_move_remove_rpc(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char src[512], dst[512];
	write_text("mv.txt", "move me");
	path_in(src, sizeof src, "mv.txt");
	path_in(dst, sizeof dst, "moved/into/place.txt");
	call(&rpc, "Move", "{s:s,s:s}", "source", src, "destination", dst);
	json_t *e = json_object_get(rpc.reply, "entry");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "path")), dst);
	assert_int_equal(access(src, F_OK), -1);
	call(&rpc, "Move", "{s:s,s:s}", "source", src, "destination", dst);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);

	path_in(dst, sizeof dst, "moved");
	call(&rpc, "Remove", "{s:s}", "path", dst);
	assert_non_null(rpc.reply);
	assert_int_equal(access(dst, F_OK), -1);
	/* Missing is not an error. */
	call(&rpc, "Remove", "{s:s}", "path", dst);
	assert_non_null(rpc.reply);
	/* A symlink is removed, not what it points at. */
	char l[512];
	write_text("keep.txt", "k");
	path_in(l, sizeof l, "keep.link");
	assert_int_equal(symlink(scratch, l), 0);
	call(&rpc, "Remove", "{s:s}", "path", l);
	assert_int_equal(access(scratch, F_OK), 0);
	path_in(l, sizeof l, "keep.txt");
	assert_int_equal(access(l, F_OK), 0);
	rpc_reset(&rpc);
}

/* Operations run as the acting user: permission checks and ownership are the user's. */
static void test_acting_user(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	envd_rpc rpc = {.user = &plain_user};
	char p[512];
	path_in(p, sizeof p, "rootonly");
	assert_int_equal(mkdir(p, 0755), 0);
	path_in(p, sizeof p, "rootonly/x");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_PERMISSION_DENIED);
	write_text("rootonly/f", "secret");
	call(&rpc, "Remove", "{s:s}", "path", p);
	assert_true(rpc.reply != NULL); /* x does not exist: fine */
	path_in(p, sizeof p, "rootonly/f");
	call(&rpc, "Remove", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_PERMISSION_DENIED);
	assert_int_equal(access(p, F_OK), 0);

	path_in(p, sizeof p, "open");
	assert_int_equal(mkdir(p, 0777), 0);
	chmod(p, 0777);
	path_in(p, sizeof p, "open/mine/sub");
	call(&rpc, "MakeDir", "{s:s}", "path", p);
	assert_non_null(rpc.reply);
	json_t *e = json_object_get(rpc.reply, "entry");
	assert_string_equal(json_string_value(json_object_get(e, "owner")), "user");
	assert_string_equal(json_string_value(json_object_get(e, "group")), "user");
	struct stat st;
	path_in(p, sizeof p, "open/mine");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	/* Back to root afterwards. */
	assert_int_equal(setfsuid((uid_t)-1), 0);
	rpc_reset(&rpc);
}

/* ---- watchers ---- */

static void run_loop_ms(int ms)
{
	long long until = cube_mono_ms() + ms;
	while (cube_mono_ms() < until) {
		uv_run(envd.loop, UV_RUN_NOWAIT);
		usleep(2000);
	}
}

static int has_event(json_t *events, const char *name, const char *type, int framed)
{
	size_t i;
	json_t *ev;
	json_array_foreach(events, i, ev) {
		json_t *fs = framed ? json_object_get(ev, "filesystem") : ev;
		if (fs && strcmp(json_string_value(json_object_get(fs, "name")), name) == 0 &&
		    strcmp(json_string_value(json_object_get(fs, "type")), type) == 0)
			return 1;
	}
	return 0;
}

static void test_watch_dir(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char w[512], p[512], q[512];
	path_in(w, sizeof w, "watched");
	assert_int_equal(mkdir(w, 0755), 0);
	path_in(p, sizeof p, "watched/pre");
	assert_int_equal(mkdir(p, 0755), 0);
	call(&rpc, "WatchDir", "{s:s,s:b,s:b}", "path", w, "recursive", 1, "includeEntry", 1);
	assert_false(rpc.finished);
	assert_non_null(rpc.cancel);
	assert_non_null(rpc.keepalive);
	assert_non_null(json_object_get(rpc.keepalive, "keepalive"));
	assert_int_equal(json_array_size(rpc.sent), 1);
	assert_non_null(json_object_get(json_array_get(rpc.sent, 0), "start"));

	write_text("watched/a.txt", "1");
	path_in(p, sizeof p, "watched/sub");
	assert_int_equal(mkdir(p, 0755), 0);
	run_loop_ms(30); /* the new directory gets its watch */
	write_text("watched/sub/inner.txt", "2");
	write_text("watched/pre/old.txt", "3");
	path_in(p, sizeof p, "watched/a.txt");
	path_in(q, sizeof q, "watched/b.txt");
	assert_int_equal(rename(p, q), 0);
	chmod(q, 0600);
	unlink(q);
	run_loop_ms(50);

	json_t *sent = rpc.sent;
	assert_true(has_event(sent, "a.txt", "EVENT_TYPE_CREATE", 1));
	assert_true(has_event(sent, "a.txt", "EVENT_TYPE_WRITE", 1));
	assert_true(has_event(sent, "sub", "EVENT_TYPE_CREATE", 1));
	assert_true(has_event(sent, "sub/inner.txt", "EVENT_TYPE_CREATE", 1));
	assert_true(has_event(sent, "pre/old.txt", "EVENT_TYPE_CREATE", 1));
	assert_true(has_event(sent, "a.txt", "EVENT_TYPE_RENAME", 1));
	assert_true(has_event(sent, "b.txt", "EVENT_TYPE_CREATE", 1));
	assert_true(has_event(sent, "b.txt", "EVENT_TYPE_CHMOD", 1));
	assert_true(has_event(sent, "b.txt", "EVENT_TYPE_REMOVE", 1));
	/* includeEntry: creates carry the entry, removes never do. */
	size_t i;
	json_t *ev;
	json_array_foreach(sent, i, ev) {
		json_t *fs = json_object_get(ev, "filesystem");
		if (!fs)
			continue;
		const char *type = json_string_value(json_object_get(fs, "type"));
		if (strcmp(type, "EVENT_TYPE_REMOVE") == 0 || strcmp(type, "EVENT_TYPE_RENAME") == 0)
			assert_null(json_object_get(fs, "entry"));
		if (strcmp(json_string_value(json_object_get(fs, "name")), "sub/inner.txt") == 0)
			assert_string_equal(json_string_value(json_object_get(json_object_get(fs, "entry"), "name")),
					    "inner.txt");
	}
	/* Cancel (client gone or deadline): the watcher is released. */
	rpc.cancel(&rpc, rpc.cancel_arg);
	size_t before = json_array_size(rpc.sent);
	write_text("watched/after.txt", "x");
	run_loop_ms(30);
	assert_int_equal(json_array_size(rpc.sent), before);

	/* Errors. */
	path_in(p, sizeof p, "watched/none");
	call(&rpc, "WatchDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	path_in(p, sizeof p, "watched/after.txt");
	call(&rpc, "WatchDir", "{s:s}", "path", p);
	assert_int_equal(rpc.code, CONNECT_INVALID_ARGUMENT);
	rpc_reset(&rpc);
}

static void test_watch_not_recursive(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char w[512];
	path_in(w, sizeof w, "flat");
	assert_int_equal(mkdir(w, 0755), 0);
	write_text("flat/before", "");
	char p[512];
	path_in(p, sizeof p, "flat/d");
	assert_int_equal(mkdir(p, 0755), 0);
	call(&rpc, "WatchDir", "{s:s}", "path", w);
	write_text("flat/d/hidden", "x");
	write_text("flat/top", "x");
	run_loop_ms(30);
	assert_true(has_event(rpc.sent, "top", "EVENT_TYPE_CREATE", 1));
	assert_false(has_event(rpc.sent, "d/hidden", "EVENT_TYPE_CREATE", 1));
	rpc.cancel(&rpc, rpc.cancel_arg);
	rpc_reset(&rpc);
}

static void test_buffered_watcher(void **state)
{
	(void)state;
	envd_rpc rpc = {.user = &root_user};
	char w[512];
	path_in(w, sizeof w, "polled");
	assert_int_equal(mkdir(w, 0755), 0);
	call(&rpc, "CreateWatcher", "{s:s,s:b}", "path", w, "recursive", 1);
	char id[64];
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(rpc.reply, "watcherId")));
	assert_true(strlen(id) > 0);
	write_text("polled/one", "1");
	run_loop_ms(30);
	call(&rpc, "GetWatcherEvents", "{s:s}", "watcherId", id);
	json_t *events = json_object_get(rpc.reply, "events");
	assert_true(has_event(events, "one", "EVENT_TYPE_CREATE", 0));
	/* Fetched events are cleared. */
	call(&rpc, "GetWatcherEvents", "{s:s}", "watcher_id", id);
	assert_null(json_object_get(rpc.reply, "events"));
	call(&rpc, "RemoveWatcher", "{s:s}", "watcherId", id);
	assert_non_null(rpc.reply);
	call(&rpc, "RemoveWatcher", "{s:s}", "watcherId", id);
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	call(&rpc, "GetWatcherEvents", "{s:s}", "watcherId", "nope");
	assert_int_equal(rpc.code, CONNECT_NOT_FOUND);
	run_loop_ms(10);
	rpc_reset(&rpc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mode_string),
		cmocka_unit_test(test_timestamp),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_entry_info),
		cmocka_unit_test(test_stat_rpc),
		cmocka_unit_test(test_make_dir_rpc),
		cmocka_unit_test(test_list_dir_rpc),
		cmocka_unit_test(test_move_remove_rpc),
		cmocka_unit_test(test_acting_user),
		cmocka_unit_test(test_watch_dir),
		cmocka_unit_test(test_watch_not_recursive),
		cmocka_unit_test(test_buffered_watcher),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
