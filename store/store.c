/* cubed's persistent state in one SQLite database (WAL, synchronous=FULL): sandboxes to adopt after a
 * restart, hashed API keys, and sandbox log lines that outlive the sandbox. Each write is a single
 * statement, hence one transaction; schema changes are numbered migrations keyed on PRAGMA user_version.
 * One connection, used from cubed's loop thread only. */
#include "store/store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/util.h"

#define KEY_PREFIX "e2b_"
#define KEY_HEX_BYTES 20               /* 40 hex digits */
#define KEY_DISPLAY_LEN 10             /* "e2b_" + 6 hex: enough to recognise a key in a list */
#define LAST_USED_GRANULARITY_MS 60000 /* record key use at most once a minute: no write per request */
#define LOG_RETENTION_MS (7LL * 24 * 3600 * 1000)

/* Migration i brings the schema from version i to i + 1. Append only; never edit a shipped entry. */
static const char *const migrations[] = {
	"CREATE TABLE sandboxes ("
	"  id TEXT PRIMARY KEY, template_id TEXT NOT NULL, metadata TEXT NOT NULL, env_vars TEXT NOT NULL,"
	"  access_token TEXT NOT NULL, started_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL,"
	"  cpu_count INTEGER NOT NULL, memory_mb INTEGER NOT NULL, disk_mb INTEGER NOT NULL,"
	"  pid INTEGER NOT NULL, start_time INTEGER NOT NULL);"
	"CREATE TABLE api_keys ("
	"  id TEXT PRIMARY KEY, name TEXT NOT NULL, hash BLOB NOT NULL UNIQUE, prefix TEXT NOT NULL,"
	"  created_ms INTEGER NOT NULL, last_used_ms INTEGER);"
	"CREATE TABLE sandbox_logs ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT, sandbox_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
	"  level TEXT NOT NULL, message TEXT NOT NULL);"
	"CREATE INDEX sandbox_logs_by_sandbox ON sandbox_logs (sandbox_id, ts_ms, seq);",
	/* 1 -> 2: template build jobs, one JSON document each (daemon/templates.c) */
	"CREATE TABLE template_jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL, created_ms INTEGER NOT NULL);",
	/* 2 -> 3: pause state and the create-time lifecycle (timeout_s: the TTL an auto-resume grants). */
	"ALTER TABLE sandboxes ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN auto_pause INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sandboxes ADD COLUMN timeout_s INTEGER NOT NULL DEFAULT 0;",
	/* 3 -> 4: pre-warmed pool settings per template */
	"CREATE TABLE pool_settings (template TEXT PRIMARY KEY, min INTEGER NOT NULL, max INTEGER NOT NULL);",
	/* 4 -> 5: the layers a sandbox runs on after a rollback ('' = its template's) */
	"ALTER TABLE sandboxes ADD COLUMN layers_tpl TEXT NOT NULL DEFAULT '';",
	/* 5 -> 6: pause to disk: its saved layers, egress policy and traffic token (JSON, '' = none) */
	"ALTER TABLE sandboxes ADD COLUMN disk TEXT NOT NULL DEFAULT '';",
	/* 6 -> 7: when it was paused (ms since the epoch; 0 = not paused or unknown): eviction's idle clock */
	"ALTER TABLE sandboxes ADD COLUMN paused_ms INTEGER NOT NULL DEFAULT 0;",
};

