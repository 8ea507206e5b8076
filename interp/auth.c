/* The sandbox's access token on /execute (as in E2B's image, the /contexts calls carry none): envd
 * is the one that knows it, so a request's X-Access-Token is checked with envd's GET /envs (the call
 * E2B's server makes too). The token cannot change once set, so a token envd accepted is remembered;
 * a request without one is asked about every time (a pooled sandbox may get its token later). The
 * check runs in libuv's threadpool with libcurl. */
#include "interp/interp.h"

#include "common/log.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

const char *auth_envd_url = "http://127.0.0.1:49983";
int auth_disabled;
static char *known_token;

struct check {
	uv_work_t work;
	char *token;
	long status;
	auth_cb cb;
	void *arg;
};

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return sz * n;
}

static void check_in_worker(uv_work_t *w)
{
	struct check *ck = (struct check *)w;
	CURL *c = curl_easy_init();
	if (!c)
		return;
	char url[512], hdr[600];
	snprintf(url, sizeof url, "%s/envs", auth_envd_url);
	struct curl_slist *h = NULL;
	if (ck->token) {
		snprintf(hdr, sizeof hdr, "X-Access-Token: %s", ck->token);
		h = curl_slist_append(h, hdr);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ck->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
}

static void check_done(uv_work_t *w, int status)
{
	(void)status;
	struct check *ck = (struct check *)w;
	int verdict = ck->status == 200 ? 200 : ck->status == 401 || ck->status == 403 ? 401 : 503;
	if (verdict == 200 && ck->token && !known_token)
		known_token = strdup(ck->token);
	if (verdict == 503)
		log_warn("interp: cannot check the access token with envd at %s (status %ld)", auth_envd_url, ck->status);
	ck->cb(verdict, ck->arg);
	free(ck->token);
	free(ck);
}

void auth_check(const char *token, auth_cb cb, void *arg)
{
	if (auth_disabled) {
		cb(200, arg);
		return;
	}
	for (const char *p = token; p && *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f) { /* never into a header line */
			cb(401, arg);
			return;
		}
	if (token && known_token && strlen(token) == strlen(known_token) &&
	    CRYPTO_memcmp(token, known_token, strlen(token)) == 0) {
		cb(200, arg);
		return;
	}
	struct check *ck = calloc(1, sizeof *ck);
	if (!ck || (token && !(ck->token = strdup(token)))) {
		free(ck);
		cb(503, arg);
		return;
	}
	ck->cb = cb;
	ck->arg = arg;
	uv_queue_work(interp_loop, &ck->work, check_in_worker, check_done);
}
