/* Registry client (OCI distribution spec v2) on libcurl. One struct registry per pull holds the base URL,
 * the credentials and the current Authorization header; blob downloads run in worker threads, each with
 * its own curl handle, and share the token under a mutex. */
#include "image/registry.h"
#include "image/layer_store.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define MAX_DOC_BYTES (4u << 20)
#define FETCH_ATTEMPTS 5
#define USER_AGENT "cubesandbox/" CUBE_VERSION

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

struct registry {
	struct image_ref ref;
	struct reg_opts o;
	char *user, *password, *ca_file;
	char base[400];           /* scheme://host/v2/repo */
	pthread_mutex_t lock;
	char *auth_header;        /* "Authorization: Bearer ..." or NULL; under lock */
	int auth_basic;           /* the registry asked for basic auth */
};

/* ---- references ---- */

static bool ref_chars(const char *s, const char *extra)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr(extra, *s)))
			return false;
	return true;
}

int image_ref_parse(const char *s, struct image_ref *out, cube_err *err)
{
	memset(out, 0, sizeof *out);
	if (!s || !*s || strlen(s) > 500)
		return cube_fail(err, 400, 0, "image reference is empty or too long");
	char buf[512];
	snprintf(buf, sizeof buf, "%s", s);
	char *name = buf;
	char *digest = strchr(name, '@');
	if (digest)
		*digest++ = '\0';
	/* The first part is a registry host when it has a '.', a ':' or is localhost. */
	char *slash = strchr(name, '/');
	if (slash && (memchr(name, '.', (size_t)(slash - name)) || memchr(name, ':', (size_t)(slash - name)) ||
		      strncmp(name, "localhost/", 10) == 0)) {
		*slash = '\0';
		snprintf(out->registry, sizeof out->registry, "%s", name);
		name = slash + 1;
	} else {
		snprintf(out->registry, sizeof out->registry, "registry-1.docker.io");
	}
	char *colon = strrchr(name, ':');
	const char *tag = "latest";
	if (colon) {
		*colon = '\0';
		tag = colon + 1;
	}
	if (strcmp(out->registry, "registry-1.docker.io") == 0 && !strchr(name, '/'))
		snprintf(out->repo, sizeof out->repo, "library/%s", name);
	else
		snprintf(out->repo, sizeof out->repo, "%s", name);
	if (!*name || !ref_chars(out->repo, "._-/") || strstr(out->repo, "..") || strstr(out->repo, "//"))
		return cube_fail(err, 400, 0, "image reference '%s': invalid repository name", s);
	if (digest) {
		if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71 || !ref_chars(digest + 7, ""))
			return cube_fail(err, 400, 0, "image reference '%s': only sha256 digests are supported", s);
		snprintf(out->ref, sizeof out->ref, "%s", digest);
	} else {
		if (!*tag || strlen(tag) > 128)
			return cube_fail(err, 400, 0, "image reference '%s': invalid tag", s);
		for (const char *p = tag; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			      *p == '_' || *p == '.' || *p == '-'))
				return cube_fail(err, 400, 0, "image reference '%s': invalid tag", s);
		snprintf(out->ref, sizeof out->ref, "%s", tag);
	}
	if (!ref_chars(out->registry, ".-:[]") && !ref_chars(out->registry, ".-:"))
		return cube_fail(err, 400, 0, "image reference '%s': invalid registry host", s);
	return 0;
}

/* ---- HTTP ---- */

struct membuf {
	char *data;
	size_t len, cap;
};

static size_t mem_write(char *p, size_t size, size_t n, void *arg)
{
	struct membuf *m = arg;
	size_t len = size * n;
	if (m->len + len > MAX_DOC_BYTES)
		return 0;
	if (m->len + len + 1 > m->cap) {
		size_t cap = (m->len + len + 1) * 2;
		char *d = realloc(m->data, cap);
		if (!d)
			return 0;
		m->data = d;
		m->cap = cap;
	}
	memcpy(m->data + m->len, p, len);
	m->len += len;
	m->data[m->len] = '\0';
	return len;
}

