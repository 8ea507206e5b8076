/* filesystem.Filesystem RPCs of cube-envd (§3.4, §3.9): Stat, MakeDir, Move, ListDir, Remove, plus
 * the EntryInfo encoding and the act-as-user helpers shared with watch.c and files_http.c.
 * The watcher RPCs live in watch.c; connect.c routes calls here through envd_filesystem_methods. */
#include "envd/fs_internal.h"

#include "common/log.h"
#include "common/util.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

/* ---- acting as a user ---- */

void fs_become(const struct envd_user *u, struct fs_identity *saved)
{
	memset(saved, 0, sizeof *saved);
	/* Root acts as itself; a non-root envd (development runs) cannot switch and needs not. */
	if (!u || u->uid == 0 || geteuid() != 0)
		return;
	saved->switched = 1;
	int n = getgroups((int)CUBE_ARRAY_LEN(saved->groups), saved->groups);
	saved->ngroups = n < 0 ? 0 : n;
	saved->gid = (gid_t)setfsgid((gid_t)-1);
	saved->uid = (uid_t)setfsuid((uid_t)-1);
	/* Raw syscall: per thread. Fails with EPERM where setgroups is denied in the user namespace;
	 * the user's own uid and primary gid still apply then. */
	if (syscall(SYS_setgroups, (size_t)u->ngroups, u->groups) < 0) {
		static int warned;
		if (!warned++)
			log_warn("envd: setgroups for file operations: %s", strerror(errno));
	}
	setfsgid(u->gid);
	setfsuid(u->uid);
	/* setfsuid reports failure only by not changing: without CAP_SETUID we stay root. */
	if ((uid_t)setfsuid((uid_t)-1) != u->uid) {
		static int warned;
		if (!warned++)
			log_warn("envd: cannot act as uid %u for file operations (no CAP_SETUID?)", (unsigned)u->uid);
	}
}

void fs_restore(struct fs_identity *saved)
{
	if (!saved->switched)
		return;
	int e = errno;
	/* fsuid back to 0 first: that restores the file capabilities needed for the rest. */
	setfsuid(saved->uid);
	setfsgid(saved->gid);
	syscall(SYS_setgroups, (size_t)saved->ngroups, saved->groups);
	saved->switched = 0;
	errno = e;
}

/* ---- formatting ---- */

void fs_mode_string(mode_t mode, char *buf, size_t len)
{
	/* Go's FileMode type letters, in Go's bit order ("dalTLDpSugct?"), then rwx triplets. */
	char out[32];
	size_t o = 0;
	if (S_ISDIR(mode))
		out[o++] = 'd';
	if (S_ISLNK(mode))
		out[o++] = 'L';
	if (S_ISBLK(mode) || S_ISCHR(mode))
		out[o++] = 'D';
	if (S_ISFIFO(mode))
		out[o++] = 'p';
	if (S_ISSOCK(mode))
		out[o++] = 'S';
	if (mode & S_ISUID)
		out[o++] = 'u';
	if (mode & S_ISGID)
		out[o++] = 'g';
	if (S_ISCHR(mode))
		out[o++] = 'c';
	if (mode & S_ISVTX)
		out[o++] = 't';
	if (o == 0)
		out[o++] = '-';
	static const char rwx[] = "rwxrwxrwx";
	for (int i = 0; i < 9; i++)
		out[o++] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
	out[o] = '\0';
	snprintf(buf, len, "%s", out);
}

void fs_format_timestamp(const struct timespec *ts, char *buf, size_t len)
{
	struct tm tm;
	time_t secs = ts->tv_sec;
	gmtime_r(&secs, &tm);
	char base[40];
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	long ns = ts->tv_nsec;
	if (ns == 0)
		snprintf(buf, len, "%sZ", base);
	else if (ns % 1000000 == 0)
		snprintf(buf, len, "%s.%03ldZ", base, ns / 1000000);
	else if (ns % 1000 == 0)
		snprintf(buf, len, "%s.%06ldZ", base, ns / 1000);
	else
		snprintf(buf, len, "%s.%09ldZ", base, ns);
}

