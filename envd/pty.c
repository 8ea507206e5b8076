/* Pseudo-terminals for pty.create (§3.8): the master stays in envd (read for data.pty, written by
 * SendInput, resized by Update); the slave becomes the child's controlling terminal and stdio. */
#include "envd/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

int envd_pty_open(unsigned cols, unsigned rows, uid_t uid, gid_t gid, int *master, int *slave, cube_err *err)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return cube_fail(err, 500, errno, "cannot open a pseudo-terminal (/dev/ptmx)");
	if (grantpt(m) < 0 || unlockpt(m) < 0) {
		int e = errno;
		close(m);
		return cube_fail(err, 500, e, "cannot unlock the pseudo-terminal");
	}
	/* TIOCGPTPEER opens the slave through the master, without a path lookup in /dev/pts. */
	int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		char name[64];
		if (ptsname_r(m, name, sizeof name) == 0)
			s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	}
	if (s < 0) {
		int e = errno;
		close(m);
		return cube_fail(err, 500, e, "cannot open the pseudo-terminal's slave");
	}
	if (envd_pty_resize(m, cols, rows) < 0) {
		int e = errno;
		close(m);
		close(s);
		return cube_fail(err, 500, e, "cannot size the pseudo-terminal");
	}
	/* The user's shell owns its terminal (as login does); failures only matter for mesg/write. */
	if (fchown(s, uid, gid) < 0 || fchmod(s, 0620) < 0) {
		/* not fatal */
	}
	*master = m;
	*slave = s;
	return 0;
}

int envd_pty_resize(int master, unsigned cols, unsigned rows)
{
	struct winsize ws = {
		.ws_row = (unsigned short)(rows ? rows : 24),
		.ws_col = (unsigned short)(cols ? cols : 80),
	};
	return ioctl(master, TIOCSWINSZ, &ws);
}

int envd_pty_attach_child(int slave)
{
	if (ioctl(slave, TIOCSCTTY, 0) < 0)
		return -1;
	for (int fd = 0; fd < 3; fd++)
		if (dup2(slave, fd) < 0)
			return -1;
	if (slave > 2)
		close(slave);
	return 0;
}
