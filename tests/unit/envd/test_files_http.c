/* GET/POST /files over real HTTP: envd_files_get/post behind common/http_server in a server thread,
 * libcurl as the client. Multipart (several files, full paths in filenames), octet-stream, gzip,
 * X-Metadata-* headers, the upload limit, 50 MB round trip, ranges, signed URLs, acting user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include "common/util.h"
#include "envd/fs_internal.h"

struct envd_state envd;

/* ---- what the rest of envd provides ---- */

static struct envd_user root_user = {.uid = 0, .gid = 0, .name = "root", .home = "/root"};
static struct envd_user plain_user = {.uid = 1000, .gid = 1000, .name = "user", .home = "/home/user"};

int envd_user_lookup(const char *name, struct envd_user *out, cube_err *err)
{
	if (strcmp(name, "root") == 0)
		*out = root_user;
	else if (strcmp(name, "user") == 0)
		*out = plain_user;
	else
		return cube_fail(err, 401, 0, "invalid username: '%s'", name);
	return 0;
}

int envd_resolve_path(const char *in, const struct envd_user *u, char *out, size_t outlen, cube_err *err)
{
	(void)u;
	if (in[0] != '/')
		return cube_fail(err, 400, 0, "test resolver: absolute paths only");
	snprintf(out, outlen, "%s", in);
	return 0;
}

/* filesystem.c/watch.c are linked for the shared helpers; their RPCs are not called here. */
const struct envd_user *envd_rpc_user(envd_rpc *rpc) { (void)rpc; return NULL; }
void envd_rpc_reply(envd_rpc *rpc, json_t *msg) { (void)rpc; json_decref(msg); }
void envd_rpc_fail(envd_rpc *rpc, enum connect_code code, const char *fmt, ...) { (void)rpc; (void)code; (void)fmt; }
int envd_rpc_send(envd_rpc *rpc, json_t *msg) { (void)rpc; json_decref(msg); return 0; }
void envd_rpc_set_keepalive(envd_rpc *rpc, json_t *msg) { (void)rpc; json_decref(msg); }
void envd_rpc_on_cancel(envd_rpc *rpc, envd_rpc_cancel_fn cb, void *arg) { (void)rpc; (void)cb; (void)arg; }
size_t envd_rpc_pending(envd_rpc *rpc) { (void)rpc; return 0; }

/* ---- server ---- */

static uv_loop_t loop;
static uv_async_t stop_async;
static pthread_t server_thread;
static int port;
static char scratch[256];

static void on_request(http_req *req, void *ctx)
{
	(void)ctx;
	const char *tok = http_req_header(req, "X-Access-Token");
	int token_ok = !envd.access_token || (tok && strcmp(tok, envd.access_token) == 0);
	if (strcmp(http_req_path(req), "/files/compose") == 0) {
		envd_files_compose(req, token_ok);
		return;
	}
	if (strcmp(http_req_path(req), "/files") != 0) {
		http_resp_error(req, 404, "no route");
		return;
	}
	if (strcmp(http_req_method(req), "POST") == 0)
		envd_files_post(req, token_ok);
	else
		envd_files_get(req, token_ok);
}

static void on_stop(uv_async_t *a)
{
	(void)a;
	uv_stop(&loop);
}

static void *serve(void *arg)
{
	(void)arg;
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

static void write_text(const char *rel, const char *text)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", scratch, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(scratch, sizeof scratch, "/tmp/cube-test-files-XXXXXX");
	assert_non_null(mkdtemp(scratch));
	chmod(scratch, 0777);
	write_text("passwd", "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\n");
	write_text("group", "root:x:0:\nuser:x:1000:\n");
	char pw[512], gr[512];
	snprintf(pw, sizeof pw, "%s/passwd", scratch);
	snprintf(gr, sizeof gr, "%s/group", scratch);
	fs_set_identity_files(pw, gr);
	envd.default_user = "root";
	envd.max_upload_bytes = 0;
	uv_loop_init(&loop);
	envd.loop = &loop;
	uv_async_init(&loop, &stop_async, on_stop);
	http_server *srv = http_server_new(&loop, on_request, NULL);
	cube_err err;
	assert_int_equal(http_server_listen_tcp(srv, "127.0.0.1:0", &err), 0);
	port = http_server_port(srv);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_create(&server_thread, NULL, serve, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	uv_async_send(&stop_async);
	pthread_join(server_thread, NULL);
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
	assert_int_equal(system(cmd), 0);
	curl_global_cleanup();
	return 0;
}

/* ---- client ---- */

struct buf {
	char *data;
	size_t len, cap;
};

/* Grows geometrically: under ASan every realloc copies, and growing by each 16 KB piece made the
 * 50 MB download quadratic (over a minute, past curl's timeout). */
static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
	struct buf *b = ud;
	if (b->len + sz * n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + sz * n + 1)
			cap *= 2;
		char *nd = realloc(b->data, cap);
		assert_non_null(nd);
		b->data = nd;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, sz * n);
	b->len += sz * n;
	b->data[b->len] = '\0';
	return sz * n;
}

