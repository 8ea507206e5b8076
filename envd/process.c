/* process.Process (§3.3, §3.7, §3.8): starts commands as the acting user (pipes or a pty), streams
 * their output to every attached Start/Connect stream, takes input, signals and resizes them, and
 * keeps the end event 30 s for late Connects. Processes outlive their streams; only the Start
 * stream's Connect-Timeout-Ms kills them. main.c routes SIGCHLD statuses here (envd is PID 1). */
#include "envd/connect.h"
#include "envd/core.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_STREAM_PENDING (4u << 20)  /* per stream; above it the process's output is not read */
#define READ_CHUNK (32u << 10)
#define END_RETENTION_MS 30000
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum out_kind { OUT_STDOUT, OUT_STDERR, OUT_PTY };
static const char *const out_field[] = {"stdout", "stderr", "pty"};

struct proc;

/* One attached Start or Connect stream. */
struct sub {
	struct sub *next;
	struct proc *p;
	envd_rpc *rpc;
	int owns_deadline;   /* the Start stream: its deadline kills the process */
};

struct output {
	uv_pipe_t pipe;
	enum out_kind kind;
	int open;
};

struct proc {
	struct proc *next;
	pid_t pid;
	char *tag;
	json_t *config;          /* ProcessConfig echoed by List */
	int pty;
	struct output out[2];    /* stdout + stderr, or the pty master alone */
	int nout;
	uv_pipe_t in;            /* stdin pipe; the pty master takes input for pty processes */
	int in_open, in_writes, in_close_requested;
	int exited, wstatus;
	int finished;            /* end event sent; kept only for late Connects */
	json_t *end_event;
	uv_timer_t retain;
	uv_timer_t lifetime;     /* Start's Connect-Timeout-Ms: kills the process even if the client left */
	struct sub *subs;
	int paused;              /* output reading stopped for a slow stream */
	int handles;             /* uv handles not yet closed */
	int removed;
};

static struct proc *procs;

/* ---- lifetime ---- */

static void proc_free(struct proc *p)
{
	json_decref(p->config);
	json_decref(p->end_event);
	free(p->tag);
	free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct proc *p = h->data;
	if (--p->handles == 0 && p->removed)
		proc_free(p);
}

static void close_handle(struct proc *p, uv_handle_t *h)
{
	(void)p;
	if (!uv_is_closing(h))
		uv_close(h, on_handle_closed);
}

static void close_stdin(struct proc *p)
{
	if (!p->in_open)
		return;
	p->in_open = 0;
	close_handle(p, (uv_handle_t *)&p->in);
}

static void proc_remove(struct proc *p)
{
	for (struct proc **pp = &procs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	p->removed = 1;
	close_stdin(p);
	for (int i = 0; i < p->nout; i++)
		if (p->out[i].open) {
			p->out[i].open = 0;
			close_handle(p, (uv_handle_t *)&p->out[i].pipe);
		}
	close_handle(p, (uv_handle_t *)&p->retain);
	close_handle(p, (uv_handle_t *)&p->lifetime);
}

static struct proc *find_pid(pid_t pid, int include_finished)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid && (include_finished || !p->finished))
			return p;
	return NULL;
}

static struct proc *find_tag(const char *tag, int include_finished)
{
	struct proc *hit = NULL;
	for (struct proc *p = procs; p; p = p->next)
		if (p->tag && strcmp(p->tag, tag) == 0 && (include_finished || !p->finished)) {
			if (!p->finished)
				return p;
			hit = p;
		}
	return hit;
}

/* ---- end event (Go os.ProcessState semantics, as envd reports them) ---- */

static const char *go_signal_name(int sig)
{
	static const char *const names[] = {
		[SIGHUP] = "hangup", [SIGINT] = "interrupt", [SIGQUIT] = "quit",
		[SIGILL] = "illegal instruction", [SIGTRAP] = "trace/breakpoint trap", [SIGABRT] = "aborted",
		[SIGBUS] = "bus error", [SIGFPE] = "floating point exception", [SIGKILL] = "killed",
		[SIGUSR1] = "user defined signal 1", [SIGSEGV] = "segmentation fault",
		[SIGUSR2] = "user defined signal 2", [SIGPIPE] = "broken pipe", [SIGALRM] = "alarm clock",
		[SIGTERM] = "terminated", [SIGSTKFLT] = "stack fault", [SIGCHLD] = "child exited",
		[SIGCONT] = "continued", [SIGSTOP] = "stopped (signal)", [SIGTSTP] = "stopped",
		[SIGTTIN] = "stopped (tty input)", [SIGTTOU] = "stopped (tty output)",
		[SIGURG] = "urgent I/O condition", [SIGXCPU] = "CPU time limit exceeded",
		[SIGXFSZ] = "file size limit exceeded", [SIGVTALRM] = "virtual timer expired",
		[SIGPROF] = "profiling timer expired", [SIGWINCH] = "window changed", [SIGIO] = "I/O possible",
		[SIGPWR] = "power failure", [SIGSYS] = "bad system call",
	};
	return sig > 0 && sig < (int)CUBE_ARRAY_LEN(names) && names[sig] ? names[sig] : NULL;
}

static json_t *end_event(int wstatus)
{
	char status[96];
	json_t *end = json_object();
	if (WIFEXITED(wstatus)) {
		int code = WEXITSTATUS(wstatus);
		snprintf(status, sizeof status, "exit status %d", code);
		json_object_set_new(end, "exited", json_true());
		if (code) {
			json_object_set_new(end, "exitCode", json_integer(code));
			json_object_set_new(end, "error", json_string(status));
		}
	} else {
		int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : SIGKILL;
		const char *name = go_signal_name(sig);
		char num[24];
		snprintf(num, sizeof num, "signal %d", sig);
		snprintf(status, sizeof status, "signal: %s%s", name ? name : num,
			 WIFSIGNALED(wstatus) && WCOREDUMP(wstatus) ? " (core dumped)" : "");
		json_object_set_new(end, "exitCode", json_integer(-1));
		json_object_set_new(end, "error", json_string(status));
	}
	json_object_set_new(end, "status", json_string(status));
	return json_pack("{s:{s:o}}", "event", "end", end);
}

