/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		Read an evaluation window from the execution log and compare the
 *		canary with the baseline.
 *
 * src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/jsonb.h"

#include "metrics.h"

/*
 * Check a rollout's extra metrics setting: a JSON array.
 */
void
canary_metrics_validate_config(Jsonb *config)
{
	if (!JB_ROOT_IS_ARRAY(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metrics setting must be a JSON array"),
				 errhint("Give one object per extra metric, or '[]' for none.")));
}