struct resp {
	long status;
	struct buf body, head;
};

static void resp_free(struct resp *r)
{
	free(r->body.data);
	free(r->head.data);
	memset(r, 0, sizeof *r);
}

/* One request; `query` is appended to /files. Headers are "Name: value" strings, NULL-terminated. */
static void request(struct resp *r, const char *method, const char *query, const char **headers, const void *body,
		    size_t len, curl_mime *mime)
{
	memset(r, 0, sizeof *r);
	CURL *c = curl_easy_init();
	char url[4096];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/files%s", port, query);
	curl_easy_setopt(c, CURLOPT_URL, url);
	struct curl_slist *h = NULL;
	for (int i = 0; headers && headers[i]; i++)
		h = curl_slist_append(h, headers[i]);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	if (strcmp(method, "POST") == 0) {
		if (mime) {
			curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
		} else {
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		}
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->head);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK)
		fail_msg("curl: %s", curl_easy_strerror(rc));
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

static char *slurp(const char *path, size_t *len)
{
	return cube_read_file(path, len);
}

static void test_multipart_upload(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512];
	CURL *c = curl_easy_init();
	curl_mime *mime = curl_mime_init(c);
	curl_mimepart *part = curl_mime_addpart(mime);
	snprintf(p, sizeof p, "%s/mp/a.txt", scratch);
	curl_mime_name(part, "file");
	curl_mime_filename(part, p);
	curl_mime_data(part, "hello", CURL_ZERO_TERMINATED);
	char *enc = curl_easy_escape(c, p, 0);
	snprintf(q, sizeof q, "?path=%s", enc);
	curl_free(enc);
	const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
	request(&r, "POST", q, chunked, NULL, 0, mime);
	assert_int_equal(r.status, 200);
	json_t *j = json_loads(r.body.data, 0, NULL);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "path")), p);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "name")), "a.txt");
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "type")), "file");
	json_decref(j);
	size_t len;
	char *got = slurp(p, &len);
	assert_string_equal(got, "hello");
	free(got);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	resp_free(&r);
	curl_mime_free(mime);

	/* Several files, no path: destinations from the filenames (full paths), other fields ignored. */
	mime = curl_mime_init(c);
	const char *names[] = {"mp/x/one", "mp/y/two"};
	for (int i = 0; i < 2; i++) {
		part = curl_mime_addpart(mime);
		curl_mime_name(part, "file");
		snprintf(p, sizeof p, "%s/%s", scratch, names[i]);
		curl_mime_filename(part, p);
		curl_mime_data(part, names[i], CURL_ZERO_TERMINATED);
		part = curl_mime_addpart(mime);
		curl_mime_name(part, "comment");
		curl_mime_data(part, "ignored", CURL_ZERO_TERMINATED);
	}
	request(&r, "POST", "", NULL, NULL, 0, mime);
	assert_int_equal(r.status, 200);
	j = json_loads(r.body.data, 0, NULL);
	assert_int_equal(json_array_size(j), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 1), "name")), "two");
	json_decref(j);
	snprintf(p, sizeof p, "%s/mp/y/two", scratch);
	got = slurp(p, &len);
	assert_string_equal(got, "mp/y/two");
	free(got);
	resp_free(&r);
	curl_mime_free(mime);

	/* The same path twice in one upload: 400. */
	mime = curl_mime_init(c);
	for (int i = 0; i < 2; i++) {
		part = curl_mime_addpart(mime);
		curl_mime_name(part, "file");
		snprintf(p, sizeof p, "%s/mp/dup", scratch);
		curl_mime_filename(part, p);
		curl_mime_data(part, "d", CURL_ZERO_TERMINATED);
	}
	request(&r, "POST", "", NULL, NULL, 0, mime);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	curl_mime_free(mime);
	curl_easy_cleanup(c);
}

