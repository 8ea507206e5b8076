/* cubed's Prometheus metrics: counters and latency histograms kept in memory, and collectors that
 * report current values (gauges) at scrape time. Rendered in the text exposition format 0.0.4 by
 * metrics_render. Loop thread only (workers hand their timings back to the loop first). */
#ifndef CUBE_COMMON_METRICS_H
#define CUBE_COMMON_METRICS_H

#include <stddef.h>
#include <stdio.h>

/* labels: preformatted `key="value",...` (see metrics_label) or "" for none. Names and help texts
 * must be string literals (they are kept by pointer). */
void metrics_counter_add(const char *name, const char *help, const char *labels, double v);
/* Latency histogram in seconds, fixed buckets from 0.25 ms to 10 s. */
void metrics_observe(const char *name, const char *help, const char *labels, double seconds);

/* A collector writes whole families (# HELP, # TYPE and samples) at scrape time. */
typedef void (*metrics_collector_fn)(FILE *out, void *arg);
void metrics_add_collector(metrics_collector_fn fn, void *arg);

/* Append `key="escaped value"` (with a leading comma when buf is not empty) to buf. */
void metrics_label(char *buf, size_t len, const char *key, const char *value);
/* Write one sample line: name{labels} value. */
void metrics_sample(FILE *out, const char *name, const char *labels, double v);

/* The whole exposition; malloc'd, caller frees. NULL on allocation failure. */
char *metrics_render(size_t *len);
/* Forget everything (tests). */
void metrics_reset(void);

#endif
