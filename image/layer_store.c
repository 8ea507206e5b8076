/* Layer store: atomic unpack (temporary dir, syncfs, rename), lookup and garbage collection. */
#include "image/layer_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "common/log.h"
#include "common/util.h"

bool layer_store_has(const char *store, const char *hex)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof path, "%s/sha256/%s/rootfs", store, hex);
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

void layer_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int layer_store_remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int layer_store_unpack(const char *store, const char *hex, const char *blob_path, const struct unpack_opts *o,
		       struct unpack_stats *st, cube_err *err)
{
	char dir[PATH_MAX], tmp[PATH_MAX], root[PATH_MAX + 8], suffix[9];
	snprintf(dir, sizeof dir, "%s/sha256", store);
	if (cube_mkdir_p(dir, 0700) < 0)
		return cube_fail(err, 500, errno, "layer store %s", dir);
	if (layer_store_has(store, hex))
		return 0;
	cube_random_hex(suffix, 4);
	snprintf(tmp, sizeof tmp, "%s/sha256/.tmp-%s-%s", store, hex, suffix);
	snprintf(root, sizeof root, "%s/rootfs", tmp);
	snprintf(dir, sizeof dir, "%s/sha256/%s", store, hex);
	cleanup_close int blob = open(blob_path, O_RDONLY | O_CLOEXEC);
	if (blob < 0)
		return cube_fail(err, 500, errno, "layer blob %s", blob_path);
	/* 0755 owned by sandbox root, like any directory of an image. */
	if (mkdir(tmp, 0700) < 0 || mkdir(root, 0755) < 0 || chown(root, o->uid_base, o->uid_base) < 0) {
		cube_fail(err, 500, errno, "layer store %s", tmp);
		layer_store_remove_tree(tmp);
		return -1;
	}
	cleanup_close int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0 || layer_unpack(blob, rootfd, o, st, err) < 0) {
		if (rootfd < 0)
			cube_fail(err, 500, errno, "open %s", root);
		layer_store_remove_tree(tmp);
		return -1;
	}
	/* Durable before it becomes visible under its final name. */
	if (syncfs(rootfd) < 0 || rename(tmp, dir) < 0) {
		int e = errno;
		layer_store_remove_tree(tmp);
		if ((e == EEXIST || e == ENOTEMPTY) && layer_store_has(store, hex))
			return 0;
		return cube_fail(err, 500, e, "layer store: publish %s", dir);
	}
	return 0;
}

static bool kept(const char *name, const char *const *keep, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strncmp(name, keep[i], 64) == 0)
			return true;
	return false;
}

/* Removes entries of <store>/<sub> not in keep; temporaries (".tmp-...", "*.partial") only when old, since a
 * running job may own them. */
static int gc_dir(const char *store, const char *sub, const char *const *keep, size_t n, int *removed)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", store, sub);
	cleanup_dir DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char path[PATH_MAX + 256];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		bool temp = de->d_name[0] == '.' || strstr(de->d_name, ".partial");
		const char *hex = de->d_name[0] == '.' ? de->d_name + 5 : de->d_name;
		if (temp) {
			struct stat st;
			if (lstat(path, &st) == 0 && st.st_mtime > time(NULL) - 3600)
				continue;
		} else if (strlen(hex) < 64 || kept(hex, keep, n)) {
			continue;
		}
		if (layer_store_remove_tree(path) < 0)
			return -1;
		if (!temp && strcmp(sub, "sha256") == 0)
			(*removed)++;
	}
	return 0;
}

int layer_store_gc(const char *store, const char *const *keep, size_t n, cube_err *err)
{
	int removed = 0;
	if (gc_dir(store, "sha256", keep, n, &removed) < 0 || gc_dir(store, "blobs/sha256", keep, n, &removed) < 0)
		return cube_fail(err, 500, errno, "layer store gc in %s", store);
	if (removed)
		log_info("layers: %d unreferenced layer(s) removed", removed);
	return removed;
}
