/* GET and POST /files of cube-envd (§3.12): downloads streamed from disk with backpressure, uploads
 * (multipart/form-data or application/octet-stream, optionally gzip) streamed to a temporary file
 * beside the target and renamed into place. The router (main.c) calls envd_files_get/post after the
 * access-token check; signed URLs are verified here (signing.c). Files are opened as the acting user. */
#include "envd/fs_internal.h"
#include "envd/fs_multipart.h"

#include "common/log.h"
#include "common/util.h"

#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define IO_CHUNK (64 * 1024)
/* Downloads keep at most this much queued on the socket before waiting for a drain. */
#define DOWNLOAD_HIGH_WATER (1024 * 1024)
/* Past the upload limit the rest of the body is read and dropped (so the client sees the 413
 * instead of a reset connection), up to this much more; beyond it the connection is cut. */
#define OVERSIZE_DRAIN_MAX (64ull << 20)
#define METADATA_MAX_KEY 246
#define METADATA_MAX_TOTAL 4096

/* ---- shared request preamble ---- */

struct files_query {
	char *path, *username, *signature, *expiration;
};

static void files_query_free(struct files_query *q)
{
	free(q->path);
	free(q->username);
	free(q->signature);
	free(q->expiration);
	*q = (struct files_query){0};
}

/* Query parameters, signature or token, acting user. Answers the request and returns -1 on failure. */
static int files_preamble(http_req *req, const char *op, struct files_query *q, struct envd_user *user)
{
	q->path = http_req_query_param(req, "path");
	q->username = http_req_query_param(req, "username");
	q->signature = http_req_query_param(req, "signature");
	q->expiration = http_req_query_param(req, "signature_expiration");
	cube_err err = {0};
	if (envd_files_authorize(envd.access_token, http_req_header(req, "X-Access-Token"), q->path ? q->path : "", op,
				 q->username, q->signature, q->expiration, cube_now_ms() / 1000, &err) < 0) {
		http_resp_error(req, err.status ? err.status : 401, "%s", err.msg);
		return -1;
	}
	const char *name = q->username && *q->username ? q->username : envd.default_user;
	if (!name || !*name) {
		http_resp_error(req, 400, "no user specified");
		return -1;
	}
	if (envd_user_lookup(name, user, &err) < 0) {
		http_resp_error(req, 401, "error looking up user '%s': %s", name, err.msg);
		return -1;
	}
	return 0;
}

static int upload_status_for_errno(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		return 507;
	case ENOTDIR:
	case EISDIR:
	case ENAMETOOLONG:
	case EINVAL:
	case ELOOP:
		return 400;
	case EACCES:
	case EPERM:
	case EROFS:
		return 403;
	default:
		return 500;
	}
}

/* ---- GET /files ---- */

struct download {
	http_req *req;
	int fd;
	long long remaining;
	int in_pump, gone;
};

static void download_free(struct download *d)
{
	if (d->fd >= 0)
		close(d->fd);
	free(d);
}

static void download_on_close(http_req *req)
{
	struct download *d = http_req_data(req);
	http_req_set_data(req, NULL);
	if (!d)
		return;
	if (d->in_pump)
		d->gone = 1; /* pump notices after its write returns */
	else
		download_free(d);
}

static void download_pump(http_req *req)
{
	struct download *d = http_req_data(req);
	if (!d)
		return;
	char buf[IO_CHUNK];
	d->in_pump = 1;
	while (d->remaining > 0 && http_resp_pending(req) < DOWNLOAD_HIGH_WATER) {
		size_t want = d->remaining < (long long)sizeof buf ? (size_t)d->remaining : sizeof buf;
		ssize_t n = read(d->fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* The file shrank (or failed) under us: the client must see a broken body, not a
			 * complete one. */
			log_warn("envd: download: file ended %lld bytes early: %s", d->remaining,
				 n < 0 ? strerror(errno) : "truncated");
			http_req_set_data(req, NULL);
			download_free(d);
			http_req_abort(req);
			return;
		}
		d->remaining -= n;
		int rc = http_resp_write(req, buf, (size_t)n);
		if (d->gone) {
			download_free(d);
			return;
		}
		if (rc < 0)
			break;
	}
	d->in_pump = 0;
	if (d->remaining > 0)
		return; /* wait for the drain */
	http_req_set_data(req, NULL);
	http_req_on_close(req, NULL);
	download_free(d);
	http_resp_end(req);
}

