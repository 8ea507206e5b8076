/* Runtime tests: start real sandboxes (as root) on a tiny busybox rootfs with tests/unit/runtime/
 * fake_init standing in for envd, and check the isolation promises of docs/security.md, the cgroup
 * limits, kill/reclaim/adopt, and the create/kill latency. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "runtime/criu.h"
#include "runtime/runtime.h"

#define UID_BASE 200000000u
#define PORT 49983

static char work[256], rootfs[300], state[300], instance[13];

static const char *const applets[] = {
	"sh", "ls", "cat", "echo", "id", "hostname", "head", "tr", "sleep", "mkdir", "ps", "grep", "wc",
	"touch", "rm", "true", "false", "kill", "test", "stat", "uname", "env", "mount", "df", "su", "chown",
};

static void write_text(const char *rel, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", rootfs, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int shift_owner(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)flag;
	(void)ftw;
	return lchown(path, UID_BASE + st->st_uid, UID_BASE + st->st_gid);
}

/* busybox + applet links + passwd with root and user(1000), shifted into the sandbox uid range. */
static void build_rootfs(void)
{
	static const char *const dirs[] = {"bin", "etc", "tmp", "proc", "dev", "sys", "root", "home", "home/user",
					   "usr", "usr/bin"};
	char path[512], cmd[1024];
	mkdir(rootfs, 0755);
	for (size_t i = 0; i < CUBE_ARRAY_LEN(dirs); i++) {
		snprintf(path, sizeof path, "%s/%s", rootfs, dirs[i]);
		assert_int_equal(mkdir(path, 0755), 0);
	}
	snprintf(path, sizeof path, "%s/tmp", rootfs);
	chmod(path, 01777);
	snprintf(cmd, sizeof cmd, "cp /bin/busybox %s/bin/busybox", rootfs);
	assert_int_equal(system(cmd), 0);
	for (size_t i = 0; i < CUBE_ARRAY_LEN(applets); i++) {
		snprintf(path, sizeof path, "%s/bin/%s", rootfs, applets[i]);
		assert_int_equal(symlink("busybox", path), 0);
	}
	write_text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n");
	write_text("etc/group", "root:x:0:\ntty:x:5:\nuser:x:1000:\n");
	snprintf(path, sizeof path, "%s/home/user", rootfs);
	assert_int_equal(chown(path, 1000, 1000), 0);
	assert_int_equal(nftw(rootfs, shift_owner, 16, FTW_PHYS), 0);
}