/* ---- uid/gid -> name, from the sandbox's own files (envd is static: no NSS) ---- */

struct id_name {
	unsigned id;
	char name[64];
};

struct id_table {
	char file[256];
	struct id_name *v;
	size_t n;
	struct stat seen;
	long long checked_ms;
};

static struct id_table passwd_table = {.file = "/etc/passwd"};
static struct id_table group_table = {.file = "/etc/group"};

void fs_set_identity_files(const char *passwd, const char *group)
{
	snprintf(passwd_table.file, sizeof passwd_table.file, "%s", passwd);
	snprintf(group_table.file, sizeof group_table.file, "%s", group);
	passwd_table.checked_ms = group_table.checked_ms = 0;
	memset(&passwd_table.seen, 0, sizeof passwd_table.seen);
	memset(&group_table.seen, 0, sizeof group_table.seen);
}

/* Reload at most once a second, and only when the file changed (useradd inside the sandbox). */
static void id_table_refresh(struct id_table *t)
{
	long long now = cube_mono_ms();
	if (t->checked_ms && now - t->checked_ms < 1000)
		return;
	t->checked_ms = now;
	struct stat st;
	if (stat(t->file, &st) < 0)
		memset(&st, 0, sizeof st);
	if (st.st_ino == t->seen.st_ino && st.st_size == t->seen.st_size &&
	    st.st_mtim.tv_sec == t->seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == t->seen.st_mtim.tv_nsec && t->v)
		return;
	t->seen = st;
	free(t->v);
	t->v = NULL;
	t->n = 0;
	cleanup_fclose FILE *f = fopen(t->file, "re");
	if (!f)
		return;
	size_t cap = 0;
	cleanup_free char *line = NULL;
	size_t linecap = 0;
	while (getline(&line, &linecap, f) > 0) {
		/* name:password:id:... */
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c1 || !c2 || c1 == line || (size_t)(c1 - line) >= sizeof t->v[0].name)
			continue;
		char *end;
		unsigned long id = strtoul(c2 + 1, &end, 10);
		if (end == c2 + 1 || *end != ':')
			continue;
		if (t->n == cap) {
			size_t nc = cap ? cap * 2 : 32;
			struct id_name *nv = realloc(t->v, nc * sizeof *nv);
			if (!nv)
				break;
			t->v = nv;
			cap = nc;
		}
		t->v[t->n].id = (unsigned)id;
		memcpy(t->v[t->n].name, line, (size_t)(c1 - line));
		t->v[t->n].name[c1 - line] = '\0';
		t->n++;
	}
}

static void id_lookup(struct id_table *t, unsigned id, char *buf, size_t len)
{
	id_table_refresh(t);
	for (size_t i = 0; i < t->n; i++) {
		if (t->v[i].id == id) {
			snprintf(buf, len, "%s", t->v[i].name);
			return;
		}
	}
	snprintf(buf, len, "%u", id);
}

void fs_user_name(uid_t uid, char *buf, size_t len)
{
	id_lookup(&passwd_table, uid, buf, len);
}

void fs_group_name(gid_t gid, char *buf, size_t len)
{
	id_lookup(&group_table, gid, buf, len);
}

/* ---- EntryInfo ---- */

static enum fs_file_type file_type_of(mode_t m)
{
	if (S_ISREG(m))
		return FS_TYPE_FILE;
	if (S_ISDIR(m))
		return FS_TYPE_DIRECTORY;
	if (S_ISLNK(m))
		return FS_TYPE_SYMLINK;
	return FS_TYPE_UNSPECIFIED;
}

static const char *file_type_name(enum fs_file_type t)
{
	switch (t) {
	case FS_TYPE_FILE: return "FILE_TYPE_FILE";
	case FS_TYPE_DIRECTORY: return "FILE_TYPE_DIRECTORY";
	case FS_TYPE_SYMLINK: return "FILE_TYPE_SYMLINK";
	default: return "FILE_TYPE_UNSPECIFIED";
	}
}

