/* Incremental multipart/form-data scanner for /files uploads (RFC 7578 / RFC 2046): fed the body
 * piece by piece as it arrives, it reports each part's headers and streams its content, so a 50 MB
 * upload never sits in memory. Boundaries may be split anywhere across pieces.
 * Header-only (static functions) so unit tests can drive it without the rest of envd;
 * included by files_http.c and tests/unit/envd/test_files.c. */
#ifndef CUBE_ENVD_FS_MULTIPART_H
#define CUBE_ENVD_FS_MULTIPART_H

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define FS_MP_MAX_BOUNDARY 200
#define FS_MP_MAX_HEAD 8192

struct fs_multipart_handler {
	/* A part starts. name/filename from Content-Disposition (filename NULL when absent). */
	int (*part_begin)(void *ctx, const char *name, const char *filename);
	int (*part_data)(void *ctx, const char *data, size_t len);
	int (*part_end)(void *ctx);
};

enum fs_mp_state {
	FS_MP_PREAMBLE,     /* before the first delimiter: discarded */
	FS_MP_AFTER_DELIM,  /* "--" closes the body, CRLF opens a part; padding allowed */
	FS_MP_AFTER_DASH,
	FS_MP_AFTER_CR,
	FS_MP_HEADERS,
	FS_MP_BODY,
	FS_MP_DONE,         /* after the close delimiter: the epilogue is ignored */
	FS_MP_FAILED,
};

struct fs_multipart {
	enum fs_mp_state state;
	char delim[4 + FS_MP_MAX_BOUNDARY + 1]; /* "\r\n--" boundary */
	size_t dlen;
	size_t match;          /* bytes of delim matched so far (held back from part data) */
	char head[FS_MP_MAX_HEAD + 1];
	size_t head_len;
	const struct fs_multipart_handler *h;
	void *ctx;
	char error[160];
};

/* Value of parameter `key` in a header value such as `form-data; name="file"; filename="/a"` or
 * `multipart/form-data; boundary=xyz`. Quoted strings honour backslash escapes. 1 if found. */
static int fs_mp_param(const char *value, const char *key, char *out, size_t outlen)
{
	const char *p = strchr(value, ';');
	size_t kl = strlen(key);
	while (p && *p) {
		p++;
		while (*p == ' ' || *p == '\t' || *p == ';')
			p++;
		const char *k = p;
		while (*p && *p != '=' && *p != ';' && *p != ' ' && *p != '\t')
			p++;
		size_t klen = (size_t)(p - k);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '=') {
			p = strchr(p, ';');
			continue;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t o = 0;
		int match = klen == kl && strncasecmp(k, key, kl) == 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (match && o + 1 < outlen)
					out[o++] = *p;
				p++;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ';' && *p != ' ' && *p != '\t') {
				if (match && o + 1 < outlen)
					out[o++] = *p;
				p++;
			}
		}
		if (match) {
			out[o] = '\0';
			return 1;
		}
		p = strchr(p, ';');
	}
	return 0;
}

/* Boundary of a multipart/form-data Content-Type; -1 if not multipart/form-data or no usable
 * boundary. */
static int fs_multipart_boundary(const char *content_type, char *out, size_t outlen)
{
	static const char type[] = "multipart/form-data";
	if (!content_type || strncasecmp(content_type, type, sizeof type - 1) != 0)
		return -1;
	char c = content_type[sizeof type - 1];
	if (c != '\0' && c != ';' && c != ' ' && c != '\t')
		return -1;
	char b[FS_MP_MAX_BOUNDARY + 2];
	if (!fs_mp_param(content_type, "boundary", b, sizeof b))
		return -1;
	size_t bl = strlen(b);
	if (bl == 0 || bl > FS_MP_MAX_BOUNDARY || bl >= outlen || strpbrk(b, "\r\n"))
		return -1;
	memcpy(out, b, bl + 1);
	return 0;
}

static void fs_multipart_init(struct fs_multipart *m, const char *boundary, const struct fs_multipart_handler *h,
			      void *ctx)
{
	memset(m, 0, sizeof *m);
	m->dlen = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", boundary);
	/* The first delimiter may open the body without a preceding CRLF: pretend we saw one. */
	m->match = 2;
	m->state = FS_MP_PREAMBLE;
	m->h = h;
	m->ctx = ctx;
}

static int fs_mp_fail(struct fs_multipart *m, const char *msg)
{
	if (m->state != FS_MP_FAILED)
		snprintf(m->error, sizeof m->error, "%s", msg);
	m->state = FS_MP_FAILED;
	return -1;
}

