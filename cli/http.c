/* How cubemastercli talks to cubed: libcurl over the admin unix socket (no API key needed), or over TCP
 * to the public API with an API key. Transport failures become one clear line and exit code 2; API
 * errors become "cubemastercli: <status>: <message>" and exit code 1. */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void cli_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cubemastercli: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

struct buf {
	char *data;
	size_t len;
	char *next_token;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	char *nd = realloc(b->data, b->len + n + 1);
	if (!nd)
		return 0;
	memcpy(nd + b->len, ptr, n);
	b->data = nd;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t n = size * nmemb;
	static const char name[] = "x-next-token:";
	if (n > sizeof name - 1 && strncasecmp(ptr, name, sizeof name - 1) == 0) {
		const char *v = ptr + sizeof name - 1;
		size_t vl = n - (sizeof name - 1);
		while (vl && (*v == ' ' || *v == '\t')) {
			v++;
			vl--;
		}
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
			vl--;
		free(b->next_token);
		b->next_token = vl ? strndup(v, vl) : NULL;
	}
	return n;
}

/* Precise reason when the admin socket cannot be reached (curl's message would only say "Couldn't
 * connect to server"). 0 if a connection works. */
static int probe_socket(const char *path, char *reason, size_t len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path) {
		snprintf(reason, len, "socket path too long");
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(reason, len, "%s", strerror(errno));
		return -1;
	}
	int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	int e = errno;
	close(fd);
	if (rc < 0) {
		snprintf(reason, len, "%s", strerror(e));
		return -1;
	}
	return 0;
}

static void unreachable(const struct cli_ctx *ctx, const char *reason)
{
	if (ctx->api_url)
		cli_err("cannot reach cubed at %s: %s (is cubed running?)", ctx->api_url, reason);
	else
		cli_err("cannot reach cubed at unix:%s: %s (is cubed running?)", ctx->socket, reason);
}

int cli_request(const struct cli_ctx *ctx, const char *method, const char *path, const char *body,
		struct cli_response *resp)
{
	memset(resp, 0, sizeof *resp);
	char reason[256];
	if (!ctx->api_url && probe_socket(ctx->socket, reason, sizeof reason) < 0) {
		unreachable(ctx, reason);
		return CLI_UNREACHABLE;
	}
	CURL *c = curl_easy_init();
	if (!c) {
		cli_err("cannot initialise libcurl");
		return CLI_UNREACHABLE;
	}
	char url[4096];
	if (ctx->api_url) {
		size_t n = strlen(ctx->api_url);
		while (n && ctx->api_url[n - 1] == '/')
			n--;
		snprintf(url, sizeof url, "%.*s%s", (int)n, ctx->api_url, path);
	} else {
		curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, ctx->socket);
		snprintf(url, sizeof url, "http://cubed%s", path);
	}
	struct curl_slist *headers = NULL;
	char keyh[512];
	if (ctx->api_url && ctx->api_key) {
		snprintf(keyh, sizeof keyh, "X-API-Key: %s", ctx->api_key);
		headers = curl_slist_append(headers, keyh);
	}
	if (body)
		headers = curl_slist_append(headers, "Content-Type: application/json");
	struct buf b = {0};
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "cubemastercli/" CUBE_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L); /* create may take a while; never hang forever */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		unreachable(ctx, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		free(b.data);
		free(b.next_token);
		curl_slist_free_all(headers);
		curl_easy_cleanup(c);
		return CLI_UNREACHABLE;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	curl_slist_free_all(headers);
	curl_easy_cleanup(c);
	resp->body = b.data ? b.data : strdup("");
	resp->len = b.len;
	resp->next_token = b.next_token;
	return 0;
}

void cli_response_free(struct cli_response *resp)
{
	free(resp->body);
	free(resp->next_token);
	memset(resp, 0, sizeof *resp);
}

json_t *cli_response_json(const struct cli_response *resp)
{
	json_error_t jerr;
	json_t *v = json_loadb(resp->body, resp->len, JSON_DECODE_ANY, &jerr);
	if (!v)
		cli_err("cubed sent a response that is not JSON (%s)", jerr.text);
	return v;
}

int cli_check_status(const struct cli_response *resp)
{
	if (resp->status >= 200 && resp->status < 300)
		return 0;
	json_t *v = json_loadb(resp->body, resp->len, 0, NULL);
	const char *msg = json_string_value(json_object_get(v, "message"));
	if (msg)
		cli_err("%ld: %s", resp->status, msg);
	else
		cli_err("%ld: %s", resp->status, resp->len ? resp->body : "(no body)");
	json_decref(v);
	return CLI_API_ERROR;
}

char *cli_url_encode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;
	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-_.!~*'()", *p)) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 15];
		}
	}
	*o = '\0';
	return out;
}