json_t *fs_metadata(const char *path)
{
	char names[4096];
	ssize_t n = llistxattr(path, names, sizeof names);
	if (n <= 0)
		return NULL;
	json_t *meta = NULL;
	size_t plen = strlen(FS_XATTR_PREFIX);
	for (char *name = names; name < names + n; name += strlen(name) + 1) {
		if (strncmp(name, FS_XATTR_PREFIX, plen) != 0 || !name[plen])
			continue;
		char value[4097];
		ssize_t vl = lgetxattr(path, name, value, sizeof value - 1);
		if (vl < 0)
			continue;
		value[vl] = '\0';
		if (!meta)
			meta = json_object();
		json_object_set_new(meta, name + plen, json_stringn(value, (size_t)vl));
	}
	return meta;
}

/* EntryInfo from an lstat result; omits fields at their proto3 default (§3.5). */
static json_t *entry_from_stat(const char *path, const struct stat *st)
{
	json_t *e = json_object();
	const char *slash = strrchr(path, '/');
	const char *name = slash && slash[1] ? slash + 1 : path;
	if (*name)
		json_object_set_new(e, "name", json_string(name));

	enum fs_file_type type = file_type_of(st->st_mode);
	unsigned perm = st->st_mode & 0777;
	char target[PATH_MAX] = "";
	if (S_ISLNK(st->st_mode)) {
		/* As envd: the fully resolved target (or the link itself if it cannot be resolved), and the
		 * target's type and permission bits. */
		struct stat tst;
		if (!realpath(path, target))
			snprintf(target, sizeof target, "%s", path);
		if (stat(target, &tst) == 0) {
			type = file_type_of(tst.st_mode);
			perm = tst.st_mode & 0777;
		} else {
			type = FS_TYPE_UNSPECIFIED;
			perm = 0;
		}
	}
	if (type != FS_TYPE_UNSPECIFIED)
		json_object_set_new(e, "type", json_string(file_type_name(type)));
	if (*path)
		json_object_set_new(e, "path", json_string(path));
	if (st->st_size) {
		char size[32];
		snprintf(size, sizeof size, "%lld", (long long)st->st_size);
		json_object_set_new(e, "size", json_string(size));
	}
	if (perm)
		json_object_set_new(e, "mode", json_integer(perm));
	char buf[64];
	fs_mode_string(st->st_mode, buf, sizeof buf);
	json_object_set_new(e, "permissions", json_string(buf));
	fs_user_name(st->st_uid, buf, sizeof buf);
	json_object_set_new(e, "owner", json_string(buf));
	fs_group_name(st->st_gid, buf, sizeof buf);
	json_object_set_new(e, "group", json_string(buf));
	fs_format_timestamp(&st->st_mtim, buf, sizeof buf);
	json_object_set_new(e, "modifiedTime", json_string(buf));
	if (S_ISLNK(st->st_mode))
		json_object_set_new(e, "symlinkTarget", json_string(target));
	json_t *meta = S_ISLNK(st->st_mode) ? NULL : fs_metadata(path);
	if (meta)
		json_object_set_new(e, "metadata", meta);
	return e;
}

json_t *fs_entry_info(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return NULL;
	return entry_from_stat(path, &st);
}

enum connect_code fs_errno_code(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return CONNECT_NOT_FOUND;
	case EACCES:
	case EPERM:
	case EROFS:
		return CONNECT_PERMISSION_DENIED;
	case EEXIST:
		return CONNECT_ALREADY_EXISTS;
	case ELOOP:
		return CONNECT_FAILED_PRECONDITION;
	case EINVAL:
	case ENAMETOOLONG:
	case EISDIR:
	case ENOTEMPTY:
	case EXDEV:
		return CONNECT_INVALID_ARGUMENT;
	default:
		return CONNECT_INTERNAL;
	}
}