/* Accept-Encoding that rules out identity (identity;q=0, or *;q=0 without identity). */
static int identity_refused(const char *ae)
{
	if (!ae)
		return 0;
	int identity_listed = 0, identity_zero = 0, star_zero = 0;
	const char *p = ae;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *tok = p;
		while (*p && *p != ',' && *p != ';' && *p != ' ')
			p++;
		size_t tl = (size_t)(p - tok);
		int zero = 0;
		const char *end = strchr(p, ',');
		size_t rest = end ? (size_t)(end - p) : strlen(p);
		const char *q = memmem(p, rest, "q=", 2);
		if (q && strtod(q + 2, NULL) == 0.0)
			zero = 1;
		if (tl == 8 && strncasecmp(tok, "identity", 8) == 0) {
			identity_listed = 1;
			identity_zero = zero;
		} else if (tl == 1 && *tok == '*') {
			star_zero = zero;
		}
		p = end ? end + 1 : p + rest;
	}
	return identity_zero || (star_zero && !identity_listed);
}

static void http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Single "bytes=a-b" range; 0 = none/ignored, 1 = satisfiable (start/len set), -1 = unsatisfiable. */
static int parse_range(const char *h, long long size, long long *start, long long *len)
{
	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	const char *p = h + 6;
	char *end;
	if (*p == '-') {
		long long n = strtoll(p + 1, &end, 10);
		if (end == p + 1 || *end || n < 0)
			return 0;
		if (n == 0 || size == 0)
			return -1;
		if (n > size)
			n = size;
		*start = size - n;
		*len = n;
		return 1;
	}
	long long a = strtoll(p, &end, 10);
	if (end == p || *end != '-' || a < 0)
		return 0;
	p = end + 1;
	long long b = size - 1;
	if (*p) {
		b = strtoll(p, &end, 10);
		if (*end || b < a)
			return 0;
	}
	if (a >= size)
		return -1;
	if (b >= size)
		b = size - 1;
	*start = a;
	*len = b - a + 1;
	return 1;
}

