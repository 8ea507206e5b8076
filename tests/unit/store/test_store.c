/* store/store.c against a real SQLite file in a temporary directory: sandboxes, API keys, log lines,
 * schema version, and that everything acknowledged survives closing and reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <regex.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "store/store.h"

static char dir[64], db_path[128];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof dir, "/tmp/cube-store-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(db_path, sizeof db_path, "%s/cubed.db", dir);
	cube_err err = {0};
	return store_open(db_path, &err);
}

static int teardown(void **state)
{
	(void)state;
	store_close();
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void reopen(void)
{
	cube_err err = {0};
	store_close();
	assert_int_equal(store_open(db_path, &err), 0);
}

/* ---- sandboxes ---- */

struct collected {
	int n;
	char ids[8][32];
	char tokens[8][80];
	json_t *metadata[8];
	long long end_ms[8];
	int pid[8];
	unsigned long long start_time[8];
	unsigned cpu[8], mem[8], disk[8];
	int paused[8], auto_pause[8], auto_resume[8], timeout_s[8];
	long long paused_ms[8];
	char layers_tpl[8][64];
};

static void collect(const struct store_sandbox *s, void *arg)
{
	struct collected *c = arg;
	if (c->n >= 8)
		return;
	int i = c->n++;
	snprintf(c->ids[i], sizeof c->ids[i], "%s", s->id);
	snprintf(c->tokens[i], sizeof c->tokens[i], "%s", s->access_token);
	c->metadata[i] = json_deep_copy(s->metadata);
	c->end_ms[i] = s->end_ms;
	c->pid[i] = s->pid;
	c->start_time[i] = s->start_time;
	c->cpu[i] = s->cpu_count;
	c->mem[i] = s->memory_mb;
	c->disk[i] = s->disk_mb;
	c->paused[i] = s->paused;
	c->paused_ms[i] = s->paused_ms;
	c->auto_pause[i] = s->auto_pause;
	c->auto_resume[i] = s->auto_resume;
	c->timeout_s[i] = s->timeout_s;
	snprintf(c->layers_tpl[i], sizeof c->layers_tpl[i], "%s", s->layers_tpl);
}

static void collected_free(struct collected *c)
{
	for (int i = 0; i < c->n; i++)
		json_decref(c->metadata[i]);
}

static void put(const char *id, long long started, const char *token, json_t *meta)
{
	cube_err err = {0};
	json_t *envs = json_pack("{s:s}", "FOO", "bar");
	struct store_sandbox s = {
		.id = id, .template_id = "base", .metadata = meta, .env_vars = envs, .access_token = token,
		.started_ms = started, .end_ms = started + 300000, .cpu_count = 2, .memory_mb = 512, .disk_mb = 1024,
		.pid = 4242, .start_time = 1234567890123ULL, .auto_pause = *token != 0, .auto_resume = 1,
		.timeout_s = 300, .layers_tpl = *token ? "snapabc" : NULL,
	};
	assert_int_equal(store_sandbox_put(&s, &err), 0);
	json_decref(envs);
}

static void test_sandbox_put_load_delete(void **state)
{
	(void)state;
	cube_err err = {0};
	json_t *meta = json_pack("{s:s,s:s}", "user", "abc", "k y", "a b&c=d");
	put("ib", 2000, "", NULL);
	put("ia", 1000, "tok123", meta);

	struct collected c = {0};
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.ids[0], "ia"); /* ordered by start time */
	assert_string_equal(c.ids[1], "ib");
	assert_string_equal(c.tokens[0], "tok123");
	assert_string_equal(c.tokens[1], "");
	assert_true(json_equal(c.metadata[0], meta));
	assert_int_equal(json_object_size(c.metadata[1]), 0); /* NULL metadata stored as {} */
	assert_int_equal(c.pid[0], 4242);
	assert_string_equal(c.layers_tpl[0], "snapabc"); /* rolled back onto a snapshot's layers */
	assert_string_equal(c.layers_tpl[1], "");        /* NULL: its template's own */
	assert_true(c.start_time[0] == 1234567890123ULL);
	assert_int_equal(c.cpu[0], 2);
	assert_int_equal(c.mem[0], 512);
	assert_int_equal(c.disk[0], 1024);
	assert_int_equal(c.paused[0], 0);
	assert_int_equal(c.auto_pause[0], 1);
	assert_int_equal(c.auto_pause[1], 0);
	assert_int_equal(c.auto_resume[0], 1);
	assert_int_equal(c.timeout_s[0], 300);
	collected_free(&c);

	/* pause state, its time and the deadline change together */
	assert_int_equal(store_sandbox_set_paused("ib", 1733450000123LL, 0, &err), 0);
	memset(&c, 0, sizeof c);
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.paused[1], 1);
	assert_int_equal(c.paused_ms[1], 1733450000123LL);
	assert_int_equal(c.end_ms[1], 0);
	collected_free(&c);
	assert_int_equal(store_sandbox_set_paused("ib", 0, 302000, &err), 0);
	memset(&c, 0, sizeof c);
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.paused[1], 0);
	assert_int_equal(c.paused_ms[1], 0);
	collected_free(&c);

	/* put replaces, set_end updates, delete removes */
	put("ia", 1000, "tok456", meta);
	assert_int_equal(store_sandbox_set_end("ia", 99999, &err), 0);
	memset(&c, 0, sizeof c);
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.tokens[0], "tok456");
	assert_int_equal(c.end_ms[0], 99999);
	collected_free(&c);

	assert_int_equal(store_sandbox_delete("ia", &err), 0);
	assert_int_equal(store_sandbox_delete("nope", &err), 0); /* idempotent */
	memset(&c, 0, sizeof c);
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ids[0], "ib");
	collected_free(&c);
	json_decref(meta);
}

