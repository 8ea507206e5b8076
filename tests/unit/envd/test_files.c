/* /files building blocks: the incremental multipart/form-data scanner (boundaries split at every
 * offset, byte by byte, malformed bodies) and signed-URL verification (the §3.13 vectors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envd/fs_internal.h"
#include "envd/fs_multipart.h"

/* signing.c and envd/envd.h refer to the shared state; this test does not use it. */
struct envd_state envd;

/* ---- multipart ---- */

struct part {
	char name[64], filename[256];
	int has_filename;
	char data[1024];
	size_t len;
	int ended;
};

struct collector {
	struct part parts[8];
	int n;
	int reject_begin; /* fail part_begin for this part index (1-based), 0 = never */
};

static int c_begin(void *ctx, const char *name, const char *filename)
{
	struct collector *c = ctx;
	if (c->n == 8 || c->reject_begin == c->n + 1)
		return -1;
	struct part *p = &c->parts[c->n++];
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	if (filename) {
		p->has_filename = 1;
		snprintf(p->filename, sizeof p->filename, "%s", filename);
	}
	return 0;
}

static int c_data(void *ctx, const char *data, size_t len)
{
	struct collector *c = ctx;
	struct part *p = &c->parts[c->n - 1];
	assert_false(p->ended);
	assert_true(p->len + len <= sizeof p->data);
	memcpy(p->data + p->len, data, len);
	p->len += len;
	return 0;
}

static int c_end(void *ctx)
{
	struct collector *c = ctx;
	c->parts[c->n - 1].ended = 1;
	return 0;
}

static const struct fs_multipart_handler collector_handler = {c_begin, c_data, c_end};

#define BOUNDARY "----formdata-undici-038249844281"

/* Content that tries hard to look like a delimiter: CRs, CRLF--, a boundary prefix, a boundary
 * not preceded by CRLF, and CR CR LF. */
static const char tricky[] = "a\r\r\n--\r\n--" "----formdata-undici-03824984428" "\r\n-"
			     "x" BOUNDARY "\r\n\r\r\n--\r";
static const char body_tmpl[] =
	"--" BOUNDARY "\r\n"
	"Content-Disposition: form-data; name=\"file\"; filename=\"/tmp/a.txt\"\r\n"
	"Content-Type: application/octet-stream\r\n"
	"\r\n"
	"hello\r\n"
	"--" BOUNDARY "\r\n"
	"Content-Disposition: form-data; name=\"note\"\r\n"
	"\r\n"
	"not a file\r\n"
	"--" BOUNDARY "\r\n"
	"content-disposition: form-data; filename=\"/tmp/we%%22ird \\\"q\\\".bin\"; name=file\r\n"
	"\r\n"
	"%s\r\n"
	"--" BOUNDARY "\r\n"
	"Content-Disposition: form-data; name=\"file\"; filename=\"/tmp/empty\"\r\n"
	"\r\n"
	"\r\n"
	"--" BOUNDARY "--\r\n"
	"epilogue is ignored\r\n";

static char body[4096];
static size_t body_len;

static void build_body(void)
{
	body_len = (size_t)snprintf(body, sizeof body, body_tmpl, tricky);
}

static void check_parts(const struct collector *c)
{
	assert_int_equal(c->n, 4);
	assert_string_equal(c->parts[0].name, "file");
	assert_string_equal(c->parts[0].filename, "/tmp/a.txt");
	assert_int_equal(c->parts[0].len, 5);
	assert_memory_equal(c->parts[0].data, "hello", 5);
	assert_string_equal(c->parts[1].name, "note");
	assert_false(c->parts[1].has_filename);
	assert_int_equal(c->parts[1].len, 10);
	assert_string_equal(c->parts[2].name, "file");
	/* %22 stays as sent (envd does not reverse the client's escapes); \" is a quoted-pair. */
	assert_string_equal(c->parts[2].filename, "/tmp/we%22ird \"q\".bin");
	assert_int_equal(c->parts[2].len, strlen(tricky));
	assert_memory_equal(c->parts[2].data, tricky, strlen(tricky));
	assert_string_equal(c->parts[3].filename, "/tmp/empty");
	assert_int_equal(c->parts[3].len, 0);
	for (int i = 0; i < 4; i++)
		assert_true(c->parts[i].ended);
}