enum stmt_id {
	ST_SBX_PUT,
	ST_SBX_SET_END,
	ST_SBX_SET_PAUSED,
	ST_SBX_DELETE,
	ST_SBX_ALL,
	ST_KEY_INSERT,
	ST_KEY_BY_HASH,
	ST_KEY_TOUCH,
	ST_KEY_LIST,
	ST_KEY_DELETE,
	ST_LOG_APPEND,
	ST_LOG_LIST,
	ST_LOG_DELETE,
	ST_JOB_PUT,
	ST_JOB_ALL,
	ST_JOB_DELETE,
	ST_POOL_PUT,
	ST_POOL_ALL,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_SBX_PUT] = "INSERT OR REPLACE INTO sandboxes (id, template_id, metadata, env_vars, access_token,"
		       " started_ms, end_ms, cpu_count, memory_mb, disk_mb, pid, start_time, paused, auto_pause,"
		       " auto_resume, timeout_s, layers_tpl, disk, paused_ms)"
		       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
	[ST_SBX_SET_END] = "UPDATE sandboxes SET end_ms = ?2 WHERE id = ?1",
	[ST_SBX_SET_PAUSED] = "UPDATE sandboxes SET paused = ?2 != 0, paused_ms = ?2, end_ms = ?3 WHERE id = ?1",
	[ST_SBX_DELETE] = "DELETE FROM sandboxes WHERE id = ?1",
	[ST_SBX_ALL] = "SELECT id, template_id, metadata, env_vars, access_token, started_ms, end_ms, cpu_count,"
		       " memory_mb, disk_mb, pid, start_time, paused, auto_pause, auto_resume, timeout_s,"
		       " layers_tpl, disk, paused_ms FROM sandboxes ORDER BY started_ms, id",
	[ST_KEY_INSERT] = "INSERT INTO api_keys (id, name, hash, prefix, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_KEY_BY_HASH] = "SELECT id, hash, last_used_ms FROM api_keys WHERE hash = ?1",
	[ST_KEY_TOUCH] = "UPDATE api_keys SET last_used_ms = ?2 WHERE id = ?1",
	[ST_KEY_LIST] = "SELECT id, name, prefix, created_ms, last_used_ms FROM api_keys ORDER BY created_ms, rowid",
	[ST_KEY_DELETE] = "DELETE FROM api_keys WHERE id = ?1",
	[ST_LOG_APPEND] = "INSERT INTO sandbox_logs (sandbox_id, ts_ms, level, message) VALUES (?1, ?2, ?3, ?4)",
	[ST_LOG_LIST] = "SELECT ts_ms, level, message FROM sandbox_logs WHERE sandbox_id = ?1 AND ts_ms >= ?2"
			" ORDER BY ts_ms, seq LIMIT ?3",
	[ST_LOG_DELETE] = "DELETE FROM sandbox_logs WHERE sandbox_id = ?1",
	[ST_JOB_PUT] = "INSERT OR REPLACE INTO template_jobs (id, doc, created_ms) VALUES (?1, ?2, ?3)",
	[ST_JOB_ALL] = "SELECT doc FROM template_jobs ORDER BY created_ms, id",
	[ST_JOB_DELETE] = "DELETE FROM template_jobs WHERE id = ?1",
	[ST_POOL_PUT] = "INSERT OR REPLACE INTO pool_settings (template, min, max) VALUES (?1, ?2, ?3)",
	[ST_POOL_ALL] = "SELECT template, min, max FROM pool_settings ORDER BY template",
};

static sqlite3 *db;
static sqlite3_stmt *stmts[ST_COUNT];

static int db_fail(cube_err *err, const char *what)
{
	return cube_fail(err, 500, 0, "store: %s: %s", what, db ? sqlite3_errmsg(db) : "database not open");
}

/* A prepared statement, reset and unbound, ready for new parameters. */
static sqlite3_stmt *stmt(enum stmt_id id)
{
	sqlite3_stmt *s = stmts[id];
	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	return s;
}

/* Run a statement that returns no rows; it is its own (autocommit) transaction. */
static int exec_write(sqlite3_stmt *s, const char *what, cube_err *err)
{
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_fail(err, what);
	return 0;
}