static int group_setup(void **state_)
{
	(void)state_;
	if (geteuid() != 0) {
		fprintf(stderr, "runtime tests need root\n");
		return -1;
	}
	snprintf(work, sizeof work, "/tmp/cube-rt-test-XXXXXX");
	if (!mkdtemp(work))
		return -1;
	chmod(work, 0755);
	snprintf(rootfs, sizeof rootfs, "%s/rootfs", work);
	snprintf(state, sizeof state, "%s/state", work);
	build_rootfs();
	/* One instance per test process: runs in other worktrees at the same time must not reclaim ours.
	 * Teardown removes its cgroup dirs. */
	snprintf(instance, sizeof instance, "7e57%08x", (unsigned)getpid());
	const char *envd = getenv("RT_FAKE_INIT");
	if (!envd)
		envd = "./fake_init";
	struct rt_config cfg = {.state_dir = state, .instance = instance, .uid_base = UID_BASE,
				.uid_count = 65536, .envd_path = envd};
	cube_err err = {0};
	if (rt_init(&cfg, &err) < 0) {
		fprintf(stderr, "rt_init: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state_)
{
	(void)state_;
	cube_err err;
	int n = rt_reclaim(NULL, 0, &err);
	if (n != 0)
		fprintf(stderr, "teardown reclaimed %d sandbox(es) %s\n", n, n < 0 ? err.msg : "");
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rmdir /sys/fs/cgroup/*/cubesandbox/%s /sys/fs/cgroup/cubesandbox/%s 2>/dev/null", instance,
		 instance);
	if (system(cmd)) {}
	snprintf(cmd, sizeof cmd, "rm -rf %s", work);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

static unsigned cpu_millis = 1000;

static int start(const char *id, unsigned long long mem, unsigned pids, struct rt_sandbox *sb, cube_err *err)
{
	struct rt_spec spec = {.id = id, .rootfs = rootfs, .hostname = id, .cpu_millis = cpu_millis,
			       .memory_bytes = mem, .disk_bytes = 64ULL << 20, .pids_max = pids,
			       .envd_config = "{\"port\":49983}"};
	return rt_start(&spec, sb, err);
}

static void start_ok(const char *id, unsigned long long mem, unsigned pids, struct rt_sandbox *sb)
{
	cube_err err = {0};
	int rc = start(id, mem, pids, sb, &err);
	if (rc < 0)
		fail_msg("rt_start %s: %s", id, err.msg);
}

/* Run one shell command through the fixture's listener inside the sandbox; returns its output. */
static char *run(struct rt_sandbox *sb, const char *cmd)
{
	cube_err err = {0};
	int fd = rt_connect_socket(sb->netns_fd, &err);
	if (fd < 0)
		fail_msg("rt_connect_socket: %s", err.msg);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(PORT),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	assert_true(rc == 0 || errno == EINPROGRESS);
	fcntl(fd, F_SETFL, 0);
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	assert_int_equal(poll(&p, 1, 5000), 1);
	char line[4096];
	snprintf(line, sizeof line, "%s\n", cmd);
	assert_int_equal(cube_write_all(fd, line, strlen(line)), 0);
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	for (;;) {
		p = (struct pollfd){.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 20000) != 1)
			fail_msg("command '%s' timed out", cmd);
		ssize_t n = read(fd, out + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len + 1 >= cap)
			out = realloc(out, cap *= 2);
	}
	out[len] = '\0';
	close(fd);
	return out;
}

static void kill_ok(const char *id, struct rt_sandbox *sb)
{
	cube_err err = {0};
	if (rt_kill(id, sb, &err) < 0)
		fail_msg("rt_kill %s: %s", id, err.msg);
}

static int count_cgroups(const char *id)
{
	static const char *const ctls[] = {"cpu", "cpuacct", "memory", "pids", "freezer", ""};
	int n = 0;
	char path[512];
	struct stat st;
	for (size_t i = 0; i < CUBE_ARRAY_LEN(ctls); i++) {
		snprintf(path, sizeof path, "/sys/fs/cgroup/%s%scubesandbox/%s/%s", ctls[i], *ctls[i] ? "/" : "",
			 instance, id);
		if (stat(path, &st) == 0)
			n++;
	}
	return n;
}

static void assert_contains(const char *out, const char *needle, bool want)
{
	if ((strstr(out, needle) != NULL) != want)
		fail_msg("output %s \"%s\":\n%s", want ? "lacks" : "has", needle, out);
}
#define has(out, s) assert_contains(out, s, true)
#define lacks(out, s) assert_contains(out, s, false)

/* ---- tests ---- */

static void test_identity_and_visibility(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	start_ok("ident1", 256ULL << 20, 128, &sb);
	assert_true(sb.pid > 0);
	assert_true(sb.pidfd >= 0 && sb.netns_fd >= 0);
	assert_int_equal(count_cgroups("ident1") > 0, 1);

	char *out = run(&sb, "echo pid=$$; hostname; id -u; cat /proc/1/cmdline | tr -d '\\000'; echo; cat /etc/hostname");
	has(out, "ident1\n0\n/.cube/envd\nident1\n");
	free(out);

	/* Only the sandbox's own processes: envd, the shell and ls. */
	out = run(&sb, "ls /proc | grep -c '^[0-9]'");
	assert_true(atoi(out) <= 4);
	free(out);
	char mine[64];
	snprintf(mine, sizeof mine, "test -e /proc/%d/cmdline && echo visible || echo hidden", getpid());
	out = run(&sb, mine);
	assert_string_equal(out, "hidden\n");
	free(out);

	/* No host files: the work dir and this test's files are nowhere. */
	out = run(&sb, "ls / ; test -e /work && echo HOSTWORK; test -e /tmp/cube-rt-test-host && echo HOSTTMP; true");
	lacks(out, "HOST");
	lacks(out, "state");
	free(out);

	/* The root mount names no host path (the layers are given relative and through an fd). */
	out = run(&sb, "grep ' / / ' /proc/self/mountinfo");
	has(out, "overlay");
	lacks(out, work);
	free(out);

	/* Sandbox root is host uid_base, not host root. */
	struct stat st;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d", (int)sb.pid);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, UID_BASE);
	out = run(&sb, "cat /proc/self/uid_map; grep -E 'NoNewPrivs|Seccomp:|CapBnd' /proc/self/status");
	has(out, "200000000");
	has(out, "NoNewPrivs:\t1");
	has(out, "Seccomp:\t2");
	has(out, "CapBnd:\t00000000a80425fb");
	free(out);

	/* Only a loopback interface, and it is up. */
	out = run(&sb, "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags");
	assert_string_equal(out, "lo\nunknown\n0x9\n");
	free(out);

	/* /dev is minimal, the /etc files are there. */
	out = run(&sb, "ls /dev | tr '\\n' ' '; echo; cat /etc/hosts; echo x > /dev/null && echo devnull-ok");
	has(out, "null");
	lacks(out, "vda");
	has(out, "127.0.0.1\tlocalhost ident1");
	has(out, "devnull-ok");
	free(out);
	kill_ok("ident1", &sb);
	assert_int_equal(count_cgroups("ident1"), 0);
}

static void test_writes_are_private(void **s)
{
	(void)s;
	struct rt_sandbox a, b;
	start_ok("writea", 256ULL << 20, 128, &a);
	start_ok("writeb", 256ULL << 20, 128, &b);
	char *out = run(&a, "echo secret > /etc/marker && rm /bin/ls && echo tmp > /tmp/t && cat /etc/marker");
	assert_string_equal(out, "secret\n");
	free(out);
	char path[512];
	struct stat st;
	snprintf(path, sizeof path, "%s/etc/marker", rootfs);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof path, "%s/bin/ls", rootfs);
	assert_int_equal(lstat(path, &st), 0);
	out = run(&b, "cat /etc/marker 2>/dev/null || echo missing; test -e /bin/ls && echo ls-present; "
		      "test -e /tmp/t || echo tmp-missing");
	assert_string_equal(out, "missing\nls-present\ntmp-missing\n");
	free(out);
	/* A file created inside belongs to the shifted uid on the host side of the overlay. */
	out = run(&a, "touch /root/f && stat -c %u /root/f && stat -c %u /");
	assert_string_equal(out, "0\n0\n");
	free(out);
	kill_ok("writea", &a);
	kill_ok("writeb", &b);
}

/* A layer dir owned by sandbox root, as the layer store leaves them. */
static void layer_dir(const char *path)
{
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(chown(path, UID_BASE, UID_BASE), 0);
}

static void layer_file(const char *dir, const char *rel, const char *text)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chown(path, UID_BASE, UID_BASE), 0);
}

/* Templates from images are stacks of read-only layers: overlay whiteouts (char 0:0) hide lower files,
 * an opaque directory (trusted.overlay.opaque=y) hides a lower directory's contents, and a full stack of
 * RT_MAX_LAYERS layers with long host paths still mounts (the options name fds, not paths). */