static void test_octet_stream_and_gzip(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512];
	size_t n = 3 * 1024 * 1024 + 17;
	unsigned char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 13);
	snprintf(p, sizeof p, "%s/oct/raw.bin", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	const char *h[] = {"Content-Type: application/octet-stream", "Transfer-Encoding: chunked", NULL};
	request(&r, "POST", q, h, data, n, NULL);
	assert_int_equal(r.status, 200);
	size_t len;
	char *got = slurp(p, &len);
	assert_int_equal(len, n);
	assert_memory_equal(got, data, n);
	free(got);
	resp_free(&r);

	/* gzip body */
	z_stream z = {0};
	assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&z, n);
	unsigned char *gz = malloc(cap);
	z.next_in = data;
	z.avail_in = (uInt)n;
	z.next_out = gz;
	z.avail_out = (uInt)cap;
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t gzlen = z.total_out;
	deflateEnd(&z);
	snprintf(p, sizeof p, "%s/oct/gz.bin", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	const char *hg[] = {"Content-Type: application/octet-stream", "Content-Encoding: gzip", NULL};
	request(&r, "POST", q, hg, gz, gzlen, NULL);
	assert_int_equal(r.status, 200);
	got = slurp(p, &len);
	assert_int_equal(len, n);
	assert_memory_equal(got, data, n);
	free(got);
	resp_free(&r);
	/* truncated gzip */
	request(&r, "POST", q, hg, gz, gzlen / 2, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	free(gz);

	/* octet-stream needs a path; unknown types and encodings are refused */
	request(&r, "POST", "", h, "x", 1, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	const char *ht[] = {"Content-Type: text/plain", NULL};
	request(&r, "POST", q, ht, "x", 1, NULL);
	assert_int_equal(r.status, 400);
	json_t *j = json_loads(r.body.data, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 400);
	json_decref(j);
	resp_free(&r);
	const char *hb[] = {"Content-Type: application/octet-stream", "Content-Encoding: br", NULL};
	request(&r, "POST", q, hb, "x", 1, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	/* a directory at the target */
	snprintf(q, sizeof q, "?path=%s/oct", scratch);
	request(&r, "POST", q, h, "x", 1, NULL);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body.data, "is a directory"));
	resp_free(&r);
	free(data);
}

static void test_metadata(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512], v[64];
	snprintf(p, sizeof p, "%s/meta.txt", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	const char *h[] = {"Content-Type: application/octet-stream", "X-Metadata-Purpose: Test Run", "x-metadata-k2: v2",
			   NULL};
	request(&r, "POST", q, h, "m", 1, NULL);
	if (r.status == 500 && strstr(r.body.data, "metadata")) {
		resp_free(&r);
		skip(); /* no user xattrs on this filesystem */
	}
	assert_int_equal(r.status, 200);
	json_t *j = json_loads(r.body.data, 0, NULL);
	json_t *meta = json_object_get(json_array_get(j, 0), "metadata");
	assert_string_equal(json_string_value(json_object_get(meta, "purpose")), "Test Run");
	assert_string_equal(json_string_value(json_object_get(meta, "k2")), "v2");
	json_decref(j);
	ssize_t vl = getxattr(p, "user.e2b.purpose", v, sizeof v);
	assert_int_equal(vl, 8);
	resp_free(&r);
	/* An upload without metadata replaces (clears) it. */
	const char *h2[] = {"Content-Type: application/octet-stream", NULL};
	request(&r, "POST", q, h2, "m", 1, NULL);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body.data, "metadata"));
	assert_int_equal(getxattr(p, "user.e2b.purpose", v, sizeof v), -1);
	resp_free(&r);
	/* Invalid values: 400. */
	const char *h3[] = {"Content-Type: application/octet-stream", "X-Metadata-Bad: caf\xc3\xa9", NULL};
	request(&r, "POST", q, h3, "m", 1, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
}

