/* Internal interface of envd's filesystem facility, shared by filesystem.c (RPCs, EntryInfo),
 * watch.c (inotify watchers), files_http.c (/files) and signing.c (signed URLs). Not used elsewhere. */
#ifndef CUBE_ENVD_FS_INTERNAL_H
#define CUBE_ENVD_FS_INTERNAL_H

#include <jansson.h>
#include <sys/stat.h>
#include <time.h>

#include "common/error.h"
#include "envd/connect.h"
#include "envd/envd.h"

/* ---- acting as a user (filesystem.c) ----
 * File operations run in the event-loop thread with that thread's fsuid/fsgid and supplementary
 * groups switched to the acting user, so the kernel applies the user's permission checks and new
 * files and directories get the user as owner. Both are per-thread on Linux (raw syscalls; glibc's
 * setgroups() would broadcast to all threads), and envd is root in its user namespace. */
struct fs_identity {
	int switched;
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t groups[64];
};
void fs_become(const struct envd_user *u, struct fs_identity *saved);
void fs_restore(struct fs_identity *saved);
/* Scope guard: acts as u until the end of the enclosing block. */
#define FS_ACT_AS(u)                                                                         \
	struct fs_identity fs_identity_scope __attribute__((cleanup(fs_restore)));           \
	fs_become((u), &fs_identity_scope)

/* ---- EntryInfo (filesystem.c) ---- */
enum fs_file_type { FS_TYPE_UNSPECIFIED, FS_TYPE_FILE, FS_TYPE_DIRECTORY, FS_TYPE_SYMLINK };
/* Go's os.FileMode.String() of a Unix st_mode: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx",
 * "dtrwxrwxrwx" for /tmp, "Dcrw-rw-rw-" for /dev/null. len >= 24. */
void fs_mode_string(mode_t mode, char *buf, size_t len);
/* protojson Timestamp: RFC 3339 UTC with 0, 3, 6 or 9 fractional digits. len >= 40. */
void fs_format_timestamp(const struct timespec *ts, char *buf, size_t len);
/* Names from the sandbox's /etc/passwd and /etc/group (cached, reloaded when they change);
 * the numeric id when unknown. */
void fs_user_name(uid_t uid, char *buf, size_t len);
void fs_group_name(gid_t gid, char *buf, size_t len);
/* Files read by the name lookups (tests point them elsewhere). */
void fs_set_identity_files(const char *passwd, const char *group);
/* EntryInfo JSON for path (lstat; symlinks report the target's type and mode). NULL with errno
 * set when the entry cannot be stat'ed. */
json_t *fs_entry_info(const char *path);
/* The xattrs user.e2b.<key> as {"key":"value"}; NULL when there are none. */
json_t *fs_metadata(const char *path);
#define FS_XATTR_PREFIX "user.e2b."
/* The Connect code for a failed syscall's errno. */
enum connect_code fs_errno_code(int e);
/* mkdir -p of path's parent (include_last = 0) or of path itself (1), mode 0755, as the current
 * identity; *created_last tells whether the last component was created. -1 with errno on error. */
int fs_mkdir_p(const char *path, int include_last, int *created_last);
/* 1 when path lives on NFS, CIFS, SMB or FUSE (§3.9: watching those needs allowNetworkMounts). */
int fs_is_network_fs(const char *path);

/* Request fields: lowerCamelCase or proto name, null = absent. -1 after failing the rpc with
 * invalid_argument on a wrong type. */
int fs_req_string(envd_rpc *rpc, json_t *req, const char *camel, const char *proto, const char **out);
int fs_req_bool(envd_rpc *rpc, json_t *req, const char *camel, const char *proto, int *out);

/* ---- watchers (watch.c) ---- */
void fs_watch_dir(envd_rpc *rpc, json_t *req);
void fs_create_watcher(envd_rpc *rpc, json_t *req);
void fs_get_watcher_events(envd_rpc *rpc, json_t *req);
void fs_remove_watcher(envd_rpc *rpc, json_t *req);

/* ---- POST /files/compose (files_http.c) ----
 * Concatenates source_paths into destination and deletes the sources (§3.12). Needs the access
 * token (token_ok from envd_token_ok); the router sends POST /files/compose here. */
void envd_files_compose(http_req *req, int token_ok);

/* ---- signed URLs (signing.c) ---- */
/* "v1_" + base64(SHA-256("<path>:<op>:<user>:<token>[:<expiration>]")) without padding. */
int envd_signature(const char *path, const char *op, const char *user, const char *token,
		   const char *expiration, char *out, size_t outlen);
/* Authorise a /files request (§3.13). token: the configured access token (NULL = none);
 * header_token: X-Access-Token of the request (NULL = absent); signature, expiration: query
 * values (NULL = absent). Failure: status 401 with the message envd uses. */
int envd_files_authorize(const char *token, const char *header_token, const char *path, const char *op,
			 const char *username, const char *signature, const char *expiration, long long now_s,
			 cube_err *err);

#endif