static void test_layer_stack(void **s)
{
	(void)s;
	char mid[400], top[400], path[1024];
	snprintf(mid, sizeof mid, "%s/layer-mid", work);
	snprintf(top, sizeof top, "%s/layer-top", work);
	layer_dir(mid);
	snprintf(path, sizeof path, "%s/data", mid);
	layer_dir(path);
	snprintf(path, sizeof path, "%s/etc", mid);
	layer_dir(path);
	layer_file(mid, "data/keep", "keep\n");
	layer_file(mid, "data/gone", "gone\n");
	layer_file(mid, "etc/motd", "mid\n");
	snprintf(path, sizeof path, "%s/opaque", mid);
	layer_dir(path);
	layer_file(mid, "opaque/old", "old\n");

	layer_dir(top);
	snprintf(path, sizeof path, "%s/data", top);
	layer_dir(path);
	snprintf(path, sizeof path, "%s/data/gone", top);
	assert_int_equal(mknod(path, S_IFCHR | 0, makedev(0, 0)), 0);
	snprintf(path, sizeof path, "%s/opaque", top);
	layer_dir(path);
	assert_int_equal(setxattr(path, "trusted.overlay.opaque", "y", 1, 0), 0);
	layer_file(top, "opaque/new", "new\n");
	snprintf(path, sizeof path, "%s/etc", top);
	layer_dir(path);
	layer_file(top, "etc/motd", "top\n");

	const char *stack[] = {top, mid, rootfs};
	struct rt_spec spec = {.id = "layers1", .layers = stack, .n_layers = 3, .hostname = "layers1",
			       .memory_bytes = 128ULL << 20, .disk_bytes = 16ULL << 20, .pids_max = 64,
			       .envd_config = "{\"port\":49983}"};
	struct rt_sandbox sb;
	cube_err err = {0};
	if (rt_start(&spec, &sb, &err) < 0)
		fail_msg("rt_start layers1: %s", err.msg);
	char *out = run(&sb, "ls /data; ls /opaque; cat /etc/motd; test -e /bin/busybox && echo base; "
			     "rm /data/keep && ls /data | wc -l");
	assert_string_equal(out, "keep\nnew\ntop\nbase\n0\n");
	free(out);
	kill_ok("layers1", &sb);
	/* The sandbox's delete stayed in its writable layer. */
	snprintf(path, sizeof path, "%s/data/keep", mid);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);

	/* A writable layer kept in a host directory (template builds): after the sandbox is gone it holds the
	 * sandbox's changes in overlay form, a deletion as a 0:0 whiteout. */
	char keep_dir[400];
	snprintf(keep_dir, sizeof keep_dir, "%s/kept-upper", work);
	assert_int_equal(mkdir(keep_dir, 0700), 0);
	spec.id = "layersup";
	spec.upper_dir = keep_dir;
	if (rt_start(&spec, &sb, &err) < 0)
		fail_msg("rt_start layersup: %s", err.msg);
	out = run(&sb, "echo made > /data/made && rm /data/keep && echo ok");
	assert_string_equal(out, "ok\n");
	free(out);
	kill_ok("layersup", &sb);
	snprintf(path, sizeof path, "%s/upper/data/made", keep_dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_uid, UID_BASE);
	snprintf(path, sizeof path, "%s/upper/data/keep", keep_dir);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
	spec.upper_dir = NULL;

	/* RT_MAX_LAYERS layers under a 200-character directory name: 64 such paths would not fit the one
	 * page the kernel reads mount options from. */
	static char *many[RT_MAX_LAYERS];
	char deep[400];
	snprintf(deep, sizeof deep, "%s/%0200d", work, 0);
	layer_dir(deep);
	for (int i = 0; i < RT_MAX_LAYERS - 1; i++) {
		assert_true(asprintf(&many[i], "%s/layer-%02d", deep, i) > 0);
		layer_dir(many[i]);
		snprintf(path, sizeof path, "f%02d", i);
		layer_file(many[i], path, "x");
	}
	many[RT_MAX_LAYERS - 1] = rootfs;
	spec.id = "layers64";
	spec.layers = (const char *const *)many;
	spec.n_layers = RT_MAX_LAYERS;
	if (rt_start(&spec, &sb, &err) < 0)
		fail_msg("rt_start layers64: %s", err.msg);
	out = run(&sb, "ls / | grep -c '^f[0-9][0-9]$'");
	assert_string_equal(out, "63\n");
	free(out);
	kill_ok("layers64", &sb);
	spec.id = "layers65";
	spec.n_layers = RT_MAX_LAYERS + 1;
	assert_int_equal(rt_start(&spec, &sb, &err), -1);
	assert_int_equal(err.status, 400);
	for (int i = 0; i < RT_MAX_LAYERS - 1; i++)
		free(many[i]);
}