static CURL *new_handle(struct registry *r, const char *url)
{
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
	/* A stalled transfer (under 1 KiB/s for 30 s) is retried instead of hanging the job. */
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, r->o.insecure ? "http,https" : "https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, r->o.insecure ? "http,https" : "https");
	if (r->ca_file)
		curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
	return h;
}

/* Parse `Bearer realm="...",service="...",scope="..."` (RFC 7235 auth-params). */
static void challenge_param(const char *h, const char *key, char *out, size_t cap)
{
	out[0] = '\0';
	size_t klen = strlen(key);
	for (const char *p = h; (p = strstr(p, key)); p += klen) {
		if ((p != h && p[-1] != ' ' && p[-1] != ',') || p[klen] != '=')
			continue;
		const char *v = p + klen + 1;
		bool quoted = *v == '"';
		if (quoted)
			v++;
		size_t n = 0;
		while (*v && n + 1 < cap && (quoted ? *v != '"' : (*v != ',' && *v != ' ')))
			out[n++] = *v++;
		out[n] = '\0';
		return;
	}
}

static void set_auth(struct registry *r, char *header)
{
	pthread_mutex_lock(&r->lock);
	free(r->auth_header);
	r->auth_header = header;
	pthread_mutex_unlock(&r->lock);
}

/* Answer a 401 challenge: fetch a Bearer token, or switch to basic auth. */
static int authenticate(struct registry *r, const char *challenge, cube_err *err)
{
	if (strncasecmp(challenge, "Basic", 5) == 0) {
		if (!r->user)
			return cube_fail(err, 401, 0, "registry %s requires a user name and password", r->ref.registry);
		r->auth_basic = 1;
		return 0;
	}
	if (strncasecmp(challenge, "Bearer", 6) != 0)
		return cube_fail(err, 502, 0, "registry %s: unsupported auth challenge '%.60s'", r->ref.registry,
				 challenge);
	char realm[512], service[256], scope[512];
	challenge_param(challenge + 6, "realm", realm, sizeof realm);
	challenge_param(challenge + 6, "service", service, sizeof service);
	challenge_param(challenge + 6, "scope", scope, sizeof scope);
	if (!realm[0])
		return cube_fail(err, 502, 0, "registry %s: Bearer challenge without realm", r->ref.registry);
	if (!scope[0])
		snprintf(scope, sizeof scope, "repository:%s:pull", r->ref.repo);
	CURL *h = curl_easy_init();
	if (!h)
		return cube_fail(err, 500, ENOMEM, "curl");
	char *es = curl_easy_escape(h, service, 0), *esc = curl_easy_escape(h, scope, 0);
	char url[2048];
	snprintf(url, sizeof url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", es ? es : "",
		 esc ? esc : "");
	curl_free(es);
	curl_free(esc);
	curl_easy_cleanup(h);
	h = new_handle(r, url);
	struct membuf body = {0};
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	if (r->user) {
		curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, r->password ? r->password : "");
	}
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	if (rc != CURLE_OK) {
		free(body.data);
		return cube_fail(err, 502, 0, "token service %s: %s", realm, curl_easy_strerror(rc));
	}
	if (status == 401 || status == 403) {
		free(body.data);
		return cube_fail(err, 401, 0, "registry %s: credentials refused by the token service", r->ref.registry);
	}
	json_t *doc = body.data ? json_loads(body.data, 0, NULL) : NULL;
	free(body.data);
	const char *tok = json_string_value(json_object_get(doc, "token"));
	if (!tok)
		tok = json_string_value(json_object_get(doc, "access_token"));
	if (status != 200 || !tok) {
		json_decref(doc);
		return cube_fail(err, 502, 0, "token service %s answered %ld without a token", realm, status);
	}
	char *hdr = NULL;
	if (asprintf(&hdr, "Authorization: Bearer %s", tok) < 0)
		hdr = NULL;
	json_decref(doc);
	if (!hdr)
		return cube_fail(err, 500, ENOMEM, "token");
	set_auth(r, hdr);
	return 0;
}