static void feed_pieces(const size_t *cuts, int ncuts, struct collector *c)
{
	struct fs_multipart m;
	memset(c, 0, sizeof *c);
	fs_multipart_init(&m, BOUNDARY, &collector_handler, c);
	size_t at = 0;
	for (int i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : body_len;
		assert_int_equal(fs_multipart_feed(&m, body + at, end - at), 0);
		at = end;
	}
	assert_int_equal(fs_multipart_finish(&m), 0);
}

static void test_multipart_whole(void **state)
{
	(void)state;
	build_body();
	struct collector c;
	feed_pieces(NULL, 0, &c);
	check_parts(&c);
}

static void test_multipart_split_everywhere(void **state)
{
	(void)state;
	build_body();
	struct collector c;
	for (size_t i = 0; i <= body_len; i++) {
		size_t cut[1] = {i};
		feed_pieces(cut, 1, &c);
		check_parts(&c);
	}
}

static void test_multipart_split_twice(void **state)
{
	(void)state;
	build_body();
	struct collector c;
	/* Every pair of cuts around the tricky part and the delimiters after it. */
	const char *t = strstr(body, "a\r\r\n");
	size_t from = (size_t)(t - body), to = body_len;
	for (size_t i = from; i <= to; i++)
		for (size_t j = i; j <= to; j += 3) {
			size_t cuts[2] = {i, j};
			feed_pieces(cuts, 2, &c);
			check_parts(&c);
		}
}

static void test_multipart_byte_by_byte(void **state)
{
	(void)state;
	build_body();
	struct collector c;
	memset(&c, 0, sizeof c);
	struct fs_multipart m;
	fs_multipart_init(&m, BOUNDARY, &collector_handler, &c);
	for (size_t i = 0; i < body_len; i++)
		assert_int_equal(fs_multipart_feed(&m, body + i, 1), 0);
	assert_int_equal(fs_multipart_finish(&m), 0);
	check_parts(&c);
}

static int feed_all(const char *b, struct collector *c, struct fs_multipart *m)
{
	memset(c, 0, sizeof *c);
	fs_multipart_init(m, "xyz", &collector_handler, c);
	if (fs_multipart_feed(m, b, strlen(b)) < 0)
		return -1;
	return fs_multipart_finish(m);
}

static void test_multipart_preamble_and_padding(void **state)
{
	(void)state;
	struct collector c;
	struct fs_multipart m;
	assert_int_equal(feed_all("preamble\r\n--xyz  \r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\n"
				  "abc\r\n--xyz--",
				  &c, &m),
			 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.parts[0].len, 3);
	assert_string_equal(c.parts[0].filename, "f");
}

static void test_multipart_malformed(void **state)
{
	(void)state;
	struct collector c;
	struct fs_multipart m;
	/* Truncated: no closing delimiter. */
	assert_int_equal(feed_all("--xyz\r\nContent-Disposition: form-data; name=file\r\n\r\nabc", &c, &m), -1);
	assert_non_null(strstr(m.error, "closing boundary"));
	/* Garbage after a delimiter. */
	assert_int_equal(feed_all("--xyzQ\r\n", &c, &m), -1);
	/* No Content-Disposition. */
	assert_int_equal(feed_all("--xyz\r\nContent-Type: text/plain\r\n\r\nabc\r\n--xyz--", &c, &m), -1);
	/* Empty body. */
	assert_int_equal(feed_all("", &c, &m), -1);
	/* Handler refusal stops the scan. */
	memset(&c, 0, sizeof c);
	c.reject_begin = 1;
	fs_multipart_init(&m, "xyz", &collector_handler, &c);
	const char *b = "--xyz\r\nContent-Disposition: form-data; name=file\r\n\r\nabc\r\n--xyz--";
	assert_int_equal(fs_multipart_feed(&m, b, strlen(b)), -1);
	assert_int_equal(fs_multipart_feed(&m, "x", 1), -1);
	/* Header block larger than the bound. */
	char *big = malloc(FS_MP_MAX_HEAD + 64);
	int n = snprintf(big, 64, "--xyz\r\nX: ");
	memset(big + n, 'a', FS_MP_MAX_HEAD);
	big[n + FS_MP_MAX_HEAD] = '\0';
	assert_int_equal(feed_all(big, &c, &m), -1);
	assert_non_null(strstr(m.error, "too large"));
	free(big);
}