/* ---- streams attached to a process ---- */

static void update_reading(struct proc *p);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_retention_over(uv_timer_t *t)
{
	proc_remove(t->data);
}

/* The process exited and its output is drained: send end + EOS to every stream, keep the event. */
static void maybe_finish(struct proc *p)
{
	if (p->finished || !p->exited)
		return;
	for (int i = 0; i < p->nout; i++)
		if (p->out[i].open)
			return;
	p->finished = 1;
	p->end_event = end_event(p->wstatus);
	json_t *end = json_object_get(json_object_get(p->end_event, "event"), "end");
	log_info("envd: process %d ended: %s", (int)p->pid, json_string_value(json_object_get(end, "status")));
	struct sub *s = p->subs;
	p->subs = NULL;
	while (s) {
		struct sub *next = s->next;
		envd_rpc_send(s->rpc, json_incref(p->end_event));
		envd_rpc_end(s->rpc);
		free(s);
		s = next;
	}
	close_stdin(p);
	uv_timer_stop(&p->lifetime);
	uv_timer_start(&p->retain, on_retention_over, END_RETENTION_MS, 0);
}

static void detach(struct sub *sub)
{
	struct proc *p = sub->p;
	for (struct sub **pp = &p->subs; *pp; pp = &(*pp)->next)
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	free(sub);
	update_reading(p);
}

static void kill_group(struct proc *p, int sig)
{
	if (kill(-p->pid, sig) < 0 && errno == ESRCH && !p->exited)
		kill(p->pid, sig);
}

static void on_lifetime_over(uv_timer_t *t)
{
	struct proc *p = t->data;
	if (p->exited || p->finished)
		return;
	log_info("envd: process %d: Connect-Timeout-Ms passed, killing its process group", (int)p->pid);
	kill_group(p, SIGKILL);
}

static void on_sub_cancel(envd_rpc *rpc, void *arg)
{
	struct sub *sub = arg;
	struct proc *p = sub->p;
	if (envd_rpc_deadline_passed(rpc) && sub->owns_deadline) {
		/* Connect-Timeout-Ms is the process lifetime for Start (§3.6.2): kill, report the end the
		 * kill produces, then the layer closes the stream with deadline_exceeded. */
		log_info("envd: process %d: deadline passed, killing its process group", (int)p->pid);
		kill_group(p, SIGKILL);
		envd_rpc_send(rpc, end_event(p->exited ? p->wstatus : SIGKILL));
	}
	detach(sub);
}

static void on_sub_drain(envd_rpc *rpc, void *arg)
{
	(void)rpc;
	struct sub *sub = arg;
	update_reading(sub->p);
}

static struct sub *attach(struct proc *p, envd_rpc *rpc, int owns_deadline)
{
	struct sub *sub = calloc(1, sizeof *sub);
	if (!sub)
		return NULL;
	sub->p = p;
	sub->rpc = rpc;
	sub->owns_deadline = owns_deadline;
	sub->next = p->subs;
	p->subs = sub;
	envd_rpc_on_cancel(rpc, on_sub_cancel, sub);
	envd_rpc_on_drain(rpc, on_sub_drain, sub);
	envd_rpc_set_keepalive(rpc, json_pack("{s:{s:{}}}", "event", "keepalive"));
	return sub;
}

/* ---- output ---- */

static void alloc_chunk(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[READ_CHUNK];   /* consumed synchronously in on_read */
	buf->base = slab;
	buf->len = sizeof slab;
}

/* Backpressure: read output only while every attached stream has room; a stream that falls
 * behind stops the reading until its drain callback. */
static void update_reading(struct proc *p)
{
	int on = 1;
	for (struct sub *s = p->subs; s; s = s->next)
		if (envd_rpc_pending(s->rpc) > MAX_STREAM_PENDING)
			on = 0;
	if (on == !p->paused)
		return;
	p->paused = !on;
	for (int i = 0; i < p->nout; i++)
		if (p->out[i].open) {
			if (on)
				uv_read_start((uv_stream_t *)&p->out[i].pipe, alloc_chunk, on_read);
			else
				uv_read_stop((uv_stream_t *)&p->out[i].pipe);
		}
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct proc *p = stream->data;
	struct output *o = (uv_pipe_t *)stream == &p->out[0].pipe ? &p->out[0] : &p->out[1];
	if (nread > 0) {
		if (p->subs) {
			char *b64 = envd_base64_encode(buf->base, (size_t)nread);
			json_t *data = json_object();
			if (b64 && data)
				json_object_set_new_nocheck(data, out_field[o->kind], json_string_nocheck(b64));
			free(b64);
			json_t *ev = json_pack("{s:{s:o}}", "event", "data", data);
			for (struct sub *s = p->subs; ev && s; s = s->next)
				envd_rpc_send(s->rpc, json_incref(ev));
			json_decref(ev);
			update_reading(p);
		}
		return;
	}
	if (nread == 0)
		return;
	/* EOF; a pty master reports EIO once the last slave descriptor is closed. */
	if (nread != UV_EOF && !(o->kind == OUT_PTY && nread == UV_EIO))
		log_warn("envd: process %d: reading %s: %s", (int)p->pid, out_field[o->kind], uv_strerror((int)nread));
	o->open = 0;
	close_handle(p, (uv_handle_t *)&o->pipe);
	maybe_finish(p);
}