/* The daemon deletes dead sandboxes from inside the load callback: that must be safe. */
static void delete_while_loading(const struct store_sandbox *s, void *arg)
{
	int *n = arg;
	cube_err err = {0};
	assert_int_equal(store_sandbox_delete(s->id, &err), 0);
	(*n)++;
}

static void test_sandbox_delete_during_load(void **state)
{
	(void)state;
	cube_err err = {0};
	put("i1", 1, "", NULL);
	put("i2", 2, "", NULL);
	put("i3", 3, "", NULL);
	int n = 0;
	assert_int_equal(store_sandbox_load_all(delete_while_loading, &n, &err), 0);
	assert_int_equal(n, 3);
	struct collected c = {0};
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.n, 0);
}

/* ---- API keys ---- */

static void test_apikey_create_check(void **state)
{
	(void)state;
	cube_err err = {0};
	char key[48], id[24];
	assert_int_equal(store_apikey_create("ci", key, id, &err), 0);
	regex_t re;
	assert_int_equal(regcomp(&re, "^e2b_[0-9a-f]{40}$", REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(regexec(&re, key, 0, NULL, 0), 0);
	regfree(&re);
	assert_true(strlen(id) > 0);

	assert_int_equal(store_apikey_check(key, &err), 1);
	assert_int_equal(store_apikey_check(key, &err), 1);
	char wrong[48];
	snprintf(wrong, sizeof wrong, "%s", key);
	wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
	assert_int_equal(store_apikey_check(wrong, &err), 0);
	assert_int_equal(store_apikey_check("", &err), 0);
	assert_int_equal(store_apikey_check("e2b_", &err), 0);
	assert_int_equal(store_apikey_check(NULL, &err), 0);

	/* two keys never collide */
	char key2[48], id2[24];
	assert_int_equal(store_apikey_create("ci", key2, id2, &err), 0);
	assert_string_not_equal(key, key2);
	assert_string_not_equal(id, id2);

	assert_int_equal(store_apikey_create("", key2, id2, &err), -1);
	assert_int_equal(err.status, 400);
}

/* Only the hash of the key may reach the disk. */
static void test_apikey_stored_hashed(void **state)
{
	(void)state;
	cube_err err = {0};
	char key[48], id[24];
	assert_int_equal(store_apikey_create("secret", key, id, &err), 0);
	store_close();
	FILE *f = fopen(db_path, "rb");
	assert_non_null(f);
	char buf[1 << 16];
	size_t n, total = 0;
	int found = 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		total += n;
		if (memmem(buf, n, key + 4, 40))
			found = 1;
	}
	fclose(f);
	char wal[160];
	snprintf(wal, sizeof wal, "%s-wal", db_path);
	f = fopen(wal, "rb");
	if (f) {
		while ((n = fread(buf, 1, sizeof buf, f)) > 0)
			if (memmem(buf, n, key + 4, 40))
				found = 1;
		fclose(f);
	}
	assert_true(total > 0);
	assert_false(found);

	/* and the stored hash is SHA-256 of the full key */
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(raw, "SELECT hash, prefix FROM api_keys WHERE id = ?", -1, &s, NULL), SQLITE_OK);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	unsigned char md[32];
	unsigned int mdlen;
	EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
	assert_int_equal(sqlite3_column_bytes(s, 0), 32);
	assert_memory_equal(sqlite3_column_blob(s, 0), md, 32);
	assert_true(strncmp((const char *)sqlite3_column_text(s, 1), key, 10) == 0);
	sqlite3_finalize(s);
	sqlite3_close(raw);
	reopen();
	assert_int_equal(store_apikey_check(key, &err), 1);
}