/* Apply the current credentials to a handle; returns the header list to free after the request. */
static struct curl_slist *apply_auth(struct registry *r, CURL *h, struct curl_slist *hdrs)
{
	pthread_mutex_lock(&r->lock);
	if (r->auth_header)
		hdrs = curl_slist_append(hdrs, r->auth_header);
	pthread_mutex_unlock(&r->lock);
	if (r->auth_basic && r->user) {
		curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(h, CURLOPT_PASSWORD, r->password ? r->password : "");
	}
	return hdrs;
}

static void hex_of(const unsigned char *md, char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}


/* GET a small document (manifest, config) into memory, answering one auth challenge. */
static int get_doc(struct registry *r, const char *path, const char *accept, struct membuf *out, char *ctype,
		   size_t ctype_len, cube_err *err)
{
	char url[1024];
	snprintf(url, sizeof url, "%s/%s", r->base, path);
	for (int attempt = 0;; attempt++) {
		CURL *h = new_handle(r, url);
		if (!h)
			return cube_fail(err, 500, ENOMEM, "curl");
		struct curl_slist *hdrs = NULL;
		if (accept) {
			char a[512];
			snprintf(a, sizeof a, "Accept: %s", accept);
			hdrs = curl_slist_append(hdrs, a);
		}
		hdrs = apply_auth(r, h, hdrs);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		free(out->data);
		*out = (struct membuf){0};
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
		CURLcode rc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		char challenge[1024] = "";
		struct curl_header *hv;
		if (status == 401 && curl_easy_header(h, "WWW-Authenticate", 0, CURLH_HEADER, -1, &hv) == CURLHE_OK)
			snprintf(challenge, sizeof challenge, "%s", hv->value);
		if (ctype && curl_easy_header(h, "Content-Type", 0, CURLH_HEADER, -1, &hv) == CURLHE_OK)
			snprintf(ctype, ctype_len, "%s", hv->value);
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		if (rc != CURLE_OK) {
			if (attempt + 1 < FETCH_ATTEMPTS && rc != CURLE_UNSUPPORTED_PROTOCOL &&
			    rc != CURLE_PEER_FAILED_VERIFICATION && rc != CURLE_SSL_CACERT_BADFILE) {
				usleep((useconds_t)(200000u << attempt));
				continue;
			}
			if (rc == CURLE_UNSUPPORTED_PROTOCOL)
				return cube_fail(err, 400, 0, "registry %s: plain HTTP needs --insecure-registry",
						 r->ref.registry);
			return cube_fail(err, 502, 0, "registry %s: %s", r->ref.registry, curl_easy_strerror(rc));
		}
		if (status == 401 && attempt == 0 && challenge[0]) {
			if (authenticate(r, challenge, err) < 0)
				return -1;
			continue;
		}
		if (status == 401 || status == 403)
			return cube_fail(err, 401, 0, "registry %s: access to %s denied (status %ld)", r->ref.registry,
					 r->ref.repo, status);
		if (status == 404)
			return cube_fail(err, 404, 0, "image %s/%s: %s not found", r->ref.registry, r->ref.repo, path);
		if (status >= 500 && attempt + 1 < FETCH_ATTEMPTS) {
			usleep((useconds_t)(200000u << attempt));
			continue;
		}
		if (status != 200)
			return cube_fail(err, 502, 0, "registry %s: GET %s answered %ld", r->ref.registry, path, status);
		if (!out->data)
			return cube_fail(err, 502, 0, "registry %s: GET %s: empty answer", r->ref.registry, path);
		return 0;
	}
}

/* ---- open / close ---- */