/* ---- request fields (lowerCamelCase and proto names coincide for process messages) ---- */

/* String field; null or absent -> *out = NULL. -1 (rpc failed) on a wrong type. */
static int field_string(envd_rpc *rpc, json_t *obj, const char *name, const char **out)
{
	json_t *v = json_object_get(obj, name);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field %s: expected a string", name);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

/* uint32 field: number or numeric string (§3.5); absent -> 0. */
static int field_uint(envd_rpc *rpc, json_t *obj, const char *name, unsigned long long max, unsigned long long *out)
{
	json_t *v = json_object_get(obj, name);
	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	long long n = -1;
	if (json_is_integer(v)) {
		n = json_integer_value(v);
	} else if (json_is_string(v) && *json_string_value(v)) {
		char *end;
		n = strtoll(json_string_value(v), &end, 10);
		if (*end)
			n = -1;
	} else if (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v)) {
		n = (long long)json_real_value(v);
	}
	if (n < 0 || (unsigned long long)n > max) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field %s: expected an unsigned integer", name);
		return -1;
	}
	*out = (unsigned long long)n;
	return 0;
}

/* ProcessSelector → process; fails the rpc (and returns NULL) when absent or unknown. */
static struct proc *select_process(envd_rpc *rpc, json_t *req, int include_finished)
{
	json_t *sel = json_object_get(req, "process");
	json_t *pidv = json_is_object(sel) ? json_object_get(sel, "pid") : NULL;
	json_t *tagv = json_is_object(sel) ? json_object_get(sel, "tag") : NULL;
	if (pidv && !json_is_null(pidv)) {
		unsigned long long pid;
		if (field_uint(rpc, sel, "pid", INT_MAX, &pid) < 0)
			return NULL;
		struct proc *p = find_pid((pid_t)pid, include_finished);
		if (!p)
			envd_rpc_fail(rpc, CONNECT_NOT_FOUND, "process with pid %llu not found", pid);
		return p;
	}
	if (tagv && !json_is_null(tagv)) {
		const char *tag;
		if (field_string(rpc, sel, "tag", &tag) < 0)
			return NULL;
		struct proc *p = find_tag(tag, include_finished);
		if (!p)
			envd_rpc_fail(rpc, CONNECT_NOT_FOUND, "process with tag %s not found", tag);
		return p;
	}
	envd_rpc_fail(rpc, CONNECT_UNIMPLEMENTED, "invalid input type");
	return NULL;
}

/* ---- Start ---- */

struct spawn {
	const char *path;        /* resolved executable */
	char **argv, **envp;
	const char *cwd;
	const struct envd_user *user;
	int use_pty, stdin_pipe;
	int to_log;              /* stdout and stderr go to envd's own stderr (the sandbox log) */
	unsigned cols, rows;
	/* results */
	pid_t pid;
	int in_fd, out_fd, err_fd, pty_fd;
};

static void free_strv(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}

/* Executable lookup in the PATH the process will get (execvpe would use envd's own). */
static int find_executable(const char *cmd, const char *path_env, char *out, size_t outlen)
{
	if (strchr(cmd, '/')) {
		snprintf(out, outlen, "%s", cmd);
		return 0;
	}
	const char *p = path_env ? path_env : DEFAULT_PATH;
	while (*p) {
		const char *colon = strchrnul(p, ':');
		size_t dl = (size_t)(colon - p);
		if (dl > 0 && p[0] == '/' && dl + strlen(cmd) + 2 <= outlen) {
			snprintf(out, outlen, "%.*s/%s", (int)dl, p, cmd);
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
				return 0;
		}
		p = *colon ? colon + 1 : colon;
	}
	return -1;
}

enum child_stage { STAGE_SETUP = 1, STAGE_IDENTITY, STAGE_CWD, STAGE_EXEC };

static __attribute__((noreturn)) void child_fail(int fd, int stage)
{
	int msg[2] = {stage, errno};
	if (write(fd, msg, sizeof msg) < 0) {
		/* nothing left to report to */
	}
	_exit(127);
}