static void test_apikey_list_delete(void **state)
{
	(void)state;
	cube_err err = {0};
	char k1[48], i1[24], k2[48], i2[24];
	assert_int_equal(store_apikey_create("one", k1, i1, &err), 0);
	assert_int_equal(store_apikey_create("two", k2, i2, &err), 0);
	assert_int_equal(store_apikey_check(k2, &err), 1);

	json_t *list = NULL;
	assert_int_equal(store_apikey_list(&list, &err), 0);
	assert_int_equal(json_array_size(list), 2);
	json_t *a = json_array_get(list, 0), *b = json_array_get(list, 1);
	assert_string_equal(json_string_value(json_object_get(a, "id")), i1);
	assert_string_equal(json_string_value(json_object_get(a, "name")), "one");
	assert_int_equal(strlen(json_string_value(json_object_get(a, "prefix"))), 10);
	assert_true(json_is_string(json_object_get(a, "createdAt")));
	assert_true(json_is_null(json_object_get(a, "lastUsedAt")));
	assert_true(json_is_string(json_object_get(b, "lastUsedAt")));
	assert_null(json_object_get(a, "key"));
	assert_null(json_object_get(a, "hash"));
	json_decref(list);

	assert_int_equal(store_apikey_delete(i1, &err), 0);
	assert_int_equal(store_apikey_check(k1, &err), 0);
	assert_int_equal(store_apikey_check(k2, &err), 1);
	assert_int_equal(store_apikey_delete(i1, &err), -1);
	assert_int_equal(err.status, 404);
	assert_int_equal(store_apikey_list(&list, &err), 0);
	assert_int_equal(json_array_size(list), 1);
	json_decref(list);
}

/* ---- logs ---- */

static void collect_job(json_t *doc, void *arg)
{
	json_array_append(arg, doc);
}

/* Template jobs: whole JSON documents, replaced on every phase change, loaded in creation order. */
static void test_template_jobs(void **state)
{
	(void)state;
	cube_err err = {0};
	json_t *a = json_pack("{s:s,s:s}", "jobID", "ja", "phase", "PULLING");
	json_t *b = json_pack("{s:s,s:s}", "jobID", "jb", "phase", "PENDING");
	assert_int_equal(store_job_put("jb", b, 2000, &err), 0);
	assert_int_equal(store_job_put("ja", a, 1000, &err), 0);
	json_object_set_new(a, "phase", json_string("READY"));
	assert_int_equal(store_job_put("ja", a, 1000, &err), 0);
	json_t *got = json_array();
	assert_int_equal(store_job_load_all(collect_job, got, &err), 0);
	assert_int_equal(json_array_size(got), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "phase")), "READY");
	assert_string_equal(json_string_value(json_object_get(json_array_get(got, 1), "jobID")), "jb");
	assert_int_equal(store_job_delete("jb", &err), 0);
	json_array_clear(got);
	assert_int_equal(store_job_load_all(collect_job, got, &err), 0);
	assert_int_equal(json_array_size(got), 1);
	json_decref(got);
	json_decref(a);
	json_decref(b);
}