int fs_mkdir_p(const char *path, int include_last, int *created_last)
{
	char buf[PATH_MAX];
	if (created_last)
		*created_last = 0;
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
		errno = ENAMETOOLONG;
		return -1;
	}
	size_t len = strlen(buf);
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	if (!include_last) {
		char *slash = strrchr(buf, '/');
		if (!slash)
			return 0;
		if (slash == buf)
			return 0; /* parent is / */
		*slash = '\0';
	}
	/* Fast path: already there. */
	struct stat st;
	if (stat(buf, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		errno = ENOTDIR;
		return -1;
	}
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (saved == '\0' && created_last)
				*created_last = 1;
		} else if (errno != EEXIST) {
			return -1;
		} else if (stat(buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
	return 0;
}

int fs_is_network_fs(const char *path)
{
	struct statfs sf;
	if (statfs(path, &sf) < 0)
		return 0;
	switch ((unsigned long)sf.f_type) {
	case 0x6969UL:      /* NFS */
	case 0xFF534D42UL:  /* CIFS */
	case 0x517BUL:      /* SMB */
	case 0xFE534D42UL:  /* SMB2 */
	case 0x65735546UL:  /* FUSE */
		return 1;
	default:
		return 0;
	}
}

/* ---- request fields ---- */

static json_t *req_field(json_t *req, const char *camel, const char *proto)
{
	json_t *v = json_is_object(req) ? json_object_get(req, camel) : NULL;
	if ((!v || json_is_null(v)) && proto)
		v = json_object_get(req, proto);
	return v && !json_is_null(v) ? v : NULL;
}

int fs_req_string(envd_rpc *rpc, json_t *req, const char *camel, const char *proto, const char **out)
{
	json_t *v = req_field(req, camel, proto);
	*out = "";
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field %s: expected a string", camel);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int fs_req_bool(envd_rpc *rpc, json_t *req, const char *camel, const char *proto, int *out)
{
	json_t *v = req_field(req, camel, proto);
	*out = 0;
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field %s: expected a boolean", camel);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* uint32 as a JSON number or a numeric string (§3.5). */
static int req_uint32(envd_rpc *rpc, json_t *req, const char *camel, const char *proto, unsigned *out)
{
	json_t *v = req_field(req, camel, proto);
	*out = 0;
	if (!v)
		return 0;
	long long n = -1;
	if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else if (json_is_string(v)) {
		char *end;
		const char *s = json_string_value(v);
		n = strtoll(s, &end, 10);
		if (!*s || *end)
			n = -1;
	} else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)) {
		n = (long long)json_real_value(v);
	}
	if (n < 0 || n > 0xffffffffLL) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field %s: expected a uint32", camel);
		return -1;
	}
	*out = (unsigned)n;
	return 0;
}

/* Resolve a request path for the acting user; fails the rpc (invalid_argument) on error. */
static int resolve(envd_rpc *rpc, const char *in, char *out, size_t outlen)
{
	cube_err err = {0};
	if (envd_resolve_path(in, envd_rpc_user(rpc), out, outlen, &err) < 0) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "%s", err.msg);
		return -1;
	}
	return 0;
}

static void fail_errno(envd_rpc *rpc, int e, const char *what, const char *op, const char *path)
{
	envd_rpc_fail(rpc, fs_errno_code(e), "%s: %s %s: %s", what, op, path, strerror(e));
}

/* ---- RPCs ---- */

static void reply_entry(envd_rpc *rpc, const char *path)
{
	json_t *entry = fs_entry_info(path);
	if (!entry) {
		fail_errno(rpc, errno, "error getting file info", "lstat", path);
		return;
	}
	envd_rpc_reply(rpc, json_pack("{s:o}", "entry", entry));
}