/* After fork: only async-signal-safe calls, nothing allocated. */
static __attribute__((noreturn)) void child_exec(const struct spawn *sp, int errfd, int in_fd, int out_fd,
						  int err_fd, int slave_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);
	if (setsid() < 0)
		child_fail(errfd, STAGE_SETUP);
	if (sp->use_pty) {
		if (envd_pty_attach_child(slave_fd) < 0)
			child_fail(errfd, STAGE_SETUP);
	} else if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
		child_fail(errfd, STAGE_SETUP);
	}
	/* envd runs with a low OOM score; the user's processes must not inherit it. */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		if (write(oom, "0", 1) < 0) {
			/* best effort */
		}
		close(oom);
	}
	const struct envd_user *u = sp->user;
	if (getuid() != u->uid || getgid() != u->gid || geteuid() != u->uid) {
		if (setgroups((size_t)u->ngroups, u->groups) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
			child_fail(errfd, STAGE_IDENTITY);
	}
	if (chdir(sp->cwd) < 0)
		child_fail(errfd, STAGE_CWD);
	if (errfd > 3)
		close_range(3, (unsigned)errfd - 1, 0);
	close_range((unsigned)errfd + 1, ~0U, 0);
	execve(sp->path, sp->argv, sp->envp);
	child_fail(errfd, STAGE_EXEC);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* fork + exec with an error pipe (as uv_spawn does): exec failures come back as an errno. */
static int spawn(struct spawn *sp, cube_err *err)
{
	int errp[2] = {-1, -1}, inp[2] = {-1, -1}, outp[2] = {-1, -1}, errpp[2] = {-1, -1};
	int master = -1, slave = -1, rc = -1;
	sp->in_fd = sp->out_fd = sp->err_fd = sp->pty_fd = -1;
	if (pipe2(errp, O_CLOEXEC) < 0) {
		cube_fail(err, 500, errno, "pipe");
		goto out;
	}
	if (sp->use_pty) {
		if (envd_pty_open(sp->cols, sp->rows, sp->user->uid, sp->user->gid, &master, &slave, err) < 0)
			goto out;
	} else {
		if (sp->stdin_pipe)
			pipe2(inp, O_CLOEXEC);
		else
			inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (inp[0] < 0) {
			cube_fail(err, 500, errno, "stdin");
			goto out;
		}
		if (!sp->to_log && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errpp, O_CLOEXEC) < 0)) {
			cube_fail(err, 500, errno, "pipe");
			goto out;
		}
	}
	pid_t pid = fork();
	if (pid < 0) {
		cube_fail(err, 500, errno, "fork");
		goto out;
	}
	if (pid == 0)
		child_exec(sp, errp[1], inp[0], sp->to_log ? 2 : outp[1], sp->to_log ? 2 : errpp[1], slave);
	close_fd(&errp[1]);
	close_fd(&inp[0]);
	close_fd(&outp[1]);
	close_fd(&errpp[1]);
	close_fd(&slave);
	int msg[2];
	ssize_t n;
	do
		n = read(errp[0], msg, sizeof msg);
	while (n < 0 && errno == EINTR);
	if (n == sizeof msg) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		errno = msg[1];
		if (msg[0] == STAGE_CWD)
			cube_fail(err, 400, msg[1], "cwd '%s' is not usable", sp->cwd);
		else if (msg[0] == STAGE_IDENTITY)
			cube_fail(err, 500, msg[1], "cannot switch to user '%s'", sp->user->name);
		else if (msg[0] == STAGE_EXEC)
			cube_fail(err, 500, msg[1], "fork/exec %s", sp->path);
		else
			cube_fail(err, 500, msg[1], "setting up the process");
		goto out;
	}
	sp->pid = pid;
	if (sp->use_pty) {
		sp->pty_fd = master;
		master = -1;
	} else {
		sp->in_fd = inp[1];
		sp->out_fd = outp[0];
		sp->err_fd = errpp[0];
		inp[1] = outp[0] = errpp[0] = -1;
	}
	rc = 0;
out:
	close_fd(&errp[0]);
	close_fd(&errp[1]);
	close_fd(&inp[0]);
	close_fd(&inp[1]);
	close_fd(&outp[0]);
	close_fd(&outp[1]);
	close_fd(&errpp[0]);
	close_fd(&errpp[1]);
	close_fd(&master);
	close_fd(&slave);
	return rc;
}

static int open_pipe(struct proc *p, uv_pipe_t *h, int fd)
{
	uv_pipe_init(envd.loop, h, 0);
	h->data = p;
	p->handles++;
	int rc = uv_pipe_open(h, fd);
	if (rc < 0) {
		close(fd);
		log_warn("envd: process %d: uv_pipe_open: %s", (int)p->pid, uv_strerror(rc));
	}
	return rc;
}

/* argv/envp/config from the request; -1 after failing the rpc. */
static int build_command(envd_rpc *rpc, json_t *pc, const struct envd_user *u, struct spawn *sp, json_t *config,
			 char *path, size_t pathlen)
{
	const char *cmd;
	if (field_string(rpc, pc, "cmd", &cmd) < 0)
		return -1;
	if (!cmd || !*cmd) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "process.cmd is required");
		return -1;
	}
	json_object_set_new(config, "cmd", json_string(cmd));
	json_t *args = json_object_get(pc, "args");
	if (args && !json_is_null(args) && !json_is_array(args)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field args: expected a list of strings");
		return -1;
	}
	size_t nargs = json_array_size(args);
	json_t *args_copy = json_array();
	sp->argv = calloc(nargs + 2, sizeof *sp->argv);
	if (!sp->argv || !(sp->argv[0] = strdup(cmd))) {
		json_decref(args_copy);
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < nargs; i++) {
		json_t *a = json_array_get(args, i);
		if (!json_is_string(a)) {
			json_decref(args_copy);
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field args: expected a list of strings");
			return -1;
		}
		sp->argv[i + 1] = strdup(json_string_value(a));
		json_array_append(args_copy, a);
	}
	/* proto3 JSON omits an empty repeated field */
	if (json_array_size(args_copy))
		json_object_set_new(config, "args", args_copy);
	else
		json_decref(args_copy);

	/* Environment (§3.8): PATH, HOME, USER, LOGNAME; then the global envs; then the request's. */
	json_t *env = json_object();
	const char *agent_path = getenv("PATH");
	json_object_set_new(env, "PATH", json_string(agent_path && *agent_path ? agent_path : DEFAULT_PATH));
	json_object_set_new(env, "HOME", json_string(u->home));
	json_object_set_new(env, "USER", json_string(u->name));
	json_object_set_new(env, "LOGNAME", json_string(u->name));
	if (envd.env_vars)
		json_object_update(env, envd.env_vars);
	json_t *envs = json_object_get(pc, "envs");
	if (envs && !json_is_null(envs) && !json_is_object(envs)) {
		json_decref(env);
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field envs: expected a map of strings");
		return -1;
	}
	const char *k;
	json_t *v;
	json_t *envs_copy = json_object();
	json_object_foreach (envs, k, v) {
		if (!json_is_string(v)) {
			json_decref(env);
			json_decref(envs_copy);
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field envs: value of %s is not a string", k);
			return -1;
		}
		json_object_set(env, k, v);
		json_object_set(envs_copy, k, v);
	}
	if (json_object_size(envs_copy))
		json_object_set_new(config, "envs", envs_copy);
	else
		json_decref(envs_copy);
	sp->envp = calloc(json_object_size(env) + 1, sizeof *sp->envp);
	size_t n = 0;
	json_object_foreach (env, k, v)
		if (sp->envp && *k && !strchr(k, '=') && asprintf(&sp->envp[n], "%s=%s", k, json_string_value(v)) >= 0)
			n++;
	int found = find_executable(cmd, json_string_value(json_object_get(env, "PATH")), path, pathlen);
	json_decref(env);
	if (!sp->envp) {
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "out of memory");
		return -1;
	}
	if (found < 0) {
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "error starting process: exec: \"%s\": executable file not found in $PATH",
			      cmd);
		return -1;
	}
	sp->path = path;
	return 0;
}