struct registry *reg_open(const struct image_ref *ref, const struct reg_opts *o, cube_err *err)
{
	struct registry *r = calloc(1, sizeof *r);
	if (!r) {
		cube_fail(err, 500, ENOMEM, "registry");
		return NULL;
	}
	r->ref = *ref;
	r->o = *o;
	r->user = o->user ? strdup(o->user) : NULL;
	r->password = o->password ? strdup(o->password) : NULL;
	r->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
	pthread_mutex_init(&r->lock, NULL);
	snprintf(r->base, sizeof r->base, "%s://%s/v2/%s", o->insecure ? "http" : "https", ref->registry, ref->repo);
	return r;
}

void reg_close(struct registry *r)
{
	if (!r)
		return;
	free(r->user);
	free(r->password);
	free(r->ca_file);
	free(r->auth_header);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

void reg_image_free(struct reg_image *img)
{
	json_decref(img->config);
	free(img->layers);
	memset(img, 0, sizeof *img);
}

/* ---- manifests ---- */

static bool is_digest(const char *s)
{
	return s && strncmp(s, "sha256:", 7) == 0 && strlen(s) == 71;
}

static int check_digest(const struct membuf *m, const char *digest, const char *what, cube_err *err)
{
	char hex[65];
	layer_sha256_hex(m->data, m->len, hex);
	if (strcmp(hex, digest + 7) != 0)
		return cube_fail(err, 502, 0, "%s: digest mismatch (expected %s, got sha256:%s)", what, digest, hex);
	return 0;
}

static const char *doc_type(json_t *doc, const char *ctype)
{
	const char *mt = json_string_value(json_object_get(doc, "mediaType"));
	if (mt)
		return mt;
	if (json_object_get(doc, "manifests"))
		return MT_OCI_INDEX;
	return ctype;
}

/* From an index or manifest list: the digest of the linux/amd64 image. */
static int pick_platform(struct registry *r, json_t *idx, char *digest, size_t cap, cube_err *err)
{
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(idx, "manifests"), i, m) {
		json_t *pf = json_object_get(m, "platform");
		const char *os = json_string_value(json_object_get(pf, "os"));
		const char *arch = json_string_value(json_object_get(pf, "architecture"));
		const char *d = json_string_value(json_object_get(m, "digest"));
		if (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, "amd64") == 0 && is_digest(d)) {
			snprintf(digest, cap, "%s", d);
			return 0;
		}
	}
	return cube_fail(err, 422, 0, "image %s/%s:%s has no linux/amd64 variant", r->ref.registry, r->ref.repo,
			 r->ref.ref);
}