void envd_files_get(http_req *req, int token_ok)
{
	(void)token_ok; /* the header is checked again with the signature rules of §3.13 */
	struct files_query q = {0};
	struct envd_user user;
	if (files_preamble(req, "read", &q, &user) < 0) {
		files_query_free(&q);
		return;
	}
	char path[PATH_MAX];
	cube_err err = {0};
	if (envd_resolve_path(q.path ? q.path : "", &user, path, sizeof path, &err) < 0) {
		http_resp_error(req, 400, "%s", err.msg);
		files_query_free(&q);
		return;
	}
	files_query_free(&q);

	int fd;
	struct stat st;
	{
		FS_ACT_AS(&user);
		if (stat(path, &st) < 0) {
			int e = errno;
			if (e == ENOENT || e == ENOTDIR)
				http_resp_error(req, 404, "path '%s' does not exist", path);
			else
				http_resp_error(req, e == EACCES ? 403 : 500, "error statting '%s': %s", path, strerror(e));
			return;
		}
		if (S_ISDIR(st.st_mode)) {
			http_resp_error(req, 400, "path '%s' is a directory", path);
			return;
		}
		if (!S_ISREG(st.st_mode)) {
			http_resp_error(req, 400, "path '%s' is not a regular file", path);
			return;
		}
		/* O_NONBLOCK: never hang on a FIFO swapped in after the stat. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			int e = fd < 0 ? errno : EINVAL;
			if (fd >= 0)
				close(fd);
			http_resp_error(req, e == EACCES ? 403 : e == ENOENT ? 404 : 500, "error opening '%s': %s", path,
					strerror(e));
			return;
		}
	}
	if (identity_refused(http_req_header(req, "Accept-Encoding"))) {
		close(fd);
		http_resp_error(req, 406, "no acceptable content encoding");
		return;
	}

	const char *slash = strrchr(path, '/');
	const char *base = slash ? slash + 1 : path;
	char disposition[PATH_MAX + 64], modified[64], range_hdr[96];
	size_t o = (size_t)snprintf(disposition, sizeof disposition, "inline; filename=\"");
	for (const char *c = base; *c && o + 4 < sizeof disposition; c++) {
		if (*c == '"' || *c == '\\')
			disposition[o++] = '\\';
		disposition[o++] = (*c == '\r' || *c == '\n') ? ' ' : *c;
	}
	snprintf(disposition + o, sizeof disposition - o, "\"");
	http_date(st.st_mtim.tv_sec, modified, sizeof modified);

	http_header h[8] = {
		{"Content-Type", "application/octet-stream"},
		{"Content-Disposition", disposition},
		{"Vary", "Accept-Encoding"},
		{"Last-Modified", modified},
		{"Accept-Ranges", "bytes"},
	};
	size_t nh = 5;
	int status = 200;
	long long start = 0, length = st.st_size;

	const char *ims = http_req_header(req, "If-Modified-Since");
	struct tm tm = {0};
	if (ims && !http_req_header(req, "Range") && strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
		if (st.st_mtim.tv_sec <= timegm(&tm)) {
			close(fd);
			http_resp_start(req, 304, h + 2, 2, -1);
			http_resp_end(req);
			return;
		}
	}
	int r = parse_range(http_req_header(req, "Range"), st.st_size, &start, &length);
	if (r < 0) {
		close(fd);
		snprintf(range_hdr, sizeof range_hdr, "bytes */%lld", (long long)st.st_size);
		http_header rh[2] = {{"Content-Range", range_hdr}, {"Content-Type", "application/json"}};
		const char *body = "{\"code\":416,\"message\":\"range not satisfiable\"}";
		http_resp_start(req, 416, rh, 2, (long long)strlen(body));
		http_resp_write(req, body, strlen(body));
		http_resp_end(req);
		return;
	}
	if (r > 0) {
		status = 206;
		snprintf(range_hdr, sizeof range_hdr, "bytes %lld-%lld/%lld", start, start + length - 1,
			 (long long)st.st_size);
		h[nh++] = (http_header){"Content-Range", range_hdr};
		if (lseek(fd, start, SEEK_SET) < 0) {
			close(fd);
			http_resp_error(req, 500, "seek: %s", strerror(errno));
			return;
		}
	}
	http_resp_start(req, status, h, nh, length);
	if (length == 0 || strcmp(http_req_method(req), "HEAD") == 0) {
		close(fd);
		http_resp_end(req);
		return;
	}
	struct download *d = calloc(1, sizeof *d);
	if (!d) {
		close(fd);
		http_resp_end(req);
		return;
	}
	d->req = req;
	d->fd = fd;
	d->remaining = length;
	http_req_set_data(req, d);
	http_req_on_close(req, download_on_close);
	http_resp_on_drain(req, download_pump);
	download_pump(req);
}

/* ---- POST /files ---- */

struct upload {
	http_req *req;
	struct envd_user user;
	char *query_path;           /* resolved query path, NULL if none */
	int multipart;
	struct fs_multipart mp;
	int gzip, z_ready, z_ended;
	z_stream z;
	json_t *metadata;           /* {"key":"value"}, keys lowercased; NULL when none */
	unsigned long long max, received, decoded;
	int oversize;
	/* the file being written */
	int fd, in_file;
	char tmp[PATH_MAX], target[PATH_MAX], dest[PATH_MAX];
	mode_t mode;
	json_t *results;
	/* a failure inside a multipart callback, answered once the scanner returns */
	int fail_status;
	char fail_msg[512];
};

static void upload_discard_file(struct upload *u)
{
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
		FS_ACT_AS(&u->user);
		unlink(u->tmp);
	}
	u->in_file = 0;
}

