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

#include "datatype/timestamp.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

/* Overall comparison of the canary with the baseline. */
typedef enum CanaryVerdict
{
	CANARY_VERDICT_PASS,		/* healthy with enough evidence */
	CANARY_VERDICT_FAIL,		/* unhealthy: a hard limit or a significant regression */
	CANARY_VERDICT_INCONCLUSIVE,	/* enough samples, but no decision yet */
	CANARY_VERDICT_NODATA		/* too few canary or baseline samples */
} CanaryVerdict;

/* What the decision logic needs from one metrics collection. */
typedef struct CanaryMetricsSummary
{
	int64		metrics_id;		/* id of the stored canary.metrics row */
	int64		canary_requests;	/* rows counted for the current stage */
	int64		baseline_requests;
	double		canary_error_rate;	/* NaN when there are no rows */
	double		baseline_error_rate;
	double		canary_p95;		/* NaN when no row has a latency */
	double		baseline_p95;
	CanaryVerdict verdict;
	bool		hard_limit_breached;	/* a fixed threshold broken with enough samples */
	bool		baseline_unhealthy; /* the baseline itself breaks a fixed limit */
	bool		baseline_nodata;	/* too few baseline samples to compare */
	bool		sample_ratio_mismatch;	/* observed split differs from the configured one */
	char	   *reason;			/* every failing check and finding in plain words,
								 * with numbers, joined by "; "; empty if none */
	char	   *evidence;		/* the sequential judge's evidence in one line,
								 * also the last reason; NULL in threshold mode */
	Jsonb	   *snapshot;		/* the stored metrics row as jsonb, or NULL
								 * when the row was requested */
	Datum		row;			/* the stored canary.metrics row when
								 * requested, else 0 */
	bool		is_healthy;		/* meaningful unless is_healthy_isnull */
	bool		is_healthy_isnull;	/* too little data and no hard limit broken */
} CanaryMetricsSummary;

extern void canary_metrics_validate_config(Jsonb *config);
extern void canary_metrics_collect(const pg_uuid_t *deployment_id,
								   const Interval *window, TimestampTz at,
								   bool want_row, bool keep_evidence,
								   CanaryMetricsSummary *summary);

#endif							/* CANARY_METRICS_H */
