/* Shifting a template's rootfs owners into the host uid range its sandboxes map to (uid 0..count-1 inside
 * = uid_base..uid_base+count-1 on the host), once per template. Called by the template registry at load;
 * the marker file <template_dir>/.shifted records the base the tree is shifted to. */
#ifndef CUBE_IMAGE_ROOTFS_SHIFT_H
#define CUBE_IMAGE_ROOTFS_SHIFT_H

#include "common/error.h"

/* Make <template_dir>/rootfs owned by [uid_base, uid_base+uid_count): ids below uid_count in an unshifted
 * tree, or ids in the range of a previous base, move to the new base. Setuid/setgid bits and file
 * capabilities survive. A no-op when the marker already names uid_base; safe to re-run after a crash.
 * uid_base 0 shifts a tree back to plain ids. */
int tpl_rootfs_shift(const char *template_dir, unsigned uid_base, unsigned uid_count, cube_err *err);

/* The base the tree is currently shifted to (0 when unshifted / no marker), or -1 if the marker is bad. */
long tpl_rootfs_shifted_base(const char *template_dir, cube_err *err);

#endif
