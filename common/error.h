/* One error convention for every component (after crun's libcrun_error_t):
 * a fallible function returns a negative value and fills the cube_err passed last.
 * `status` is the HTTP status the failure maps to, so any handler can answer it. */
#ifndef CUBE_COMMON_ERROR_H
#define CUBE_COMMON_ERROR_H

#include <stdarg.h>

typedef struct cube_err {
	int errnum;      /* errno of the cause, 0 if none */
	int status;      /* HTTP status this maps to (400, 404, 500, ...) */
	char msg[512];
} cube_err;

/* Fill err (may be NULL) and return -1. errnum may be 0. */
int cube_fail(cube_err *err, int status, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Prefix context onto an existing message and return -1. */
int cube_wrap(cube_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cube_err_clear(cube_err *err);

#endif
