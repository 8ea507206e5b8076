/* The envd version cube-envd advertises (§3.14): the SDK gates features on it, so it must never
 * promise more than envd really implements. */
#ifndef CUBE_ENVD_VERSION_H
#define CUBE_ENVD_VERSION_H

#define ENVD_VERSION "0.6.4"

#endif
