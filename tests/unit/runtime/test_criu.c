/* CRIU support without a working CRIU (runtime/criu.h): the reason taken from criu's output, the dump and
 * restore command lines built from a spec (and refused for unsafe input), and detection at start run
 * against small scripts standing in for the `criu` binary's `check` answers (passing, failing with
 * criu's real message format, hanging, missing). Checkpoints themselves cannot run on this host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "runtime/criu.h"

static char dir[64];

/* What `criu check` printed on the machine this was written on (CRIU 3.17.1, Debian 12). */
static const char real_check[] =
	"Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n"
	"Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n"
	"Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.\n"
	"Error (criu/crtools.c:260): Could not initialize kernel features detection.\n";

static void test_reason(void **s)
{
	(void)s;
	char r[256];
	criu_reason(real_check, r, sizeof r);
	assert_string_equal(r, "vdso: Unexpected rt vDSO area bounds");
	/* -v3 and above put a timestamp first; info lines before the error are skipped */
	criu_reason("(00.000012) Version: 3.17.1\n(00.004300) Error (criu/mount.c:12): mnt: Can't dump\tthe root\n", r,
		    sizeof r);
	assert_string_equal(r, "mnt: Can't dump the root");
	/* no Error line: the last non-empty line */
	criu_reason("Warn: something\nLooks bad.\n\n  \n", r, sizeof r);
	assert_string_equal(r, "Looks bad.");
	criu_reason("Error: bare form\n", r, sizeof r);
	assert_string_equal(r, "bare form");
	criu_reason("", r, sizeof r);
	assert_string_equal(r, "");
	criu_reason(real_check, r, 8);
	assert_string_equal(r, "vdso: U");
	/* "Errors" in the middle of a line is not criu's error prefix */
	criu_reason("Errorless line\nlast one\n", r, sizeof r);
	assert_string_equal(r, "last one");
}

static void assert_argv(const struct criu_argv *a, const char *const *want)
{
	size_t i = 0;
	for (; want[i]; i++) {
		if (i >= a->argc)
			fail_msg("argument %zu missing, expected '%s'", i, want[i]);
		if (strcmp(a->argv[i], want[i]))
			fail_msg("argument %zu is '%s', expected '%s'", i, a->argv[i], want[i]);
	}
	assert_int_equal(a->argc, i);
	assert_null(a->argv[a->argc]);
}

/* opts with field set to value must be refused by build (e.g. criu_dump_argv); uses the test's `a`. */
#define assert_refused(build, opts, field, value)                                                          \
	do {                                                                                                 \
		__typeof__(opts) bad_ = (opts);                                                              \
		bad_.field = (value);                                                                        \
		assert_int_equal(build(&bad_, &a), -1);                                                      \
	} while (0)

static void test_dump_argv(void **s)
{
	(void)s;
	struct criu_argv a;
	struct criu_dump_opts o = {.criu = "/usr/sbin/criu", .images_dir = "/var/lib/cs/disk/i1/.criu-17",
				   .freezer_cgroup = "/sys/fs/cgroup/freezer/cubesandbox/abc/i1", .pid = 4242,
				   .netns_ino = 4026532999ULL, .envd_mount = "/.cube/envd"};
	assert_int_equal(criu_dump_argv(&o, &a), 0);
	static const char *const want[] = {
		"/usr/sbin/criu", "dump", "--tree", "4242", "--images-dir", "/var/lib/cs/disk/i1/.criu-17",
		"--work-dir", "/var/lib/cs/disk/i1/.criu-17", "--log-file", "dump.log", "-v4", "--shell-job",
		"--tcp-close", "--file-locks", "--manage-cgroups=ignore",
		"--freeze-cgroup", "/sys/fs/cgroup/freezer/cubesandbox/abc/i1", "--leave-running",
		"--external", "net[4026532999]:cube-net", "--external", "mnt[/.cube/envd]:cube-envd", NULL,
	};
	assert_argv(&a, want);

	/* refused: no pid or the host's init, relative or option-breaking paths */
	assert_refused(criu_dump_argv, o, pid, 1);
	assert_refused(criu_dump_argv, o, netns_ino, 0);
	assert_refused(criu_dump_argv, o, images_dir, "relative/dir");
	assert_refused(criu_dump_argv, o, images_dir, "/x/a]:b");
	assert_refused(criu_dump_argv, o, freezer_cgroup, "/sys/fs/cgroup/a,b");
	assert_refused(criu_dump_argv, o, criu, "/usr/sbin/cr\niu");
	assert_refused(criu_dump_argv, o, envd_mount, NULL);
}

