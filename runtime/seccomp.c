/* The sandbox's seccomp policy (written down in docs/security.md). Compiled once with libseccomp at
 * rt_init into a classic BPF program; each sandbox child loads that program with seccomp(2) just before
 * it execs envd, so nothing is allocated after clone. */
#include "runtime/internal.h"

#include <errno.h>
#include <endian.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

#include "common/util.h"

static struct sock_fprog program;

/* Denied outright with EPERM: they change the host (time, modules, swap, reboot), reach kernel surfaces
 * a sandbox never needs (bpf, perf, keyrings, io_uring, handles), or rebuild the namespace setup. */
static const char *const denied[] = {
	"mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
	"fspick", "mount_setattr", "unshare", "setns", "bpf", "perf_event_open", "init_module", "finit_module",
	"delete_module", "create_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
	"keyctl", "add_key", "request_key", "acct", "quotactl", "quotactl_fd", "open_by_handle_at",
	"name_to_handle_at", "userfaultfd", "iopl", "ioperm", "syslog", "settimeofday", "clock_settime",
	"adjtimex", "clock_adjtime", "lookup_dcookie", "vhangup", "nfsservctl", "uselib", "_sysctl", "ustat",
	"sysfs", "get_kernel_syms", "query_module", "fanotify_init", "io_uring_setup", "io_uring_enter",
	"io_uring_register", "vm86", "vm86old", "stime", "pciconfig_iobase", "pciconfig_read",
	"pciconfig_write",
};

/* Namespace flags clone(2) may not carry. CLONE_NEWTIME shares its bit with the exit signal in clone(2)
 * and can only be requested through clone3/unshare, which are denied. */
static const unsigned long clone_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

/* personality(2) may only select the default or the 32-bit/uname26 variants Docker also allows, or
 * query (0xffffffff): the other flags turn off ASLR or make data executable. libseccomp cannot express
 * "none of these values" (one comparison per argument and rule), so this check is a short hand-written
 * BPF block placed in front of libseccomp's program. It falls through to that program for everything
 * else, including foreign architectures, which the program then kills. */
#define PERSONALITY_BLOCK_LEN 13
static void personality_block(struct sock_filter *out, unsigned arch)
{
	enum { CONT = PERSONALITY_BLOCK_LEN, DENY = PERSONALITY_BLOCK_LEN - 1 };
	const unsigned lo = offsetof(struct seccomp_data, args[0]) + (__BYTE_ORDER == __LITTLE_ENDIAN ? 0 : 4);
	const unsigned hi = offsetof(struct seccomp_data, args[0]) + (__BYTE_ORDER == __LITTLE_ENDIAN ? 4 : 0);
	struct sock_filter b[PERSONALITY_BLOCK_LEN] = {
		/* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		/* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, CONT - 2),
		/* 2 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		/* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, CONT - 4),
		/* 4 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, hi),
		/* 5 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, DENY - 6),
		/* 6 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, lo),
		/* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PER_LINUX, CONT - 8, 0),
		/* 8 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PER_LINUX32, CONT - 9, 0),
		/* 9 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, UNAME26, CONT - 10, 0),
		/* 10 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, UNAME26 | PER_LINUX32, CONT - 11, 0),
		/* 11 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffU, CONT - 12, 0),
		/* 12 */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
	};
	memcpy(out, b, sizeof b);
}

int seccomp_build(cube_err *err)
{
	if (program.filter)
		return 0;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx)
		return cube_fail(err, 500, ENOMEM, "seccomp_init");
	int rc = 0;
	const char *what = "";
	/* Only the native ABI: a 32-bit or x32 syscall kills the process (libseccomp's bad-arch action). */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0) {
		what = "bad-arch action";
		goto fail;
	}
	for (size_t i = 0; i < CUBE_ARRAY_LEN(denied); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR || nr < 0)
			continue; /* not on this architecture */
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0)) < 0) {
			what = denied[i];
			goto fail;
		}
	}
	for (size_t i = 0; i < CUBE_ARRAY_LEN(clone_ns_flags); i++) {
		unsigned long f = clone_ns_flags[i];
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					   SCMP_A0(SCMP_CMP_MASKED_EQ, f, f))) < 0) {
			what = "clone";
			goto fail;
		}
	}
	/* clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone(2). */
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) < 0) {
		what = "clone3";
		goto fail;
	}

	/* Export the compiled BPF through a memfd into one long-lived buffer. */
	int fd = memfd_create("cube-seccomp", MFD_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		what = "memfd";
		goto fail;
	}
	if ((rc = seccomp_export_bpf(ctx, fd)) < 0) {
		close(fd);
		what = "export";
		goto fail;
	}
	off_t len = lseek(fd, 0, SEEK_END);
	struct sock_filter *insns = malloc((len > 0 ? (size_t)len : 0) + PERSONALITY_BLOCK_LEN * sizeof *insns);
	if (len <= 0 || len % (off_t)sizeof *insns || !insns ||
	    pread(fd, insns + PERSONALITY_BLOCK_LEN, (size_t)len, 0) != len) {
		free(insns);
		close(fd);
		rc = -EIO;
		what = "read exported filter";
		goto fail;
	}
	close(fd);
	seccomp_release(ctx);
	personality_block(insns, seccomp_arch_native());
	program.len = (unsigned short)(len / (off_t)sizeof *insns + PERSONALITY_BLOCK_LEN);
	program.filter = insns;
	return 0;
fail:
	seccomp_release(ctx);
	return cube_fail(err, 500, -rc, "seccomp policy (%s)", what);
}

const struct sock_fprog *seccomp_program(void)
{
	return &program;
}
