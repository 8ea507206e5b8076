/* Request-body validation for the control plane: decode with jansson, then check every field we read
 * for its type and range. Fields we do not implement yet (network, mcp, volumeMounts...) are
 * accepted when well-typed and ignored; unknown fields are ignored, as E2B's Go server does. */
#include "api/validate.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define SBX_LEGACY_CLIENT_SUFFIX "-6532622b"

int api_fail_timeout_too_large(cube_err *err, unsigned max_timeout_s)
{
	if (max_timeout_s % 3600 == 0)
		return cube_fail(err, 400, 0, "Timeout cannot be greater than %u hours", max_timeout_s / 3600);
	return cube_fail(err, 400, 0, "Timeout cannot be greater than %u seconds", max_timeout_s);
}

/* The body as a JSON object. An empty body is an empty object only where allow_empty says so. */
static json_t *load_object(const char *body, size_t len, int allow_empty, cube_err *err)
{
	size_t i = 0;
	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len && allow_empty)
		return json_object();
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "", body ? len : 0, JSON_DECODE_ANY, &jerr);
	if (!root) {
		cube_fail(err, 400, 0, "malformed JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		cube_fail(err, 400, 0, "request body must be a JSON object");
		return NULL;
	}
	return root;
}

/* A field that is absent or null counts as not given (Go decodes null into a nil pointer). */
static json_t *field(json_t *obj, const char *name)
{
	json_t *v = json_object_get(obj, name);
	return json_is_null(v) ? NULL : v;
}

static int check_string_map(json_t *obj, const char *name, json_t **out, cube_err *err)
{
	json_t *v = field(obj, name);
	if (!v) {
		*out = json_object();
		return 0;
	}
	if (!json_is_object(v))
		return cube_fail(err, 400, 0, "%s must be an object of strings", name);
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val) {
		if (!json_is_string(val))
			return cube_fail(err, 400, 0, "%s.%s must be a string", name, key);
	}
	*out = json_deep_copy(v);
	return *out ? 0 : cube_fail(err, 500, ENOMEM, "copy %s", name);
}

static int check_type(json_t *obj, const char *name, int (*is)(const json_t *), const char *what, cube_err *err)
{
	json_t *v = field(obj, name);
	if (v && !is(v))
		return cube_fail(err, 400, 0, "%s must be %s", name, what);
	return 0;
}

static int is_bool(const json_t *v) { return json_is_boolean(v); }
static int is_object(const json_t *v) { return json_is_object(v); }
static int is_array(const json_t *v) { return json_is_array(v); }

/* An int32 number of seconds; *present tells whether it was given. Negative values are returned as is. */
static int read_seconds(json_t *obj, const char *name, int *out, int *present, cube_err *err)
{
	json_t *v = field(obj, name);
	*present = v != NULL;
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return cube_fail(err, 400, 0, "%s must be an integer number of seconds", name);
	json_int_t n = json_integer_value(v);
	if (n > INT_MAX)
		n = INT_MAX; /* past any maximum: the caller reports it as too large */
	if (n < INT_MIN)
		n = INT_MIN;
	*out = (int)n;
	return 0;
}

/* autoPause / autoPauseMemory / autoResume {enabled} (E2B) and lifecycle {onTimeout, autoResume} (the
 * CubeSandbox form); either spelling turns the behaviour on. */
static int parse_lifecycle(json_t *root, struct api_create_body *out, cube_err *err)
{
	json_t *ar = field(root, "autoResume"), *lc = field(root, "lifecycle"), *mem = field(root, "autoPauseMemory");
	out->auto_pause = json_is_true(field(root, "autoPause"));
	if (ar) {
		json_t *en = field(ar, "enabled");
		if (en && !json_is_boolean(en))
			return cube_fail(err, 400, 0, "autoResume.enabled must be a boolean");
		out->auto_resume = json_is_true(en);
	}
	if (lc && !json_is_object(lc))
		return cube_fail(err, 400, 0, "lifecycle must be an object");
	if (lc) {
		json_t *on = field(lc, "onTimeout"), *lar = field(lc, "autoResume");
		if (on && (!json_is_string(on) || (strcmp(json_string_value(on), "kill") != 0 &&
						   strcmp(json_string_value(on), "pause") != 0)))
			return cube_fail(err, 400, 0, "lifecycle.onTimeout must be \"kill\" or \"pause\"");
		if (lar && !json_is_boolean(lar))
			return cube_fail(err, 400, 0, "lifecycle.autoResume must be a boolean");
		if (on && strcmp(json_string_value(on), "pause") == 0)
			out->auto_pause = 1;
		if (json_is_true(lar))
			out->auto_resume = 1;
	}
	if (mem && json_is_false(mem)) {
		if (!out->auto_pause)
			return cube_fail(err, 400, 0, "autoPauseMemory: false needs autoPause: true");
		if (out->auto_resume)
			return cube_fail(err, 400, 0, "autoPauseMemory: false cannot be combined with autoResume");
		out->auto_pause = API_AUTO_PAUSE_DISK;
	}
	return 0;
}

