/* The sandbox's filesystem, built by the child in its own mount namespace while it is still host root:
 * a size-limited tmpfs holds the private writable layer, an overlay of it on the template's read-only
 * layers becomes
 * the root via pivot_root, and /dev, /proc, /sys, /tmp, the /etc files and envd are set up inside the new
 * root, so no path the template controls is ever resolved against the host's tree. */
#include "runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* Docker's masked and read-only /proc and /sys paths. */
static const char *const masked_files[] = {
	"/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
	"/proc/sched_debug", "/proc/sysrq-trigger", "/proc/kpagecount", "/proc/kpageflags", "/proc/kpagecgroup",
};
static const char *const masked_dirs[] = {
	"/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
};
static const char *const readonly_dirs[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"};

struct device_node {
	const char *path;
	unsigned major, minor;
};
static const struct device_node devices[] = {
	{"/dev/null", 1, 3}, {"/dev/zero", 1, 5}, {"/dev/full", 1, 7},
	{"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};
static const char *const dev_links[][2] = {
	{"pts/ptmx", "/dev/ptmx"}, {"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
};

static void do_mount(const struct start_plan *p, const char *src, const char *dst, const char *type,
		     unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		child_die(p, errno, type ? type : "bind", dst);
}

/* Make a directory the sandbox's root owns (sandbox uid 0 = host uid_base); keep one that exists. */
static void ensure_dir(const struct start_plan *p, const char *path, mode_t mode)
{
	if (mkdir(path, mode) == 0) {
		if (lchown(path, p->uid_base, p->uid_base) < 0)
			child_die(p, errno, "chown", path);
		return;
	}
	if (errno != EEXIST)
		child_die(p, errno, "mkdir", path);
}

static size_t append_str(char *dst, size_t pos, size_t cap, const char *src)
{
	while (*src && pos + 1 < cap)
		dst[pos++] = *src++;
	dst[pos] = '\0';
	return pos;
}

static size_t append_uint(char *dst, size_t pos, size_t cap, unsigned v)
{
	char digits[12];
	size_t k = sizeof digits - 1;
	digits[k] = '\0';
	do
		digits[--k] = (char)('0' + v % 10);
	while ((v /= 10) && k > 0);
	return append_str(dst, pos, cap, digits + k);
}

void mounts_overlay(const struct start_plan *p)
{
	/* Nothing we mount may propagate back to the host. */
	do_mount(p, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	if (p->upper_dir[0])
		do_mount(p, p->upper_dir, p->layer_mnt, NULL, MS_BIND, NULL);
	else
		do_mount(p, "cube-layer", p->layer_mnt, "tmpfs", MS_NOSUID | MS_NODEV, p->layer_opts);
	if (chdir(p->layer_mnt) < 0)
		child_die(p, errno, "chdir", p->layer_mnt);
	if (mkdir("upper", 0) < 0 || chown("upper", p->root_uid, p->root_gid) < 0 ||
	    chmod("upper", p->root_mode & 07777) < 0)
		child_die(p, errno, "prepare upper dir", NULL);
	if (mkdir("work", 0700) < 0 || mkdir("root", 0700) < 0)
		child_die(p, errno, "mkdir work dir", NULL);
	/* "lowerdir=/proc/self/fd/A:/proc/self/fd/B,...": at most 64 * 18 bytes of fd names, whatever the
	 * layers' host paths are. */
	char opts[RT_MAX_LAYERS * 24 + 64];
	int fds[RT_MAX_LAYERS];
	size_t n = append_str(opts, 0, sizeof opts, "lowerdir=");
	const char *path = p->lowers;
	for (size_t i = 0; i < p->n_lowers; i++) {
		fds[i] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (fds[i] < 0)
			child_die(p, errno, "open layer", path);
		if (i)
			n = append_str(opts, n, sizeof opts, ":");
		n = append_str(opts, n, sizeof opts, "/proc/self/fd/");
		n = append_uint(opts, n, sizeof opts, (unsigned)fds[i]);
		path += strlen(path) + 1;
	}
	append_str(opts, n, sizeof opts, ",upperdir=upper,workdir=work");
	if (mount("overlay", "root", "overlay", 0, opts) < 0)
		child_die(p, errno, "mount overlay of", p->lowers);
	for (size_t i = 0; i < p->n_lowers; i++)
		close(fds[i]);
}

void mounts_build_root(const struct start_plan *p)
{
	mounts_overlay(p);
	/* pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the sandbox. */
	if (chdir("root") < 0)
		child_die(p, errno, "chdir", "root");
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		child_die(p, errno, "pivot_root", NULL);
	if (umount2(".", MNT_DETACH) < 0)
		child_die(p, errno, "detach old root", NULL);
	if (chdir("/") < 0)
		child_die(p, errno, "chdir", "/");
}

static void populate_dev(const struct start_plan *p)
{
	ensure_dir(p, "/dev", 0755);
	do_mount(p, "tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, p->dev_opts);
	/* Device nodes: the sandbox cannot mknod (that needs CAP_MKNOD in the init namespace), so these
	 * are all it gets. */
	for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
		const struct device_node *d = &devices[i];
		if (mknod(d->path, S_IFCHR | 0666, makedev(d->major, d->minor)) < 0 ||
		    lchown(d->path, p->uid_base, p->uid_base) < 0)
			child_die(p, errno, "mknod", d->path);
	}
	for (size_t i = 0; i < sizeof dev_links / sizeof dev_links[0]; i++)
		if (symlink(dev_links[i][0], dev_links[i][1]) < 0 ||
		    lchown(dev_links[i][1], p->uid_base, p->uid_base) < 0)
			child_die(p, errno, "symlink", dev_links[i][1]);
	ensure_dir(p, "/dev/pts", 0755);
	do_mount(p, "devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, p->pts_opts);
	ensure_dir(p, "/dev/shm", 01777);
	do_mount(p, "shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, p->shm_opts);
}

static void mask_paths(const struct start_plan *p)
{
	struct stat st;
	for (size_t i = 0; i < sizeof masked_files / sizeof masked_files[0]; i++)
		if (lstat(masked_files[i], &st) == 0)
			do_mount(p, "/dev/null", masked_files[i], NULL, MS_BIND, NULL);
	for (size_t i = 0; i < sizeof masked_dirs / sizeof masked_dirs[0]; i++)
		if (lstat(masked_dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
			do_mount(p, "tmpfs", masked_dirs[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
				 "size=0");
	for (size_t i = 0; i < sizeof readonly_dirs / sizeof readonly_dirs[0]; i++) {
		if (lstat(readonly_dirs[i], &st) < 0)
			continue;
		do_mount(p, readonly_dirs[i], readonly_dirs[i], NULL, MS_BIND | MS_REC, NULL);
		do_mount(p, NULL, readonly_dirs[i], NULL,
			 MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	}
}

/* Replace an /etc file on the upper layer. Unlink first and refuse symlinks: the template must not be
 * able to redirect this root-privileged write (only sandbox paths are reachable after pivot_root). */
static void write_etc(const struct start_plan *p, const char *path, const char *text)
{
	if (unlink(path) < 0 && errno != ENOENT)
		child_die(p, errno, "unlink", path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		child_die(p, errno, "create", path);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || fchown(fd, p->uid_base, p->uid_base) < 0)
		child_die(p, errno, "write", path);
	close(fd);
}

void mounts_populate(const struct start_plan *p, int envd_tree)
{
	populate_dev(p);

	ensure_dir(p, "/proc", 0555);
	do_mount(p, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	ensure_dir(p, "/sys", 0555);
	do_mount(p, "sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mask_paths(p);

	struct stat st;
	ensure_dir(p, "/tmp", 01777);
	if (stat("/tmp", &st) == 0 && (st.st_mode & 07777) != 01777 && chmod("/tmp", 01777) < 0)
		child_die(p, errno, "chmod", "/tmp");

	ensure_dir(p, "/etc", 0755);
	write_etc(p, "/etc/hostname", p->hostname_file);
	write_etc(p, "/etc/hosts", p->hosts);
	write_etc(p, "/etc/resolv.conf", p->resolv);

	/* envd: the clone of the host binary's mount, attached read-only. */
	ensure_dir(p, "/.cube", 0755);
	int fd = open("/.cube/envd", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0755);
	if (fd < 0)
		child_die(p, errno, "create mount point", "/.cube/envd");
	close(fd);
	if (syscall(SYS_move_mount, envd_tree, "", AT_FDCWD, "/.cube/envd", MOVE_MOUNT_F_EMPTY_PATH) < 0)
		child_die(p, errno, "move_mount", "/.cube/envd");
	close(envd_tree);
	do_mount(p, NULL, "/.cube/envd", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}
