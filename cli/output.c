/* Output for people (aligned tables, readable times) and for scripts (JSON as the API sent it). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_print_json(json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
	if (s)
		puts(s);
	free(s);
}

/* Display width of a UTF-8 string, counting code points (good enough for ids and labels). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

void cli_print_table(const char *const *cells, size_t nrows, size_t ncols)
{
	size_t *w = calloc(ncols, sizeof *w);
	if (!w)
		return;
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < ncols; c++) {
			size_t cw = width(cells[r * ncols + c] ? cells[r * ncols + c] : "");
			if (cw > w[c])
				w[c] = cw;
		}
	for (size_t r = 0; r < nrows; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *cell = cells[r * ncols + c] ? cells[r * ncols + c] : "";
			if (c == ncols - 1) {
				fputs(cell, stdout);
			} else {
				fputs(cell, stdout);
				for (size_t k = width(cell); k < w[c] + 2; k++)
					putchar(' ');
			}
		}
		putchar('\n');
	}
	free(w);
}

static int parse_time(const char *s, time_t *out)
{
	struct tm tm = {0};
	const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!rest)
		return -1;
	*out = timegm(&tm);
	return 0;
}

void cli_format_time(const char *rfc3339, char *out, size_t len)
{
	time_t t;
	if (parse_time(rfc3339, &t) < 0) {
		snprintf(out, len, "%s", rfc3339 ? rfc3339 : "-");
		return;
	}
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%d %H:%M:%S", &tm);
}

void cli_format_until(const char *rfc3339, char *out, size_t len)
{
	time_t t;
	if (parse_time(rfc3339, &t) < 0) {
		snprintf(out, len, "%s", rfc3339 ? rfc3339 : "-");
		return;
	}
	long long d = (long long)t - (long long)time(NULL);
	if (d <= 0)
		snprintf(out, len, "expired");
	else if (d < 3600)
		snprintf(out, len, "in %lldm%02llds", d / 60, d % 60);
	else if (d < 86400)
		snprintf(out, len, "in %lldh%02lldm", d / 3600, (d % 3600) / 60);
	else
		snprintf(out, len, "in %lldd%02lldh", d / 86400, (d % 86400) / 3600);
}