static void test_dangerous_syscalls_fail(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	start_ok("sys1", 256ULL << 20, 128, &sb);
	char *out = run(&sb, "/.cube/envd trysys");
	has(out, "mount=1\n");
	has(out, "bpf=1\n");
	has(out, "unshare=1\n");
	has(out, "reboot=1\n");
	has(out, "init_module=1\n");
	has(out, "sethostname=1\n");
	has(out, "clone_newns=1\n");
	has(out, "keyctl=1\n");
	has(out, "personality=1\n");
	has(out, "personality_query=ok0\n");
	free(out);
	/* Only the native ABI: x32 and i386 system calls kill the caller (SIGSYS = 31). */
	out = run(&sb, "/.cube/envd x32; echo rc=$?; /.cube/envd int80; echo rc=$?");
	assert_string_equal(out, "Bad system call\nrc=159\nBad system call\nrc=159\n");
	free(out);
	/* Even root inside cannot write what the host owns. */
	out = run(&sb, "(echo 1 > /proc/sys/vm/overcommit_memory) 2>/dev/null || echo ro; cat /proc/keys | wc -c; "
		      "(echo x > /.cube/envd) 2>/dev/null || echo envd-ro; ls /sys/firmware | wc -l");
	assert_string_equal(out, "ro\n0\nenvd-ro\n0\n");
	free(out);
	/* A command as `user` (what envd does for user "user") has no capabilities and no root files. */
	out = run(&sb, "su -s /bin/sh user -c "
		      "'id -u; grep CapEff /proc/self/status; (echo x > /root/x) 2>/dev/null || echo denied'");
	assert_string_equal(out, "1000\nCapEff:\t0000000000000000\ndenied\n");
	free(out);
	kill_ok("sys1", &sb);
}

static void test_memory_bomb_is_contained(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	start_ok("mem1", 64ULL << 20, 128, &sb);
	char *out = run(&sb, "/.cube/envd membomb 400; echo rc=$?");
	lacks(out, "survived");
	has(out, "rc=137");
	free(out);
	out = run(&sb, "echo alive");
	assert_string_equal(out, "alive\n");
	free(out);
	kill_ok("mem1", &sb);
}

static void test_fork_bomb_hits_pids_max(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	start_ok("fork1", 256ULL << 20, 32, &sb);
	char *out = run(&sb, "/.cube/envd forkbomb 5000");
	int forks = -1, e = -1;
	assert_int_equal(sscanf(out, "forks=%d errno=%d", &forks, &e), 2);
	assert_true(forks < 32);
	assert_int_equal(e, EAGAIN);
	free(out);
	out = run(&sb, "echo alive");
	assert_string_equal(out, "alive\n");
	free(out);
	kill_ok("fork1", &sb);
}

static void test_kill_is_complete_and_idempotent(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	start_ok("kill1", 256ULL << 20, 128, &sb);
	free(run(&sb, "sleep 1000 >/dev/null 2>&1 & sleep 1000 >/dev/null 2>&1 & echo started"));
	pid_t pid = sb.pid;
	kill_ok("kill1", &sb);
	assert_int_equal(count_cgroups("kill1"), 0);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(sb.pidfd, -1);
	assert_int_equal(sb.netns_fd, -1);
	kill_ok("kill1", &sb);
	kill_ok("kill1", NULL);
}

static void test_reclaim_removes_leftovers(void **s)
{
	(void)s;
	struct rt_sandbox keep, lost;
	start_ok("keep1", 256ULL << 20, 128, &keep);
	start_ok("lost1", 256ULL << 20, 128, &lost);
	char path[512];
	snprintf(path, sizeof path, "/sys/fs/cgroup/memory/cubesandbox/%s/stale1", instance);
	mkdir(path, 0755); /* a leftover of a crashed instance (v1 layout on this machine) */
	const char *live[] = {"keep1"};
	cube_err err = {0};
	int n = rt_reclaim(live, 1, &err);
	assert_true(n >= 2);
	assert_int_equal(count_cgroups("lost1"), 0);
	assert_int_equal(count_cgroups("stale1"), 0);
	assert_true(count_cgroups("keep1") > 0);
	rt_reap();
	assert_int_equal(kill(lost.pid, 0), -1);
	close(lost.pidfd);
	close(lost.netns_fd);
	char *out = run(&keep, "echo alive");
	assert_string_equal(out, "alive\n");
	free(out);
	kill_ok("keep1", &keep);
}

static void test_adopt(void **s)
{
	(void)s;
	struct rt_sandbox sb, again;
	cube_err err = {0};
	start_ok("adopt1", 256ULL << 20, 128, &sb);
	assert_int_equal(rt_adopt("adopt1", sb.pid, sb.start_time, &again, &err), 0);
	char *out = run(&again, "hostname");
	assert_string_equal(out, "adopt1\n");
	free(out);
	close(again.pidfd);
	close(again.netns_fd);
	assert_int_equal(rt_adopt("adopt1", sb.pid, sb.start_time + 1, &again, &err), -1);
	assert_int_equal(rt_adopt("other1", sb.pid, sb.start_time, &again, &err), -1);
	assert_int_equal(rt_adopt("adopt1", getpid(), sb.start_time, &again, &err), -1);
	kill_ok("adopt1", &sb);
	assert_int_equal(rt_adopt("adopt1", sb.pid, sb.start_time, &again, &err), -1);
}

/* What a CRIU restore is checked against before it may serve (runtime/criu.c): a booted sandbox passes,
 * processes that are not confined like one do not. */
static void test_confinement_check(void **s)
{
	(void)s;
	struct rt_sandbox sb, other;
	cube_err err = {0};
	start_ok("conf1", 256ULL << 20, 128, &sb);
	if (rt_check_confined("conf1", sb.pid, sb.netns_fd, &err) < 0)
		fail_msg("a booted sandbox fails the check: %s", err.msg);
	/* another sandbox's init: not in this cgroup, nor in this network namespace */
	start_ok("conf2", 256ULL << 20, 128, &other);
	assert_int_equal(rt_check_confined("conf1", other.pid, sb.netns_fd, &err), -1);
	assert_non_null(strstr(err.msg, "not in the cgroup"));
	assert_int_equal(rt_check_confined("conf2", other.pid, sb.netns_fd, &err), -1);
	assert_non_null(strstr(err.msg, "network namespace"));
	/* a process of the sandbox's cgroup that shares the host's namespaces: cubed's own child moved in */
	pid_t child = fork();
	if (child == 0) {
		pause();
		_exit(0);
	}
	char path[256], pidtxt[16];
	snprintf(pidtxt, sizeof pidtxt, "%d", (int)child);
	snprintf(path, sizeof path, "/sys/fs/cgroup/cubesandbox/%s/conf1/cgroup.procs", instance);
	int moved = cube_write_file(path, pidtxt) == 0;
	snprintf(path, sizeof path, "/sys/fs/cgroup/freezer/cubesandbox/%s/conf1/tasks", instance);
	if (!moved)
		moved = cube_write_file(path, pidtxt) == 0;
	assert_true(moved);
	assert_int_equal(rt_check_confined("conf1", child, -1, &err), -1);
	assert_non_null(strstr(err.msg, "shares cubed's mnt namespace"));
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	kill_ok("conf1", &sb);
	kill_ok("conf2", &other);
}