static void test_upload_limit(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512];
	envd.max_upload_bytes = 1024 * 1024;
	size_t n = 2 * 1024 * 1024;
	char *data = calloc(1, n);
	snprintf(p, sizeof p, "%s/big.bin", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	const char *h[] = {"Content-Type: application/octet-stream", "Transfer-Encoding: chunked", NULL};
	request(&r, "POST", q, h, data, n, NULL);
	assert_int_equal(r.status, 413);
	json_t *j = json_loads(r.body.data, 0, NULL);
	assert_int_equal(json_integer_value(json_object_get(j, "code")), 413);
	assert_true(json_is_string(json_object_get(j, "message")));
	json_decref(j);
	assert_int_equal(access(p, F_OK), -1);
	resp_free(&r);
	/* Nothing left behind (temporary files are removed). */
	cleanup_dir DIR *d = opendir(scratch);
	struct dirent *de;
	while ((de = readdir(d)))
		assert_null(strstr(de->d_name, ".upload-"));
	/* Under the limit still works. */
	request(&r, "POST", q, h, data, 1000, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	envd.max_upload_bytes = 0;
	free(data);
}

static void test_download(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512];
	write_text("dl.txt", "0123456789");
	snprintf(q, sizeof q, "?path=%s/dl.txt", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "0123456789");
	assert_non_null(strstr(r.head.data, "Content-Length: 10"));
	assert_non_null(strstr(r.head.data, "Content-Disposition: inline; filename=\"dl.txt\""));
	assert_non_null(strstr(r.head.data, "Content-Type: application/octet-stream"));
	resp_free(&r);
	const char *range[] = {"Range: bytes=2-4", NULL};
	request(&r, "GET", q, range, NULL, 0, NULL);
	assert_int_equal(r.status, 206);
	assert_string_equal(r.body.data, "234");
	resp_free(&r);

	write_text("empty", "");
	snprintf(q, sizeof q, "?path=%s/empty", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, 0);
	assert_non_null(strstr(r.head.data, "Content-Length: 0"));
	resp_free(&r);

	snprintf(q, sizeof q, "?path=%s/absent", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 404);
	snprintf(p, sizeof p, "{\"code\":404,\"message\":\"path '%s/absent' does not exist\"}", scratch);
	assert_string_equal(r.body.data, p);
	resp_free(&r);
	snprintf(q, sizeof q, "?path=%s", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
	snprintf(q, sizeof q, "?path=%s/dl.txt&username=nobody", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
}

static void test_big_round_trip(void **state)
{
	(void)state;
	struct resp r;
	char q[600], p[512];
	size_t n = 50 * 1024 * 1024;
	unsigned char *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (unsigned char)(i * 31 + (i >> 20));
	snprintf(p, sizeof p, "%s/fifty.bin", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	CURL *c = curl_easy_init();
	curl_mime *mime = curl_mime_init(c);
	curl_mimepart *part = curl_mime_addpart(mime);
	curl_mime_name(part, "file");
	curl_mime_filename(part, p);
	curl_mime_data(part, (const char *)data, n);
	request(&r, "POST", q, NULL, NULL, 0, mime);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	curl_mime_free(mime);
	curl_easy_cleanup(c);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.body.len, n);
	assert_memory_equal(r.body.data, data, n);
	resp_free(&r);
	free(data);
}

static void test_signed_urls(void **state)
{
	(void)state;
	struct resp r;
	char q[1024], p[512], sig[128];
	envd.access_token = "tok-test";
	write_text("signed.txt", "s");
	snprintf(p, sizeof p, "%s/signed.txt", scratch);
	snprintf(q, sizeof q, "?path=%s", p);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 401);
	assert_non_null(strstr(r.body.data, "missing signature"));
	resp_free(&r);
	const char *tok[] = {"X-Access-Token: tok-test", NULL};
	request(&r, "GET", q, tok, NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	const char *bad[] = {"X-Access-Token: nope", NULL};
	request(&r, "GET", q, bad, NULL, 0, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);

	CURL *c = curl_easy_init();
	long long exp = cube_now_ms() / 1000 + 60;
	char exps[32];
	snprintf(exps, sizeof exps, "%lld", exp);
	assert_int_equal(envd_signature(p, "read", "", "tok-test", exps, sig, sizeof sig), 0);
	char *esig = curl_easy_escape(c, sig, 0), *epath = curl_easy_escape(c, p, 0);
	snprintf(q, sizeof q, "?path=%s&signature=%s&signature_expiration=%s", epath, esig, exps);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body.data, "s");
	resp_free(&r);
	/* A read signature does not authorise a write. */
	const char *h[] = {"Content-Type: application/octet-stream", NULL};
	request(&r, "POST", q, h, "x", 1, NULL);
	assert_int_equal(r.status, 401);
	resp_free(&r);
	curl_free(esig);
	/* Upload signature with a user. */
	assert_int_equal(envd_signature(p, "write", "root", "tok-test", NULL, sig, sizeof sig), 0);
	esig = curl_easy_escape(c, sig, 0);
	snprintf(q, sizeof q, "?username=root&path=%s&signature=%s", epath, esig);
	request(&r, "POST", q, h, "w", 1, NULL);
	assert_int_equal(r.status, 200);
	resp_free(&r);
	curl_free(esig);
	curl_free(epath);
	curl_easy_cleanup(c);
	envd.access_token = NULL;
}

/* Uploads as username=user: the file and new parents belong to uid 1000; root-only dirs refuse. */
static void test_acting_user(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	struct resp r;
	char q[600], p[512];
	snprintf(p, sizeof p, "%s/users/new/f.txt", scratch);
	snprintf(q, sizeof q, "?username=user&path=%s", p);
	const char *h[] = {"Content-Type: application/octet-stream", NULL};
	request(&r, "POST", q, h, "u", 1, NULL);
	assert_int_equal(r.status, 200);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(st.st_gid, 1000);
	snprintf(p, sizeof p, "%s/users/new", scratch);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, 1000);
	resp_free(&r);

	snprintf(p, sizeof p, "%s/rootonly", scratch);
	assert_int_equal(mkdir(p, 0700), 0);
	write_text("rootonly/secret", "s");
	snprintf(q, sizeof q, "?username=user&path=%s/rootonly/x", scratch);
	request(&r, "POST", q, h, "u", 1, NULL);
	assert_int_equal(r.status, 403);
	resp_free(&r);
	snprintf(q, sizeof q, "?username=user&path=%s/rootonly/secret", scratch);
	request(&r, "GET", q, NULL, NULL, 0, NULL);
	assert_int_equal(r.status, 403);
	resp_free(&r);
}

