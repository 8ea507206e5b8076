/* Local image archives. A tarball is first unpacked (image/unpack.c: nothing escapes the scratch dir)
 * into a scratch directory next to the blobs, then read as an OCI layout or a docker-save tree; all files
 * are opened beneath their root with openat2, so manifest paths like "../../etc/shadow" lead nowhere. */
#include "image/archive_src.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/util.h"
#include "image/layer_store.h"
#include "image/unpack.h"

#define MAX_JSON (4 << 20)

static int open_beneath(int root, const char *rel, cube_err *err)
{
	while (*rel == '/')
		rel++;
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
	if (fd < 0)
		cube_fail(err, 422, errno, "archive: %s", rel);
	return fd;
}

static json_t *load_json(int root, const char *rel, const char *want_hex, cube_err *err)
{
	int fd = open_beneath(root, rel, err);
	if (fd < 0)
		return NULL;
	char *buf = malloc(MAX_JSON + 1);
	size_t len = 0;
	ssize_t n;
	while (buf && len < MAX_JSON && (n = read(fd, buf + len, MAX_JSON - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (!buf) {
		cube_fail(err, 500, ENOMEM, "archive");
		return NULL;
	}
	if (want_hex) {
		char hex[65];
		layer_sha256_hex(buf, len, hex);
		if (strcmp(hex, want_hex) != 0) {
			free(buf);
			cube_fail(err, 422, 0, "archive: %s does not match its digest", rel);
			return NULL;
		}
	}
	json_error_t je;
	json_t *doc = json_loadb(buf, len, 0, &je);
	free(buf);
	if (!doc)
		cube_fail(err, 422, 0, "archive: %s: %s", rel, je.text);
	return doc;
}

/* Copy src into <blob_dir>/<hex> where hex is the content's SHA-256; want_hex, if set, must match. */
static int import_blob(int src, const char *blob_dir, const char *want_hex, char hex_out[65], long long *size,
		       size_t index, reg_progress_fn progress, void *arg, cube_err *err)
{
	char tmp[PATH_MAX], suffix[9], final[PATH_MAX + 80];
	cube_random_hex(suffix, 4);
	snprintf(tmp, sizeof tmp, "%s/.import-%s.partial", blob_dir, suffix);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0)
		return cube_fail(err, 500, errno, "archive: %s", tmp);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	char buf[1 << 16];
	long long total = 0;
	ssize_t n;
	int rc = 0;
	while ((n = read(src, buf, sizeof buf)) > 0) {
		if (cube_write_all(out, buf, (size_t)n) < 0) {
			rc = cube_fail(err, 500, errno, "archive: write %s", tmp);
			break;
		}
		EVP_DigestUpdate(md, buf, (size_t)n);
		total += n;
		if (progress && (total & ((1 << 20) - 1)) < n)
			progress(index, total, arg);
	}
	if (n < 0 && rc == 0)
		rc = cube_fail(err, 422, errno, "archive: read layer %zu", index);
	unsigned char d[32];
	unsigned int dl;
	EVP_DigestFinal_ex(md, d, &dl);
	EVP_MD_CTX_free(md);
	for (int i = 0; i < 32; i++)
		snprintf(hex_out + 2 * i, 3, "%02x", d[i]);
	if (rc == 0 && want_hex && strcmp(hex_out, want_hex) != 0)
		rc = cube_fail(err, 422, 0, "archive: layer %zu does not match its digest sha256:%.12s", index, want_hex);
	snprintf(final, sizeof final, "%s/%s", blob_dir, hex_out);
	if (rc == 0 && (fsync(out) < 0 || rename(tmp, final) < 0))
		rc = cube_fail(err, 500, errno, "archive: %s", final);
	close(out);
	if (rc < 0)
		unlink(tmp);
	*size = total;
	if (rc == 0 && progress)
		progress(index, total, arg);
	return rc;
}

static bool sha_digest(const char *d)
{
	return d && strncmp(d, "sha256:", 7) == 0 && strlen(d) == 71 && strspn(d + 7, "0123456789abcdef") == 64;
}

static int set_layers(struct reg_image *out, size_t n, cube_err *err)
{
	if (n == 0 || n > 64)
		return cube_fail(err, 422, 0, "archive: an image needs 1 to 64 layers");
	if (!(out->layers = calloc(n, sizeof *out->layers)))
		return cube_fail(err, 500, ENOMEM, "archive");
	out->n_layers = n;
	return 0;
}

/* The manifest an OCI index names for linux/amd64 (or its only entry), following one nested index. */
static json_t *oci_manifest(int root, json_t *index, int depth, cube_err *err)
{
	json_t *ms = json_object_get(index, "manifests"), *pick = NULL, *m;
	size_t i, untagged = 0;
	json_array_foreach(ms, i, m) {
		json_t *pf = json_object_get(m, "platform");
		untagged += !pf;
		const char *os = json_string_value(json_object_get(pf, "os"));
		const char *arch = json_string_value(json_object_get(pf, "architecture"));
		if (!pf || (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, "amd64") == 0)) {
			pick = m;
			if (pf)
				break;
		}
	}
	if (!pick) {
		cube_fail(err, 422, 0, "archive: no linux/amd64 image in the index");
		return NULL;
	}
	if (!json_object_get(pick, "platform") && untagged > 1) {
		cube_fail(err, 422, 0, "archive: the OCI layout holds %zu images; give it one (skopeo copy oci:DIR:TAG "
				       "oci:NEWDIR)", untagged);
		return NULL;
	}
	const char *d = json_string_value(json_object_get(pick, "digest"));
	if (!sha_digest(d)) {
		cube_fail(err, 422, 0, "archive: index entry without a sha256 digest");
		return NULL;
	}
	char rel[100];
	snprintf(rel, sizeof rel, "blobs/sha256/%s", d + 7);
	json_t *doc = load_json(root, rel, d + 7, err);
	if (doc && json_object_get(doc, "manifests")) {
		json_t *inner = depth == 0 ? oci_manifest(root, doc, 1, err) : NULL;
		if (depth)
			cube_fail(err, 422, 0, "archive: nested image index");
		json_decref(doc);
		return inner;
	}
	return doc;
}

static int from_oci_layout(int root, const char *blob_dir, struct reg_image *out, reg_progress_fn progress, void *arg,
			   cube_err *err)
{
	json_t *index = load_json(root, "index.json", NULL, err);
	json_t *man = index ? oci_manifest(root, index, 0, err) : NULL;
	json_decref(index);
	if (!man)
		return -1;
	int rc = -1;
	const char *cd = json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
	json_t *layers = json_object_get(man, "layers");
	char rel[100];
	if (!sha_digest(cd)) {
		cube_fail(err, 422, 0, "archive: manifest without a sha256 config");
		goto out;
	}
	snprintf(rel, sizeof rel, "blobs/sha256/%s", cd + 7);
	if (!(out->config = load_json(root, rel, cd + 7, err)) || set_layers(out, json_array_size(layers), err) < 0)
		goto out;
	for (size_t i = 0; i < out->n_layers; i++) {
		const char *d = json_string_value(json_object_get(json_array_get(layers, i), "digest"));
		if (!sha_digest(d)) {
			cube_fail(err, 422, 0, "archive: layer %zu without a sha256 digest", i);
			goto out;
		}
		snprintf(rel, sizeof rel, "blobs/sha256/%s", d + 7);
		int fd = open_beneath(root, rel, err);
		if (fd < 0)
			goto out;
		int r = import_blob(fd, blob_dir, d + 7, out->layers[i].hex, &out->layers[i].size, i, progress, arg, err);
		close(fd);
		if (r < 0)
			goto out;
	}
	snprintf(out->manifest_digest, sizeof out->manifest_digest, "oci-layout");
	rc = 0;
out:
	json_decref(man);
	return rc;
}

/* docker save: manifest.json = [{"Config": "x.json", "Layers": ["a.tar", ...]}]; layers are plain tars
 * whose digest we compute. */
static int from_docker_save(int root, const char *blob_dir, struct reg_image *out, reg_progress_fn progress,
			    void *arg, cube_err *err)
{
	json_t *m = load_json(root, "manifest.json", NULL, err);
	if (!m)
		return -1;
	int rc = -1;
	json_t *first = json_array_get(m, 0);
	const char *cfg = json_string_value(json_object_get(first, "Config"));
	json_t *layers = json_object_get(first, "Layers");
	if (!cfg || !json_is_array(layers)) {
		cube_fail(err, 422, 0, "archive: manifest.json has no Config and Layers");
		goto out;
	}
	if (!(out->config = load_json(root, cfg, NULL, err)) || set_layers(out, json_array_size(layers), err) < 0)
		goto out;
	for (size_t i = 0; i < out->n_layers; i++) {
		const char *p = json_string_value(json_array_get(layers, i));
		int fd = p ? open_beneath(root, p, err) : -1;
		if (fd < 0) {
			if (!p)
				cube_fail(err, 422, 0, "archive: layer %zu has no path", i);
			goto out;
		}
		int r = import_blob(fd, blob_dir, NULL, out->layers[i].hex, &out->layers[i].size, i, progress, arg, err);
		close(fd);
		if (r < 0)
			goto out;
	}
	snprintf(out->manifest_digest, sizeof out->manifest_digest, "docker-archive");
	rc = 0;
out:
	json_decref(m);
	return rc;
}

static int read_tree(int root, const char *blob_dir, struct reg_image *out, reg_progress_fn progress, void *arg,
		     cube_err *err)
{
	struct stat st;
	if (fstatat(root, "index.json", &st, 0) == 0 && fstatat(root, "oci-layout", &st, 0) == 0)
		return from_oci_layout(root, blob_dir, out, progress, arg, err);
	if (fstatat(root, "manifest.json", &st, 0) == 0)
		return from_docker_save(root, blob_dir, out, progress, arg, err);
	return cube_fail(err, 422, 0, "archive: neither an OCI layout (index.json, oci-layout) nor a docker save "
				      "archive (manifest.json)");
}

int archive_read_image(const char *path, const char *blob_dir, struct reg_image *out, reg_progress_fn progress,
		       void *arg, cube_err *err)
{
	memset(out, 0, sizeof *out);
	if (cube_mkdir_p(blob_dir, 0700) < 0)
		return cube_fail(err, 500, errno, "blob dir %s", blob_dir);
	struct stat st;
	if (!path || path[0] != '/' || stat(path, &st) < 0)
		return cube_fail(err, 400, path && path[0] == '/' ? errno : 0, "archive %s: need an absolute path that exists on cubed's host",
				 path ? path : "(none)");
	int rc;
	if (S_ISDIR(st.st_mode)) {
		int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (root < 0)
			return cube_fail(err, 400, errno, "archive %s", path);
		rc = read_tree(root, blob_dir, out, progress, arg, err);
		close(root);
	} else {
		char scratch[PATH_MAX], suffix[9];
		cube_random_hex(suffix, 4);
		snprintf(scratch, sizeof scratch, "%s/.import-%s", blob_dir, suffix);
		int tar = open(path, O_RDONLY | O_CLOEXEC);
		if (tar < 0)
			return cube_fail(err, 400, errno, "archive %s", path);
		int root = -1;
		if (mkdir(scratch, 0700) < 0 || (root = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			close(tar);
			return cube_fail(err, 500, errno, "archive scratch %s", scratch);
		}
		/* Owners do not matter here; uid_count covers every id so none is refused. */
		struct unpack_opts o = {.uid_base = 0, .uid_count = 0xfffffffeu};
		rc = layer_unpack(tar, root, &o, NULL, err);
		close(tar);
		if (rc == 0)
			rc = read_tree(root, blob_dir, out, progress, arg, err);
		else
			cube_wrap(err, "archive %s", path);
		close(root);
		layer_store_remove_tree(scratch);
	}
	if (rc < 0)
		reg_image_free(out);
	return rc;
}