static int exec_sql(const char *sql, const char *what, cube_err *err)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		cube_fail(err, 500, 0, "store: %s: %s", what, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int user_version(int *out, cube_err *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return db_fail(err, "read schema version");
	int rc = sqlite3_step(s);
	*out = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 0 : db_fail(err, "read schema version");
}

static int migrate(cube_err *err)
{
	int version;
	if (user_version(&version, err) < 0)
		return -1;
	int latest = (int)CUBE_ARRAY_LEN(migrations);
	if (version > latest)
		return cube_fail(err, 500, 0, "store: database schema %d is newer than this cubed (%d)", version, latest);
	for (int v = version; v < latest; v++) {
		char bump[64];
		snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
		if (exec_sql("BEGIN IMMEDIATE", "begin migration", err) < 0)
			return -1;
		if (exec_sql(migrations[v], "migrate schema", err) < 0 || exec_sql(bump, "bump schema version", err) < 0) {
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		if (exec_sql("COMMIT", "commit migration", err) < 0)
			return -1;
	}
	return 0;
}

int store_open(const char *path, cube_err *err)
{
	if (db)
		return cube_fail(err, 500, 0, "store: already open");
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		cube_fail(err, 500, 0, "store: open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		db = NULL;
		return -1;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_extended_result_codes(db, 1);
	/* WAL + FULL: a write acknowledged to a client survives kill -9 and power loss. */
	if (exec_sql("PRAGMA journal_mode = WAL", "enable WAL", err) < 0 ||
	    exec_sql("PRAGMA synchronous = FULL", "set synchronous", err) < 0 ||
	    exec_sql("PRAGMA foreign_keys = ON", "enable foreign keys", err) < 0 || migrate(err) < 0)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &stmts[i], NULL) != SQLITE_OK) {
			db_fail(err, "prepare statement");
			goto fail;
		}
	}
	/* Logs of long-gone sandboxes are kept a week, then dropped. */
	char prune[128];
	snprintf(prune, sizeof prune, "DELETE FROM sandbox_logs WHERE ts_ms < %lld", cube_now_ms() - LOG_RETENTION_MS);
	if (exec_sql(prune, "prune old logs", err) < 0)
		goto fail;
	return 0;
fail:
	store_close();
	return -1;
}

void store_close(void)
{
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_finalize(stmts[i]);
		stmts[i] = NULL;
	}
	if (db)
		sqlite3_close(db);
	db = NULL;
}

/* ---- sandboxes ---- */

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
	return sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_TRANSIENT);
}

int store_sandbox_put(const struct store_sandbox *sb, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_SBX_PUT);
	if (!s)
		return db_fail(err, "save sandbox");
	cleanup_free char *meta = sb->metadata ? json_dumps(sb->metadata, JSON_COMPACT) : strdup("{}");
	cleanup_free char *envs = sb->env_vars ? json_dumps(sb->env_vars, JSON_COMPACT) : strdup("{}");
	if (!meta || !envs)
		return cube_fail(err, 500, ENOMEM, "store: encode sandbox %s", sb->id);
	bind_text(s, 1, sb->id);
	bind_text(s, 2, sb->template_id);
	bind_text(s, 3, meta);
	bind_text(s, 4, envs);
	bind_text(s, 5, sb->access_token);
	sqlite3_bind_int64(s, 6, sb->started_ms);
	sqlite3_bind_int64(s, 7, sb->end_ms);
	sqlite3_bind_int64(s, 8, sb->cpu_count);
	sqlite3_bind_int64(s, 9, sb->memory_mb);
	sqlite3_bind_int64(s, 10, sb->disk_mb);
	sqlite3_bind_int64(s, 11, sb->pid);
	sqlite3_bind_int64(s, 12, (sqlite3_int64)sb->start_time);
	sqlite3_bind_int(s, 13, sb->paused != 0);
	sqlite3_bind_int(s, 14, sb->auto_pause); /* 2: to disk */
	sqlite3_bind_int(s, 15, sb->auto_resume != 0);
	sqlite3_bind_int64(s, 16, sb->timeout_s);
	bind_text(s, 17, sb->layers_tpl ? sb->layers_tpl : "");
	bind_text(s, 18, sb->disk ? sb->disk : "");
	sqlite3_bind_int64(s, 19, sb->paused ? sb->paused_ms : 0);
	return exec_write(s, "save sandbox", err);
}

int store_sandbox_set_paused(const char *id, long long paused_ms, long long end_ms, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_SBX_SET_PAUSED);
	if (!s)
		return db_fail(err, "set sandbox pause state");
	bind_text(s, 1, id);
	sqlite3_bind_int64(s, 2, paused_ms);
	sqlite3_bind_int64(s, 3, end_ms);
	return exec_write(s, "set sandbox pause state", err);
}