static void process_start(envd_rpc *rpc, json_t *req)
{
	const struct envd_user *u = envd_rpc_user(rpc);
	json_t *pc = json_object_get(req, "process");
	if (!json_is_object(pc)) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "process config is required");
		return;
	}
	const char *cwd_in, *tag;
	if (field_string(rpc, pc, "cwd", &cwd_in) < 0 || field_string(rpc, req, "tag", &tag) < 0)
		return;
	struct spawn sp = {.user = u, .stdin_pipe = 1};
	json_t *ptyv = json_object_get(req, "pty");
	if (ptyv && !json_is_null(ptyv)) {
		json_t *size = json_is_object(ptyv) ? json_object_get(ptyv, "size") : NULL;
		unsigned long long cols = 0, rows = 0;
		if (!json_is_object(ptyv) || (size && !json_is_null(size) && !json_is_object(size))) {
			envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "field pty: expected an object");
			return;
		}
		if (json_is_object(size) &&
		    (field_uint(rpc, size, "cols", 0xffff, &cols) < 0 || field_uint(rpc, size, "rows", 0xffff, &rows) < 0))
			return;
		sp.use_pty = 1;
		sp.cols = (unsigned)cols;
		sp.rows = (unsigned)rows;
	}
	json_t *stdinv = json_object_get(req, "stdin");
	if (json_is_boolean(stdinv))
		sp.stdin_pipe = json_is_true(stdinv);

	char cwd[PATH_MAX];
	cube_err err = {0};
	if (envd_resolve_path(cwd_in, u, cwd, sizeof cwd, &err) < 0) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "%s", err.msg);
		return;
	}
	struct stat st;
	if (stat(cwd, &st) < 0) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "cwd '%s' does not exist", cwd);
		return;
	}
	sp.cwd = cwd;

	char path[PATH_MAX];
	json_t *config = json_object();
	if (build_command(rpc, pc, u, &sp, config, path, sizeof path) < 0) {
		free_strv(sp.argv);
		free_strv(sp.envp);
		json_decref(config);
		return;
	}
	if (cwd_in)
		json_object_set_new(config, "cwd", json_string(cwd_in));
	int rc = spawn(&sp, &err);
	free_strv(sp.argv);
	free_strv(sp.envp);
	if (rc < 0) {
		json_decref(config);
		envd_rpc_fail(rpc, err.status == 400 ? CONNECT_INVALID_ARGUMENT : CONNECT_INTERNAL,
			      "error starting process: %s", err.msg);
		return;
	}

	/* A finished process kept for late Connects may carry a recycled pid. */
	for (struct proc *old = procs; old; old = old->next)
		if (old->pid == sp.pid && old->finished) {
			proc_remove(old);
			break;
		}
	struct proc *p = calloc(1, sizeof *p);
	if (!p) {
		kill(-sp.pid, SIGKILL);
		close_fd(&sp.in_fd);
		close_fd(&sp.out_fd);
		close_fd(&sp.err_fd);
		close_fd(&sp.pty_fd);
		json_decref(config);
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "out of memory");
		return;
	}
	p->pid = sp.pid;
	p->tag = tag ? strdup(tag) : NULL;
	p->config = config;
	p->pty = sp.use_pty;
	uv_timer_init(envd.loop, &p->retain);
	p->retain.data = p;
	p->handles++;
	uv_timer_init(envd.loop, &p->lifetime);
	p->lifetime.data = p;
	p->handles++;
	if (sp.use_pty) {
		p->nout = 1;
		p->out[0].kind = OUT_PTY;
		p->out[0].open = open_pipe(p, &p->out[0].pipe, sp.pty_fd) == 0;
	} else {
		p->nout = 2;
		p->out[0].kind = OUT_STDOUT;
		p->out[1].kind = OUT_STDERR;
		p->out[0].open = open_pipe(p, &p->out[0].pipe, sp.out_fd) == 0;
		p->out[1].open = open_pipe(p, &p->out[1].pipe, sp.err_fd) == 0;
		if (sp.in_fd >= 0)
			p->in_open = open_pipe(p, &p->in, sp.in_fd) == 0;
	}
	for (int i = 0; i < p->nout; i++) {
		if (p->out[i].open)
			uv_read_start((uv_stream_t *)&p->out[i].pipe, alloc_chunk, on_read);
		else
			close_handle(p, (uv_handle_t *)&p->out[i].pipe);
	}
	if (!p->in_open && !sp.use_pty && sp.in_fd >= 0)
		close_handle(p, (uv_handle_t *)&p->in);
	p->next = procs;
	procs = p;
	log_info("envd: process %d started as %s%s: %s", (int)p->pid, u->name, p->pty ? " on a pty" : "", path);

	attach(p, rpc, 1);
	/* The deadline is the process's lifetime (§3.6.2), also when the client hung up before it:
	 * the SDK aborts at the same instant, so the disconnect usually wins the race. */
	long long lifetime_ms = envd_rpc_timeout_ms(rpc);
	if (lifetime_ms > 0)
		uv_timer_start(&p->lifetime, on_lifetime_over, (uint64_t)lifetime_ms, 0);
	envd_rpc_send(rpc, json_pack("{s:{s:{s:i}}}", "event", "start", "pid", (int)p->pid));
}