static void fs_stat(envd_rpc *rpc, json_t *req)
{
	const char *in;
	char path[PATH_MAX];
	if (fs_req_string(rpc, req, "path", NULL, &in) < 0 || resolve(rpc, in, path, sizeof path) < 0)
		return;
	FS_ACT_AS(envd_rpc_user(rpc));
	json_t *entry = fs_entry_info(path);
	if (!entry) {
		int e = errno;
		fail_errno(rpc, e, fs_errno_code(e) == CONNECT_NOT_FOUND ? "file not found" : "error getting file info",
			   "lstat", path);
		return;
	}
	envd_rpc_reply(rpc, json_pack("{s:o}", "entry", entry));
}

static void fs_make_dir(envd_rpc *rpc, json_t *req)
{
	const char *in;
	char path[PATH_MAX];
	if (fs_req_string(rpc, req, "path", NULL, &in) < 0 || resolve(rpc, in, path, sizeof path) < 0)
		return;
	FS_ACT_AS(envd_rpc_user(rpc));
	struct stat st;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			envd_rpc_fail(rpc, CONNECT_ALREADY_EXISTS, "directory already exists: %s", path);
		else
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "path already exists but it is not a directory: %s", path);
		return;
	}
	if (errno != ENOENT && errno != ENOTDIR) {
		fail_errno(rpc, errno, "error getting file info", "stat", path);
		return;
	}
	if (fs_mkdir_p(path, 1, NULL) < 0) {
		int e = errno;
		envd_rpc_fail(rpc, e == ENOTDIR || e == EEXIST ? CONNECT_INVALID_ARGUMENT : fs_errno_code(e),
			      "error creating directory %s: %s", path, strerror(e));
		return;
	}
	reply_entry(rpc, path);
}

static void fs_move(envd_rpc *rpc, json_t *req)
{
	const char *src_in, *dst_in;
	char src[PATH_MAX], dst[PATH_MAX];
	if (fs_req_string(rpc, req, "source", NULL, &src_in) < 0 ||
	    fs_req_string(rpc, req, "destination", NULL, &dst_in) < 0 ||
	    resolve(rpc, src_in, src, sizeof src) < 0 || resolve(rpc, dst_in, dst, sizeof dst) < 0)
		return;
	FS_ACT_AS(envd_rpc_user(rpc));
	struct stat st;
	if (lstat(src, &st) < 0) {
		int e = errno;
		fail_errno(rpc, e, fs_errno_code(e) == CONNECT_NOT_FOUND ? "source file not found" : "error getting file info",
			   "lstat", src);
		return;
	}
	if (fs_mkdir_p(dst, 0, NULL) < 0) {
		int e = errno;
		envd_rpc_fail(rpc, e == ENOTDIR ? CONNECT_INVALID_ARGUMENT : fs_errno_code(e),
			      "error creating parent directories of %s: %s", dst, strerror(e));
		return;
	}
	if (rename(src, dst) < 0) {
		int e = errno;
		envd_rpc_fail(rpc, e == ENOENT ? CONNECT_NOT_FOUND : fs_errno_code(e), "error renaming %s to %s: %s", src,
			      dst, strerror(e));
		return;
	}
	reply_entry(rpc, dst);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dots(const struct dirent *d)
{
	return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/* Lexical depth-first walk (as Go's filepath.WalkDir): each entry, then its subtree. Paths are built
 * on the requested path; symlinked directories are listed but not descended. Entries that vanish or
 * subdirectories that cannot be read are skipped: one unreadable corner must not fail the listing. */
static int walk(json_t *entries, const char *dir, unsigned depth_left, int is_root)
{
	struct dirent **names = NULL;
	int n = scandir(dir, &names, not_dots, name_cmp);
	if (n < 0)
		return is_root ? -1 : 0;
	for (int i = 0; i < n; i++) {
		char path[PATH_MAX];
		int pl = snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, names[i]->d_name);
		struct stat st;
		if (pl < (int)sizeof path && lstat(path, &st) == 0) {
			json_array_append_new(entries, entry_from_stat(path, &st));
			if (depth_left > 1 && S_ISDIR(st.st_mode))
				walk(entries, path, depth_left - 1, 0);
		}
		free(names[i]);
	}
	free(names);
	return 0;
}

static void fs_list_dir(envd_rpc *rpc, json_t *req)
{
	const char *in;
	unsigned depth;
	char path[PATH_MAX];
	if (fs_req_string(rpc, req, "path", NULL, &in) < 0 || req_uint32(rpc, req, "depth", NULL, &depth) < 0 ||
	    resolve(rpc, in, path, sizeof path) < 0)
		return;
	if (depth == 0)
		depth = 1;
	FS_ACT_AS(envd_rpc_user(rpc));
	struct stat st;
	if (stat(path, &st) < 0) {
		int e = errno;
		if (e == ELOOP)
			envd_rpc_fail(rpc, CONNECT_FAILED_PRECONDITION, "cyclic symlink or chain >255 links at \"%s\"", path);
		else
			fail_errno(rpc, e, fs_errno_code(e) == CONNECT_NOT_FOUND ? "path not found" : "error getting file info",
				   "stat", path);
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "path is not a directory: %s", path);
		return;
	}
	json_t *entries = json_array();
	if (walk(entries, path, depth, 1) < 0) {
		int e = errno;
		json_decref(entries);
		fail_errno(rpc, e, "error reading directory", "open", path);
		return;
	}
	json_t *resp = json_object();
	if (json_array_size(entries))
		json_object_set_new(resp, "entries", entries);
	else
		json_decref(entries);
	envd_rpc_reply(rpc, resp);
}