static void test_restore_argv(void **s)
{
	(void)s;
	struct criu_argv a;
	struct criu_restore_opts o = {.criu = "/usr/sbin/criu", .images_dir = "/st/disk/i1/criu-17",
				      .root = "/st/sandboxes/.layer/root", .pidfile = "/st/disk/i1/criu-17/restore.pid",
				      .envd_path = "/opt/cube/cube-envd", .netns_fd = 3, .stdio_fd = 4,
				      .stdio_ino = 991};
	assert_int_equal(criu_restore_argv(&o, &a), 0);
	static const char *const want[] = {
		"/usr/sbin/criu", "restore", "--images-dir", "/st/disk/i1/criu-17", "--work-dir", "/st/disk/i1/criu-17",
		"--log-file", "restore.log", "-v4", "--shell-job", "--tcp-close", "--file-locks",
		"--manage-cgroups=ignore", "--root", "/st/sandboxes/.layer/root", "--restore-detached",
		"--restore-sibling", "--pidfile", "/st/disk/i1/criu-17/restore.pid", "--external",
		"mnt[cube-envd]:/opt/cube/cube-envd", "--inherit-fd", "fd[3]:cube-net", "--inherit-fd", "fd[4]:pipe[991]",
		NULL,
	};
	assert_argv(&a, want);
	/* envd logged to /dev/null (no pipe): no second --inherit-fd */
	o.stdio_fd = -1;
	assert_int_equal(criu_restore_argv(&o, &a), 0);
	assert_int_equal(a.argc, CUBE_ARRAY_LEN(want) - 1 - 2);
	assert_string_equal(a.argv[a.argc - 1], "fd[3]:cube-net");

	assert_refused(criu_restore_argv, o, netns_fd, -1);
	struct criu_restore_opts bad = o;
	bad.stdio_fd = 4;
	bad.stdio_ino = 0; /* a pipe to hand in, but no inode to match it */
	assert_int_equal(criu_restore_argv(&bad, &a), -1);
	assert_refused(criu_restore_argv, o, envd_path, "/opt/cube:x/cube-envd");
	assert_refused(criu_restore_argv, o, root, NULL);
	/* a path too long for the argument buffer is refused, not cut */
	char *longp = malloc(PATH_MAX);
	memset(longp, 'a', PATH_MAX - 1);
	longp[0] = '/';
	longp[PATH_MAX - 1] = '\0';
	bad = o;
	bad.images_dir = longp;
	bad.pidfile = longp;
	bad.root = longp;
	assert_int_equal(criu_restore_argv(&bad, &a), -1);
	free(longp);
}

/* A stand-in `criu` for detection only: a shell script that answers --version and check. */
static char *script(const char *name, const char *check_body)
{
	char *path;
	assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "#!/bin/sh\ncase \"$1\" in\n--version) echo 'Version: 3.17.1' ;;\ncheck) %s ;;\n*) exit 9 ;;\nesac\n",
		check_body);
	fclose(f);
	chmod(path, 0755);
	return path;
}

static void test_detect(void **s)
{
	(void)s;
	const struct rt_criu_status *st = rt_criu_status();

	char *good = script("good-criu", "echo 'Looks good.'; exit 0");
	rt_criu_detect(good, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_true(st->available);
	assert_string_equal(st->path, good);
	assert_string_equal(st->version, "3.17.1");
	assert_string_equal(st->reason, "");

	/* criu's real failure, on stderr */
	char *bad = script("bad-criu", "printf '%s' \"$REAL\" >&2; exit 1");
	setenv("REAL", real_check, 1);
	rt_criu_detect(bad, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_false(st->available);
	assert_string_equal(st->reason, "criu check failed (exit status 1): vdso: Unexpected rt vDSO area bounds");

	/* a check that hangs is killed at the timeout */
	char *hang = script("hang-criu", "exec sleep 30");
	long long t0 = cube_mono_ms();
	rt_criu_detect(hang, false, 300);
	assert_true(cube_mono_ms() - t0 < 10000);
	assert_false(st->available);
	assert_non_null(strstr(st->reason, "timed out"));

	/* --no-criu wins over a working one */
	rt_criu_detect(good, true, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_false(st->available);
	assert_string_equal(st->reason, "disabled (--no-criu)");

	char *missing;
	assert_true(asprintf(&missing, "%s/no-such-criu", dir) > 0);
	rt_criu_detect(missing, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_false(st->available);
	assert_non_null(strstr(st->reason, "not found"));

	/* looked up on PATH: none there */
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	setenv("PATH", dir, 1);
	rt_criu_detect(NULL, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_false(st->available);
	assert_string_equal(st->reason, "criu not installed");
	/* and one named criu on PATH */
	char *named = script("criu", "exit 0");
	rt_criu_detect(NULL, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_true(st->available);
	assert_string_equal(st->path, named);
	if (old)
		setenv("PATH", old, 1);
	free(old);

	/* without a working criu nothing is attempted */
	rt_criu_detect(missing, false, RT_CRIU_CHECK_TIMEOUT_MS);
	struct rt_sandbox sb = {.pid = 4242, .pidfd = -1, .netns_fd = -1};
	cube_err err = {0};
	assert_int_equal(rt_checkpoint("abc", &sb, dir, &err), -1);
	assert_int_equal(err.status, 501);
	struct rt_spec spec = {.id = "abc", .rootfs = "/"};
	assert_int_equal(rt_restore(&spec, dir, &sb, &err), -1);
	assert_int_equal(err.status, 501);
	assert_int_equal(sb.pidfd, -1);
	free(good);
	free(bad);
	free(hang);
	free(missing);
	free(named);
}

static int setup(void **s)
{
	(void)s;
	snprintf(dir, sizeof dir, "/tmp/cube-criu-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s)
{
	(void)s;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_dump_argv),
		cmocka_unit_test(test_restore_argv),
		cmocka_unit_test(test_detect),
	};
	return cmocka_run_group_tests_name("criu", tests, setup, teardown);
}