/* ---- Connect, List ---- */

static void process_connect(envd_rpc *rpc, json_t *req)
{
	struct proc *p = select_process(rpc, req, 1);
	if (!p)
		return;
	json_t *start = json_pack("{s:{s:{s:i}}}", "event", "start", "pid", (int)p->pid);
	if (p->finished) {
		envd_rpc_send(rpc, start);
		envd_rpc_send(rpc, json_incref(p->end_event));
		envd_rpc_end(rpc);
		return;
	}
	attach(p, rpc, 0);
	envd_rpc_send(rpc, start);
}

static void process_list(envd_rpc *rpc, json_t *req)
{
	(void)req;
	json_t *list = json_array();
	for (struct proc *p = procs; p; p = p->next) {
		if (p->finished)
			continue;
		json_t *info = json_pack("{s:O,s:i}", "config", p->config, "pid", (int)p->pid);
		if (p->tag)
			json_object_set_new(info, "tag", json_string(p->tag));
		json_array_append_new(list, info);
	}
	envd_rpc_reply(rpc, json_pack("{s:o}", "processes", list));
}

/* ---- input ---- */

/* Input is written without blocking: what the process does not take at once is queued and
 * `done` runs when it has been written (or failed). */
typedef void (*input_done_fn)(void *ctx, struct proc *p, int status);

struct input_write {
	uv_write_t w;
	struct proc *p;
	int to_stdin;
	input_done_fn done;
	void *ctx;
	size_t len;
	char data[];
};

static void on_input_written(uv_write_t *w, int status)
{
	struct input_write *iw = (struct input_write *)w;
	struct proc *p = iw->p;
	iw->done(iw->ctx, p, status);
	if (iw->to_stdin && --p->in_writes == 0 && p->in_close_requested)
		close_stdin(p);
	free(iw);
}

/* ProcessInput {stdin|pty: base64} → target stream and bytes. -1 after failing the rpc. */
static int parse_input(envd_rpc *rpc, struct proc *p, json_t *input, uv_stream_t **target, int *to_stdin,
		       unsigned char **data, size_t *len)
{
	const char *b64 = NULL;
	json_t *v;
	*to_stdin = 0;
	if (json_is_object(input)) {
		if ((v = json_object_get(input, "stdin")) && json_is_string(v)) {
			b64 = json_string_value(v);
			*to_stdin = 1;
		} else if ((v = json_object_get(input, "pty")) && json_is_string(v)) {
			b64 = json_string_value(v);
		}
	}
	if (!b64) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "input.stdin or input.pty is required");
		return -1;
	}
	*target = NULL;
	if (*to_stdin && !p->pty && p->in_open && !p->in_close_requested)
		*target = (uv_stream_t *)&p->in;
	else if (!*to_stdin && p->pty && p->out[0].open)
		*target = (uv_stream_t *)&p->out[0].pipe;
	if (!*target) {
		envd_rpc_fail(rpc, CONNECT_FAILED_PRECONDITION, *to_stdin ? "stdin not enabled or closed"
									   : "pty not assigned to process");
		return -1;
	}
	*data = envd_base64_decode(b64, len);
	if (!*data) {
		envd_rpc_fail(rpc, CONNECT_INVALID_ARGUMENT, "input is not valid base64");
		return -1;
	}
	return 0;
}

/* 1: all written now (done not called); 0: queued (done called later); <0: uv error. */
static int write_input(struct proc *p, uv_stream_t *target, int to_stdin, const unsigned char *data, size_t len,
		       input_done_fn done, void *ctx)
{
	size_t written = 0;
	if (len) {
		uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
		int n = uv_try_write(target, &b, 1);
		if (n < 0 && n != UV_EAGAIN)
			return n;
		written = n > 0 ? (size_t)n : 0;
	}
	if (written == len)
		return 1;
	struct input_write *iw = malloc(sizeof *iw + (len - written));
	if (!iw)
		return UV_ENOMEM;
	iw->p = p;
	iw->to_stdin = to_stdin;
	iw->done = done;
	iw->ctx = ctx;
	iw->len = len - written;
	memcpy(iw->data, data + written, iw->len);
	uv_buf_t b = uv_buf_init(iw->data, (unsigned)iw->len);
	int rc = uv_write(&iw->w, target, &b, 1, on_input_written);
	if (rc < 0) {
		free(iw);
		return rc;
	}
	if (to_stdin)
		p->in_writes++;
	return 0;
}

/* ---- SendInput: answered once the bytes are written ---- */

struct pending_reply {
	envd_rpc *rpc;     /* NULL once the client left */
};

static void on_reply_cancel(envd_rpc *rpc, void *arg)
{
	(void)rpc;
	((struct pending_reply *)arg)->rpc = NULL;
}

static void on_send_input_done(void *ctx, struct proc *p, int status)
{
	struct pending_reply *pr = ctx;
	if (pr->rpc) {
		envd_rpc_on_cancel(pr->rpc, NULL, NULL);
		if (status < 0)
			envd_rpc_fail(pr->rpc, CONNECT_INTERNAL, "error writing to process %d: %s", (int)p->pid,
				      uv_strerror(status));
		else
			envd_rpc_reply(pr->rpc, json_object());
	}
	free(pr);
}