static void test_compose(void **state)
{
	(void)state;
	struct resp r;
	char body[2048], p[512];
	write_text("part1", "hello ");
	write_text("part2", "world");
	snprintf(body, sizeof body, "{\"source_paths\":[\"%s/part1\",\"%s/part2\"],\"destination\":\"%s/composed/all.txt\"}",
		 scratch, scratch, scratch);
	const char *h[] = {"Content-Type: application/json", NULL};
	const char *url = "/compose";
	request(&r, "POST", url, h, body, strlen(body), NULL);
	assert_int_equal(r.status, 200);
	json_t *j = json_loads(r.body.data, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "all.txt");
	assert_string_equal(json_string_value(json_object_get(j, "type")), "file");
	json_decref(j);
	resp_free(&r);
	snprintf(p, sizeof p, "%s/composed/all.txt", scratch);
	size_t len;
	char *got = slurp(p, &len);
	assert_string_equal(got, "hello world");
	free(got);
	snprintf(p, sizeof p, "%s/part1", scratch);
	assert_int_equal(access(p, F_OK), -1);
	/* A missing source: 404, nothing written. */
	request(&r, "POST", url, h, body, strlen(body), NULL);
	assert_int_equal(r.status, 404);
	resp_free(&r);
	request(&r, "POST", url, h, "{\"destination\":1}", 16, NULL);
	assert_int_equal(r.status, 400);
	resp_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_multipart_upload),
		cmocka_unit_test(test_octet_stream_and_gzip),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_upload_limit),
		cmocka_unit_test(test_download),
		cmocka_unit_test(test_big_round_trip),
		cmocka_unit_test(test_signed_urls),
		cmocka_unit_test(test_acting_user),
		cmocka_unit_test(test_compose),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
