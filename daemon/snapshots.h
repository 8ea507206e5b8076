/* Snapshots of a sandbox's files: the sandbox is frozen while its writable layer (a host tmpfs, see
 * rt_layer_upper) is copied into the layer store, then a template named by the snapshot id is written
 * whose layers are that copy above the sandbox's own template layers. Creating a sandbox from the
 * snapshot id (or its name) is then an ordinary create; DELETE /templates/{id} deletes it. Both the layer
 * and the template appear only by rename, so a crash never leaves a half snapshot. Loop thread. */
#ifndef CUBE_DAEMON_SNAPSHOTS_H
#define CUBE_DAEMON_SNAPSHOTS_H

#include <stdbool.h>

#include <jansson.h>

#include "common/error.h"
#include "daemon/sandboxes.h"

/* info: SnapshotInfo {snapshotID, names} (new reference) or NULL with err. */
typedef void (*snap_cb)(json_t *info, const cube_err *err, void *arg);

/* name may be NULL. fork: the snapshot behind a fork, deleted once no sandbox uses it (snap_release).
 * Errors: 409 (sandbox not running or paused, a snapshot in progress, name in use), 400 (bad name), 500.
 * cb may run before this returns. */
void snap_create(struct sandbox *sb, const char *name, bool fork, snap_cb cb, void *arg);
/* template_name lost a user (a sandbox was destroyed, a fork ended): if it is a fork's snapshot that no
 * sandbox uses any more, delete it as DELETE /templates/{id} would. Anything else is left alone. */
void snap_release(const char *template_name);
/* At start, once sandboxes are adopted: snap_release for every fork's snapshot (their last sandbox may
 * have gone while cubed was down). */
void snap_sweep(void);
/* Restore the files of a snapshot: restart sb in place (sbx_restart) on the snapshot's layers. Errors:
 * 404 unknown snapshot (or a template that is not one), 409 a snapshot of another template's sandbox,
 * and sbx_restart's. cb as for sbx_restart; it may run before this returns. */
void snap_rollback(struct sandbox *sb, const char *snapshot_ref, sbx_create_cb cb, void *arg);
/* All snapshots (optionally of one sandbox and/or with one name), oldest first: array of
 * {snapshotID, names, sandboxID, createdAt}. */
json_t *snap_list(const char *sandbox_id, const char *name);

#endif