static void process_send_input(envd_rpc *rpc, json_t *req)
{
	struct proc *p = select_process(rpc, req, 0);
	uv_stream_t *target;
	int to_stdin;
	unsigned char *data;
	size_t len;
	if (!p || parse_input(rpc, p, json_object_get(req, "input"), &target, &to_stdin, &data, &len) < 0)
		return;
	struct pending_reply *pr = malloc(sizeof *pr);
	int rc = pr ? write_input(p, target, to_stdin, data, len, on_send_input_done, pr) : UV_ENOMEM;
	free(data);
	if (rc == 0) {
		/* The process is not reading fast enough: answer once the rest is written. */
		pr->rpc = rpc;
		envd_rpc_on_cancel(rpc, on_reply_cancel, pr);
		return;
	}
	free(pr);
	if (rc < 0)
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "error writing to process %d: %s", (int)p->pid, uv_strerror(rc));
	else
		envd_rpc_reply(rpc, json_object());
}

/* ---- StreamInput (client stream, §3.6.3): a start frame selects the process, data frames
 * carry input, the end of the request body ends the call. Not used by the JS SDK. ---- */

#define MAX_STREAM_INPUT_QUEUED (4u << 20)

struct stream_input {
	envd_rpc *rpc;      /* NULL once the call is over */
	pid_t pid;          /* 0 until the start frame */
	size_t queued;      /* bytes waiting for the process to read them */
	int refs;           /* the call + queued writes */
	int failed;
};

static void stream_input_unref(struct stream_input *si)
{
	if (--si->refs == 0)
		free(si);
}

static void on_stream_input_cancel(envd_rpc *rpc, void *arg)
{
	(void)rpc;
	struct stream_input *si = arg;
	si->rpc = NULL;
	stream_input_unref(si);
}

struct stream_input_write {
	struct stream_input *si;
	size_t len;
};

static void on_stream_input_written(void *ctx, struct proc *p, int status)
{
	struct stream_input_write *w = ctx;
	struct stream_input *si = w->si;
	si->queued -= w->len;
	free(w);
	if (si->rpc && status < 0 && !si->failed) {
		si->failed = 1;
		envd_rpc_fail(si->rpc, CONNECT_INTERNAL, "error writing to process %d: %s", (int)p->pid, uv_strerror(status));
		si->rpc = NULL;
		si->refs--; /* the call's reference; this write still holds one */
	} else if (si->rpc && si->queued <= MAX_STREAM_INPUT_QUEUED) {
		envd_rpc_resume_input(si->rpc);
	}
	stream_input_unref(si);
}

static void process_stream_input(envd_rpc *rpc, json_t *msg)
{
	struct stream_input *si = envd_rpc_get_data(rpc);
	if (!si) {
		si = calloc(1, sizeof *si);
		if (!si) {
			envd_rpc_fail(rpc, CONNECT_INTERNAL, "out of memory");
			return;
		}
		si->rpc = rpc;
		si->refs = 1;
		envd_rpc_set_data(rpc, si);
		envd_rpc_on_cancel(rpc, on_stream_input_cancel, si);
	}
	if (!msg) {
		/* End of input. */
		si->rpc = NULL;
		envd_rpc_reply(rpc, json_object());
		stream_input_unref(si);
		return;
	}
	json_t *start = json_object_get(msg, "start");
	json_t *data = json_object_get(msg, "data");
	if (json_is_object(start)) {
		struct proc *p = select_process(rpc, start, 0);
		if (!p)
			goto failed;
		si->pid = p->pid;
		return;
	}
	if (json_is_object(data)) {
		if (!si->pid) {
			envd_rpc_fail(rpc, CONNECT_FAILED_PRECONDITION, "the first message must be start");
			goto failed;
		}
		struct proc *p = find_pid(si->pid, 0);
		if (!p) {
			envd_rpc_fail(rpc, CONNECT_NOT_FOUND, "process with pid %d not found", (int)si->pid);
			goto failed;
		}
		uv_stream_t *target;
		int to_stdin;
		unsigned char *bytes;
		size_t len;
		if (parse_input(rpc, p, json_object_get(data, "input"), &target, &to_stdin, &bytes, &len) < 0)
			goto failed;
		struct stream_input_write *w = malloc(sizeof *w);
		int rc = w ? write_input(p, target, to_stdin, bytes, len, on_stream_input_written, w) : UV_ENOMEM;
		free(bytes);
		if (rc < 0) {
			free(w);
			envd_rpc_fail(rpc, CONNECT_INTERNAL, "error writing to process %d: %s", (int)p->pid, uv_strerror(rc));
			goto failed;
		}
		if (rc == 1) {
			free(w);
			return;
		}
		w->si = si;
		w->len = len;
		si->refs++;
		si->queued += len;
		if (si->queued > MAX_STREAM_INPUT_QUEUED)
			envd_rpc_pause_input(rpc);
		return;
	}
	return; /* keepalive, or an event this version does not know */
failed:
	si->rpc = NULL;
	stream_input_unref(si);
}

static void process_close_stdin(envd_rpc *rpc, json_t *req)
{
	struct proc *p = select_process(rpc, req, 0);
	if (!p)
		return;
	if (p->pty || (!p->in_open && !p->in_close_requested)) {
		envd_rpc_fail(rpc, CONNECT_FAILED_PRECONDITION, "stdin not enabled or closed");
		return;
	}
	if (p->in_writes)
		p->in_close_requested = 1; /* after the queued input */
	else
		close_stdin(p);
	envd_rpc_reply(rpc, json_object());
}

/* ---- signals, resize ---- */

