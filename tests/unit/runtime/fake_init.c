/* Test fixture standing in for cube-envd (never shipped): as PID 1 of a test sandbox it reads its config
 * from fd 3, listens on the "port" it names (default 49983), writes the ready byte on fd 4 and then runs
 * each connection's one-line command with /bin/sh, output to the connection. Run inside the sandbox as
 * `/.cube/envd membomb|forkbomb|trysys`, it is also the tool the isolation tests use. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int membomb(long mb)
{
	for (long i = 0; i < mb; i++) {
		char *p = malloc(1 << 20);
		if (!p) {
			printf("malloc failed at %ld MB\n", i);
			return 1;
		}
		memset(p, 1, 1 << 20);
	}
	printf("survived %ld MB\n", mb);
	return 0;
}

static int forkbomb(int max)
{
	int n = 0, err = 0;
	pid_t *kids = calloc((size_t)max, sizeof *kids);
	for (; n < max; n++) {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		kids[n] = pid;
	}
	printf("forks=%d errno=%d\n", n, err);
	fflush(stdout);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}

static int trysys(void)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	struct { const char *name; long rc; int err; } r[12];
	int n = 0;
#define TRY(label, call) do { errno = 0; long rc_ = (long)(call); r[n].name = label; r[n].rc = rc_; r[n].err = errno; n++; } while (0)
	TRY("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
	TRY("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
	TRY("unshare", unshare(CLONE_NEWUSER));
	TRY("reboot", reboot(RB_DISABLE_CAD));
	TRY("init_module", syscall(SYS_init_module, NULL, 0, ""));
	TRY("sethostname", sethostname("evil", 4));
	TRY("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
	TRY("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
	TRY("personality", personality(ADDR_NO_RANDOMIZE));
	TRY("personality_query", personality(0xffffffff) < 0 ? -1 : 0);
	for (int i = 0; i < n; i++) {
		if (r[i].rc == 0 && strcmp(r[i].name, "clone_newns") == 0)
			_exit(0); /* should never happen; the child leaves */
		printf("%s=%s%d\n", r[i].name, r[i].rc < 0 ? "" : "ok", r[i].rc < 0 ? r[i].err : 0);
	}
	return 0;
}

static void serve(int conn)
{
	char cmd[4096];
	size_t len = 0;
	while (len < sizeof cmd - 1) {
		ssize_t k = read(conn, cmd + len, sizeof cmd - 1 - len);
		if (k <= 0)
			break;
		len += (size_t)k;
		if (memchr(cmd, '\n', len))
			break;
	}
	cmd[len] = '\0';
	char *nl = strchr(cmd, '\n');
	if (nl)
		*nl = '\0';
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGCHLD, SIG_DFL);
		int fd = open("/proc/self/oom_score_adj", O_WRONLY); /* as the real envd does */
		if (fd >= 0) {
			if (write(fd, "0", 1) < 0) {}
			close(fd);
		}
		int null = open("/dev/null", O_RDONLY);
		dup2(null, 0);
		dup2(conn, 1);
		dup2(conn, 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(conn);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "membomb") == 0)
		return membomb(argc > 2 ? atol(argv[2]) : 512);
	if (argc > 1 && strcmp(argv[1], "forkbomb") == 0)
		return forkbomb(argc > 2 ? atoi(argv[2]) : 1000);
	if (argc > 1 && strcmp(argv[1], "trysys") == 0)
		return trysys();
	if (argc > 2 && strcmp(argv[1], "spin") == 0) { /* two busy processes for argv[2] ms of wall time */
		long ms = atol(argv[2]);
		for (int i = 0; i < 2; i++)
			if (fork() == 0) {
				struct timespec t0, t;
				clock_gettime(CLOCK_MONOTONIC, &t0);
				do
					clock_gettime(CLOCK_MONOTONIC, &t);
				while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
				_exit(0);
			}
		while (wait(NULL) > 0)
			;
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "x32") == 0) { /* the x32 ABI is refused: this should not return */
		long rc = syscall(0x40000000 | SYS_getpid);
		printf("x32 getpid returned %ld\n", rc);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "int80") == 0) { /* the i386 ABI likewise */
		long rc;
		__asm__ volatile("int $0x80" : "=a"(rc) : "a"(20) : "memory"); /* i386 getpid */
		printf("int80 getpid returned %ld\n", rc);
		return 0;
	}

	char conf[4096];
	ssize_t n = read(3, conf, sizeof conf - 1);
	conf[n > 0 ? n : 0] = '\0';
	close(3);
	if (strstr(conf, "\"exit\":")) { /* lets a test see a start failure */
		int code = atoi(strstr(conf, "\"exit\":") + 7);
		fprintf(stderr, "fake_init: exiting with %d as configured\n", code);
		return code;
	}
	if (strstr(conf, "\"noready\":")) /* lets a test see the ready timeout */
		for (;;)
			pause();
	int port = 49983;
	if (strstr(conf, "\"port\":"))
		port = atoi(strstr(conf, "\"port\":") + 7);
	signal(SIGCHLD, SIG_IGN); /* PID 1 reaps everything, orphans included */
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 64) < 0) {
		perror("listen");
		return 2;
	}
	if (write(4, "R", 1) != 1)
		return 3;
	close(4);
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			serve(c);
	}
}
