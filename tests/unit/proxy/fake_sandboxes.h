/* Test fixture: which sandboxes the proxy asked sockets for (tests/unit/proxy/fake_sandboxes.c). */
#ifndef CUBE_TESTS_FAKE_SANDBOXES_H
#define CUBE_TESTS_FAKE_SANDBOXES_H

/* Sandboxes "sbxa" and "sbxb" exist; "sbxgone" exists but its socket fails; nothing else does. */
int fake_socket_count(void);
const char *fake_socket_id(int i);

#endif