/* A TEST DOUBLE for the `criu` binary (failure path only; nothing here checkpoints anything): it passes
 * `check`, and for dump/restore writes down what it was given and the environment it runs in (its
 * arguments, fd 3, its cgroups, what --root shows) to <work>/seen-<command>, writes criu's kind of error
 * line into its --log-file and fails. The tests check that what our runtime prepares for criu is right,
 * and that a failure leaves nothing behind. */
static char criu_double[300];

static void write_criu_double(void)
{
	snprintf(criu_double, sizeof criu_double, "%s/criu-test-double", work);
	FILE *f = fopen(criu_double, "w");
	assert_non_null(f);
	fprintf(f,
		"#!/bin/sh\n"
		"cmd=$1\n"
		"case \"$cmd\" in --version) echo 'Version: 3.17.1'; exit 0 ;; check) exit 0 ;; esac\n"
		"out=%s/seen-$cmd; echo \"args $*\" > $out\n"
		"log=; dir=; root=\n"
		"while [ $# -gt 0 ]; do case \"$1\" in --log-file) log=$2 ;; --work-dir) dir=$2 ;; --root) root=$2 ;; esac; shift; done\n"
		"echo \"fd3 $(readlink /proc/self/fd/3)\" >> $out\n"
		"grep -E ':(freezer|pids|memory|cpu[^:]*)?:' /proc/self/cgroup | sed 's/^/cgroup /' >> $out\n"
		"if [ -n \"$root\" ]; then test -x \"$root/bin/busybox\" && echo root-has-busybox >> $out;\n"
		"  awk -v r=\"$root\" '$5 == r { print \"root-mount \" $0 }' /proc/self/mountinfo >> $out; fi\n"
		"echo \"Error (test-double.c:1): $cmd refused by the test double\" > \"$dir/$log\"\n"
		"exit 1\n",
		work);
	fclose(f);
	chmod(criu_double, 0755);
}

static char *read_seen(const char *cmd)
{
	char path[400];
	snprintf(path, sizeof path, "%s/seen-%s", work, cmd);
	char *text = cube_read_file(path, NULL);
	if (!text)
		fail_msg("the criu test double did not run %s", cmd);
	return text;
}

static void test_criu_dump_failure_keeps_the_sandbox_frozen(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	cube_err err = {0};
	char images[400];
	write_criu_double();
	rt_criu_detect(criu_double, false, RT_CRIU_CHECK_TIMEOUT_MS);
	assert_true(rt_criu_status()->available);
	start_ok("ckpt1", 128ULL << 20, 64, &sb);
	free(run(&sb, "sleep 600 >/dev/null 2>&1 & echo ok"));
	assert_int_equal(rt_freeze("ckpt1", &sb, &err), 0);
	snprintf(images, sizeof images, "%s/images-ckpt1", work);
	assert_int_equal(mkdir(images, 0700), 0);
	assert_int_equal(rt_checkpoint("ckpt1", &sb, images, &err), -1);
	assert_string_equal(err.msg, "criu dump failed (exit status 1): dump refused by the test double");
	char *seen = read_seen("dump");
	char want[600];
	snprintf(want, sizeof want, "args dump --tree %d --images-dir %s --work-dir %s --log-file dump.log", (int)sb.pid,
		 images, images);
	has(seen, want);
	snprintf(want, sizeof want, "--freeze-cgroup /sys/fs/cgroup/%scubesandbox/%s/ckpt1 --leave-running",
		 count_cgroups("ckpt1") > 1 ? "freezer/" : "", instance);
	has(seen, want);
	struct stat ns;
	assert_int_equal(fstat(sb.netns_fd, &ns), 0);
	snprintf(want, sizeof want, "--external net[%llu]:cube-net --external mnt[/.cube/envd]:cube-envd",
		 (unsigned long long)ns.st_ino);
	has(seen, want);
	free(seen);
	/* still there and frozen: the caller decides (it ends the processes, files are kept) */
	char path[512];
	snprintf(path, sizeof path, "/sys/fs/cgroup/freezer/cubesandbox/%s/ckpt1/freezer.state", instance);
	char *state = cube_read_file(path, NULL);
	if (state) {
		assert_string_equal(state, "FROZEN\n");
		free(state);
	}
	assert_int_equal(kill(sb.pid, 0), 0);
	/* refused before criu runs: a non-empty images dir */
	assert_int_equal(rt_checkpoint("ckpt1", &sb, images, &err), -1);
	assert_non_null(strstr(err.msg, "not an empty directory"));
	kill_ok("ckpt1", &sb);
	rt_criu_detect(NULL, true, 0);
	assert_int_equal(rt_checkpoint("ckpt1", &sb, images, &err), -1);
	assert_int_equal(err.status, 501);
}

