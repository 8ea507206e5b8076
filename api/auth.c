/* Control-plane authentication: X-API-Key, checked against the hashed keys in the store. In local mode
 * (--local-auth, logged loudly by cubed) any non-empty key passes, like the reference system on a
 * laptop. The admin unix socket (root-only by file mode) needs no key. */
#include "api/internal.h"

#include <unistd.h>

#include "common/log.h"
#include "store/store.h"

int api_authorize(http_req *req, int admin)
{
	if (admin) {
		/* The socket's mode already keeps others out; check the peer too, in case it is ever loosened. */
		long uid = http_req_peer_uid(req);
		if (uid >= 0 && uid != 0 && (uid_t)uid != geteuid()) {
			http_resp_error(req, 403, "the admin socket is for root only");
			return 0;
		}
		return 1;
	}
	const char *key = http_req_header(req, "X-API-Key");
	if (!key || !*key) {
		http_resp_error(req, 401, "Missing API key: send it in the X-API-Key header");
		return 0;
	}
	if (api_cfg.local_auth)
		return 1;
	cube_err err = {0};
	int ok = store_apikey_check(key, &err);
	if (ok < 0) {
		log_error("api: checking an API key: %s", err.msg);
		http_resp_error(req, 500, "could not check the API key");
		return 0;
	}
	if (!ok) {
		http_resp_error(req, 401, "Invalid API key");
		return 0;
	}
	return 1;
}
