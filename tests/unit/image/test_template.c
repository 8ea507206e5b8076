/* image/template: template.json parsing and validation, registry scan and lookups by name and name:tag.
 * Uses uid base 0 (no shift) so it runs without root; the shift itself is covered by test_rootfs_shift. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "image/template.h"

static char top[PATH_MAX];

static void write_template(const char *name, const char *json, bool with_rootfs)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s/%s/%s", top, name, with_rootfs ? "rootfs/" : "");
	assert_int_equal(cube_mkdir_p(p, 0755), 0);
	if (!json)
		return;
	snprintf(p, sizeof p, "%s/%s/template.json", top, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(json, f);
	fclose(f);
}

static void remove_tree(const char *rel)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof cmd, "rm -rf '%s/%s'", top, rel);
	assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(top, sizeof top, "/tmp/cube-test-tpl-XXXXXX");
	assert_non_null(mkdtemp(top));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tpl_registry_free();
	remove_tree("");
	return 0;
}

/* Loads <top>/<name> alone and returns the error message (empty on success). */
static int load_one(const char *name, const char *json, cube_err *err)
{
	write_template(name, json, true);
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s/%s", top, name);
	struct tpl *t = NULL;
	cube_err_clear(err);
	int rc = tpl_load_one(dir, name, &t, err);
	tpl_free(t);
	remove_tree(name);
	return rc;
}

static void test_registry_load_and_find(void **state)
{
	(void)state;
	write_template("base", "{\"name\":\"base\",\"cpuCount\":2,\"memoryMB\":512,\"diskSizeMB\":1024,"
			       "\"envs\":{},\"startCmd\":null}", true);
	write_template("py", "{\"name\":\"py\",\"cpuCount\":4,\"memoryMB\":2048,"
			     "\"envs\":{\"LANG\":\"C.UTF-8\"},\"startCmd\":\"python3 -m http.server\","
			     "\"startUser\":\"root\",\"startCwd\":\"/srv\",\"readyPort\":8000}", true);
	write_template("minimal", "{}", true);
	write_template("no-manifest", NULL, true);   /* skipped: no template.json */
	write_template(".partial", "{", true);       /* skipped: hidden */

	cube_err err = {0};
	assert_int_equal(tpl_registry_load(top, 0, 65536, &err), 0);
	assert_int_equal(tpl_count(), 3);
	assert_string_equal(tpl_at(0)->name, "base");
	assert_string_equal(tpl_at(1)->name, "minimal");
	assert_string_equal(tpl_at(2)->name, "py");
	assert_null(tpl_at(3));

	const struct tpl *b = tpl_find("base");
	assert_non_null(b);
	assert_ptr_equal(tpl_find("base:latest"), b);
	assert_ptr_equal(tpl_find("base:default"), b);
	assert_null(tpl_find("bas"));
	assert_null(tpl_find("basement"));
	assert_null(tpl_find("nope"));
	assert_null(tpl_find(""));
	assert_int_equal(b->cpu_count, 2);
	assert_int_equal(b->memory_mb, 512);
	assert_int_equal(b->disk_mb, 1024);
	assert_null(b->start_cmd);
	assert_true(json_is_object(b->envs));
	assert_int_equal(json_object_size(b->envs), 0);
	char expect[PATH_MAX];
	snprintf(expect, sizeof expect, "%s/base/rootfs", top);
	assert_string_equal(b->rootfs, expect);

	const struct tpl *py = tpl_find("py");
	assert_int_equal(py->cpu_count, 4);
	assert_int_equal(py->cpu_millis, 4000); /* default: cpuCount cores */
	assert_int_equal(py->memory_mb, 2048);
	assert_int_equal(py->disk_mb, 1024);   /* default */
	assert_string_equal(py->start_cmd, "python3 -m http.server");
	assert_string_equal(py->start_user, "root");
	assert_string_equal(py->start_cwd, "/srv");
	assert_int_equal(py->ready_port, 8000);
	assert_string_equal(json_string_value(json_object_get(py->envs, "LANG")), "C.UTF-8");

	const struct tpl *m = tpl_find("minimal");
	assert_int_equal(m->cpu_count, 2);
	assert_int_equal(m->memory_mb, 512);

	/* A reload replaces the registry; entries from the first stay readable until tpl_registry_free. */
	remove_tree("py");
	assert_int_equal(tpl_registry_load(top, 0, 65536, &err), 0);
	assert_int_equal(tpl_count(), 2);
	assert_null(tpl_find("py"));
	assert_string_equal(py->name, "py");
	tpl_registry_free();
	assert_int_equal(tpl_count(), 0);
	assert_null(tpl_find("base"));
	remove_tree("base");
	remove_tree("minimal");
	remove_tree("no-manifest");
	remove_tree(".partial");
}

static void expect_error(const char *json, const char *needle)
{
	cube_err err;
	assert_int_equal(load_one("bad", json, &err), -1);
	assert_int_equal(err.status, 500);
	if (!strstr(err.msg, needle) || !strstr(err.msg, "bad/template.json"))
		fail_msg("for %s: message '%s' lacks '%s' or the file's path", json, err.msg, needle);
}

