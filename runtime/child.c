/* The sandbox child, from clone(2) to execve of envd. It starts as host root inside fresh mount, PID,
 * network, UTS and IPC namespaces, builds the root filesystem, then enters its own user and cgroup
 * namespaces last, drops privileges and execs envd as PID 1. It runs in the child of a multi-threaded
 * process, so it only makes system calls and reads the plan the parent prepared (no allocation, no
 * stdio, no locks), in the manner of libuv's uv_spawn. Every failure is reported over the sync socket. */
#include "runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/mount.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Docker's default capability set. These are capabilities within the sandbox's user namespace, which
 * owns no other namespace: they act on the sandbox's own files and processes only. */
static const int kept_caps[] = {
	CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,
	CAP_NET_BIND_SERVICE, CAP_NET_RAW, CAP_SYS_CHROOT, CAP_MKNOD, CAP_AUDIT_WRITE, CAP_SETFCAP,
};

static size_t append(char *dst, size_t pos, size_t cap, const char *src)
{
	while (src && *src && pos + 1 < cap)
		dst[pos++] = *src++;
	dst[pos] = '\0';
	return pos;
}

void child_die(const struct start_plan *p, int errnum, const char *what, const char *detail)
{
	struct child_error e;
	memset(&e, 0, sizeof e);
	e.tag = SYNC_ERROR;
	e.errnum = errnum;
	size_t n = append(e.what, 0, sizeof e.what, what);
	if (detail) {
		n = append(e.what, n, sizeof e.what, " ");
		append(e.what, n, sizeof e.what, detail);
	}
	send(p->sync_fd, &e, sizeof e, MSG_NOSIGNAL);
	_exit(127);
}

static void expect(const struct start_plan *p, char want)
{
	char c = 0;
	ssize_t n;
	do
		n = recv(p->sync_fd, &c, 1, 0);
	while (n < 0 && errno == EINTR);
	if (n != 1 || c != want)
		_exit(126); /* the parent gave up on us */
}

static void tell(const struct start_plan *p, char c)
{
	if (send(p->sync_fd, &c, 1, MSG_NOSIGNAL) != 1)
		_exit(126);
}

static void write_knob(const struct start_plan *p, const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0)
		child_die(p, errno, "write", path);
	close(fd);
}