int api_parse_create(const char *body, size_t len, int v2, unsigned max_timeout_s, struct api_create_body *out,
		     cube_err *err)
{
	memset(out, 0, sizeof *out);
	json_t *root = load_object(body, len, 0, err);
	if (!root)
		return -1;
	int rc = -1, present = 0;
	json_t *tpl = field(root, "templateID");
	if (!tpl) {
		cube_fail(err, 400, 0, "templateID is required");
		goto out;
	}
	if (!json_is_string(tpl) || json_string_length(tpl) == 0) {
		cube_fail(err, 400, 0, "templateID must be a non-empty string");
		goto out;
	}
	out->timeout_s = v2 ? API_V2_DEFAULT_TIMEOUT_S : API_V1_DEFAULT_TIMEOUT_S;
	if (read_seconds(root, "timeout", &out->timeout_s, &present, err) < 0)
		goto out;
	if (out->timeout_s < 0) {
		cube_fail(err, 400, 0, "timeout must not be negative");
		goto out;
	}
	if ((unsigned)out->timeout_s > max_timeout_s) {
		api_fail_timeout_too_large(err, max_timeout_s);
		goto out;
	}
	if (check_type(root, "secure", is_bool, "a boolean", err) < 0 ||
	    check_type(root, "allow_internet_access", is_bool, "a boolean", err) < 0 ||
	    check_type(root, "autoPause", is_bool, "a boolean", err) < 0 ||
	    check_type(root, "autoPauseMemory", is_bool, "a boolean", err) < 0 ||
	    check_type(root, "autoResume", is_object, "an object", err) < 0 ||
	    check_type(root, "network", is_object, "an object", err) < 0 ||
	    check_type(root, "mcp", is_object, "an object", err) < 0 ||
	    check_type(root, "iam", is_object, "an object", err) < 0 ||
	    check_type(root, "volumeMounts", is_array, "an array", err) < 0)
		goto out;
	if (parse_lifecycle(root, out, err) < 0)
		goto out;
	/* v2 is secure by definition; v1 issues a token only when asked. */
	out->secure = v2 ? 1 : json_is_true(field(root, "secure"));
	if (check_string_map(root, "metadata", &out->metadata, err) < 0 ||
	    check_string_map(root, "envVars", &out->env_vars, err) < 0)
		goto out;
	out->network = malloc(sizeof *out->network);
	if (!out->network) {
		cube_fail(err, 500, ENOMEM, "network policy");
		goto out;
	}
	if (net_policy_parse(field(root, "allow_internet_access"), field(root, "network"), out->network, err) < 0) {
		free(out->network);
		out->network = NULL;
		goto out;
	}
	if (!v2 && !out->secure && !out->network->public_traffic) {
		cube_fail(err, 400, 0, "network.allowPublicTraffic=false requires secure=true");
		goto out;
	}
	out->template_id = strdup(json_string_value(tpl));
	if (!out->template_id) {
		cube_fail(err, 500, ENOMEM, "copy templateID");
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	if (rc < 0)
		api_create_body_free(out);
	return rc;
}

void api_create_body_free(struct api_create_body *b)
{
	free(b->template_id);
	json_decref(b->metadata);
	json_decref(b->env_vars);
	if (b->network) {
		net_policy_free(b->network);
		free(b->network);
	}
	memset(b, 0, sizeof *b);
}

int api_parse_network_update(const char *body, size_t len, struct net_policy *out, cube_err *err)
{
	json_t *root = load_object(body, len, 1, err);
	if (!root)
		return -1;
	/* The update body has the fields of SandboxNetworkConfig at its top level. */
	int rc = net_policy_parse(field(root, "allow_internet_access"), root, out, err);
	json_decref(root);
	return rc;
}

int api_parse_set_timeout(const char *body, size_t len, unsigned max_timeout_s, int *timeout_s, cube_err *err)
{
	json_t *root = load_object(body, len, 0, err);
	if (!root)
		return -1;
	int present = 0, t = 0, rc = read_seconds(root, "timeout", &t, &present, err);
	json_decref(root);
	if (rc < 0)
		return -1;
	if (!present)
		return cube_fail(err, 400, 0, "timeout is required");
	if (t < 0)
		t = 0; /* E2B: a negative timeout means "expire now" */
	if ((unsigned)t > max_timeout_s)
		return api_fail_timeout_too_large(err, max_timeout_s);
	*timeout_s = t;
	return 0;
}

int api_parse_refresh(const char *body, size_t len, int *duration_s, cube_err *err)
{
	json_t *root = load_object(body, len, 1, err);
	if (!root)
		return -1;
	int present = 0, d = API_REFRESH_DEFAULT_S, rc = read_seconds(root, "duration", &d, &present, err);
	json_decref(root);
	if (rc < 0)
		return -1;
	if (d < 0 || d > API_REFRESH_MAX_S)
		return cube_fail(err, 400, 0, "duration must be between 0 and %d seconds", API_REFRESH_MAX_S);
	*duration_s = d;
	return 0;
}

int api_parse_connect(const char *body, size_t len, int v2, unsigned max_timeout_s, int *timeout_s, int *memory,
		      cube_err *err)
{
	json_t *root = load_object(body, len, v2, err);
	if (!root)
		return -1;
	int present = 0, t = API_CONNECT_DEFAULT_TIMEOUT_S;
	int rc = read_seconds(root, "timeout", &t, &present, err);
	if (rc == 0)
		rc = check_type(root, "memory", is_bool, "a boolean", err);
	*memory = !json_is_false(field(root, "memory"));
	json_decref(root);
	if (rc < 0)
		return -1;
	if (!present && !v2)
		return cube_fail(err, 400, 0, "timeout is required");
	if (t < 0)
		return cube_fail(err, 400, 0, "timeout must not be negative");
	if ((unsigned)t > max_timeout_s)
		return api_fail_timeout_too_large(err, max_timeout_s);
	*timeout_s = t;
	return 0;
}

int api_parse_pause(const char *body, size_t len, int *memory, cube_err *err)
{
	json_t *root = load_object(body, len, 1, err);
	if (!root)
		return -1;
	int rc = check_type(root, "memory", is_bool, "a boolean", err);
	*memory = !json_is_false(field(root, "memory"));
	json_decref(root);
	return rc;
}

int api_parse_resume(const char *body, size_t len, unsigned max_timeout_s, int *timeout_s, int *memory, cube_err *err)
{
	json_t *root = load_object(body, len, 1, err);
	if (!root)
		return -1;
	int present = 0, t = API_RESUME_DEFAULT_TIMEOUT_S;
	int rc = read_seconds(root, "timeout", &t, &present, err);
	if (rc == 0)
		rc = check_type(root, "memory", is_bool, "a boolean", err);
	if (rc == 0)
		rc = check_type(root, "autoPause", is_bool, "a boolean", err);
	*memory = !json_is_false(field(root, "memory"));
	json_decref(root);
	if (rc < 0)
		return -1;
	if (t < 0)
		return cube_fail(err, 400, 0, "timeout must not be negative");
	if ((unsigned)t > max_timeout_s)
		return api_fail_timeout_too_large(err, max_timeout_s);
	*timeout_s = t;
	return 0;
}

int api_parse_apikey_create(const char *body, size_t len, char **name, cube_err *err)
{
	json_t *root = load_object(body, len, 0, err);
	if (!root)
		return -1;
	json_t *n = field(root, "name");
	int rc = 0;
	if (!n)
		rc = cube_fail(err, 400, 0, "name is required");
	else if (!json_is_string(n) || json_string_length(n) == 0 || json_string_length(n) > 200)
		rc = cube_fail(err, 400, 0, "name must be a non-empty string of at most 200 bytes");
	else if (!(*name = strdup(json_string_value(n))))
		rc = cube_fail(err, 500, ENOMEM, "copy name");
	json_decref(root);
	return rc;
}

int api_sandbox_id(const char *raw, char *out, size_t outlen, cube_err *err)
{
	size_t n = raw ? strlen(raw) : 0;
	size_t suffix = strlen(SBX_LEGACY_CLIENT_SUFFIX);
	if (n > suffix && strcmp(raw + n - suffix, SBX_LEGACY_CLIENT_SUFFIX) == 0)
		n -= suffix;
	if (n == 0 || n >= outlen)
		return cube_fail(err, 400, 0, "Invalid sandbox ID");
	for (size_t i = 0; i < n; i++) {
		char c = raw[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return cube_fail(err, 400, 0, "Invalid sandbox ID");
	}
	memcpy(out, raw, n);
	out[n] = '\0';
	return 0;
}