static void process_send_signal(envd_rpc *rpc, json_t *req)
{
	struct proc *p = select_process(rpc, req, 0);
	if (!p)
		return;
	json_t *v = json_object_get(req, "signal");
	int sig = 0;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		if (strcmp(s, "SIGNAL_SIGKILL") == 0 || strcmp(s, "9") == 0)
			sig = SIGKILL;
		else if (strcmp(s, "SIGNAL_SIGTERM") == 0 || strcmp(s, "15") == 0)
			sig = SIGTERM;
	} else if (json_is_integer(v) && (json_integer_value(v) == 9 || json_integer_value(v) == 15)) {
		sig = (int)json_integer_value(v);
	}
	if (!sig) {
		char *s = v && !json_is_string(v) ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
		envd_rpc_fail(rpc, CONNECT_UNIMPLEMENTED, "invalid signal: %s",
			      json_is_string(v) ? json_string_value(v) : s ? s : "SIGNAL_UNSPECIFIED");
		free(s);
		return;
	}
	kill_group(p, sig);
	envd_rpc_reply(rpc, json_object());
}

static void process_update(envd_rpc *rpc, json_t *req)
{
	struct proc *p = select_process(rpc, req, 0);
	if (!p)
		return;
	json_t *ptyv = json_object_get(req, "pty");
	if (!ptyv || json_is_null(ptyv)) {
		envd_rpc_reply(rpc, json_object());
		return;
	}
	if (!p->pty || !p->out[0].open) {
		envd_rpc_fail(rpc, CONNECT_FAILED_PRECONDITION, "tty not assigned to process");
		return;
	}
	json_t *size = json_is_object(ptyv) ? json_object_get(ptyv, "size") : NULL;
	unsigned long long cols = 0, rows = 0;
	if (json_is_object(size) &&
	    (field_uint(rpc, size, "cols", 0xffff, &cols) < 0 || field_uint(rpc, size, "rows", 0xffff, &rows) < 0))
		return;
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&p->out[0].pipe, &fd) < 0 || envd_pty_resize(fd, (unsigned)cols, (unsigned)rows) < 0) {
		envd_rpc_fail(rpc, CONNECT_INTERNAL, "error resizing tty: %s", strerror(errno));
		return;
	}
	envd_rpc_reply(rpc, json_object());
}

/* ---- the template's start command (boot.c) ---- */

int envd_process_start_logged(const char *cmd, const char *user, const char *cwd_in, const char *tag, cube_err *err)
{
	struct envd_user u;
	if (envd_user_lookup(user, &u, err) < 0)
		return -1;
	char cwd[PATH_MAX];
	if (envd_resolve_path(cwd_in, &u, cwd, sizeof cwd, err) < 0)
		return -1;
	/* The environment a Start gets (§3.8): PATH, HOME, USER, LOGNAME, then the global envs. */
	json_t *env = json_object();
	const char *agent_path = getenv("PATH");
	json_object_set_new(env, "PATH", json_string(agent_path && *agent_path ? agent_path : DEFAULT_PATH));
	json_object_set_new(env, "HOME", json_string(u.home));
	json_object_set_new(env, "USER", json_string(u.name));
	json_object_set_new(env, "LOGNAME", json_string(u.name));
	if (envd.env_vars)
		json_object_update(env, envd.env_vars);
	char *argv[] = {"/bin/sh", "-c", (char *)cmd, NULL};
	char **envp = calloc(json_object_size(env) + 1, sizeof *envp);
	size_t n = 0;
	const char *k;
	json_t *v;
	json_object_foreach (env, k, v)
		if (envp && *k && !strchr(k, '=') && asprintf(&envp[n], "%s=%s", k, json_string_value(v)) >= 0)
			n++;
	json_decref(env);
	struct proc *p = calloc(1, sizeof *p);
	if (!envp || !p) {
		free_strv(envp);
		free(p);
		return cube_fail(err, 500, ENOMEM, "start command");
	}
	struct spawn sp = {.path = "/bin/sh", .argv = argv, .envp = envp, .cwd = cwd, .user = &u, .to_log = 1};
	int rc = spawn(&sp, err);
	free_strv(envp);
	if (rc < 0) {
		free(p);
		return -1;
	}
	close_fd(&sp.in_fd);
	p->pid = sp.pid;
	p->tag = strdup(tag);
	p->config = json_pack("{s:s,s:[s,s],s:s}", "cmd", "/bin/sh", "args", "-c", cmd, "cwd", cwd);
	uv_timer_init(envd.loop, &p->retain);
	p->retain.data = p;
	p->handles++;
	uv_timer_init(envd.loop, &p->lifetime);
	p->lifetime.data = p;
	p->handles++;
	p->next = procs;
	procs = p;
	log_info("envd: start command running as %s in %s (pid %d): %s", u.name, cwd, (int)p->pid, cmd);
	return 0;
}

/* ---- hooks for main.c ---- */

int envd_process_reaped(pid_t pid, int wstatus)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid && !p->exited) {
			p->exited = 1;
			p->wstatus = wstatus;
			maybe_finish(p);
			return 1;
		}
	return 0;
}

void envd_process_signal_all(int sig)
{
	for (struct proc *p = procs; p; p = p->next)
		if (!p->finished)
			kill_group(p, sig);
}

size_t envd_process_live_count(void)
{
	size_t n = 0;
	for (struct proc *p = procs; p; p = p->next)
		n += !p->exited;
	return n;
}

const struct envd_method envd_process_methods[] = {
	{"/process.Process/Start", 1, 1, process_start},
	{"/process.Process/Connect", 1, 0, process_connect},
	{"/process.Process/List", 0, 0, process_list},
	{"/process.Process/SendInput", 0, 0, process_send_input},
	{"/process.Process/StreamInput", 2, 0, process_stream_input},
	{"/process.Process/CloseStdin", 0, 0, process_close_stdin},
	{"/process.Process/SendSignal", 0, 0, process_send_signal},
	{"/process.Process/Update", 0, 0, process_update},
	{NULL, 0, 0, NULL},
};