int reg_get_image(struct registry *r, struct reg_image *out, cube_err *err)
{
	memset(out, 0, sizeof *out);
	static const char accept[] = MT_OCI_INDEX ", " MT_DOCKER_LIST ", " MT_OCI_MANIFEST ", " MT_DOCKER_MANIFEST;
	char path[256], ref[160], ctype[128] = "";
	snprintf(ref, sizeof ref, "%s", r->ref.ref);
	struct membuf m = {0};
	json_t *doc = NULL;
	int rc = -1;
	for (int depth = 0;; depth++) {
		snprintf(path, sizeof path, "manifests/%s", ref);
		if (get_doc(r, path, accept, &m, ctype, sizeof ctype, err) < 0)
			goto out;
		if (is_digest(ref) && check_digest(&m, ref, "manifest", err) < 0)
			goto out;
		json_decref(doc);
		if (!(doc = json_loadb(m.data, m.len, 0, NULL))) {
			cube_fail(err, 502, 0, "registry %s: manifest is not JSON", r->ref.registry);
			goto out;
		}
		const char *mt = doc_type(doc, ctype);
		if (strncmp(mt, MT_OCI_INDEX, strlen(MT_OCI_INDEX)) == 0 ||
		    strncmp(mt, MT_DOCKER_LIST, strlen(MT_DOCKER_LIST)) == 0) {
			if (depth > 0) {
				cube_fail(err, 502, 0, "registry %s: nested image index", r->ref.registry);
				goto out;
			}
			if (pick_platform(r, doc, ref, sizeof ref, err) < 0)
				goto out;
			continue;
		}
		if (strncmp(mt, MT_OCI_MANIFEST, strlen(MT_OCI_MANIFEST)) != 0 &&
		    strncmp(mt, MT_DOCKER_MANIFEST, strlen(MT_DOCKER_MANIFEST)) != 0) {
			cube_fail(err, 422, 0, "image %s/%s: unsupported manifest type '%s'", r->ref.registry, r->ref.repo,
				  mt);
			goto out;
		}
		break;
	}
	char hex[65];
	layer_sha256_hex(m.data, m.len, hex);
	snprintf(out->manifest_digest, sizeof out->manifest_digest, "sha256:%s", hex);

	const char *cdigest = json_string_value(json_object_get(json_object_get(doc, "config"), "digest"));
	json_t *layers = json_object_get(doc, "layers");
	size_t n = json_array_size(layers);
	if (!is_digest(cdigest) || n == 0 || n > 64) {
		cube_fail(err, 422, 0, "image %s/%s: manifest needs a sha256 config and 1 to 64 layers", r->ref.registry,
			  r->ref.repo);
		goto out;
	}
	out->layers = calloc(n, sizeof *out->layers);
	if (!out->layers) {
		cube_fail(err, 500, ENOMEM, "manifest");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *l = json_array_get(layers, i);
		const char *d = json_string_value(json_object_get(l, "digest"));
		const char *lmt = json_string_value(json_object_get(l, "mediaType"));
		json_int_t size = json_integer_value(json_object_get(l, "size"));
		if (!is_digest(d) || !ref_chars(d + 7, "") || size < 0 || size > REG_MAX_BLOB_BYTES) {
			cube_fail(err, 422, 0, "image %s/%s: layer %zu has no sha256 digest or an absurd size",
				  r->ref.registry, r->ref.repo, i);
			goto out;
		}
		if (lmt && (strstr(lmt, "nondistributable") || strstr(lmt, "foreign"))) {
			cube_fail(err, 422, 0, "image %s/%s: layer %zu is foreign (%s)", r->ref.registry, r->ref.repo, i,
				  lmt);
			goto out;
		}
		snprintf(out->layers[i].hex, sizeof out->layers[i].hex, "%s", d + 7);
		snprintf(out->layers[i].media_type, sizeof out->layers[i].media_type, "%s", lmt ? lmt : "");
		out->layers[i].size = size;
		out->n_layers = i + 1;
	}
	snprintf(path, sizeof path, "blobs/%s", cdigest);
	if (get_doc(r, path, NULL, &m, NULL, 0, err) < 0 || check_digest(&m, cdigest, "image config", err) < 0)
		goto out;
	if (!(out->config = json_loadb(m.data, m.len, 0, NULL))) {
		cube_fail(err, 502, 0, "image config is not JSON");
		goto out;
	}
	rc = 0;
out:
	free(m.data);
	json_decref(doc);
	if (rc < 0)
		reg_image_free(out);
	return rc;
}

/* ---- blobs ---- */

struct blob_dl {
	CURL *h;
	int fd;
	EVP_MD_CTX *md;
	long long have;
	size_t index;
	reg_progress_fn progress;
	void *arg;
	long long last_report;
	bool write_failed;
};

static size_t blob_write(char *p, size_t size, size_t n, void *arg)
{
	struct blob_dl *b = arg;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(b->h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200 && status != 206)
		return len; /* an error body, not blob bytes */
	if (cube_write_all(b->fd, p, len) < 0) {
		b->write_failed = true;
		return 0;
	}
	EVP_DigestUpdate(b->md, p, len);
	b->have += (long long)len;
	if (b->progress && b->have - b->last_report >= (256 << 10)) {
		b->last_report = b->have;
		b->progress(b->index, b->have, b->arg);
	}
	return len;
}

