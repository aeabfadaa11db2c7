/*-------------------------------------------------------------------------
 *
 * routing.h
 *		Bucket hashing and the per-backend routing cache.
 *
 * src/routing.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_ROUTING_H
#define CANARY_ROUTING_H

#include "utils/uuid.h"

extern void canary_routing_init(void);
extern uint32 canary_routing_bucket(const pg_uuid_t *deployment_id,
									const char *key, int key_len);

#endif							/* CANARY_ROUTING_H */