/* rm -rf below an open directory, without following symlinks. */
static int remove_at(int parent_fd, const char *name)
{
	if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
		return 0;
	int unlink_errno = errno;
	if (unlink_errno != EISDIR && unlink_errno != EPERM)
		return -1;
	int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ENOTDIR) /* a file we may not unlink: report why unlink failed */
			errno = unlink_errno;
		return -1;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (remove_at(dirfd(d), de->d_name) < 0)
			rc = -1;
	}
	int e = errno;
	closedir(d);
	if (rc < 0) {
		errno = e;
		return -1;
	}
	if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return -1;
	return 0;
}

static void fs_remove(envd_rpc *rpc, json_t *req)
{
	const char *in;
	char path[PATH_MAX];
	if (fs_req_string(rpc, req, "path", NULL, &in) < 0 || resolve(rpc, in, path, sizeof path) < 0)
		return;
	FS_ACT_AS(envd_rpc_user(rpc));
	if (remove_at(AT_FDCWD, path) < 0 && errno != ENOENT && errno != ENOTDIR) {
		int e = errno;
		envd_rpc_fail(rpc, e == EACCES || e == EPERM ? CONNECT_PERMISSION_DENIED : CONNECT_INTERNAL,
			      "error removing file or directory: %s: %s", path, strerror(e));
		return;
	}
	envd_rpc_reply(rpc, json_object());
}

const struct envd_method envd_filesystem_methods[] = {
	{"/filesystem.Filesystem/Stat", 0, 1, fs_stat},
	{"/filesystem.Filesystem/MakeDir", 0, 1, fs_make_dir},
	{"/filesystem.Filesystem/Move", 0, 1, fs_move},
	{"/filesystem.Filesystem/ListDir", 0, 1, fs_list_dir},
	{"/filesystem.Filesystem/Remove", 0, 1, fs_remove},
	{"/filesystem.Filesystem/WatchDir", 1, 1, fs_watch_dir},
	{"/filesystem.Filesystem/CreateWatcher", 0, 1, fs_create_watcher},
	{"/filesystem.Filesystem/GetWatcherEvents", 0, 0, fs_get_watcher_events},
	{"/filesystem.Filesystem/RemoveWatcher", 0, 0, fs_remove_watcher},
	{NULL, 0, 0, NULL},
};