int store_sandbox_set_end(const char *id, long long end_ms, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_SBX_SET_END);
	if (!s)
		return db_fail(err, "set sandbox timeout");
	bind_text(s, 1, id);
	sqlite3_bind_int64(s, 2, end_ms);
	return exec_write(s, "set sandbox timeout", err);
}

int store_sandbox_delete(const char *id, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_SBX_DELETE);
	if (!s)
		return db_fail(err, "delete sandbox");
	bind_text(s, 1, id);
	return exec_write(s, "delete sandbox", err);
}

static json_t *column_json_object(sqlite3_stmt *s, int col)
{
	const char *text = (const char *)sqlite3_column_text(s, col);
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;
	if (!json_is_object(v)) {
		json_decref(v);
		v = json_object();
	}
	return v;
}

struct loaded_sandbox {
	char *id, *template_id, *access_token, *layers_tpl, *disk;
	json_t *metadata, *env_vars;
	struct store_sandbox view;
};

static void loaded_sandbox_free(struct loaded_sandbox *l)
{
	free(l->id);
	free(l->template_id);
	free(l->access_token);
	free(l->layers_tpl);
	free(l->disk);
	json_decref(l->metadata);
	json_decref(l->env_vars);
}

static char *column_strdup(sqlite3_stmt *s, int col)
{
	const char *text = (const char *)sqlite3_column_text(s, col);
	return strdup(text ? text : "");
}

int store_sandbox_load_all(void (*fn)(const struct store_sandbox *s, void *arg), void *arg, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_SBX_ALL);
	if (!s)
		return db_fail(err, "load sandboxes");
	/* Copy every row first: fn may write to the store (delete a dead sandbox) while we iterate. */
	struct loaded_sandbox *rows = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct loaded_sandbox *nr = realloc(rows, nc * sizeof *nr);
			if (!nr)
				break;
			rows = nr;
			cap = nc;
		}
		struct loaded_sandbox *l = &rows[n++];
		*l = (struct loaded_sandbox){
			.id = column_strdup(s, 0),
			.template_id = column_strdup(s, 1),
			.metadata = column_json_object(s, 2),
			.env_vars = column_json_object(s, 3),
			.access_token = column_strdup(s, 4),
			.layers_tpl = column_strdup(s, 16),
			.disk = column_strdup(s, 17),
		};
		l->view = (struct store_sandbox){
			.started_ms = sqlite3_column_int64(s, 5),
			.end_ms = sqlite3_column_int64(s, 6),
			.cpu_count = (unsigned)sqlite3_column_int64(s, 7),
			.memory_mb = (unsigned)sqlite3_column_int64(s, 8),
			.disk_mb = (unsigned)sqlite3_column_int64(s, 9),
			.pid = (int)sqlite3_column_int64(s, 10),
			.start_time = (unsigned long long)sqlite3_column_int64(s, 11),
			.paused = sqlite3_column_int(s, 12),
			.auto_pause = sqlite3_column_int(s, 13),
			.auto_resume = sqlite3_column_int(s, 14),
			.timeout_s = (int)sqlite3_column_int64(s, 15),
			.paused_ms = sqlite3_column_int64(s, 18),
		};
	}
	sqlite3_reset(s);
	int failed = rc != SQLITE_DONE;
	if (failed)
		db_fail(err, "load sandboxes");
	for (size_t i = 0; i < n; i++) {
		struct loaded_sandbox *l = &rows[i];
		if (!failed && l->id && l->template_id && l->access_token) {
			l->view.id = l->id;
			l->view.template_id = l->template_id;
			l->view.access_token = l->access_token;
			l->view.metadata = l->metadata;
			l->view.env_vars = l->env_vars;
			l->view.layers_tpl = l->layers_tpl ? l->layers_tpl : "";
			l->view.disk = l->disk ? l->disk : "";
			fn(&l->view, arg);
		}
		loaded_sandbox_free(l);
	}
	free(rows);
	return failed ? -1 : 0;
}

/* ---- API keys ---- */

