/* JavaScript and bash contexts: a node process running driver.js per context. Requests go to its
 * stdin as JSON lines; its stdout carries frames ("\x1e<json>\n") between the code's own output,
 * which becomes stdout lines, and its stderr becomes stderr lines. At the end of an execution the
 * driver writes an empty frame on stderr, then end_of_execution on stdout: the execution ends once
 * both arrived, so no output written before the end is lost to the race between the two pipes. */
#include "interp/interp.h"

#include "common/log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_MARK '\x1e'
#define END_SETTLE_MS 500   /* only if the stderr mark never comes */
#define MAX_FRAME (64u << 20)

const char *driver_script = "/opt/cube-interp/driver.js";

struct stream {
	uv_pipe_t pipe;
	int is_err;
	char *frame;           /* frame being read (after FRAME_MARK), NULL outside a frame */
	size_t flen, fcap;
	char pend[4];          /* incomplete UTF-8 tail of the last output chunk */
	size_t npend;
};

struct driver {
	struct ictx *c;
	uv_process_t proc;
	uv_pipe_t in;
	struct stream out, err;
	uv_timer_t settle;
	int alive, stopping, handles, busy;
	int end_seen, err_mark;
};

static void emit_text(struct driver *d, struct stream *s, const char *p, size_t n)
{
	if (!n || !d->c || !d->busy)
		return;
	/* Keep an incomplete UTF-8 sequence at the end for the next chunk. */
	char *buf = malloc(s->npend + n + 1);
	if (!buf)
		return;
	memcpy(buf, s->pend, s->npend);
	memcpy(buf + s->npend, p, n);
	size_t len = s->npend + n, cut = len;
	s->npend = 0;
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char ch = (unsigned char)buf[len - back];
		if ((ch & 0xc0) == 0x80)
			continue;
		size_t need = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 1;
		if (need > back)
			cut = len - back;
		break;
	}
	s->npend = len - cut;
	memcpy(s->pend, buf + cut, s->npend);
	if (cut) {
		json_t *text = json_stringn(buf, cut);
		if (!text) { /* not UTF-8: replace the high bytes */
			for (size_t i = 0; i < cut; i++)
				if ((unsigned char)buf[i] >= 0x80)
					buf[i] = '?';
			text = json_stringn(buf, cut);
		}
		if (text)
			ctx_emit(d->c, json_pack("{s:s,s:o}", "type", s->is_err ? "stderr" : "stdout", "text", text));
	}
	free(buf);
}

static void finish(struct driver *d)
{
	uv_timer_stop(&d->settle);
	d->busy = d->end_seen = d->err_mark = 0;
	if (d->c)
		ctx_exec_done(d->c);
}

static void on_settled(uv_timer_t *t)
{
	finish(t->data);
}

static void on_frame(struct driver *d, struct stream *s, const char *text, size_t len)
{
	if (s->is_err) { /* the end mark on stderr */
		d->err_mark = 1;
		if (d->end_seen)
			finish(d);
		return;
	}
	json_t *f = json_loadb(text, len, 0, NULL);
	const char *type = json_string_value(json_object_get(f, "type"));
	if (!type || !d->c) {
		json_decref(f);
		return;
	}
	if (!strcmp(type, "ready")) {
		json_decref(f);
		log_info("interp: context %s (%s) ready", d->c->id, d->c->language);
		ctx_engine_ready(d->c);
	} else if (!strcmp(type, "end_of_execution")) {
		json_decref(f);
		d->end_seen = 1;
		if (d->err_mark)
			finish(d);
		else
			uv_timer_start(&d->settle, on_settled, END_SETTLE_MS, 0);
	} else if (d->busy) {
		ctx_emit(d->c, f);
	} else {
		json_decref(f);
	}
}

static void alloc_buf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[65536];
	buf->base = slab;
	buf->len = sizeof slab;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct driver *d = st->data;
	struct stream *s = (uv_pipe_t *)st == &d->out.pipe ? &d->out : &d->err;
	if (n < 0) {
		uv_read_stop(st);
		return;
	}
	const char *p = buf->base, *end = buf->base + n;
	while (p < end) {
		if (s->frame) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t take = (size_t)((nl ? nl : end) - p);
			if (s->flen + take + 1 > s->fcap) {
				size_t cap = (s->flen + take + 1) * 2;
				char *nb = cap <= MAX_FRAME ? realloc(s->frame, cap) : NULL;
				if (!nb) {
					free(s->frame);
					s->frame = NULL;
					s->flen = s->fcap = 0;
					p = nl ? nl + 1 : end;
					continue;
				}
				s->frame = nb;
				s->fcap = cap;
			}
			memcpy(s->frame + s->flen, p, take);
			s->flen += take;
			p += take;
			if (nl) {
				p++;
				char *f = s->frame;
				size_t flen = s->flen;
				s->frame = NULL;
				s->flen = s->fcap = 0;
				on_frame(d, s, f, flen);
				free(f);
			}
			continue;
		}
		const char *mark = memchr(p, FRAME_MARK, (size_t)(end - p));
		emit_text(d, s, p, (size_t)((mark ? mark : end) - p));
		if (!mark)
			break;
		p = mark + 1;
		s->frame = malloc(256);
		s->fcap = s->frame ? 256 : 0;
		s->flen = 0;
	}
}