static void test_criu_restore_failure_leaves_nothing(void **s)
{
	(void)s;
	struct rt_sandbox sb = {.pid = 77, .pidfd = 77, .netns_fd = 77};
	cube_err err = {0};
	char images[400], log_path[400];
	write_criu_double();
	rt_criu_detect(criu_double, false, RT_CRIU_CHECK_TIMEOUT_MS);
	snprintf(images, sizeof images, "%s/images-rst1", work);
	assert_int_equal(mkdir(images, 0700), 0);
	struct rt_spec spec = {.id = "rst1", .rootfs = rootfs, .hostname = "rst1", .cpu_millis = 500,
			       .memory_bytes = 128ULL << 20, .disk_bytes = 64ULL << 20, .pids_max = 64};
	/* no checkpoint in the dir: refused before anything is made */
	assert_int_equal(rt_restore(&spec, images, &sb, &err), -1);
	assert_non_null(strstr(err.msg, "no checkpoint"));
	assert_int_equal(sb.pidfd, -1);
	char path[600];
	snprintf(path, sizeof path, "%s/inventory.img", images);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(path, sizeof path, "%s/cube-stdio", images);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("4242\n", f);
	fclose(f);
	/* envd's log: a pipe, handed to criu on fd 4 */
	int lp[2];
	assert_int_equal(pipe(lp), 0);
	snprintf(log_path, sizeof log_path, "/proc/self/fd/%d", lp[1]);
	spec.log_path = log_path;
	assert_int_equal(rt_restore(&spec, images, &sb, &err), -1);
	assert_string_equal(err.msg, "criu restore failed (exit status 1): restore refused by the test double");
	close(lp[0]);
	close(lp[1]);
	char *seen = read_seen("restore");
	if (getenv("RT_TEST_VERBOSE"))
		printf("# %s", seen);
	char want[1200];
	snprintf(want, sizeof want, "--root %s/sandboxes/.layer/root --restore-detached --restore-sibling --pidfile %s/restore.pid",
		 state, images);
	has(seen, want);
	has(seen, "--inherit-fd fd[3]:cube-net --inherit-fd fd[4]:pipe[4242]");
	has(seen, "fd3 net:[");
	/* criu ran in the sandbox's new cgroups and saw the overlay root built from the layers */
	snprintf(want, sizeof want, "/cubesandbox/%s/rst1\n", instance);
	has(seen, want);
	has(seen, "root-has-busybox");
	has(seen, " - overlay overlay ");
	free(seen);
	/* and nothing is left: no cgroup, no layer mount, no host mount of the overlay */
	assert_int_equal(count_cgroups("rst1"), 0);
	snprintf(path, sizeof path, "%s/sandboxes/rst1", state);
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	char *mounts = cube_read_file("/proc/self/mountinfo", NULL);
	lacks(mounts, "/sandboxes/.layer/root");
	lacks(mounts, "/sandboxes/rst1/");
	free(mounts);
	assert_int_equal(sb.pidfd, -1);
	assert_int_equal(sb.netns_fd, -1);
	rt_criu_detect(NULL, true, 0);
}

static void test_stats(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	struct rt_stats st;
	cube_err err = {0};
	start_ok("stats1", 128ULL << 20, 128, &sb);
	free(run(&sb, "head -c 5000000 /dev/zero > /root/blob; echo done"));
	assert_int_equal(rt_stats("stats1", &sb, &st, &err), 0);
	assert_int_equal(st.mem_limit, 128ULL << 20);
	assert_true(st.mem_used > 0);
	assert_true(st.pids >= 1);
	assert_true(st.cpu_usage_ns > 0);
	assert_int_equal(st.disk_total, 64ULL << 20);
	assert_true(st.disk_used >= 5000000);
	/* The writable layer is size-limited. */
	char *out = run(&sb, "head -c 100000000 /dev/zero > /root/big 2>/dev/null || echo full");
	assert_string_equal(out, "full\n");
	free(out);
	kill_ok("stats1", &sb);
	assert_int_equal(rt_stats("stats1", NULL, &st, &err), -1);
}

static void test_cpu_quota(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	struct rt_stats before, after;
	cube_err err = {0};
	cpu_millis = 200; /* a fifth of a core */
	start_ok("cpu1", 128ULL << 20, 64, &sb);
	cpu_millis = 1000;
	assert_int_equal(rt_stats("cpu1", &sb, &before, &err), 0);
	free(run(&sb, "/.cube/envd spin 600"));
	assert_int_equal(rt_stats("cpu1", &sb, &after, &err), 0);
	unsigned long long used_ms = (after.cpu_usage_ns - before.cpu_usage_ns) / 1000000;
	/* Two spinners for 600 ms would use ~1200 ms of CPU unthrottled; the quota allows ~120 ms. */
	if (used_ms > 350)
		fail_msg("cpu quota not applied: %llu ms of CPU in 600 ms", used_ms);
	kill_ok("cpu1", &sb);
}