/* Hash what an earlier attempt already wrote, so the download can continue where it stopped. */
static int rehash(struct blob_dl *b)
{
	char buf[1 << 16];
	if (lseek(b->fd, 0, SEEK_SET) < 0)
		return -1;
	b->have = 0;
	for (;;) {
		ssize_t n = read(b->fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		EVP_DigestUpdate(b->md, buf, (size_t)n);
		b->have += n;
	}
	return 0;
}

/* One attempt: 0 done, 1 retry (transient), -1 fatal. */
static int blob_attempt(struct registry *r, const struct reg_layer *l, struct blob_dl *b, cube_err *err)
{
	char url[1024];
	snprintf(url, sizeof url, "%s/blobs/sha256:%s", r->base, l->hex);
	EVP_DigestInit_ex(b->md, EVP_sha256(), NULL);
	if (rehash(b) < 0)
		return cube_fail(err, 500, errno, "blob %.12s: read partial download", l->hex);
	if (b->have > l->size) {
		if (ftruncate(b->fd, 0) < 0)
			return cube_fail(err, 500, errno, "truncate");
		EVP_DigestInit_ex(b->md, EVP_sha256(), NULL);
		b->have = 0;
	}
	if (b->have < l->size || l->size == 0) {
		CURL *h = new_handle(r, url);
		if (!h)
			return cube_fail(err, 500, ENOMEM, "curl");
		struct curl_slist *hdrs = apply_auth(r, h, NULL);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		b->h = h;
		char range[64];
		if (b->have > 0) {
			snprintf(range, sizeof range, "%lld-", b->have);
			curl_easy_setopt(h, CURLOPT_RANGE, range);
		}
		bool resumed = b->have > 0;
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, blob_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
		/* Ranged answers must be 206 from the right offset; a 200 restarts from zero (below). */
		if (lseek(b->fd, 0, SEEK_END) < 0) {
			curl_slist_free_all(hdrs);
			curl_easy_cleanup(h);
			return cube_fail(err, 500, errno, "seek");
		}
		CURLcode rc = curl_easy_perform(h);
		long status = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		char challenge[1024] = "";
		struct curl_header *hv;
		if (status == 401 && curl_easy_header(h, "WWW-Authenticate", 0, CURLH_HEADER, -1, &hv) == CURLHE_OK)
			snprintf(challenge, sizeof challenge, "%s", hv->value);
		curl_slist_free_all(hdrs);
		curl_easy_cleanup(h);
		if (status == 200 && resumed) {
			/* The server ignored the range: what it sent is the whole blob from byte 0, but our write
			 * callback appended it after the old bytes. Start over. */
			if (ftruncate(b->fd, 0) < 0)
				return cube_fail(err, 500, errno, "truncate");
			return 1;
		}
		if (b->write_failed)
			return cube_fail(err, 500, errno, "blob %.12s: write", l->hex);
		if (status == 401 && challenge[0]) {
			if (authenticate(r, challenge, err) < 0)
				return -1;
			return 1;
		}
		if (status == 404)
			return cube_fail(err, 404, 0, "blob sha256:%.12s not found in %s", l->hex, r->ref.repo);
		if (status == 416) {
			if (ftruncate(b->fd, 0) < 0)
				return cube_fail(err, 500, errno, "truncate");
			return 1;
		}
		if (rc != CURLE_OK || (status != 200 && status != 206)) {
			cube_fail(err, 502, 0, "blob %.12s: %s (status %ld)", l->hex,
				  rc != CURLE_OK ? curl_easy_strerror(rc) : "unexpected answer", status);
			return status >= 400 && status < 500 ? -1 : 1;
		}
	}
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_DigestFinal_ex(b->md, md, &mdlen);
	char hex[65];
	hex_of(md, hex);
	if (b->have != l->size || strcmp(hex, l->hex) != 0) {
		cube_fail(err, 502, 0, "blob sha256:%.12s: got %lld bytes with digest sha256:%.12s (want %lld bytes)",
			  l->hex, b->have, hex, l->size);
		if (ftruncate(b->fd, 0) < 0)
			return -1;
		return 2; /* corrupt: one fresh retry, then give up */
	}
	return 0;
}

static int fetch_blob(struct registry *r, const struct reg_layer *l, size_t index, const char *blob_dir,
		      reg_progress_fn progress, void *arg, cube_err *err)
{
	char final[4096], partial[4200];
	snprintf(final, sizeof final, "%s/%s", blob_dir, l->hex);
	snprintf(partial, sizeof partial, "%s.partial", final);
	struct stat st;
	if (stat(final, &st) == 0 && st.st_size == l->size) {
		if (progress)
			progress(index, l->size, arg);
		return 0;
	}
	struct blob_dl b = {.index = index, .progress = progress, .arg = arg};
	b.fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (b.fd < 0)
		return cube_fail(err, 500, errno, "blob %s", partial);
	b.md = EVP_MD_CTX_new();
	int rc = -1, corrupt = 0;
	for (int attempt = 0; attempt < FETCH_ATTEMPTS; attempt++) {
		b.write_failed = false;
		int r2 = blob_attempt(r, l, &b, err);
		if (r2 == 0) {
			rc = 0;
			break;
		}
		if (r2 < 0 || (r2 == 2 && corrupt++))
			break;
		log_warn("pull %s: blob %.12s attempt %d: %s", r->ref.repo, l->hex, attempt + 1, err->msg);
		usleep((useconds_t)(250000u << attempt));
	}
	EVP_MD_CTX_free(b.md);
	if (rc == 0 && (fsync(b.fd) < 0 || rename(partial, final) < 0))
		rc = cube_fail(err, 500, errno, "blob %s", final);
	close(b.fd);
	if (rc == 0 && progress)
		progress(index, l->size, arg);
	return rc;
}

struct pool {
	struct registry *r;
	const struct reg_layer *layers;
	const bool *skip;
	size_t n, next;
	const char *blob_dir;
	reg_progress_fn progress;
	reg_done_fn done;
	void *arg;
	pthread_mutex_t lock;
	int failed;
	cube_err err;
};

static void *worker(void *arg)
{
	struct pool *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->lock);
		size_t i = p->next++;
		int stop = p->failed;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->n || stop)
			return NULL;
		if (p->skip && p->skip[i])
			continue;
		cube_err err = {0};
		if (fetch_blob(p->r, &p->layers[i], i, p->blob_dir, p->progress, p->arg, &err) < 0 ||
		    (p->done && p->done(i, p->arg, &err) < 0)) {
			pthread_mutex_lock(&p->lock);
			if (!p->failed++)
				p->err = err;
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
	}
}

int reg_fetch_layers(struct registry *r, const struct reg_layer *layers, size_t n, const bool *skip,
		     const char *blob_dir, int parallel, reg_progress_fn progress, reg_done_fn done, void *arg,
		     cube_err *err)
{
	if (cube_mkdir_p(blob_dir, 0700) < 0)
		return cube_fail(err, 500, errno, "blob dir %s", blob_dir);
	struct pool p = {.r = r, .layers = layers, .skip = skip, .n = n, .blob_dir = blob_dir,
			 .progress = progress, .done = done, .arg = arg};
	pthread_mutex_init(&p.lock, NULL);
	if (parallel < 1)
		parallel = 1;
	if (parallel > 8)
		parallel = 8;
	pthread_t t[8];
	int started = 0;
	for (int i = 0; i < parallel && (size_t)i < n; i++)
		if (pthread_create(&t[started], NULL, worker, &p) == 0)
			started++;
	if (started == 0)
		worker(&p);
	for (int i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&p.lock);
	if (p.failed) {
		*err = p.err;
		return -1;
	}
	return 0;
}