static void test_logs(void **state)
{
	(void)state;
	cube_err err = {0};
	assert_int_equal(store_log_append("ia", 1000, "info", "started", &err), 0);
	assert_int_equal(store_log_append("ib", 1500, "info", "other sandbox", &err), 0);
	assert_int_equal(store_log_append("ia", 2000, "warn", "odd", &err), 0);
	assert_int_equal(store_log_append("ia", 2000, "info", "same ms, later", &err), 0);
	assert_int_equal(store_log_append("ia", 3000, "info", "killed", &err), 0);

	json_t *logs = NULL;
	assert_int_equal(store_log_list("ia", 0, 0, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(logs, 0), "message")), "started");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(logs, 0), "timestamp")), 1000);
	assert_string_equal(json_string_value(json_object_get(json_array_get(logs, 1), "level")), "warn");
	assert_string_equal(json_string_value(json_object_get(json_array_get(logs, 2), "message")), "same ms, later");
	json_decref(logs);

	assert_int_equal(store_log_list("ia", 2000, 2, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(logs, 0), "message")), "odd");
	json_decref(logs);

	assert_int_equal(store_log_list("nobody", 0, 10, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 0);
	json_decref(logs);

	assert_int_equal(store_log_delete("ia", &err), 0);
	assert_int_equal(store_log_list("ia", 0, 0, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 0);
	json_decref(logs);
	assert_int_equal(store_log_list("ib", 0, 0, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 1);
	json_decref(logs);
}

/* ---- durability and schema ---- */

static void test_reopen_keeps_everything(void **state)
{
	(void)state;
	cube_err err = {0};
	json_t *meta = json_pack("{s:s}", "owner", "e2e");
	put("ikeep", 5000, "tok", meta);
	char key[48], id[24];
	assert_int_equal(store_apikey_create("persist", key, id, &err), 0);
	assert_int_equal(store_log_append("ikeep", cube_now_ms(), "info", "hello", &err), 0);

	reopen();

	struct collected c = {0};
	assert_int_equal(store_sandbox_load_all(collect, &c, &err), 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.ids[0], "ikeep");
	assert_true(json_equal(c.metadata[0], meta));
	collected_free(&c);
	assert_int_equal(store_apikey_check(key, &err), 1);
	json_t *logs = NULL;
	assert_int_equal(store_log_list("ikeep", 0, 0, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 1);
	json_decref(logs);
	json_decref(meta);
}

static void test_schema_version_and_wal(void **state)
{
	(void)state;
	store_close();
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
	sqlite3_stmt *s;
	assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	int version = sqlite3_column_int(s, 0);
	assert_true(version >= 3);
	sqlite3_finalize(s);
	assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	/* a database from a newer cubed is refused, not misread */
	assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	cube_err err = {0};
	assert_int_equal(store_open(db_path, &err), -1);
	assert_non_null(strstr(err.msg, "newer"));
	/* put it back for teardown */
	char restore[64];
	snprintf(restore, sizeof restore, "PRAGMA user_version = %d", version);
	assert_int_equal(sqlite3_open(db_path, &raw), SQLITE_OK);
	assert_int_equal(sqlite3_exec(raw, restore, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(raw);
	assert_int_equal(store_open(db_path, &err), 0);
}

struct pool_row {
	char name[32];
	unsigned min, max;
};

static void collect_pool(const char *name, unsigned min, unsigned max, void *arg)
{
	struct pool_row *rows = arg;
	size_t i = 0;
	while (rows[i].name[0])
		i++;
	snprintf(rows[i].name, sizeof rows[i].name, "%s", name);
	rows[i].min = min;
	rows[i].max = max;
}

static void test_pool_settings(void **state)
{
	(void)state;
	cube_err err = {0};
	assert_int_equal(store_pool_put("base", 1, 4, &err), 0);
	assert_int_equal(store_pool_put("alpha", 0, 2, &err), 0);
	assert_int_equal(store_pool_put("base", 2, 8, &err), 0); /* replaces */
	store_close();
	assert_int_equal(store_open(db_path, &err), 0);
	struct pool_row rows[4];
	memset(rows, 0, sizeof rows);
	assert_int_equal(store_pool_load_all(collect_pool, rows, &err), 0);
	assert_string_equal(rows[0].name, "alpha");
	assert_int_equal(rows[0].max, 2);
	assert_string_equal(rows[1].name, "base");
	assert_int_equal(rows[1].min, 2);
	assert_int_equal(rows[1].max, 8);
	assert_string_equal(rows[2].name, "");
}

static void test_grouped_writes(void **state)
{
	(void)state;
	cube_err err = {0};
	long long now = (long long)time(NULL) * 1000; /* older lines are pruned at open */
	assert_int_equal(store_begin(&err), 0);
	assert_int_equal(store_log_append("igroup", now, "info", "one", &err), 0);
	assert_int_equal(store_log_append("igroup", now + 1, "info", "two", &err), 0);
	assert_int_equal(store_commit(&err), 0);
	store_close();
	assert_int_equal(store_open(db_path, &err), 0);
	json_t *logs = NULL;
	assert_int_equal(store_log_list("igroup", 0, 10, &logs, &err), 0);
	assert_int_equal(json_array_size(logs), 2);
	json_decref(logs);
	/* a commit without a transaction fails and leaves the store usable */
	assert_int_equal(store_commit(&err), -1);
	assert_int_equal(store_log_append("igroup", now + 2, "info", "three", &err), 0);
}

static void test_open_failure(void **state)
{
	(void)state;
	cube_err err = {0};
	/* second open while open is refused; a bad path fails with a message */
	assert_int_equal(store_open(db_path, &err), -1);
	store_close();
	assert_int_equal(store_open("/nonexistent-dir/x/cubed.db", &err), -1);
	assert_true(strlen(err.msg) > 0);
	/* calls on a closed store fail cleanly instead of crashing */
	assert_int_equal(store_sandbox_delete("x", &err), -1);
	assert_int_equal(store_apikey_check("e2b_00", &err), -1);
	assert_int_equal(store_open(db_path, &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_put_load_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox_delete_during_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey_create_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey_stored_hashed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apikey_list_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_template_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_version_and_wal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grouped_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_failure, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
