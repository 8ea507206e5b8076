/* In-memory metric families for the Prometheus text format. A handful of families with a few label
 * sets each, so plain arrays and linear search are enough. */
#include "common/metrics.h"

#include <stdlib.h>
#include <string.h>

static const double bounds[] = {0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05,
				0.1,     0.25,   0.5,   1,     2.5,   5,    10};
#define NB (sizeof bounds / sizeof bounds[0])

struct series {
	char *labels;
	double value;            /* counter value, or histogram sum */
	unsigned long long count; /* histogram observations */
	unsigned long long buckets[NB];
};

struct family {
	const char *name, *help;
	int histogram;
	struct series *s;
	size_t n, cap;
};

static struct family *fams;
static size_t nfams, capfams;

static struct {
	metrics_collector_fn fn;
	void *arg;
} collectors[16];
static size_t ncollectors;

static struct series *series_get(const char *name, const char *help, int histogram, const char *labels)
{
	struct family *f = NULL;
	for (size_t i = 0; i < nfams && !f; i++)
		if (strcmp(fams[i].name, name) == 0)
			f = &fams[i];
	if (!f) {
		if (nfams == capfams) {
			size_t nc = capfams ? capfams * 2 : 16;
			struct family *nf = realloc(fams, nc * sizeof *nf);
			if (!nf)
				return NULL;
			fams = nf;
			capfams = nc;
		}
		f = &fams[nfams++];
		*f = (struct family){.name = name, .help = help, .histogram = histogram};
	}
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->s[i].labels, labels) == 0)
			return &f->s[i];
	if (f->n == f->cap) {
		size_t nc = f->cap ? f->cap * 2 : 8;
		struct series *ns = realloc(f->s, nc * sizeof *ns);
		if (!ns)
			return NULL;
		f->s = ns;
		f->cap = nc;
	}
	struct series *s = &f->s[f->n];
	memset(s, 0, sizeof *s);
	if (!(s->labels = strdup(labels)))
		return NULL;
	f->n++;
	return s;
}

void metrics_counter_add(const char *name, const char *help, const char *labels, double v)
{
	struct series *s = series_get(name, help, 0, labels ? labels : "");
	if (s)
		s->value += v;
}

void metrics_observe(const char *name, const char *help, const char *labels, double seconds)
{
	struct series *s = series_get(name, help, 1, labels ? labels : "");
	if (!s)
		return;
	s->value += seconds;
	s->count++;
	for (size_t i = 0; i < NB; i++)
		if (seconds <= bounds[i])
			s->buckets[i]++;
}

void metrics_add_collector(metrics_collector_fn fn, void *arg)
{
	if (ncollectors < sizeof collectors / sizeof collectors[0]) {
		collectors[ncollectors].fn = fn;
		collectors[ncollectors].arg = arg;
		ncollectors++;
	}
}

void metrics_label(char *buf, size_t len, const char *key, const char *value)
{
	size_t n = strlen(buf);
	if (n + 1 >= len)
		return;
	n += (size_t)snprintf(buf + n, len - n, "%s%s=\"", n ? "," : "", key);
	for (const char *v = value ? value : ""; *v && n + 3 < len; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			buf[n++] = '\\';
			buf[n++] = *v == '\n' ? 'n' : *v;
		} else {
			buf[n++] = *v;
		}
	}
	if (n + 1 < len)
		buf[n++] = '"';
	buf[n < len ? n : len - 1] = '\0';
}

void metrics_sample(FILE *out, const char *name, const char *labels, double v)
{
	if (labels && *labels)
		fprintf(out, "%s{%s} %.15g\n", name, labels, v);
	else
		fprintf(out, "%s %.15g\n", name, v);
}

static void render_family(FILE *out, const struct family *f)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->histogram ? "histogram" : "counter");
	for (size_t i = 0; i < f->n; i++) {
		const struct series *s = &f->s[i];
		const char *sep = s->labels[0] ? "," : "";
		if (!f->histogram) {
			metrics_sample(out, f->name, s->labels, s->value);
			continue;
		}
		for (size_t b = 0; b < NB; b++)
			fprintf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, s->labels, sep, bounds[b], s->buckets[b]);
		fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, sep, s->count);
		fprintf(out, "%s_sum%s%s%s %.15g\n", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "",
			s->value);
		fprintf(out, "%s_count%s%s%s %llu\n", f->name, s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "",
			s->count);
	}
}

char *metrics_render(size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *out = open_memstream(&buf, &n);
	if (!out)
		return NULL;
	for (size_t i = 0; i < ncollectors; i++)
		collectors[i].fn(out, collectors[i].arg);
	for (size_t i = 0; i < nfams; i++)
		render_family(out, &fams[i]);
	if (fclose(out) != 0) {
		free(buf);
		return NULL;
	}
	if (len)
		*len = n;
	return buf;
}

void metrics_reset(void)
{
	for (size_t i = 0; i < nfams; i++) {
		for (size_t j = 0; j < fams[i].n; j++)
			free(fams[i].s[j].labels);
		free(fams[i].s);
	}
	free(fams);
	fams = NULL;
	nfams = capfams = 0;
	ncollectors = 0;
}
