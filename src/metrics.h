/*-------------------------------------------------------------------------
 *
 * metrics.h
 *		Reading evaluation windows from the execution log.
 *
 * src/metrics.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_METRICS_H
#define CANARY_METRICS_H

#include "utils/jsonb.h"

extern void canary_metrics_validate_config(Jsonb *config);

#endif							/* CANARY_METRICS_H */