static void upload_free(struct upload *u)
{
	upload_discard_file(u);
	if (u->z_ready)
		inflateEnd(&u->z);
	free(u->query_path);
	json_decref(u->metadata);
	json_decref(u->results);
	free(u);
}

static int upload_set_failure(struct upload *u, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int upload_set_failure(struct upload *u, int status, const char *fmt, ...)
{
	if (!u->fail_status) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(u->fail_msg, sizeof u->fail_msg, fmt, ap);
		va_end(ap);
		u->fail_status = status;
	}
	return -1;
}

/* Answer now and release everything; the server drops the rest of the body. */
static void upload_finish(struct upload *u, int status, const char *msg)
{
	http_req *req = u->req;
	http_req_set_data(req, NULL);
	http_req_on_close(req, NULL);
	if (status == 200) {
		char *body = json_dumps(u->results, JSON_COMPACT);
		upload_free(u);
		if (body)
			http_resp_send(req, 200, "application/json", body, strlen(body));
		else
			http_resp_error(req, 500, "out of memory");
		free(body);
		return;
	}
	char copy[512];
	snprintf(copy, sizeof copy, "%s", msg ? msg : ""); /* msg may live in u */
	upload_free(u);
	http_resp_error(req, status, "%s", copy);
}

static void upload_on_close(http_req *req)
{
	struct upload *u = http_req_data(req);
	http_req_set_data(req, NULL);
	if (u)
		upload_free(u);
}

