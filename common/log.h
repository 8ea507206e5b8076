/* Leveled logging to stderr with a timestamp; one line per call. */
#ifndef CUBE_COMMON_LOG_H
#define CUBE_COMMON_LOG_H

enum cube_log_level { CUBE_LOG_DEBUG, CUBE_LOG_INFO, CUBE_LOG_WARN, CUBE_LOG_ERROR };

void cube_log_set_level(enum cube_log_level level);
void cube_log(enum cube_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) cube_log(CUBE_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  cube_log(CUBE_LOG_INFO, __VA_ARGS__)
#define log_warn(...)  cube_log(CUBE_LOG_WARN, __VA_ARGS__)
#define log_error(...) cube_log(CUBE_LOG_ERROR, __VA_ARGS__)

#endif