static void test_bad_manifests(void **state)
{
	(void)state;
	expect_error("{\"name\":\"bad\",", "line 1");
	expect_error("[1,2]", "JSON object");
	expect_error("{\"name\":\"other\"}", "\"name\" must be");
	expect_error("{\"name\":7}", "\"name\" must be");
	expect_error("{\"cpuCount\":\"two\"}", "cpuCount");
	expect_error("{\"cpuCount\":0}", "cpuCount");
	expect_error("{\"memoryMB\":1.5}", "memoryMB");
	expect_error("{\"diskSizeMB\":-1}", "diskSizeMB");
	expect_error("{\"envs\":[]}", "envs");
	expect_error("{\"envs\":{\"A\":1}}", "envs");
	expect_error("{\"startCmd\":42}", "startCmd");
	expect_error("{\"startUser\":[]}", "startUser");
	expect_error("{\"readyPort\":70000}", "readyPort");
	expect_error("{\"cpuCount\":1,\"cpuCount\":2}", "duplicate");

	cube_err err;
	assert_int_equal(load_one("good", "{\"name\":\"good\",\"envs\":null,\"startCmd\":\"\"}", &err), 0);
}

static void test_registry_errors(void **state)
{
	(void)state;
	cube_err err = {0};
	char missing[PATH_MAX];
	snprintf(missing, sizeof missing, "%s/does-not-exist", top);
	assert_int_equal(tpl_registry_load(missing, 0, 65536, &err), -1);
	assert_non_null(strstr(err.msg, "does-not-exist"));

	/* A template without its rootfs, or with a bad manifest, is skipped (logged with why): the others
	 * load, so one bad template never keeps cubed from starting. */
	write_template("base", "{}", true);
	write_template("norootfs", "{}", false);
	write_template("broken", "{\"cpuCount\":\"x\"}", true);
	cube_err_clear(&err);
	assert_int_equal(tpl_registry_load(top, 0, 65536, &err), 0);
	assert_null(tpl_find("norootfs"));
	assert_null(tpl_find("broken"));
	assert_non_null(tpl_find("base"));
	/* tpl_load_one still says why, naming the file */
	char dir[PATH_MAX];
	struct tpl *t = NULL;
	snprintf(dir, sizeof dir, "%s/broken", top);
	assert_int_equal(tpl_load_one(dir, "broken", &t, &err), -1);
	assert_non_null(strstr(err.msg, "broken/template.json"));
	remove_tree("norootfs");
	remove_tree("broken");
	remove_tree("base");
	tpl_registry_free();
}

/* A template made of store layers (topmost first) with aliases; its own rootfs/ is not needed. */
static void test_layers_and_aliases(void **state)
{
	(void)state;
	static const char *const hex[] = {
		"1111111111111111111111111111111111111111111111111111111111111111",
		"2222222222222222222222222222222222222222222222222222222222222222"};
	char store[PATH_MAX], p[PATH_MAX];
	snprintf(store, sizeof store, "%s/.layers", top);
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof p, "%s/sha256/%s/rootfs", store, hex[i]);
		assert_int_equal(cube_mkdir_p(p, 0755), 0);
	}
	char json[1024];
	snprintf(json, sizeof json, "{\"layers\":[\"sha256/%s\",\"sha256/%s\"],\"aliases\":[\"app\",\"app-v2\"]}",
		 hex[1], hex[0]);
	write_template("img", json, false);
	write_template("app", "{}", true); /* a name wins over another template's alias */
	tpl_set_layer_store(store);
	cube_err err = {0};
	if (tpl_registry_load(top, 0, 65536, &err) < 0)
		fail_msg("load: %s", err.msg);
	const struct tpl *t = tpl_find("app-v2:latest");
	assert_non_null(t);
	assert_string_equal(t->name, "img");
	assert_ptr_equal(tpl_find("app")->name, tpl_find("app")->name);
	assert_string_equal(tpl_find("app")->name, "app");
	assert_int_equal(t->n_layers, 2);
	assert_true(t->store_layers);
	snprintf(p, sizeof p, "%s/sha256/%s/rootfs", store, hex[1]);
	assert_string_equal(t->layers[0], p);
	assert_string_equal(t->rootfs, p);
	snprintf(p, sizeof p, "%s/sha256/%s/rootfs", store, hex[0]);
	assert_string_equal(t->layers[1], p);
	assert_int_equal(tpl_find("app")->n_layers, 1);
	remove_tree("app");

	/* References cannot leave the store; a missing layer names itself. */
	tpl_set_layer_store(store);
	expect_error("{\"layers\":[\"../../etc\"]}", "layer 0");
	expect_error("{\"layers\":[\"sha256/ZZ\"]}", "layer 0");
	expect_error("{\"layers\":[]}", "\"layers\"");
	expect_error("{\"aliases\":[\"a/b\"]}", "alias 0");
	expect_error("{\"aliases\":\"x\"}", "aliases");
	snprintf(json, sizeof json, "{\"layers\":[\"sha256/%064d\"]}", 3);
	write_template("gone", json, false);
	snprintf(p, sizeof p, "%s/gone", top);
	struct tpl *g = NULL;
	assert_int_equal(tpl_load_one(p, "gone", &g, &err), -1);
	assert_non_null(strstr(err.msg, "template 'gone'"));
	remove_tree("gone");
	remove_tree("img");
	remove_tree(".layers");
	tpl_registry_free();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry_load_and_find),
		cmocka_unit_test(test_bad_manifests),
		cmocka_unit_test(test_registry_errors),
		cmocka_unit_test(test_layers_and_aliases),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
