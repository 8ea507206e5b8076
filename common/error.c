#include "common/error.h"

#include <stdio.h>
#include <string.h>

int cube_fail(cube_err *err, int status, int errnum, const char *fmt, ...)
{
	if (!err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
	if (errnum && n >= 0 && (size_t)n < sizeof err->msg)
		snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", strerror(errnum));
	err->errnum = errnum;
	err->status = status ? status : 500;
	return -1;
}

int cube_wrap(cube_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char prefix[256], old[sizeof err->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
	return -1;
}

void cube_err_clear(cube_err *err)
{
	if (err)
		memset(err, 0, sizeof *err);
}