static unsigned long long cpu_ns(const char *id, struct rt_sandbox *sb)
{
	struct rt_stats st;
	cube_err err = {0};
	if (rt_stats(id, sb, &st, &err) < 0)
		fail_msg("rt_stats %s: %s", id, err.msg);
	return st.cpu_usage_ns;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Pause keeps every process and its memory but gives it no CPU; thaw continues where it stopped. */
static void test_freeze_and_thaw(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	cube_err err = {0};
	start_ok("frz1", 128ULL << 20, 64, &sb);
	free(run(&sb, "(i=0; while :; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/count; done) >/dev/null 2>&1 & echo ok"));
	sleep_ms(100);
	assert_int_equal(rt_freeze("frz1", &sb, &err), 0);
	assert_int_equal(rt_freeze("frz1", &sb, &err), 0); /* idempotent */
	char path[512];
	snprintf(path, sizeof path, "/sys/fs/cgroup/freezer/cubesandbox/%s/frz1/freezer.state", instance);
	char *state = cube_read_file(path, NULL);
	if (state) { /* v1 layout (this machine); on v2 cgroup.events is what rt_freeze waited for */
		assert_string_equal(state, "FROZEN\n");
		free(state);
	}
	unsigned long long c0 = cpu_ns("frz1", &sb);
	sleep_ms(300);
	unsigned long long c1 = cpu_ns("frz1", &sb);
	if (c1 - c0 > 2000000ULL)
		fail_msg("a frozen sandbox used %llu ns of CPU in 300 ms", c1 - c0);
	assert_int_equal(rt_thaw("frz1", &sb, &err), 0);
	assert_int_equal(rt_thaw("frz1", &sb, &err), 0);
	/* The loop runs again: the counter moves on (polled: the host may be busy). */
	char *a = run(&sb, "cat /tmp/count");
	long moved = 0;
	for (int i = 0; i < 60 && moved <= 0; i++) {
		sleep_ms(50);
		char *b = run(&sb, "cat /tmp/count");
		moved = atol(b) - atol(a);
		free(b);
	}
	free(a);
	assert_true(moved > 0);
	assert_true(cpu_ns("frz1", &sb) > c1);
	assert_int_equal(rt_freeze("nosuch1", NULL, &err), -1);
	assert_int_equal(err.status, 404);
	assert_int_equal(rt_freeze("../x", NULL, &err), -1);
	assert_int_equal(err.status, 400);
	kill_ok("frz1", &sb);
}

/* Kill and reclaim must not hang on frozen tasks (a v1 frozen task ignores SIGKILL until thawed). */
static void test_kill_and_reclaim_frozen(void **s)
{
	(void)s;
	struct rt_sandbox a, b;
	cube_err err = {0};
	start_ok("frz2", 128ULL << 20, 64, &a);
	start_ok("frz3", 128ULL << 20, 64, &b);
	free(run(&a, "sleep 1000 >/dev/null 2>&1 & echo ok"));
	free(run(&b, "sleep 1000 >/dev/null 2>&1 & echo ok"));
	assert_int_equal(rt_freeze("frz2", &a, &err), 0);
	assert_int_equal(rt_freeze("frz3", &b, &err), 0);
	long long t0 = cube_mono_ms();
	kill_ok("frz2", &a);
	assert_int_equal(count_cgroups("frz2"), 0);
	const char *live[] = {"none"};
	assert_true(rt_reclaim(live, 1, &err) >= 1);
	assert_int_equal(count_cgroups("frz3"), 0);
	/* A hang guard, not a speed test: kill and reclaim must not wait on frozen tasks. */
	assert_true(cube_mono_ms() - t0 < 10000);
	/* SIGKILL is delivered at once but the exit itself takes a moment on a loaded machine: reap until
	 * the init is gone (bounded). */
	for (int i = 0; i < 500 && (rt_reap(), kill(b.pid, 0) == 0); i++)
		usleep(10000);
	assert_int_equal(kill(b.pid, 0), -1);
	close(b.pidfd);
	close(b.netns_fd);
}

/* A pause racing a kill (each in its own worker thread in cubed): freezes that land after the kill's
 * thaw must not leave init frozen with SIGKILL pending, so that rt_kill waits forever. */
struct freezer_race {
	char path[512];
	atomic_bool stop;
};

static void *keep_freezing(void *arg)
{
	struct freezer_race *fr = arg;
	long long end = cube_mono_ms() + 1500;
	while (!atomic_load(&fr->stop) && cube_mono_ms() < end) {
		cube_write_file(fr->path, fr->path[strlen(fr->path) - 1] == 'e' ? "FROZEN" : "1");
		usleep(500);
	}
	return NULL;
}

static void test_kill_races_a_freeze(void **s)
{
	(void)s;
	for (int round = 0; round < 5; round++) {
		struct rt_sandbox sb;
		start_ok("frz4", 128ULL << 20, 64, &sb);
		free(run(&sb, "for i in 1 2 3 4; do sleep 1000 >/dev/null 2>&1 & done; echo ok"));
		struct freezer_race fr = {0};
		snprintf(fr.path, sizeof fr.path, "/sys/fs/cgroup/freezer/cubesandbox/%s/frz4/freezer.state", instance);
		if (access(fr.path, F_OK) < 0) /* v2 */
			snprintf(fr.path, sizeof fr.path, "/sys/fs/cgroup/cubesandbox/%s/frz4/cgroup.freeze", instance);
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, keep_freezing, &fr), 0);
		usleep((useconds_t)(round * 300));
		long long t0 = cube_mono_ms();
		kill_ok("frz4", &sb);
		atomic_store(&fr.stop, true);
		pthread_join(t, NULL);
		/* A hang guard, not a speed test. */
		assert_true(cube_mono_ms() - t0 < 10000);
		assert_int_equal(count_cgroups("frz4"), 0);
	}
}