/* Open a temporary file beside `target` (creating parent directories) as the acting user. */
static int upload_begin_file(struct upload *u, const char *target)
{
	for (size_t i = 0; i < json_array_size(u->results); i++) {
		const char *p = json_string_value(json_object_get(json_array_get(u->results, i), "path"));
		if (p && strcmp(p, target) == 0)
			return upload_set_failure(u, 400, "path '%s' is written twice in one upload", target);
	}
	FS_ACT_AS(&u->user);
	snprintf(u->target, sizeof u->target, "%s", target);
	snprintf(u->dest, sizeof u->dest, "%s", target);
	u->mode = 0644;
	struct stat st;
	if (lstat(target, &st) == 0 && S_ISLNK(st.st_mode)) {
		/* Write through a symlink, as an in-place write would. */
		char real[PATH_MAX];
		if (realpath(target, real))
			snprintf(u->dest, sizeof u->dest, "%s", real);
	}
	if (stat(u->dest, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return upload_set_failure(u, 400, "path '%s' is a directory", target);
		if (S_ISREG(st.st_mode))
			u->mode = st.st_mode & 07777;
	}
	if (fs_mkdir_p(u->dest, 0, NULL) < 0) {
		int e = errno;
		return upload_set_failure(u, upload_status_for_errno(e), "error creating parent directories of '%s': %s",
					  target, strerror(e));
	}
	const char *slash = strrchr(u->dest, '/');
	size_t dirlen = slash ? (size_t)(slash - u->dest) : 0;
	const char *base = slash ? slash + 1 : u->dest;
	int n = snprintf(u->tmp, sizeof u->tmp, "%.*s/.%.200s.upload-XXXXXX", (int)dirlen, u->dest, base);
	if (n >= (int)sizeof u->tmp)
		return upload_set_failure(u, 400, "path '%s' is too long", target);
	u->fd = mkostemp(u->tmp, O_CLOEXEC);
	if (u->fd < 0) {
		int e = errno;
		return upload_set_failure(u, upload_status_for_errno(e), "error creating '%s': %s", target, strerror(e));
	}
	fchmod(u->fd, u->mode & ~(mode_t)(S_ISUID | S_ISGID));
	u->in_file = 1;
	return 0;
}

static int upload_write(struct upload *u, const char *data, size_t len)
{
	if (!u->in_file || u->oversize)
		return 0;
	if (cube_write_all(u->fd, data, len) < 0) {
		int e = errno;
		return upload_set_failure(u, upload_status_for_errno(e), "error writing '%s': %s", u->target, strerror(e));
	}
	return 0;
}

static int upload_commit_file(struct upload *u)
{
	if (!u->in_file)
		return 0;
	FS_ACT_AS(&u->user);
	const char *key;
	json_t *value;
	json_object_foreach(u->metadata, key, value) {
		char name[300];
		snprintf(name, sizeof name, FS_XATTR_PREFIX "%s", key);
		const char *v = json_string_value(value);
		if (fsetxattr(u->fd, name, v, strlen(v), 0) < 0) {
			int e = errno;
			return upload_set_failure(u, e == ENOSPC ? 507 : 500, "error storing metadata on '%s': %s", u->target,
						  strerror(e));
		}
	}
	int fd = u->fd;
	u->fd = -1;
	if (close(fd) < 0) {
		int e = errno;
		unlink(u->tmp);
		u->in_file = 0;
		return upload_set_failure(u, upload_status_for_errno(e), "error writing '%s': %s", u->target, strerror(e));
	}
	if (rename(u->tmp, u->dest) < 0) {
		int e = errno;
		unlink(u->tmp);
		u->in_file = 0;
		return upload_set_failure(u, upload_status_for_errno(e), "error writing '%s': %s", u->target, strerror(e));
	}
	u->in_file = 0;
	const char *slash = strrchr(u->target, '/');
	json_t *entry = json_pack("{s:s,s:s,s:s}", "path", u->target, "name", slash ? slash + 1 : u->target, "type", "file");
	if (u->metadata && json_object_size(u->metadata))
		json_object_set(entry, "metadata", u->metadata);
	json_array_append_new(u->results, entry);
	return 0;
}

/* ---- multipart callbacks ---- */

static int mp_part_begin(void *ctx, const char *name, const char *filename)
{
	struct upload *u = ctx;
	if (strcmp(name, "file") != 0)
		return 0; /* other fields are ignored */
	if (u->oversize)
		return 0;
	char target[PATH_MAX];
	if (u->query_path) {
		snprintf(target, sizeof target, "%s", u->query_path);
	} else {
		/* The SDK puts the full destination path in the filename: take it verbatim. */
		if (!filename || !*filename)
			return upload_set_failure(u, 400, "part has no filename and the request no path");
		cube_err err = {0};
		if (envd_resolve_path(filename, &u->user, target, sizeof target, &err) < 0)
			return upload_set_failure(u, 400, "%s", err.msg);
	}
	return upload_begin_file(u, target);
}

static int mp_part_data(void *ctx, const char *data, size_t len)
{
	return upload_write(ctx, data, len);
}

static int mp_part_end(void *ctx)
{
	struct upload *u = ctx;
	if (u->oversize) {
		upload_discard_file(u);
		return 0;
	}
	return upload_commit_file(u);
}

static const struct fs_multipart_handler mp_handler = {mp_part_begin, mp_part_data, mp_part_end};

/* Decoded body bytes: to the multipart scanner or straight into the file. */
static int upload_sink(struct upload *u, const char *data, size_t len)
{
	u->decoded += len;
	if (u->max && u->decoded > u->max && !u->oversize) {
		u->oversize = 1;
		upload_discard_file(u);
	}
	if (u->multipart) {
		if (fs_multipart_feed(&u->mp, data, len) < 0)
			return u->fail_status ? -1 : upload_set_failure(u, 400, "invalid multipart body: %s", u->mp.error);
		return 0;
	}
	return upload_write(u, data, len);
}

static int upload_inflate(struct upload *u, const char *data, size_t len)
{
	char out[IO_CHUNK];
	u->z.next_in = (Bytef *)data;
	u->z.avail_in = (uInt)len;
	while (u->z.avail_in > 0 && !u->oversize) {
		if (u->z_ended) {
			/* Another gzip member follows (concatenated streams are valid gzip). */
			if (inflateReset(&u->z) != Z_OK)
				return upload_set_failure(u, 400, "invalid gzip body");
			u->z_ended = 0;
		}
		u->z.next_out = (Bytef *)out;
		u->z.avail_out = sizeof out;
		int rc = inflate(&u->z, Z_NO_FLUSH);
		if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
			return upload_set_failure(u, 400, "invalid gzip body: %s", u->z.msg ? u->z.msg : "corrupt data");
		size_t produced = sizeof out - u->z.avail_out;
		if (produced && upload_sink(u, out, produced) < 0)
			return -1;
		if (rc == Z_STREAM_END)
			u->z_ended = 1;
		else if (rc == Z_BUF_ERROR && produced == 0)
			break;
	}
	return 0;
}

static void upload_on_chunk(http_req *req, const char *data, size_t len)
{
	struct upload *u = http_req_data(req);
	if (!u)
		return;
	if (!data) { /* end of body */
		if (u->oversize) {
			char msg[128];
			snprintf(msg, sizeof msg, "upload exceeds the limit of %llu bytes", u->max);
			upload_finish(u, 413, msg);
			return;
		}
		if (u->gzip && !u->z_ended) {
			upload_finish(u, 400, "invalid gzip body: truncated");
			return;
		}
		if (u->multipart && fs_multipart_finish(&u->mp) < 0) {
			char msg[256];
			snprintf(msg, sizeof msg, "invalid multipart body: %s", u->mp.error);
			upload_finish(u, u->fail_status ? u->fail_status : 400, u->fail_status ? u->fail_msg : msg);
			return;
		}
		if (!u->multipart && upload_commit_file(u) < 0) {
			upload_finish(u, u->fail_status, u->fail_msg);
			return;
		}
		if (json_array_size(u->results) == 0) {
			upload_finish(u, 400, "no file in the upload (multipart parts must be named 'file')");
			return;
		}
		upload_finish(u, 200, NULL);
		return;
	}
	u->received += len;
	if (u->max && u->received > u->max && !u->oversize) {
		u->oversize = 1;
		upload_discard_file(u);
	}
	if (u->oversize && u->received > u->max + OVERSIZE_DRAIN_MAX) {
		char msg[128];
		snprintf(msg, sizeof msg, "upload exceeds the limit of %llu bytes", u->max);
		upload_finish(u, 413, msg);
		return;
	}
	if (u->oversize)
		return; /* drained and dropped; the 413 goes out at the end */
	int rc = u->gzip ? upload_inflate(u, data, len) : upload_sink(u, data, len);
	if (rc < 0)
		upload_finish(u, u->fail_status ? u->fail_status : 400, u->fail_status ? u->fail_msg : "invalid body");
}

/* X-Metadata-<Key>: <value> headers (§3.12): printable ASCII, key <= 246 bytes, total <= 4096. */
static int collect_metadata(http_req *req, json_t **out, char *msg, size_t msglen)
{
	static const char prefix[] = "X-Metadata-";
	size_t total = 0;
	*out = NULL;
	for (size_t i = 0; i < http_req_header_count(req); i++) {
		const char *name, *value;
		http_req_header_at(req, i, &name, &value);
		if (!name || strncasecmp(name, prefix, sizeof prefix - 1) != 0)
			continue;
		const char *key = name + sizeof prefix - 1;
		size_t kl = strlen(key), vl = strlen(value);
		if (kl == 0 || kl > METADATA_MAX_KEY) {
			snprintf(msg, msglen, "metadata key '%s' must be 1 to %d bytes", key, METADATA_MAX_KEY);
			return -1;
		}
		char lower[METADATA_MAX_KEY + 1];
		for (size_t k = 0; k <= kl; k++) {
			unsigned char c = (unsigned char)key[k];
			if (k < kl && (c < 0x21 || c > 0x7e)) {
				snprintf(msg, msglen, "metadata key '%s' must be printable ASCII", key);
				return -1;
			}
			lower[k] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		}
		for (size_t k = 0; k < vl; k++) {
			unsigned char c = (unsigned char)value[k];
			if (c < 0x20 || c > 0x7e) {
				snprintf(msg, msglen, "metadata value of '%s' must be printable ASCII", key);
				return -1;
			}
		}
		total += kl + vl;
		if (total > METADATA_MAX_TOTAL) {
			snprintf(msg, msglen, "metadata exceeds %d bytes", METADATA_MAX_TOTAL);
			return -1;
		}
		if (!*out)
			*out = json_object();
		json_object_set_new(*out, lower, json_string(value));
	}
	return 0;
}

void envd_files_post(http_req *req, int token_ok)
{
	(void)token_ok;
	struct files_query q = {0};
	struct envd_user user;
	if (files_preamble(req, "write", &q, &user) < 0) {
		files_query_free(&q);
		return;
	}
	struct upload *u = calloc(1, sizeof *u);
	if (!u) {
		files_query_free(&q);
		http_resp_error(req, 500, "out of memory");
		return;
	}
	u->req = req;
	u->user = user;
	u->fd = -1;
	u->max = envd.max_upload_bytes;
	u->results = json_array();
	char msg[512];
	cube_err err = {0};

	if (q.path && *q.path) {
		char path[PATH_MAX];
		if (envd_resolve_path(q.path, &user, path, sizeof path, &err) < 0) {
			snprintf(msg, sizeof msg, "%s", err.msg);
			goto fail400;
		}
		u->query_path = strdup(path);
	}
	files_query_free(&q);

	const char *ctype = http_req_header(req, "Content-Type");
	char boundary[FS_MP_MAX_BOUNDARY + 1];
	if (ctype && fs_multipart_boundary(ctype, boundary, sizeof boundary) == 0) {
		u->multipart = 1;
		fs_multipart_init(&u->mp, boundary, &mp_handler, u);
	} else if (ctype && strncasecmp(ctype, "application/octet-stream", 24) == 0 &&
		   (ctype[24] == '\0' || ctype[24] == ';' || ctype[24] == ' ')) {
		if (!u->query_path) {
			snprintf(msg, sizeof msg, "the path query parameter is required for application/octet-stream uploads");
			goto fail400;
		}
	} else {
		snprintf(msg, sizeof msg, "unsupported content type '%s' (use multipart/form-data or application/octet-stream)",
			 ctype ? ctype : "");
		goto fail400;
	}

	const char *enc = http_req_header(req, "Content-Encoding");
	if (enc && strcasecmp(enc, "gzip") == 0) {
		u->gzip = 1;
		if (inflateInit2(&u->z, 16 + MAX_WBITS) != Z_OK) {
			upload_free(u);
			http_resp_error(req, 500, "cannot initialise gzip decoder");
			return;
		}
		u->z_ready = 1;
	} else if (enc && *enc && strcasecmp(enc, "identity") != 0) {
		snprintf(msg, sizeof msg, "unsupported content encoding '%s'", enc);
		goto fail400;
	}

	if (collect_metadata(req, &u->metadata, msg, sizeof msg) < 0)
		goto fail400;

	const char *cl = http_req_header(req, "Content-Length");
	if (u->max && cl && strtoull(cl, NULL, 10) > u->max + OVERSIZE_DRAIN_MAX) {
		upload_free(u);
		http_resp_error(req, 413, "upload exceeds the limit of %llu bytes", envd.max_upload_bytes);
		return;
	}

	if (!u->multipart && upload_begin_file(u, u->query_path) < 0) {
		int status = u->fail_status;
		snprintf(msg, sizeof msg, "%s", u->fail_msg);
		upload_free(u);
		http_resp_error(req, status, "%s", msg);
		return;
	}
	http_req_set_data(req, u);
	http_req_on_close(req, upload_on_close);
	http_req_stream_body(req, upload_on_chunk);
	return;

fail400:
	files_query_free(&q);
	upload_free(u);
	http_resp_error(req, 400, "%s", msg);
}

/* ---- POST /files/compose ---- */

/* Append the whole of src to out_fd. */
static int append_file(int out_fd, const char *src)
{
	cleanup_close int in = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (in < 0 || fstat(in, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		return -1;
	}
	return cube_copy_fd(in, out_fd);
}

static void compose_with_body(http_req *req, char *body, size_t len, int error_status)
{
	if (error_status) {
		http_resp_error(req, error_status, error_status == 413 ? "request body too large" : "bad request body");
		return;
	}
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	json_t *sources = json_object_get(j, "source_paths");
	json_t *dest_v = json_object_get(j, "destination");
	json_t *user_v = json_object_get(j, "username");
	if (!json_is_array(sources) || json_array_size(sources) == 0 || !json_is_string(dest_v) ||
	    (user_v && !json_is_null(user_v) && !json_is_string(user_v))) {
		json_decref(j);
		http_resp_error(req, 400, "expected {\"source_paths\":[string,...],\"destination\":string,\"username\"?:string}");
		return;
	}
	const char *name = json_is_string(user_v) && *json_string_value(user_v) ? json_string_value(user_v)
										: envd.default_user;
	struct envd_user user;
	cube_err err = {0};
	if (!name || !*name) {
		json_decref(j);
		http_resp_error(req, 400, "no user specified");
		return;
	}
	if (envd_user_lookup(name, &user, &err) < 0) {
		json_decref(j);
		http_resp_error(req, 401, "error looking up user '%s'", name);
		return;
	}
	size_t n = json_array_size(sources);
	char (*src)[PATH_MAX] = calloc(n, PATH_MAX);
	struct upload *u = calloc(1, sizeof *u);
	int status = 0;
	char msg[600] = "";
	char dest[PATH_MAX];
	if (!src || !u) {
		status = 500;
		snprintf(msg, sizeof msg, "out of memory");
		goto out;
	}
	u->fd = -1;
	u->user = user;
	u->results = json_array();
	if (envd_resolve_path(json_string_value(dest_v), &user, dest, sizeof dest, &err) < 0) {
		status = 400;
		snprintf(msg, sizeof msg, "%s", err.msg);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(sources, i);
		if (!json_is_string(s) || envd_resolve_path(json_string_value(s), &user, src[i], PATH_MAX, &err) < 0) {
			status = 400;
			snprintf(msg, sizeof msg, "bad source path #%zu", i);
			goto out;
		}
		if (strcmp(src[i], dest) == 0) {
			status = 400;
			snprintf(msg, sizeof msg, "source '%s' is also the destination", src[i]);
			goto out;
		}
	}
	if (upload_begin_file(u, dest) < 0) {
		status = u->fail_status;
		snprintf(msg, sizeof msg, "%s", u->fail_msg);
		goto out;
	}
	{
		FS_ACT_AS(&user);
		for (size_t i = 0; i < n && !status; i++) {
			if (append_file(u->fd, src[i]) < 0) {
				int e = errno;
				status = e == ENOENT || e == ENOTDIR ? 404 : upload_status_for_errno(e);
				snprintf(msg, sizeof msg, "error reading '%s': %s", src[i], strerror(e));
			}
		}
	}
	if (status)
		goto out;
	if (upload_commit_file(u) < 0) {
		status = u->fail_status;
		snprintf(msg, sizeof msg, "%s", u->fail_msg);
		goto out;
	}
	{
		FS_ACT_AS(&user);
		for (size_t i = 0; i < n; i++)
			if (unlink(src[i]) < 0 && errno != ENOENT)
				log_warn("envd: compose: cannot remove source %s: %s", src[i], strerror(errno));
	}
	json_t *entry = json_incref(json_array_get(u->results, 0));
	json_t *meta = fs_metadata(dest);
	if (meta)
		json_object_set_new(entry, "metadata", meta);
	char *out_body = json_dumps(entry, JSON_COMPACT);
	json_decref(entry);
	http_resp_send(req, 200, "application/json", out_body, strlen(out_body));
	free(out_body);
out:
	if (u)
		upload_free(u);
	free(src);
	json_decref(j);
	if (status)
		http_resp_error(req, status, "%s", msg);
}

void envd_files_compose(http_req *req, int token_ok)
{
	if (!token_ok) {
		http_resp_error(req, 401, "unauthorized access, please provide a valid access token or method signing if supported");
		return;
	}
	http_req_read_body(req, 1 << 20, compose_with_body);
}
