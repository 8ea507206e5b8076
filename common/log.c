#include "common/log.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>

static enum cube_log_level min_level = CUBE_LOG_INFO;

void cube_log_set_level(enum cube_log_level level)
{
	min_level = level;
}

void cube_log(enum cube_log_level level, const char *fmt, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	if (level < min_level)
		return;
	char ts[40], line[2048];
	cube_format_time(cube_now_ms(), ts, sizeof ts);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s %-5s %s\n", ts, names[level], line);
}