static int fs_mp_emit(struct fs_multipart *m, const char *data, size_t len)
{
	if (m->state != FS_MP_BODY || len == 0)
		return 0;
	if (m->h->part_data(m->ctx, data, len) < 0)
		return fs_mp_fail(m, "part data rejected");
	return 0;
}

static int fs_mp_headers_done(struct fs_multipart *m)
{
	char name[256] = "", filename[4096];
	int has_filename = 0, has_disposition = 0;
	char *line = m->head + 2; /* skip the CRLF that ended the delimiter line */
	m->head[m->head_len] = '\0';
	while (*line) {
		char *eol = strstr(line, "\r\n");
		if (!eol)
			break;
		*eol = '\0';
		if (strncasecmp(line, "Content-Disposition:", 20) == 0) {
			const char *v = line + 20;
			while (*v == ' ' || *v == '\t')
				v++;
			if (strncasecmp(v, "form-data", 9) != 0)
				return fs_mp_fail(m, "part is not form-data");
			has_disposition = 1;
			fs_mp_param(v, "name", name, sizeof name);
			has_filename = fs_mp_param(v, "filename", filename, sizeof filename);
		}
		line = eol + 2;
	}
	if (!has_disposition)
		return fs_mp_fail(m, "part without Content-Disposition");
	m->state = FS_MP_BODY;
	m->match = 0;
	if (m->h->part_begin(m->ctx, name, has_filename ? filename : NULL) < 0)
		return fs_mp_fail(m, "part rejected");
	return 0;
}

/* Feed the next piece of the body. -1 on a syntax error or when a handler refused (m->error). */
static int fs_multipart_feed(struct fs_multipart *m, const char *data, size_t len)
{
	size_t i = 0;
	while (i < len) {
		switch (m->state) {
		case FS_MP_PREAMBLE:
		case FS_MP_BODY: {
			if (m->match == 0) {
				/* Nothing pending: everything up to the next CR is content. */
				const char *cr = memchr(data + i, '\r', len - i);
				size_t run = cr ? (size_t)(cr - (data + i)) : len - i;
				if (fs_mp_emit(m, data + i, run) < 0)
					return -1;
				i += run;
				if (!cr)
					return 0;
			}
			if (data[i] == m->delim[m->match]) {
				i++;
				if (++m->match == m->dlen) {
					m->match = 0;
					if (m->state == FS_MP_BODY && m->h->part_end(m->ctx) < 0)
						return fs_mp_fail(m, "part rejected");
					m->state = FS_MP_AFTER_DELIM;
				}
				break;
			}
			/* Mismatch: the held bytes were content. The delimiter has a CR only at its start,
			 * so only the current byte can begin a new match; it is looked at again. */
			size_t held = m->match;
			m->match = 0;
			if (fs_mp_emit(m, m->delim, held) < 0)
				return -1;
			break;
		}
		case FS_MP_AFTER_DELIM:
			if (data[i] == '-')
				m->state = FS_MP_AFTER_DASH;
			else if (data[i] == '\r')
				m->state = FS_MP_AFTER_CR;
			else if (data[i] != ' ' && data[i] != '\t')
				return fs_mp_fail(m, "malformed multipart delimiter");
			i++;
			break;
		case FS_MP_AFTER_DASH:
			if (data[i] != '-')
				return fs_mp_fail(m, "malformed multipart close delimiter");
			m->state = FS_MP_DONE;
			return 0;
		case FS_MP_AFTER_CR:
			if (data[i] != '\n')
				return fs_mp_fail(m, "malformed multipart delimiter");
			i++;
			memcpy(m->head, "\r\n", 2);
			m->head_len = 2;
			m->state = FS_MP_HEADERS;
			break;
		case FS_MP_HEADERS:
			/* The block ends at an empty line: CRLF CRLF, counting the delimiter line's CRLF. */
			while (i < len) {
				if (m->head_len == FS_MP_MAX_HEAD)
					return fs_mp_fail(m, "multipart part headers too large");
				m->head[m->head_len++] = data[i++];
				if (m->head_len >= 4 && memcmp(m->head + m->head_len - 4, "\r\n\r\n", 4) == 0) {
					m->head_len -= 2; /* keep the last header's CRLF */
					if (fs_mp_headers_done(m) < 0)
						return -1;
					break;
				}
			}
			break;
		case FS_MP_DONE:
			return 0;
		case FS_MP_FAILED:
			return -1;
		}
	}
	return 0;
}

/* End of the body: it must have reached the close delimiter. */
static int fs_multipart_finish(struct fs_multipart *m)
{
	if (m->state == FS_MP_FAILED)
		return -1;
	if (m->state != FS_MP_DONE)
		return fs_mp_fail(m, "multipart body ended before its closing boundary");
	return 0;
}

#endif