static int sha256(const char *data, unsigned char out[32])
{
	unsigned int len = 0;
	return EVP_Digest(data, strlen(data), out, &len, EVP_sha256(), NULL) && len == 32 ? 0 : -1;
}

static int random_hex(char *out, size_t nbytes)
{
	unsigned char raw[64];
	if (nbytes > sizeof raw || getrandom(raw, nbytes, 0) != (ssize_t)nbytes)
		return -1;
	for (size_t i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

int store_apikey_create(const char *name, char *key_out, char *id_out, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_KEY_INSERT);
	if (!s)
		return db_fail(err, "create API key");
	if (!name || !*name)
		return cube_fail(err, 400, 0, "an API key needs a name");
	char key[sizeof KEY_PREFIX + 2 * KEY_HEX_BYTES], id[17];
	memcpy(key, KEY_PREFIX, sizeof KEY_PREFIX - 1);
	if (random_hex(key + sizeof KEY_PREFIX - 1, KEY_HEX_BYTES) < 0 || random_hex(id, 8) < 0)
		return cube_fail(err, 500, errno, "store: random bytes for an API key");
	unsigned char hash[32];
	if (sha256(key, hash) < 0)
		return cube_fail(err, 500, 0, "store: hash API key");
	char prefix[KEY_DISPLAY_LEN + 1];
	snprintf(prefix, sizeof prefix, "%s", key);
	bind_text(s, 1, id);
	bind_text(s, 2, name);
	sqlite3_bind_blob(s, 3, hash, sizeof hash, SQLITE_TRANSIENT);
	bind_text(s, 4, prefix);
	sqlite3_bind_int64(s, 5, cube_now_ms());
	if (exec_write(s, "create API key", err) < 0)
		return -1;
	memcpy(key_out, key, sizeof key);
	memcpy(id_out, id, sizeof id);
	return 0;
}

int store_apikey_check(const char *key, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_KEY_BY_HASH);
	if (!s)
		return db_fail(err, "check API key");
	if (!key || !*key)
		return 0;
	unsigned char hash[32];
	if (sha256(key, hash) < 0)
		return cube_fail(err, 500, 0, "store: hash API key");
	sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		db_fail(err, "check API key");
		sqlite3_reset(s);
		return -1;
	}
	const void *stored = sqlite3_column_blob(s, 1);
	int ok = stored && sqlite3_column_bytes(s, 1) == (int)sizeof hash && CRYPTO_memcmp(stored, hash, sizeof hash) == 0;
	char id[64];
	snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(s, 0));
	long long last_used = sqlite3_column_type(s, 2) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 2);
	sqlite3_reset(s);
	if (!ok)
		return 0;
	long long now = cube_now_ms();
	if (now - last_used >= LAST_USED_GRANULARITY_MS) {
		sqlite3_stmt *t = stmt(ST_KEY_TOUCH);
		bind_text(t, 1, id);
		sqlite3_bind_int64(t, 2, now);
		cube_err ignored;
		exec_write(t, "record API key use", &ignored); /* bookkeeping only: never fail the request */
	}
	return 1;
}

static json_t *ms_to_time(long long ms)
{
	char ts[40];
	cube_format_time(ms, ts, sizeof ts);
	return json_string(ts);
}

int store_apikey_list(json_t **out, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_KEY_LIST);
	if (!s)
		return db_fail(err, "list API keys");
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string((const char *)sqlite3_column_text(s, 0)));
		json_object_set_new(o, "name", json_string((const char *)sqlite3_column_text(s, 1)));
		json_object_set_new(o, "prefix", json_string((const char *)sqlite3_column_text(s, 2)));
		json_object_set_new(o, "createdAt", ms_to_time(sqlite3_column_int64(s, 3)));
		json_object_set_new(o, "lastUsedAt", sqlite3_column_type(s, 4) == SQLITE_NULL
							     ? json_null()
							     : ms_to_time(sqlite3_column_int64(s, 4)));
		json_array_append_new(arr, o);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return db_fail(err, "list API keys");
	}
	*out = arr;
	return 0;
}

