/* Scope-based cleanup (as in crun's utils.h) and small helpers shared by every component. */
#ifndef CUBE_COMMON_UTIL_H
#define CUBE_COMMON_UTIL_H

#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <dirent.h>

static inline void cube_freep(void *p) { free(*(void **)p); }
static inline void cube_closep(int *fd) { if (*fd >= 0) { int e = errno; close(*fd); errno = e; } }
static inline void cube_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void cube_closedirp(DIR **d) { if (*d) closedir(*d); }

#define cleanup_free     __attribute__((cleanup(cube_freep)))
#define cleanup_close    __attribute__((cleanup(cube_closep)))
#define cleanup_fclose   __attribute__((cleanup(cube_fclosep)))
#define cleanup_dir      __attribute__((cleanup(cube_closedirp)))

#define CUBE_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Write the whole buffer, retrying on EINTR and short writes. */
int cube_write_all(int fd, const void *buf, size_t len);
/* Copy the rest of src to dst: copy_file_range (in-kernel, reflinks where the filesystem can), else
 * read/write when the two filesystems cannot. */
int cube_copy_fd(int src, int dst);
/* Read a small file into a NUL-terminated malloc'd buffer; returns NULL and sets errno on failure. */
char *cube_read_file(const char *path, size_t *len_out);
/* Write a string to a file (O_WRONLY|O_TRUNC, no create): for cgroup and /proc knobs. */
int cube_write_file(const char *path, const char *value);
/* Monotonic and wall clocks in milliseconds. */
long long cube_now_ms(void);
long long cube_mono_ms(void);
/* RFC 3339 UTC with milliseconds, e.g. 2026-11-22T07:51:38.025Z; buf >= 32. */
void cube_format_time(long long epoch_ms, char *buf, size_t len);
/* Fill buf with n random chars from [a-z0-9] plus NUL (getrandom). */
int cube_random_alnum(char *buf, size_t n);
/* Lowercase hex of n random bytes into buf (2n+1). */
int cube_random_hex(char *buf, size_t nbytes);
/* mkdir -p with mode. */
int cube_mkdir_p(const char *path, unsigned mode);
/* fsync a directory (after a rename into it, so the new name survives a crash). 0 or -1 with errno. */
int cube_fsync_dir(const char *path);

#endif
