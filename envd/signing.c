/* Signed /files URLs (§3.13): the SDK signs path, operation, user and expiration with the envd access
 * token so a URL can be handed out without the token. files_http.c calls envd_files_authorize. */
#include "envd/fs_internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int envd_signature(const char *path, const char *op, const char *user, const char *token,
		   const char *expiration, char *out, size_t outlen)
{
	unsigned char digest[SHA256_DIGEST_LENGTH];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (!md)
		return -1;
	int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	const char *parts[] = {path, ":", op, ":", user ? user : "", ":", token};
	for (size_t i = 0; ok && i < sizeof parts / sizeof parts[0]; i++)
		ok = EVP_DigestUpdate(md, parts[i], strlen(parts[i])) == 1;
	if (ok && expiration)
		ok = EVP_DigestUpdate(md, ":", 1) == 1 && EVP_DigestUpdate(md, expiration, strlen(expiration)) == 1;
	ok = ok && EVP_DigestFinal_ex(md, digest, NULL) == 1;
	EVP_MD_CTX_free(md);
	if (!ok)
		return -1;
	/* base64 of 32 bytes is 44 chars with one '=' of padding, which the SDK strips. */
	char b64[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
	int n = EVP_EncodeBlock((unsigned char *)b64, digest, SHA256_DIGEST_LENGTH);
	while (n > 0 && b64[n - 1] == '=')
		b64[--n] = '\0';
	if ((size_t)n + 4 > outlen)
		return -1;
	snprintf(out, outlen, "v1_%s", b64);
	return 0;
}

/* Constant-time equality (lengths are not secret). */
static int secret_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}

int envd_files_authorize(const char *token, const char *header_token, const char *path, const char *op,
			 const char *username, const char *signature, const char *expiration, long long now_s,
			 cube_err *err)
{
	if (!token || !*token)
		return 0;
	if (header_token) {
		if (secret_equal(header_token, token))
			return 0;
		return cube_fail(err, 401, 0, "access token present in header but does not match");
	}
	if (!signature || !*signature)
		return cube_fail(err, 401, 0, "missing signature query parameter");
	long long exp = 0;
	if (expiration) {
		char *end;
		errno = 0;
		exp = strtoll(expiration, &end, 10);
		if (!*expiration || *end || errno)
			return cube_fail(err, 401, 0, "invalid signature expiration");
	}
	char want[128];
	if (envd_signature(path ? path : "", op, username, token, expiration, want, sizeof want) < 0)
		return cube_fail(err, 500, 0, "cannot compute signature");
	if (!secret_equal(signature, want))
		return cube_fail(err, 401, 0, "invalid signature");
	if (expiration && exp < now_s)
		return cube_fail(err, 401, 0, "signature is already expired");
	return 0;
}