int store_apikey_delete(const char *id, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_KEY_DELETE);
	if (!s)
		return db_fail(err, "delete API key");
	bind_text(s, 1, id);
	if (exec_write(s, "delete API key", err) < 0)
		return -1;
	if (sqlite3_changes(db) == 0)
		return cube_fail(err, 404, 0, "API key '%s' not found", id);
	return 0;
}

/* ---- sandbox logs ---- */

int store_log_append(const char *sandbox_id, long long ts_ms, const char *level, const char *message, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_LOG_APPEND);
	if (!s)
		return db_fail(err, "append log line");
	bind_text(s, 1, sandbox_id);
	sqlite3_bind_int64(s, 2, ts_ms);
	bind_text(s, 3, level);
	bind_text(s, 4, message);
	return exec_write(s, "append log line", err);
}

int store_log_list(const char *sandbox_id, long long since_ms, int limit, json_t **out, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_LOG_LIST);
	if (!s)
		return db_fail(err, "list log lines");
	bind_text(s, 1, sandbox_id);
	sqlite3_bind_int64(s, 2, since_ms);
	sqlite3_bind_int64(s, 3, limit > 0 ? limit : -1); /* LIMIT -1: no limit */
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_array_append_new(arr, json_pack("{s:I,s:s,s:s}", "timestamp", (json_int_t)sqlite3_column_int64(s, 0),
						     "level", (const char *)sqlite3_column_text(s, 1),
						     "message", (const char *)sqlite3_column_text(s, 2)));
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		json_decref(arr);
		return db_fail(err, "list log lines");
	}
	*out = arr;
	return 0;
}

int store_log_delete(const char *sandbox_id, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_LOG_DELETE);
	if (!s)
		return db_fail(err, "delete log lines");
	bind_text(s, 1, sandbox_id);
	return exec_write(s, "delete log lines", err);
}

/* ---- template jobs ---- */

int store_job_put(const char *id, json_t *doc, long long created_ms, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_JOB_PUT);
	char *text = json_dumps(doc, JSON_COMPACT);
	if (!s || !text) {
		free(text);
		return text ? db_fail(err, "save template job") : cube_fail(err, 500, ENOMEM, "save template job");
	}
	bind_text(s, 1, id);
	sqlite3_bind_text(s, 2, text, -1, free);
	sqlite3_bind_int64(s, 3, created_ms);
	return exec_write(s, "save template job", err);
}

int store_job_load_all(void (*fn)(json_t *doc, void *arg), void *arg, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_JOB_ALL);
	if (!s)
		return db_fail(err, "load template jobs");
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		json_t *doc = json_loads((const char *)sqlite3_column_text(s, 0), 0, NULL);
		if (doc)
			fn(doc, arg);
		json_decref(doc);
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : db_fail(err, "load template jobs");
}

int store_job_delete(const char *id, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_JOB_DELETE);
	if (!s)
		return db_fail(err, "delete template job");
	bind_text(s, 1, id);
	return exec_write(s, "delete template job", err);
}

/* ---- pool settings ---- */

int store_pool_put(const char *template_name, unsigned min, unsigned max, cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_POOL_PUT);
	if (!s)
		return db_fail(err, "save pool settings");
	bind_text(s, 1, template_name);
	sqlite3_bind_int64(s, 2, min);
	sqlite3_bind_int64(s, 3, max);
	return exec_write(s, "save pool settings", err);
}

int store_pool_load_all(void (*fn)(const char *template_name, unsigned min, unsigned max, void *arg), void *arg,
			cube_err *err)
{
	sqlite3_stmt *s = stmt(ST_POOL_ALL);
	if (!s)
		return db_fail(err, "load pool settings");
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn((const char *)sqlite3_column_text(s, 0), (unsigned)sqlite3_column_int64(s, 1),
		   (unsigned)sqlite3_column_int64(s, 2), arg);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : db_fail(err, "load pool settings");
}

/* ---- grouping writes ---- */

int store_begin(cube_err *err)
{
	if (!db)
		return db_fail(err, "begin");
	return exec_sql("BEGIN IMMEDIATE", "begin", err);
}

int store_commit(cube_err *err)
{
	if (exec_sql("COMMIT", "commit", err) < 0) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}