static void test_start_errors_are_clear(void **s)
{
	(void)s;
	struct rt_sandbox sb;
	cube_err err = {0};
	struct rt_spec spec = {.id = "bad1", .rootfs = "/nonexistent/rootfs", .envd_config = "{}"};
	assert_int_equal(rt_start(&spec, &sb, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/rootfs"));
	assert_int_equal(count_cgroups("bad1"), 0);

	spec.rootfs = rootfs;
	spec.envd_config = "{\"exit\":7}";
	char log[400];
	snprintf(log, sizeof log, "%s/bad1.log", work);
	spec.log_path = log;
	memset(&err, 0, sizeof err);
	assert_int_equal(rt_start(&spec, &sb, &err), -1);
	assert_non_null(strstr(err.msg, "exit status 7"));
	/* envd's stdout and stderr go to log_path. */
	FILE *f = fopen(log, "r");
	char line[128] = "";
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof line, f));
	fclose(f);
	assert_string_equal(line, "fake_init: exiting with 7 as configured\n");
	assert_int_equal(count_cgroups("bad1"), 0);

	/* A second sandbox with a live one's id is refused and leaves the first alone. */
	struct rt_sandbox first;
	start_ok("dup1", 128ULL << 20, 64, &first);
	assert_int_equal(start("dup1", 128ULL << 20, 64, &sb, &err), -1);
	assert_int_equal(err.status, 409);
	char *out = run(&first, "echo alive");
	assert_string_equal(out, "alive\n");
	free(out);
	kill_ok("dup1", &first);

	/* envd that never signals ready: killed after the timeout, nothing left behind. */
	spec.id = "slow1";
	spec.envd_config = "{\"noready\":1}";
	spec.ready_timeout_ms = 300;
	spec.log_path = NULL;
	assert_int_equal(rt_start(&spec, &sb, &err), -1);
	has(err.msg, "did not signal ready within 300 ms");
	has(err.msg, "killed by signal 9");
	assert_int_equal(count_cgroups("slow1"), 0);

	spec.id = "Bad/../id";
	assert_int_equal(rt_start(&spec, &sb, &err), -1);
	assert_int_equal(err.status, 400);
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

struct par {
	char id[16];
	struct rt_sandbox sb;
	int rc;
	cube_err err;
	long long us;
};

static void *start_thread(void *arg)
{
	struct par *p = arg;
	long long t0 = now_us();
	p->rc = start(p->id, 128ULL << 20, 64, &p->sb, &p->err);
	p->us = now_us() - t0;
	return NULL;
}

/* Creation runs in cubed's libuv worker threads: 20 at once, as the benchmark's concurrency 20. */
static void test_concurrent_starts(void **s)
{
	(void)s;
	enum { N = 20 };
	struct par ps[N];
	pthread_t t[N];
	long long us[N];
	for (int i = 0; i < N; i++) {
		memset(&ps[i], 0, sizeof ps[i]);
		snprintf(ps[i].id, sizeof ps[i].id, "par%d", i);
		pthread_create(&t[i], NULL, start_thread, &ps[i]);
	}
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < N; i++) {
		us[i] = ps[i].us;
		if (ps[i].rc < 0)
			fail_msg("%s: %s", ps[i].id, ps[i].err.msg);
		char *out = run(&ps[i].sb, "hostname");
		assert_string_equal(out, strcat(strcpy((char[32]){0}, ps[i].id), "\n"));
		free(out);
	}
	qsort(us, N, sizeof us[0], cmp_ll);
	printf("# concurrency %d: create p50 %.2f ms max %.2f ms\n", N, us[N / 2] / 1000.0, us[N - 1] / 1000.0);
	for (int i = 0; i < N; i++)
		kill_ok(ps[i].id, &ps[i].sb);
}

/* Not a timed test: prints the medians (docs/benchmarks.md takes them from bench/). */
static void test_create_kill_latency(void **s)
{
	(void)s;
	enum { N = 30 };
	long long create[N], destroy[N];
	for (int i = 0; i < N; i++) {
		char id[16];
		struct rt_sandbox sb;
		snprintf(id, sizeof id, "lat%d", i);
		long long t0 = now_us();
		start_ok(id, 256ULL << 20, 128, &sb);
		long long t1 = now_us();
		kill_ok(id, &sb);
		long long t2 = now_us();
		create[i] = t1 - t0;
		destroy[i] = t2 - t1;
	}
	qsort(create, N, sizeof create[0], cmp_ll);
	qsort(destroy, N, sizeof destroy[0], cmp_ll);
	printf("# create p50 %.2f ms p90 %.2f ms; kill p50 %.2f ms p90 %.2f ms (n=%d)\n", create[N / 2] / 1000.0,
	       create[N * 9 / 10] / 1000.0, destroy[N / 2] / 1000.0, destroy[N * 9 / 10] / 1000.0, N);
	assert_true(create[N / 2] < 1000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_and_visibility),
		cmocka_unit_test(test_writes_are_private),
		cmocka_unit_test(test_layer_stack),
		cmocka_unit_test(test_dangerous_syscalls_fail),
		cmocka_unit_test(test_memory_bomb_is_contained),
		cmocka_unit_test(test_fork_bomb_hits_pids_max),
		cmocka_unit_test(test_kill_is_complete_and_idempotent),
		cmocka_unit_test(test_reclaim_removes_leftovers),
		cmocka_unit_test(test_adopt),
		cmocka_unit_test(test_confinement_check),
		cmocka_unit_test(test_criu_dump_failure_keeps_the_sandbox_frozen),
		cmocka_unit_test(test_criu_restore_failure_leaves_nothing),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_cpu_quota),
		cmocka_unit_test(test_freeze_and_thaw),
		cmocka_unit_test(test_kill_and_reclaim_frozen),
		cmocka_unit_test(test_kill_races_a_freeze),
		cmocka_unit_test(test_start_errors_are_clear),
		cmocka_unit_test(test_concurrent_starts),
		cmocka_unit_test(test_create_kill_latency),
	};
	if (geteuid() != 0) {
		printf("# skipped: runtime tests start real sandboxes and need root\n");
		return 77; /* meson: skipped */
	}
	if (getenv("RT_TEST_FILTER"))
		cmocka_set_test_filter(getenv("RT_TEST_FILTER"));
	return cmocka_run_group_tests_name("runtime", tests, group_setup, group_teardown);
}