/* Close every inherited descriptor except the plan's (other threads may have opened anything). */
static void close_inherited(const struct start_plan *p)
{
	int keep[5] = {p->sync_fd, p->ready_fd, p->config_fd, p->log_fd, p->netns_fd}, n = 0;
	int sorted[5];
	for (int i = 0; i < 5; i++) {
		if (keep[i] < 0)
			continue;
		int j = n++;
		while (j > 0 && sorted[j - 1] > keep[i]) {
			sorted[j] = sorted[j - 1];
			j--;
		}
		sorted[j] = keep[i];
	}
	unsigned lo = 3;
	for (int i = 0; i < n; i++) {
		if ((unsigned)sorted[i] > lo)
			syscall(SYS_close_range, lo, (unsigned)sorted[i] - 1, 0);
		lo = (unsigned)sorted[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0U, 0);
}

/* The loopback interface of the new network namespace starts down. The namespace belongs to the init
 * user namespace, so this must happen before we enter our own user namespace. */
static void loopback_up(const struct start_plan *p)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		child_die(p, errno, "socket for", "lo");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	memcpy(ifr.ifr_name, "lo", 3);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		child_die(p, errno, "get flags of", "lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		child_die(p, errno, "bring up", "lo");
	close(s);
}

unsigned long long child_kept_caps(void)
{
	unsigned long long keep = 0;
	for (size_t i = 0; i < sizeof kept_caps / sizeof kept_caps[0]; i++)
		keep |= 1ULL << kept_caps[i];
	return keep;
}

static void drop_capabilities(const struct start_plan *p)
{
	unsigned long long keep = child_kept_caps();
	for (int cap = 0; cap <= p->cap_last; cap++)
		if (!(keep & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			child_die(p, errno, "drop capability from bounding set", NULL);
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	data[0].effective = data[0].permitted = (unsigned)keep;
	data[1].effective = data[1].permitted = (unsigned)(keep >> 32);
	if (syscall(SYS_capset, &hdr, data) < 0)
		child_die(p, errno, "capset", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		child_die(p, errno, "clear ambient capabilities", NULL);
}

static void place_fd(const struct start_plan *p, int from, int to)
{
	if (dup2(from, to) < 0)
		child_die(p, errno, "dup2", NULL);
}

/* The first steps of both children: only the plan's descriptors, into the sandbox's cgroups before
 * anything is charged or forked (v1; v2 cloned us there), and cubed's signal handlers reset. */
static void child_enter(const struct start_plan *p)
{
	close_inherited(p);
	umask(0);
	for (int i = 0; i < p->n_cg_join; i++)
		write_knob(p, p->cg_join[i], "0");
	/* Handlers belong to cubed (libuv writes to its signal pipe): reset them before anything can fire.
	 * The parent blocked all signals around clone; they are unblocked just before execve. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < _NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
}

void child_restore_main(const struct start_plan *p)
{
	child_enter(p);
	/* Cloned with CLONE_NEWNS only: the overlay below is private to this criu process (and copied into
	 * the restored sandbox's own mount namespace by criu), the host never sees it. */
	mounts_overlay(p);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		child_die(p, errno, "open", "/dev/null");
	place_fd(p, devnull, 0);
	place_fd(p, devnull, 1);
	place_fd(p, devnull, 2);
	place_fd(p, p->netns_fd, CHILD_CRIU_NETNS_FD);
	place_fd(p, p->log_fd >= 0 ? p->log_fd : devnull, CHILD_CRIU_STDIO_FD);
	syscall(SYS_close_range, CHILD_CRIU_STDIO_FD + 1, ~0U, CLOSE_RANGE_CLOEXEC);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL};
	execve(p->exec_path, p->exec_argv, envp);
	child_die(p, errno, "execve", p->exec_path);
}

void child_main(const struct start_plan *p)
{
	child_enter(p);

	/* The netns and UTS ns belong to the init user namespace: configure them while we still can.
	 * Unprivileged port/ping sysctls let sandbox root bind :80 and ping without owning the netns. */
	loopback_up(p);
	write_knob(p, "/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
	write_knob(p, "/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
	if (sethostname(p->hostname, p->hostname_len) < 0)
		child_die(p, errno, "sethostname", p->hostname);

	/* A private clone of the envd mount, taken while the host tree is still attached: after pivot_root
	 * only a detached tree like this one can be bound into the sandbox. */
	int envd_tree = (int)syscall(SYS_open_tree, AT_FDCWD, p->envd_path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (envd_tree < 0)
		child_die(p, errno, "open_tree", "envd");
	mounts_build_root(p);
	mounts_populate(p, envd_tree);

	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		child_die(p, errno, "open", "/dev/null");

	/* User namespace last: every mount above belongs to the init user namespace and is locked for the
	 * sandbox. The cgroup namespace is rooted at the cgroup we joined first thing. */
	if (unshare(CLONE_NEWUSER | CLONE_NEWCGROUP) < 0)
		child_die(p, errno, "unshare", "user+cgroup namespaces");
	tell(p, SYNC_WANT_IDMAP);
	expect(p, SYNC_IDMAP_DONE);
	/* Raw syscalls: glibc's set*id wrappers would try to signal cubed's other threads, which do not
	 * exist in this child, and wait for them forever. */
	if (syscall(SYS_setresgid, 0, 0, 0) < 0)
		child_die(p, errno, "setresgid", NULL);
	if (syscall(SYS_setgroups, 0, NULL) < 0)
		child_die(p, errno, "setgroups", NULL);
	if (syscall(SYS_setresuid, 0, 0, 0) < 0)
		child_die(p, errno, "setresuid", NULL);
	/* Creating the user namespace reset the bounding set to full: trim it now. */
	drop_capabilities(p);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_die(p, errno, "no_new_privs", NULL);

	place_fd(p, devnull, 0);
	place_fd(p, p->log_fd >= 0 ? p->log_fd : devnull, 1);
	place_fd(p, p->log_fd >= 0 ? p->log_fd : devnull, 2);
	place_fd(p, p->config_fd, 3);
	place_fd(p, p->ready_fd, 4);
	/* The rest closes at execve; the sync socket stays open until then to report an execve failure. */
	syscall(SYS_close_range, 5, ~0U, CLOSE_RANGE_CLOEXEC);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p->seccomp) < 0)
		child_die(p, errno, "load seccomp filter", NULL);
	umask(022);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	static char *const argv[] = {"/.cube/envd", NULL};
	static char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				     "HOME=/root", NULL};
	execve(argv[0], argv, envp);
	child_die(p, errno, "execve", argv[0]);
}