static void test_multipart_boundary_param(void **state)
{
	(void)state;
	char b[FS_MP_MAX_BOUNDARY + 1];
	assert_int_equal(fs_multipart_boundary("multipart/form-data; boundary=----formdata-undici-0382", b, sizeof b), 0);
	assert_string_equal(b, "----formdata-undici-0382");
	assert_int_equal(fs_multipart_boundary("Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b:c\"", b, sizeof b), 0);
	assert_string_equal(b, "a b:c");
	assert_int_equal(fs_multipart_boundary("multipart/form-data", b, sizeof b), -1);
	assert_int_equal(fs_multipart_boundary("multipart/form-data; boundary=", b, sizeof b), -1);
	assert_int_equal(fs_multipart_boundary("multipart/mixed; boundary=x", b, sizeof b), -1);
	assert_int_equal(fs_multipart_boundary("multipart/form-dataX; boundary=x", b, sizeof b), -1);
	assert_int_equal(fs_multipart_boundary("application/octet-stream", b, sizeof b), -1);
	assert_int_equal(fs_multipart_boundary(NULL, b, sizeof b), -1);
	char name[64];
	/* "name" must not match inside "filename". */
	assert_int_equal(fs_mp_param("form-data; filename=\"/x\"; name=\"file\"", "name", name, sizeof name), 1);
	assert_string_equal(name, "file");
	assert_int_equal(fs_mp_param("form-data; filename=\"/x\"", "name", name, sizeof name), 0);
}

/* ---- signed URLs ---- */

static void test_signature_vectors(void **state)
{
	(void)state;
	char sig[128];
	assert_int_equal(envd_signature("/tmp/x", "write", "", "tok-isbx2", NULL, sig, sizeof sig), 0);
	assert_string_equal(sig, "v1_N2oX0CXAUDHiaWuAWBBEkBFpq3rhKd/T4CZ5pJpQch4");
	assert_int_equal(envd_signature("/tmp/x", "read", NULL, "tok-isbx2", "1795333959", sig, sizeof sig), 0);
	assert_string_equal(sig, "v1_aa7FOBRxwrYAKgwld2bb5t/rNiM/NAaqhYsWfEVVvBE");
	assert_int_equal(envd_signature("/tmp/x", "read", "", "tok-isbx2", NULL, sig, 10), -1);
}

static void test_authorize(void **state)
{
	(void)state;
	cube_err err;
	const char *tok = "tok-isbx2";
	const char *w = "v1_N2oX0CXAUDHiaWuAWBBEkBFpq3rhKd/T4CZ5pJpQch4";
	const char *r = "v1_aa7FOBRxwrYAKgwld2bb5t/rNiM/NAaqhYsWfEVVvBE";
	long long now = 1795333000;

	/* No token configured: anything goes. */
	assert_int_equal(envd_files_authorize(NULL, NULL, "/tmp/x", "read", NULL, NULL, NULL, now, &err), 0);
	/* Header token. */
	assert_int_equal(envd_files_authorize(tok, tok, "/tmp/x", "read", NULL, NULL, NULL, now, &err), 0);
	memset(&err, 0, sizeof err);
	assert_int_equal(envd_files_authorize(tok, "nope", "/tmp/x", "read", NULL, w, NULL, now, &err), -1);
	assert_int_equal(err.status, 401);
	assert_string_equal(err.msg, "access token present in header but does not match");
	/* Signatures. */
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "write", NULL, w, NULL, now, &err), 0);
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "write", "", w, NULL, now, &err), 0);
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "read", NULL, r, "1795333959", now, &err), 0);
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "read", NULL, NULL, NULL, now, &err), -1);
	assert_string_equal(err.msg, "missing signature query parameter");
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "read", NULL, w, NULL, now, &err), -1);
	assert_string_equal(err.msg, "invalid signature");
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/y", "write", NULL, w, NULL, now, &err), -1);
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "write", "root", w, NULL, now, &err), -1);
	/* The expiration is part of the signed text. */
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "read", NULL, r, "1795333960", now, &err), -1);
	assert_string_equal(err.msg, "invalid signature");
	assert_int_equal(envd_files_authorize(tok, NULL, "/tmp/x", "read", NULL, r, "1795333959", 1795333960, &err),
			 -1);
	assert_string_equal(err.msg, "signature is already expired");
	assert_int_equal(err.status, 401);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_multipart_whole),
		cmocka_unit_test(test_multipart_split_everywhere),
		cmocka_unit_test(test_multipart_split_twice),
		cmocka_unit_test(test_multipart_byte_by_byte),
		cmocka_unit_test(test_multipart_preamble_and_padding),
		cmocka_unit_test(test_multipart_malformed),
		cmocka_unit_test(test_multipart_boundary_param),
		cmocka_unit_test(test_signature_vectors),
		cmocka_unit_test(test_authorize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