static void on_closed(uv_handle_t *h)
{
	struct driver *d = h->data;
	if (--d->handles == 0) {
		free(d->out.frame);
		free(d->err.frame);
		free(d);
	}
}

static void close_all(struct driver *d)
{
	uv_close((uv_handle_t *)&d->in, on_closed);
	uv_close((uv_handle_t *)&d->out.pipe, on_closed);
	uv_close((uv_handle_t *)&d->err.pipe, on_closed);
	uv_close((uv_handle_t *)&d->settle, on_closed);
}

static void on_proc_exit(uv_process_t *p, int64_t status, int sig)
{
	struct driver *d = p->data;
	d->alive = 0;
	log_info("interp: driver of context %s exited (status %lld, signal %d)", d->c ? d->c->id : "-",
		 (long long)status, sig);
	uv_close((uv_handle_t *)p, on_closed);
	if (!d->stopping && d->c) {
		struct ictx *c = d->c;
		d->c = NULL;
		c->engine = NULL;
		close_all(d);
		ctx_engine_died(c, "the interpreter process exited");
	}
}

int driver_start(struct ictx *c)
{
	struct driver *d = calloc(1, sizeof *d);
	if (!d)
		return -1;
	d->c = c;
	d->err.is_err = 1;
	uv_pipe_init(interp_loop, &d->in, 0);
	uv_pipe_init(interp_loop, &d->out.pipe, 0);
	uv_pipe_init(interp_loop, &d->err.pipe, 0);
	uv_timer_init(interp_loop, &d->settle);
	d->in.data = d->out.pipe.data = d->err.pipe.data = d->settle.data = d->proc.data = d;
	d->handles = 4;
	const char *lang = !strcmp(c->language, "bash") ? "bash" : "javascript";
	char *args[] = {"node", (char *)driver_script, (char *)lang, NULL};
	uv_stdio_container_t stdio[3] = {
		{.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&d->in},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&d->out.pipe},
		{.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&d->err.pipe},
	};
	uv_process_options_t opt = {.exit_cb = on_proc_exit, .file = "node", .args = args, .cwd = c->cwd,
				    .flags = UV_PROCESS_DETACHED, .stdio_count = 3, .stdio = stdio};
	int rc = uv_spawn(interp_loop, &d->proc, &opt);
	if (rc < 0) {
		log_error("interp: cannot start node for context %s: %s", c->id, uv_strerror(rc));
		d->c = NULL;
		close_all(d);
		return -1;
	}
	d->handles++;
	d->alive = 1;
	uv_read_start((uv_stream_t *)&d->out.pipe, alloc_buf, on_read);
	uv_read_start((uv_stream_t *)&d->err.pipe, alloc_buf, on_read);
	c->engine = d;
	log_info("interp: context %s: %s driver pid %d in %s", c->id, lang, d->proc.pid, c->cwd);
	return 0;
}

static void on_written(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

void driver_execute(struct ictx *c, const char *code, json_t *env_vars)
{
	struct driver *d = c->engine;
	json_t *req = json_pack("{s:s,s:o}", "code", code, "env_vars", env_vars ? json_incref(env_vars) : json_object());
	char *line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	size_t len = line ? strlen(line) : 0;
	char *buf = line ? realloc(line, len + 2) : NULL;
	uv_write_t *w = malloc(sizeof *w);
	if (!buf || !w) {
		free(buf ? buf : line);
		free(w);
		ctx_exec_done(c);
		return;
	}
	buf[len] = '\n';
	buf[len + 1] = '\0';
	d->busy = 1;
	d->end_seen = d->err_mark = 0;
	d->out.npend = d->err.npend = 0;
	w->data = buf;
	uv_buf_t b = uv_buf_init(buf, (unsigned)(len + 1));
	if (uv_write(w, (uv_stream_t *)&d->in, &b, 1, on_written) < 0) {
		free(buf);
		free(w);
		d->busy = 0;
		ctx_exec_done(c);
	}
}

void driver_interrupt(struct ictx *c)
{
	struct driver *d = c->engine;
	if (d && d->alive && d->busy) {
		log_info("interp: interrupting context %s", c->id);
		kill(d->proc.pid, SIGINT);
	}
}

void driver_stop(struct ictx *c)
{
	struct driver *d = c->engine;
	if (!d)
		return;
	c->engine = NULL;
	d->c = NULL;
	d->stopping = 1;
	close_all(d);
	if (d->alive)
		kill(d->proc.pid, SIGKILL);
}
