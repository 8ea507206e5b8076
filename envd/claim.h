/* Pool claims: a pre-warmed envd (booted for cubed's pool with a one-time claim key in its config)
 * takes the settings of the create request that claims it (env vars, access token, default user)
 * from cubed in one POST /_cube/claim, before the create call returns. */
#ifndef CUBE_ENVD_CLAIM_H
#define CUBE_ENVD_CLAIM_H

#include <jansson.h>

#include "common/http_server.h"

/* From the boot config: remember "claimKey" if present. */
void envd_claim_config(json_t *cfg);
/* 1 if req was the claim (answered), 0 if it is not ours to handle. */
int envd_claim_handle(http_req *req);

#endif
