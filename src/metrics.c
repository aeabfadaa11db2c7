/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		Read an evaluation window from the execution log and compare the
 *		canary with the baseline.
 *
 * Applications write one row per agent execution into the execution log
 * table named by canary.execution_log_table.  A collection reads the rows of
 * the baseline and of the canary version in the window (start, end].  The
 * end is the evaluation time.  The start is end minus the window, moved up
 * to stage start plus warmup while the rollout is running or paused.  Each
 * version is read by its own index range scan on (agent_id, version,
 * "timestamp"), so the cost grows with the rows in the window and not with
 * the table.
 *
 * Counts, rates and means are exact.  Each numeric column keeps at most
 * CANARY_METRICS_MAX_SAMPLE values per version; above that a reservoir with
 * a fixed seed keeps a uniform sample, so percentiles and tests are
 * reproducible, and the result says that it was sampled.  The raw values
 * live in a short-lived memory context that is deleted after each
 * collection.
 *
 * A collection stores one canary.metrics row and returns its figures in a
 * CanaryMetricsSummary.  The verdict is nodata while the canary or the
 * baseline has fewer than min_samples requests, fail when a hard limit is
 * broken or a metric is significantly worse beyond its tolerance, and pass
 * otherwise.
 *
 * src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "common/shortest_dec.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "tcop/pquery.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "canary.h"
#include "logscan.h"
#include "metrics.h"
#include "rollout.h"
#include "spi_helpers.h"
#include "stats.h"

/* Maximum number of extra metrics a rollout may compare. */
#define CANARY_METRICS_MAX_EXTRA 16

/* Maximum number of values of one numeric column kept per version. */
#define CANARY_METRICS_MAX_SAMPLE 10000

/* p-value below which the observed traffic split counts as a mismatch. */
#define SAMPLE_RATIO_ALPHA 0.001

/* Seed of the reservoir sample, fixed so that a collection is repeatable. */
#define RESERVOIR_SEED UINT64CONST(0x63616e617279)

/*
 * Widest and narrowest bucket of the sequential judge, and the number of
 * buckets a stage spans at least.  A rollout whose stages last under ten
 * minutes gets buckets of a tenth of its stage duration, down to one
 * second, so that short stages are judged on evidence too.
 */
#define SEQUENTIAL_MAX_BUCKET_USECS (60 * USECS_PER_SEC)
#define SEQUENTIAL_BUCKETS_PER_STAGE 10
#define SEQUENTIAL_MIN_BUCKET_USECS USECS_PER_SEC

/*
 * Layout version of the test states in canary.sequential_evidence.  Raise
 * it when CanarySequentialTest changes meaning without changing size.
 */
#define SEQUENTIAL_EVIDENCE_LAYOUT 3

/* Tests of the sequential judge, in order; extra metrics follow. */
#define SEQUENTIAL_ERRORS 0
#define SEQUENTIAL_LATENCY_SHIFT 1
#define SEQUENTIAL_LATENCY_TAIL 2
#define SEQUENTIAL_FIRST_EXTRA 3

/* Execution log table; see canary.c for the setting's definition. */
char	   *canary_execution_log_table = NULL;

/* One extra metric of a rollout's metrics setting. */
typedef struct MetricConfig
{
	char	   *column;
	bool		decrease_is_bad;
	double		tolerance;		/* relative effect allowed, at least 0 */
	bool		critical;		/* a failure counts as a hard-limit breach */
	bool		must_have_data; /* too few values count as a failure */
} MetricConfig;

/* The settings of a rollout that a collection needs. */
typedef struct RolloutSettings
{
	char	   *id_text;
	char	   *agent_id;
	char	   *baseline_version;
	char	   *canary_version;
	char	   *status;
	int32		stage;
	Datum		percentage;		/* numeric */
	double		percentage_value;
	int64		min_samples;
	double		success_rate_ratio;
	double		p95_latency_ratio;
	double		max_error_rate;
	double		alpha;
	char	   *analysis;
	Datum		success_statuses;	/* text[] */
	Datum		error_statuses; /* text[] */
	bool		has_stage_window_start;
	TimestampTz stage_window_start; /* stage start plus warmup */
	bool		has_stage_start;
	TimestampTz stage_start;
	bool		has_attempt_start;
	TimestampTz attempt_start;	/* attempt_started_at, else started_at */
	TimestampTz attempt_window_start;	/* attempt start plus warmup */
	int32		attempt;
	int64		stage_duration_usecs;	/* stage_duration, in microseconds */
	Interval   *warmup;
	MetricConfig metrics[CANARY_METRICS_MAX_EXTRA];
	int			metric_count;
	/* Read by load_sequential_state for the sequential judge only */
	Datum		traffic_changes;	/* timestamptz[] of the attempt's changes */
	bool		has_stored_evidence;	/* a canary.sequential_evidence row */
	char	   *stored_settings;	/* the columns of that row, set only
									 * when it exists */
	int32		stored_attempt;
	TimestampTz stored_judged_until;
	Datum		stored_traffic_changes; /* timestamptz[] */
	int64		stored_counts[5];	/* excluded buckets, canary errors and
									 * requests, baseline errors and requests */
	bytea	   *stored_tests;
} RolloutSettings;

/*
 * Finite values of one numeric column for one version.  Counts and sum
 * cover every row.  values contains all of them, or a uniform sample of
 * CANARY_METRICS_MAX_SAMPLE when sampled.
 */
typedef struct ValueSample
{
	int64		count;			/* finite values */
	int64		missing;		/* NULL, NaN or infinite values */
	double		sum;
	int			kept;
	int			capacity;
	bool		sampled;
	double	   *values;			/* sorted after reading */
	pg_prng_state prng;
	double		mean;			/* NaN when count is 0 */
	double		p50;
	double		p95;
	double		p99;
} ValueSample;

/* Everything read for one version: index 0 of samples is latency_ms. */
typedef struct VersionWindow
{
	int64		requests;
	int64		successes;
	int64		errors;
	int64		unrecognized;
	double		success_rate;	/* NaN when there are no requests */
	double		error_rate;
	ValueSample *samples;
} VersionWindow;

/* One version's rows of one time bucket of the sequential judge. */
typedef struct BucketSide
{
	int64		requests;		/* rows with a success or error status */
	int64		errors;
	ValueSample *samples;		/* latency_ms, then each extra metric */
} BucketSide;

/* Statistical comparison of one metric; NaN marks a missing number. */
typedef struct MetricComparison
{
	const char *name;
	const char *verdict;		/* pass, high, low or nodata */
	bool		failed;
	const char *test;			/* NULL when no test ran */
	double		statistic;
	double		z;
	double		p_value;
	double		effect;			/* canary minus baseline */
	double		relative_effect;	/* effect over the baseline's level */
	double		baseline_level; /* baseline median or error rate */
	double		tolerance;
	bool		decrease_is_bad;
	bool		critical;
	bool		must_have_data;
} MetricComparison;

/* The execution log table resolved for one collection. */
typedef struct LogTable
{
	Oid			relid;
	char	   *display;		/* schema.table for messages */
	char	   *qualified;		/* quoted schema.table for SQL */
	int			plan_choice;	/* plan of the log read; see resolve_log_table */
} LogTable;

/*
 * Evidence of the sequential judge over the complete time buckets of the
 * current attempt; see the comment above prepare_sequential.
 */
typedef struct SequentialEvidence SequentialEvidence;
struct SequentialEvidence
{
	bool		computed;		/* false when the rollout has not started */
	TimestampTz origin;			/* attempt start plus warmup */
	int64		bucket_usecs;	/* bucket width, fixed by the rollout's settings */
	TimestampTz end;			/* end of the last complete bucket */
	TimestampTz judged_from;	/* end of the stored evidence, else origin */
	bool		restored;		/* the stored evidence was used */
	bool		stored_ahead;	/* stored evidence for later buckets exists */
	char	   *settings;		/* what the stored evidence depends on */
	TimestampTz settled;		/* end of the buckets that are stored */
	SequentialEvidence *checkpoint; /* evidence up to settled */
	int64		complete_buckets;	/* buckets in (origin, end] */
	int64		excluded_buckets;	/* dropped around a traffic change */
	TimestampTz *changes;		/* traffic changes in the attempt */
	TimestampTz *change_ends;	/* each change plus warmup */
	int			change_count;
	int			test_count;
	const char *names[CANARY_METRICS_MAX_EXTRA + 3];
	const char *events[CANARY_METRICS_MAX_EXTRA + 3];	/* what counts */
	CanarySequentialTest tests[CANARY_METRICS_MAX_EXTRA + 3];
	bool		failed[CANARY_METRICS_MAX_EXTRA + 3];
	double		test_alpha;		/* alpha split over the tests */
	double		log_threshold;	/* log(1 / test_alpha) */
	int64		canary_errors;	/* over every complete bucket */
	int64		canary_requests;
	int64		baseline_errors;
	int64		baseline_requests;
	double		canary_rate_log_evidence;	/* error rate > max_error_rate */
	double		baseline_rate_log_evidence;
	bool		rate_breached;
	char	   *summary;		/* the evidence in one line */
};

/* State and results of one collection. */
typedef struct Collection
{
	RolloutSettings rollout;
	TimestampTz at;
	TimestampTz window_start;
	TimestampTz reread_from;	/* "at" minus the window: later rows may
								 * still arrive */
	TimestampTz baseline_window_start;	/* differs at 100% traffic */
	TimestampTz baseline_window_end;
	bool		historic_baseline;
	bool		sequential;		/* analysis is 'sequential' */
	bool		keep_evidence;	/* store the sequential evidence */
	SequentialEvidence evidence;
	MemoryContext values_context;
	VersionWindow baseline;
	VersionWindow canary;
	int			comparison_count;
	MetricComparison comparisons[CANARY_METRICS_MAX_EXTRA + 2];
	double		success_rate_ratio;
	double		p95_latency_ratio;
	double		expected_share;
	double		observed_share;
	double		sample_ratio_p_value;
	bool		sample_ratio_mismatch;
	bool		hard_limit_breached;
	bool		baseline_unhealthy;
	bool		baseline_nodata;
	bool		canary_nodata;
	int64		stage_canary_requests;	/* rows since the stage started */
	int64		stage_baseline_requests;
	bool		is_healthy_isnull;
	bool		is_healthy;
	CanaryVerdict verdict;
	List	   *reasons;		/* char * */
} Collection;

/* Column names that cannot be extra metrics. */
static const char *const reserved_columns[] = {
	"agent_id", "version", "status", "timestamp", "latency_ms", "error_rate",
	NULL
};

/* Numeric types accepted for latency_ms and extra metric columns. */
static const Oid numeric_types[] = {
	INT2OID, INT4OID, INT8OID, NUMERICOID, FLOAT4OID, FLOAT8OID, InvalidOid
};

/* Text types accepted for agent_id, version and status. */
static const Oid text_types[] = {TEXTOID, VARCHAROID, InvalidOid};

/* Types accepted for "timestamp". */
static const Oid timestamp_types[] = {TIMESTAMPTZOID, InvalidOid};


/*
 * The metrics setting of a rollout
 */

/*
 * Render a JSON value as text for a message.
 */
static char *
json_value_text(JsonbValue *value)
{
	Jsonb	   *scalar;

	if (value->type == jbvBinary)
		return JsonbToCString(NULL, value->val.binary.data,
							  value->val.binary.len);
	scalar = JsonbValueToJsonb(value);
	return JsonbToCString(NULL, &scalar->root, VARSIZE(scalar));
}

/*
 * Raise the error for an invalid value of a key of a metrics element.
 */
static void
reject_metric_value(int element, const char *key, JsonbValue *value,
					const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value %s for key \"%s\" in metrics element %d",
					json_value_text(value), key, element),
			 errhint("%s", hint)));
}

/*
 * Check and store the "column" key of a metrics element.
 */
static void
parse_metric_column(int element, JsonbValue *value, MetricConfig *metric)
{
	char	   *column;

	if (value->type != jbvString || value->val.string.len == 0 ||
		value->val.string.len >= NAMEDATALEN)
		reject_metric_value(element, "column", value,
							"Give the name of a numeric column of the execution log table as a string.");
	column = pnstrdup(value->val.string.val, value->val.string.len);
	for (int i = 0; reserved_columns[i] != NULL; i++)
		if (strcmp(column, reserved_columns[i]) == 0)
			reject_metric_value(element, "column", value,
								"Columns agent_id, version, status and \"timestamp\" identify executions, and latency_ms and the error rate are always compared; name another numeric column.");
	metric->column = column;
}

/*
 * Check and store the value of one key of a metrics element.
 */
static void
parse_metric_key(int element, const char *key, JsonbValue *value,
				 MetricConfig *metric)
{
	if (strcmp(key, "column") == 0)
		parse_metric_column(element, value, metric);
	else if (strcmp(key, "direction") == 0)
	{
		if (value->type == jbvString &&
			value->val.string.len == strlen("increase_is_bad") &&
			strncmp(value->val.string.val, "increase_is_bad", value->val.string.len) == 0)
			metric->decrease_is_bad = false;
		else if (value->type == jbvString &&
				 value->val.string.len == strlen("decrease_is_bad") &&
				 strncmp(value->val.string.val, "decrease_is_bad", value->val.string.len) == 0)
			metric->decrease_is_bad = true;
		else
			reject_metric_value(element, key, value,
								"Use \"increase_is_bad\" (latency, cost) or \"decrease_is_bad\" (evaluation score).");
	}
	else if (strcmp(key, "tolerance") == 0)
	{
		if (value->type != jbvNumeric)
			reject_metric_value(element, key, value,
								"Give the relative change allowed as a number of at least 0, for example 0.05 for 5 percent.");
		metric->tolerance = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
															   NumericGetDatum(value->val.numeric)));
		if (!(metric->tolerance >= 0.0) || isinf(metric->tolerance))
			reject_metric_value(element, key, value,
								"Give the relative change allowed as a number of at least 0, for example 0.05 for 5 percent.");
	}
	else if (strcmp(key, "critical") == 0 || strcmp(key, "must_have_data") == 0)
	{
		if (value->type != jbvBool)
			reject_metric_value(element, key, value,
								"Give true or false.");
		if (key[0] == 'c')
			metric->critical = value->val.boolean;
		else
			metric->must_have_data = value->val.boolean;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unrecognized key \"%s\" in metrics element %d",
						key, element),
				 errhint("Valid keys are column, direction, tolerance, critical and must_have_data.")));
}

/*
 * Check one element of the metrics setting, counted from 1, and store it.
 */
static void
parse_metric_element(int element, JsonbValue *value, MetricConfig *metric)
{
	JsonbIterator *it;
	JsonbIteratorToken token;
	JsonbValue	item;
	bool		has_direction = false;

	if (value->type != jbvBinary || !JsonContainerIsObject(value->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metrics element %d must be a JSON object, not %s",
						element, json_value_text(value)),
				 errhint("Give an object such as {\"column\": \"eval_score\", \"direction\": \"decrease_is_bad\"}.")));

	memset(metric, 0, sizeof(MetricConfig));
	it = JsonbIteratorInit(value->val.binary.data);
	while ((token = JsonbIteratorNext(&it, &item, true)) != WJB_DONE)
	{
		char	   *key;

		if (token != WJB_KEY)
			continue;
		key = pnstrdup(item.val.string.val, item.val.string.len);
		token = JsonbIteratorNext(&it, &item, true);
		Assert(token == WJB_VALUE);
		parse_metric_key(element, key, &item, metric);
		if (strcmp(key, "direction") == 0)
			has_direction = true;
	}

	if (metric->column == NULL || !has_direction)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metrics element %d has no \"%s\" key", element,
						metric->column == NULL ? "column" : "direction"),
				 errhint("Each metrics element needs \"column\" and \"direction\".")));
}

/*
 * Check a rollout's metrics setting and store its elements in metrics,
 * which has room for CANARY_METRICS_MAX_EXTRA.  Returns the element count.
 */
static int
parse_metric_config(Jsonb *config, MetricConfig *metrics)
{
	int			count;

	if (!JB_ROOT_IS_ARRAY(config) || JB_ROOT_IS_SCALAR(config))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metrics setting must be a JSON array"),
				 errhint("Give one object per extra metric, or '[]' for none.")));
	count = JsonContainerSize(&config->root);
	if (count > CANARY_METRICS_MAX_EXTRA)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metrics setting has %d elements, more than the maximum of %d",
						count, CANARY_METRICS_MAX_EXTRA)));

	for (int i = 0; i < count; i++)
	{
		parse_metric_element(i + 1,
							 getIthJsonbValueFromContainer(&config->root, i),
							 &metrics[i]);
		for (int j = 0; j < i; j++)
			if (strcmp(metrics[i].column, metrics[j].column) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("column \"%s\" appears in metrics elements %d and %d",
								metrics[i].column, j + 1, i + 1),
						 errhint("List each column once.")));
	}
	return count;
}

/*
 * Check a rollout's extra metrics setting: a JSON array of at most
 * CANARY_METRICS_MAX_EXTRA objects, each with a "column" and a "direction"
 * and optionally "tolerance", "critical" and "must_have_data".
 */
void
canary_metrics_validate_config(Jsonb *config)
{
	MetricConfig metrics[CANARY_METRICS_MAX_EXTRA];

	(void) parse_metric_config(config, metrics);
}


/*
 * Rollout and execution log lookup
 */

/*
 * Read the rollout's settings, raising an error when it does not exist.
 */
static void
load_rollout(const pg_uuid_t *deployment_id, RolloutSettings *rollout)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		id = UUIDPGetDatum(deployment_id);
	bool		isnull;

	rollout->id_text = DatumGetCString(DirectFunctionCall1(uuid_out, id));
	if (canary_spi_execute("SELECT agent_id, baseline_version, canary_version, "
						   "status::text, current_stage, current_percentage, "
						   "current_percentage::float8, min_samples, "
						   "success_rate_ratio, p95_latency_ratio, "
						   "max_error_rate, alpha, analysis, success_statuses, "
						   "error_statuses, metrics, stage_started_at + warmup, "
						   "stage_started_at, "
						   "coalesce(attempt_started_at, started_at), "
						   "coalesce(attempt_started_at, started_at) + warmup, "
						   "attempt, "
						   "(extract(epoch FROM stage_duration) * 1000000)::bigint, "
						   "warmup "
						   "FROM canary.deployments WHERE id = $1",
						   1, argtypes, &id, NULL, SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rollout %s does not exist", rollout->id_text),
				 errhint("List rollouts with SELECT * FROM canary.rollouts.")));

	rollout->agent_id = canary_spi_get_text(0, 1);
	rollout->baseline_version = canary_spi_get_text(0, 2);
	rollout->canary_version = canary_spi_get_text(0, 3);
	rollout->status = canary_spi_get_text(0, 4);
	rollout->stage = DatumGetInt32(canary_spi_get(0, 5, &isnull));
	rollout->percentage = datumCopy(canary_spi_get(0, 6, &isnull), false, -1);
	rollout->percentage_value = DatumGetFloat8(canary_spi_get(0, 7, &isnull));
	rollout->min_samples = DatumGetInt32(canary_spi_get(0, 8, &isnull));
	rollout->success_rate_ratio = DatumGetFloat8(canary_spi_get(0, 9, &isnull));
	rollout->p95_latency_ratio = DatumGetFloat8(canary_spi_get(0, 10, &isnull));
	rollout->max_error_rate = DatumGetFloat8(canary_spi_get(0, 11, &isnull));
	rollout->alpha = DatumGetFloat8(canary_spi_get(0, 12, &isnull));
	rollout->analysis = canary_spi_get_text(0, 13);
	rollout->success_statuses = datumCopy(canary_spi_get(0, 14, &isnull), false, -1);
	rollout->error_statuses = datumCopy(canary_spi_get(0, 15, &isnull), false, -1);
	rollout->metric_count =
		parse_metric_config(DatumGetJsonbP(canary_spi_get(0, 16, &isnull)),
							rollout->metrics);
	rollout->stage_window_start =
		DatumGetTimestampTz(canary_spi_get(0, 17, &isnull));
	rollout->has_stage_window_start = !isnull;
	rollout->stage_start = DatumGetTimestampTz(canary_spi_get(0, 18, &isnull));
	rollout->has_stage_start = !isnull;
	rollout->attempt_start = DatumGetTimestampTz(canary_spi_get(0, 19, &isnull));
	rollout->has_attempt_start = !isnull;
	rollout->attempt_window_start =
		DatumGetTimestampTz(canary_spi_get(0, 20, &isnull));
	rollout->attempt = DatumGetInt32(canary_spi_get(0, 21, &isnull));
	rollout->stage_duration_usecs = DatumGetInt64(canary_spi_get(0, 22, &isnull));
	rollout->warmup = DatumGetIntervalP(datumCopy(canary_spi_get(0, 23, &isnull),
												  false, sizeof(Interval)));
}

/*
 * Read what the sequential judge needs besides the rollout's settings: the
 * traffic changes of the current attempt, and the stored evidence if there
 * is any.  Two plain statements cost less than one that joins them.
 */
static void
load_sequential_state(const pg_uuid_t *deployment_id, RolloutSettings *rollout)
{
	Oid			argtypes[4] = {UUIDOID, INT4OID, TIMESTAMPTZOID, INTERVALOID};
	Datum		values[4];
	bool		isnull;

	/*
	 * The attempt, its start and the warmup come from load_rollout's
	 * snapshot, so that a retry committed in between cannot mix two
	 * attempts.
	 */
	values[0] = UUIDPGetDatum(deployment_id);
	values[1] = Int32GetDatum(rollout->attempt);
	values[2] = TimestampTzGetDatum(rollout->attempt_start);
	values[3] = IntervalPGetDatum(rollout->warmup);
	canary_spi_execute("SELECT ARRAY(SELECT t.at FROM canary.transitions t "
					   "WHERE t.deployment_id = $1 AND t.attempt = $2 "
					   "AND t.old_percentage IS DISTINCT FROM t.new_percentage "
					   "AND t.at + $4 > $3 + $4 ORDER BY t.at)",
					   4, argtypes, values, NULL, SPI_OK_SELECT, 1);
	rollout->traffic_changes = datumCopy(canary_spi_get(0, 1, &isnull), false, -1);

	rollout->has_stored_evidence =
		canary_spi_execute("SELECT settings, attempt, judged_until, "
						   "traffic_changes, excluded_buckets, canary_errors, "
						   "canary_requests, baseline_errors, "
						   "baseline_requests, tests "
						   "FROM canary.sequential_evidence "
						   "WHERE deployment_id = $1",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) > 0;
	if (!rollout->has_stored_evidence)
		return;
	rollout->stored_settings = canary_spi_get_text(0, 1);
	rollout->stored_attempt = DatumGetInt32(canary_spi_get(0, 2, &isnull));
	rollout->stored_judged_until =
		DatumGetTimestampTz(canary_spi_get(0, 3, &isnull));
	rollout->stored_traffic_changes =
		datumCopy(canary_spi_get(0, 4, &isnull), false, -1);
	for (int i = 0; i < 5; i++)
		rollout->stored_counts[i] = DatumGetInt64(canary_spi_get(0, 5 + i, &isnull));
	rollout->stored_tests =
		DatumGetByteaPCopy(canary_spi_get(0, 10, &isnull));
}

/*
 * Resolve canary.execution_log_table.  A name without a schema means schema
 * public, because canary's functions run with a fixed search_path.
 */
static void
resolve_log_table(LogTable *table)
{
	char	   *copy = pstrdup(canary_execution_log_table);
	List	   *names;
	RangeVar   *range;
	char		relkind;

	if (!SplitIdentifierString(copy, '.', &names) ||
		list_length(names) < 1 || list_length(names) > 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid execution log table name \"%s\"",
						canary_execution_log_table),
				 errhint("Set \"canary.execution_log_table\" to a table name, optionally qualified with its schema.")));
	if (list_length(names) == 1)
		range = makeRangeVar("public", linitial(names), -1);
	else
		range = makeRangeVar(linitial(names), lsecond(names), -1);
	table->display = psprintf("%s.%s", range->schemaname, range->relname);
	table->relid = RangeVarGetRelid(range, AccessShareLock, true);
	if (!OidIsValid(table->relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("execution log table \"%s\" does not exist",
						table->display),
				 errhint("Create it with canary_create_execution_log_table(), or set \"canary.execution_log_table\" to the table that holds the execution log.")));

	relkind = get_rel_relkind(table->relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_VIEW && relkind != RELKIND_MATVIEW &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("execution log \"%s\" is not a table or view",
						table->display)));
	table->qualified = psprintf("%s.%s",
								quote_identifier(get_namespace_name(get_rel_namespace(table->relid))),
								quote_identifier(get_rel_name(table->relid)));

	/*
	 * A plain table is read through its generic plan, an index range scan
	 * whatever the window.  A custom plan would be planned again on every
	 * call while its estimate is below the generic one, as for an empty
	 * window.  A partitioned table gets a plan per call instead, which
	 * prunes to the window's partitions and locks only those: a generic
	 * plan locks every partition, and thousands of them exhaust the lock
	 * table.  So do inheritance children, which constraint exclusion can
	 * then skip.  Views and foreign tables are left to the plan cache.
	 */
	if (relkind == RELKIND_PARTITIONED_TABLE || has_subclass(table->relid))
		table->plan_choice = CURSOR_OPT_CUSTOM_PLAN;
	else if (relkind == RELKIND_RELATION)
		table->plan_choice = CURSOR_OPT_GENERIC_PLAN;
	else
		table->plan_choice = 0;
}

/*
 * Check that the execution log has a column with one of the given types
 * (domains over them included).  expected describes the types for the
 * message.
 */
static void
check_log_column(const LogTable *table, const char *column,
				 const Oid *types, const char *expected, bool extra)
{
	AttrNumber	attnum = get_attnum(table->relid, column);
	Oid			type;

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of execution log table \"%s\" does not exist",
						column, table->display),
				 extra ?
				 errhint("The rollout's metrics setting names this column. Add it to the table, or create a rollout without it.") :
				 errhint("The execution log needs columns agent_id, version, status, latency_ms and \"timestamp\"; canary_create_execution_log_table() creates a table with them.")));

	type = getBaseType(get_atttype(table->relid, attnum));
	for (int i = 0; OidIsValid(types[i]); i++)
		if (type == types[i])
			return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("column \"%s\" of execution log table \"%s\" has type %s, but %s is required",
					column, table->display, format_type_be(type), expected)));
}

/*
 * Check every column a collection reads.
 */
static void
check_log_columns(const LogTable *table, const RolloutSettings *rollout)
{
	const char *numeric = "a numeric type (smallint, integer, bigint, numeric, real or double precision)";

	check_log_column(table, "agent_id", text_types, "text or character varying", false);
	check_log_column(table, "version", text_types, "text or character varying", false);
	check_log_column(table, "status", text_types, "text or character varying", false);
	check_log_column(table, "latency_ms", numeric_types, numeric, false);
	check_log_column(table, "timestamp", timestamp_types, "timestamp with time zone", false);
	for (int i = 0; i < rollout->metric_count; i++)
		check_log_column(table, rollout->metrics[i].column, numeric_types,
						 numeric, true);
}


/*
 * Reading a window
 */

/*
 * Add one value to a sample: sample_add without its common case.  Past the
 * cap, Algorithm R keeps a uniform sample: the n-th value replaces a random
 * kept one with probability cap/n.
 * NOTE: which values are kept depends on the order they arrive in, and rows
 * with equal timestamps can arrive in another order through another index.
 */
static pg_noinline void
sample_add_slow(ValueSample *sample, MemoryContext context, double value)
{
	uint64		slot;

	if (!isfinite(value))
	{
		sample->missing++;
		return;
	}
	sample->count++;
	sample->sum += value;
	if (sample->kept < CANARY_METRICS_MAX_SAMPLE)
	{
		if (sample->kept == sample->capacity)
		{
			sample->capacity = Min(Max(sample->capacity * 2, 256),
								   CANARY_METRICS_MAX_SAMPLE);
			sample->values = sample->values == NULL ?
				MemoryContextAlloc(context, sample->capacity * sizeof(double)) :
				repalloc(sample->values, sample->capacity * sizeof(double));
		}
		sample->values[sample->kept++] = value;
		return;
	}
	sample->sampled = true;
	slot = pg_prng_uint64_range(&sample->prng, 0, (uint64) sample->count - 1);
	if (slot < CANARY_METRICS_MAX_SAMPLE)
		sample->values[slot] = value;
}

/*
 * Add one value to a sample; see sample_add_slow.  A finite value that
 * fits into the values allocated is kept here.
 */
static inline void
sample_add(ValueSample *sample, MemoryContext context, double value)
{
	if (likely(sample->kept < sample->capacity && isfinite(value)))
	{
		sample->count++;
		sample->sum += value;
		sample->values[sample->kept++] = value;
		return;
	}
	sample_add_slow(sample, context, value);
}

/*
 * Sort a version's samples and compute its rates, means and percentiles.
 * A rate or percentile over no rows is NaN, stored as NULL.
 */
static void
summarize_version(VersionWindow *window, int value_count)
{
	window->success_rate = get_float8_nan();
	window->error_rate = get_float8_nan();
	if (window->requests > 0)
	{
		window->success_rate = (double) window->successes / window->requests;
		window->error_rate = (double) window->errors / window->requests;
	}

	for (int i = 0; i < value_count; i++)
	{
		ValueSample *sample = &window->samples[i];

		canary_stats_sort(sample->values, sample->kept);
		sample->mean = sample->count > 0 ?
			sample->sum / sample->count : get_float8_nan();
		sample->p50 = canary_stats_percentile_sorted(sample->values, sample->kept, 0.50);
		sample->p95 = canary_stats_percentile_sorted(sample->values, sample->kept, 0.95);
		sample->p99 = canary_stats_percentile_sorted(sample->values, sample->kept, 0.99);
	}
}


/*
 * The sequential judge
 *
 * Method.  Time since the attempt started plus warmup is cut into buckets
 * of width w (one minute, or a tenth of a shorter stage duration),
 * (origin + j w, origin + (j+1) w];
 * a bucket counts once its end is at or before the evaluation time.  In
 * each bucket, every event metric gives a 2x2 table: canary events among
 * canary requests against baseline events among baseline requests.  Event
 * metrics, in this order:
 *   errors         an error status, among rows with a success or error status;
 *   latency_shift  latency strictly above the bucket's pooled median (both
 *                  versions' latencies together);
 *   latency_tail   latency strictly above the bucket's pooled p95, which sees
 *                  a slower tail even when the median does not move;
 *   <column>       each extra metric strictly beyond the bucket's pooled
 *                  median in its bad direction.
 * Each metric's tables feed a test martingale (canary_stats_sequential_add
 * in stats.c): a mixture over odds ratios psi > 1 of products of Fisher
 * noncentral hypergeometric likelihood ratios.  The metric fails once its
 * evidence M has reached 1/a at the end of any complete bucket, with
 * a = alpha / (event metrics + 1): a Bonferroni split over the event
 * metrics and the error-rate limit below.
 *
 * Guarantee.  If the canary is no worse than the baseline, the probability
 * that any test ever fails during the attempt, over all evaluations however
 * often they run, is at most the rollout's alpha.  Within a metric this is
 * Ville's inequality, P(sup M >= 1/a) <= a; across metrics it is the
 * Bonferroni split.  The tables are exact at any count: no normal
 * approximation is involved.
 *
 * Assumptions.  (1) Within a bucket, canary and baseline requests are
 * exchangeable when the canary is no worse: routing is random and
 * independent of the request's outcome, and both versions serve the same
 * minute, so load and time of day cancel out.  Buckets that contain a
 * traffic change of the attempt, or lie within warmup after one, are
 * dropped, because the canary's share changes within them.  (2) Requests
 * are independent given the bucket's pooled data, or at least no version's
 * outcomes depend on the other's routing.  (3) A row is written with a
 * "timestamp" inside its bucket within a window of that time.
 * canary_evaluate stores the evidence of the buckets that end a window
 * before its evaluation time (see restore_evidence), later evaluations do
 * not judge those buckets again, and so a row that arrives later does not
 * count toward the tests.  (4) "No worse" means an odds ratio of
 * at most 1 for errors; for latency and extra metrics the guarantee is exact
 * when both versions have the same distribution, and holds for a better
 * canary when its density ratio to the baseline decreases in the bad
 * direction (monotone likelihood ratio).
 *
 * Error-rate limit.  The fixed thresholds do not fail a sequential rollout,
 * with one exception: the canary's error rate over the attempt fails as a
 * hard limit when its evidence of exceeding max_error_rate reaches 1/a
 * (canary_stats_rate_log_evidence, a binomial mixture likelihood ratio,
 * valid over all looks like the tests above).  A one-sided Clopper-Pearson
 * bound at level a would be exact at one look but not over repeated looks,
 * which is why it is not used.  The same evidence for the baseline marks
 * the baseline unhealthy, and a canary breach that the baseline shares is
 * left to that check.  This check assumes independent requests: bursts of
 * errors above max_error_rate count as evidence of a breach.
 *
 * Limits.  Evidence grows with the number of events, not requests: with a
 * 1% error rate, 100 requests per minute and 5% canary traffic, the canary
 * sees about 1.5 errors in a 30-minute stage, so a doubling of the error
 * rate cannot be distinguished from noise in the first stages.  Memory
 * contains one bucket (at most CANARY_METRICS_MAX_SAMPLE values per column
 * and version, a reservoir sample above that).  An evaluation reads the
 * rows of the buckets after the stored evidence.  A collection without
 * stored evidence, such as the first of an attempt, reads every row since
 * the origin.
 *
 * Reasons.  A failed test reports its evidence against the threshold, the
 * buckets it used, both versions' event counts and the Mantel-Haenszel odds
 * ratio; otherwise one reason lists every test's evidence.
 */

/*
 * Empty a bucket side, keeping its value buffers.  The reservoir seed is
 * reset so that every bucket is sampled the same way on every collection.
 */
static void
bucket_reset(BucketSide *side, int value_count)
{
	side->requests = 0;
	side->errors = 0;
	for (int i = 0; i < value_count; i++)
	{
		ValueSample *sample = &side->samples[i];

		sample->count = 0;
		sample->missing = 0;
		sample->sum = 0.0;
		sample->kept = 0;
		sample->sampled = false;
		pg_prng_seed(&sample->prng, RESERVOIR_SEED);
	}
}

/*
 * Count the values strictly above cut, or strictly below it when below is
 * set.
 */
static int64
count_beyond(const double *values, int n, double cut, bool below)
{
	int64		count = 0;

	for (int i = 0; i < n; i++)
		if (below ? values[i] < cut : values[i] > cut)
			count++;
	return count;
}

/* Values of both versions of a bucket, reused from bucket to bucket */
typedef struct PooledValues
{
	MemoryContext context;
	int			capacity;
	double	   *values;
} PooledValues;

/*
 * Compute count percentiles, fractions in ascending order, of both
 * versions' values of a bucket's column taken together.  Returns false,
 * computing nothing, when either version has no value.
 */
static bool
pooled_percentiles(PooledValues *pooled, const ValueSample *canary,
				   const ValueSample *baseline, const double *fractions,
				   int count, double *results)
{
	int			n = canary->kept + baseline->kept;

	if (canary->kept == 0 || baseline->kept == 0)
		return false;
	if (n > pooled->capacity)
	{
		pooled->capacity = Max(n, 2 * pooled->capacity);
		if (pooled->values != NULL)
			pfree(pooled->values);
		pooled->values = MemoryContextAlloc(pooled->context,
											sizeof(double) * pooled->capacity);
	}
	memcpy(pooled->values, canary->values, sizeof(double) * canary->kept);
	memcpy(pooled->values + canary->kept, baseline->values,
		   sizeof(double) * baseline->kept);
	canary_stats_percentiles_select(pooled->values, n, fractions, count,
									results);
	return true;
}

/*
 * Add one bucket's table of a value column to test.  The events are the
 * values beyond cut, a percentile of both versions' values in the bucket.
 */
static void
add_value_table(CanarySequentialTest *test, const ValueSample *canary,
				const ValueSample *baseline, double cut, bool below)
{
	canary_stats_sequential_add(test,
								count_beyond(canary->values, canary->kept,
											 cut, below),
								canary->kept,
								count_beyond(baseline->values, baseline->kept,
											 cut, below),
								baseline->kept);
}

/*
 * Whether bucket j, (start, end], overlaps a traffic change of the attempt
 * or the warmup after it: start < change + warmup and change < end.
 */
static bool
bucket_excluded(const SequentialEvidence *e, int64 j)
{
	TimestampTz start = e->origin + j * e->bucket_usecs;
	TimestampTz end = start + e->bucket_usecs;

	for (int i = 0; i < e->change_count; i++)
		if (start < e->change_ends[i] && e->changes[i] < end)
			return true;
	return false;
}

/*
 * Judge one bucket: add its tables to every test.
 */
static void
judge_bucket(Collection *collection, PooledValues *pooled,
			 BucketSide *canary, BucketSide *baseline, int64 j)
{
	/* The latency tests count values above the median and the p95. */
	static const double latency_cuts[] = {0.50, 0.95};
	static const double median = 0.50;
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;
	double		cuts[lengthof(latency_cuts)];

	/* The error-rate limit needs no baseline, so it reads every bucket. */
	e->canary_errors += canary->errors;
	e->canary_requests += canary->requests;
	e->baseline_errors += baseline->errors;
	e->baseline_requests += baseline->requests;
	if (bucket_excluded(e, j))
	{
		e->excluded_buckets++;
		return;
	}

	canary_stats_sequential_add(&e->tests[SEQUENTIAL_ERRORS],
								canary->errors, canary->requests,
								baseline->errors, baseline->requests);
	if (pooled_percentiles(pooled, &canary->samples[0], &baseline->samples[0],
						   latency_cuts, lengthof(latency_cuts), cuts))
	{
		add_value_table(&e->tests[SEQUENTIAL_LATENCY_SHIFT],
						&canary->samples[0], &baseline->samples[0], cuts[0],
						false);
		add_value_table(&e->tests[SEQUENTIAL_LATENCY_TAIL],
						&canary->samples[0], &baseline->samples[0], cuts[1],
						false);
	}
	for (int i = 0; i < r->metric_count; i++)
		if (pooled_percentiles(pooled, &canary->samples[i + 1],
							   &baseline->samples[i + 1], &median, 1, cuts))
			add_value_table(&e->tests[SEQUENTIAL_FIRST_EXTRA + i],
							&canary->samples[i + 1], &baseline->samples[i + 1],
							cuts[0], r->metrics[i].decrease_is_bad);
}

/*
 * Set the attempt's traffic changes from what load_sequential_state read:
 * every transition of the current attempt that changed the canary's
 * percentage and whose warmup ends after the origin, and each change plus
 * warmup.
 */
static void
set_traffic_changes(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;
	Datum	   *changes;
	int			count;

	deconstruct_array(DatumGetArrayTypeP(r->traffic_changes), TIMESTAMPTZOID,
					  sizeof(TimestampTz), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &changes, NULL, &count);
	e->change_count = count;
	e->changes = palloc(sizeof(TimestampTz) * Max(count, 1));
	e->change_ends = palloc(sizeof(TimestampTz) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		e->changes[i] = DatumGetTimestampTz(changes[i]);
		e->change_ends[i] =
			DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													changes[i],
													IntervalPGetDatum(r->warmup)));
	}
}

/*
 * Return the bucket width of a rollout: a tenth of its stage duration, but
 * at most one minute and at least one second.  It depends only on settings
 * fixed before any data is seen, as the guarantee requires.
 */
static int64
sequential_bucket_width(int64 stage_duration_usecs)
{
	int64		width = stage_duration_usecs / SEQUENTIAL_BUCKETS_PER_STAGE;

	if (width > SEQUENTIAL_MAX_BUCKET_USECS)
		return SEQUENTIAL_MAX_BUCKET_USECS;
	if (width < SEQUENTIAL_MIN_BUCKET_USECS)
		return SEQUENTIAL_MIN_BUCKET_USECS;
	return width;
}

/*
 * Describe a bucket width for a reason, such as "one-minute" or "2 s".
 */
static char *
describe_bucket(int64 bucket_usecs)
{
	if (bucket_usecs == SEQUENTIAL_MAX_BUCKET_USECS)
		return pstrdup("one-minute");
	return psprintf("%g s", (double) bucket_usecs / USECS_PER_SEC);
}

/*
 * Name the tests of the sequential judge, set them up and split alpha.
 */
static void
init_sequential(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;

	e->test_count = SEQUENTIAL_FIRST_EXTRA + r->metric_count;
	e->names[SEQUENTIAL_ERRORS] = "errors";
	e->events[SEQUENTIAL_ERRORS] = "errors";
	e->names[SEQUENTIAL_LATENCY_SHIFT] = "latency_shift";
	e->events[SEQUENTIAL_LATENCY_SHIFT] = "latencies above the bucket's pooled median";
	e->names[SEQUENTIAL_LATENCY_TAIL] = "latency_tail";
	e->events[SEQUENTIAL_LATENCY_TAIL] = "latencies above the bucket's pooled p95";
	for (int i = 0; i < r->metric_count; i++)
	{
		e->names[SEQUENTIAL_FIRST_EXTRA + i] = r->metrics[i].column;
		e->events[SEQUENTIAL_FIRST_EXTRA + i] = r->metrics[i].decrease_is_bad ?
			"values below the bucket's pooled median" :
			"values above the bucket's pooled median";
	}
	for (int i = 0; i < e->test_count; i++)
		canary_stats_sequential_init(&e->tests[i], NULL, NULL, 0);

	/* One share for each event metric and one for the error-rate limit */
	e->test_alpha = r->alpha / (e->test_count + 1);
	e->log_threshold = -log(e->test_alpha);
	e->bucket_usecs = sequential_bucket_width(r->stage_duration_usecs);
}

/*
 * Return the text form of a text[] setting.
 */
static char *
text_array_string(Datum array)
{
	Oid			output;
	bool		is_varlena;

	getTypeOutputInfo(TEXTARRAYOID, &output, &is_varlena);
	return OidOutputFunctionCall(output, array);
}

/*
 * Describe everything besides the rows that the sequential evidence depends
 * on, so that stored evidence is used only with the settings it was made
 * with.  Alpha is not part of it, because it applies only when deciding.
 */
static char *
evidence_settings(const Collection *collection, const LogTable *table)
{
	const RolloutSettings *r = &collection->rollout;
	const SequentialEvidence *e = &collection->evidence;
	StringInfoData settings;

	initStringInfo(&settings);
	appendStringInfo(&settings, "layout %d/%d/%d, log %u, agent %s, "
					 "versions %s %s, success %s, error %s, origin " INT64_FORMAT ", "
					 "bucket " INT64_FORMAT ", metrics",
					 SEQUENTIAL_EVIDENCE_LAYOUT,
					 (int) sizeof(CanarySequentialTest),
					 CANARY_STATS_MAX_ODDS_RATIOS, table->relid,
					 quote_literal_cstr(r->agent_id),
					 quote_literal_cstr(r->baseline_version),
					 quote_literal_cstr(r->canary_version),
					 quote_literal_cstr(text_array_string(r->success_statuses)),
					 quote_literal_cstr(text_array_string(r->error_statuses)),
					 (int64) e->origin, e->bucket_usecs);
	for (int i = 0; i < r->metric_count; i++)
		appendStringInfo(&settings, " %s %s",
						 quote_identifier(r->metrics[i].column),
						 r->metrics[i].decrease_is_bad ? "down" : "up");
	return settings.data;
}

/*
 * Count the attempt's traffic changes before "until", the ones that can
 * exclude a bucket that ends at or before it.
 */
static int
changes_before(const SequentialEvidence *e, TimestampTz until)
{
	int			count = 0;

	while (count < e->change_count && e->changes[count] < until)
		count++;
	return count;
}

/*
 * Continue from the rollout's stored evidence if it was made for this
 * attempt with the same settings and traffic changes, and ends within the
 * complete buckets.  Then the tests and counts start from it, and only the
 * buckets after judged_from are read.  Otherwise every bucket since the
 * origin is read.
 */
static void
restore_evidence(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;
	Datum	   *changes;
	int			change_count;

	if (!r->has_stored_evidence ||
		strcmp(r->stored_settings, e->settings) != 0 ||
		r->stored_attempt != r->attempt)
		return;

	/* A collection at an earlier time must not replace it. */
	e->stored_ahead = r->stored_judged_until > e->end;
	if (r->stored_judged_until <= e->origin ||
		r->stored_judged_until > e->end ||
		(r->stored_judged_until - e->origin) % e->bucket_usecs != 0 ||
		VARSIZE_ANY_EXHDR(r->stored_tests) !=
		sizeof(CanarySequentialTest) * e->test_count)
		return;

	/* A traffic change recorded since then could exclude judged buckets. */
	deconstruct_array(DatumGetArrayTypeP(r->stored_traffic_changes),
					  TIMESTAMPTZOID, sizeof(TimestampTz), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &changes, NULL, &change_count);
	if (change_count != changes_before(e, r->stored_judged_until))
		return;
	for (int i = 0; i < change_count; i++)
		if (DatumGetTimestampTz(changes[i]) != e->changes[i])
			return;

	memcpy(e->tests, VARDATA_ANY(r->stored_tests),
		   VARSIZE_ANY_EXHDR(r->stored_tests));
	e->excluded_buckets = r->stored_counts[0];
	e->canary_errors = r->stored_counts[1];
	e->canary_requests = r->stored_counts[2];
	e->baseline_errors = r->stored_counts[3];
	e->baseline_requests = r->stored_counts[4];
	e->judged_from = r->stored_judged_until;
	e->restored = true;
}

/*
 * Store the evidence over the buckets up to "settled" as the rollout's
 * canary.sequential_evidence row, unless the stored row is valid and covers
 * at least as many buckets.
 */
static void
store_evidence(const Collection *collection, const pg_uuid_t *deployment_id)
{
	const SequentialEvidence *e = collection->evidence.checkpoint;
	Oid			argtypes[11] = {UUIDOID, INT4OID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZARRAYOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	BYTEAOID};
	Datum		values[11];
	Datum	   *changes;
	int			change_count;
	Size		size;
	bytea	   *tests;

	/* Store only buckets that the stored evidence does not cover yet. */
	if (e == NULL || e->settled <= e->judged_from ||
		collection->evidence.stored_ahead)
		return;

	change_count = changes_before(e, e->settled);
	size = sizeof(CanarySequentialTest) * e->test_count;
	changes = palloc(sizeof(Datum) * Max(change_count, 1));
	for (int i = 0; i < change_count; i++)
		changes[i] = TimestampTzGetDatum(e->changes[i]);
	tests = palloc(VARHDRSZ + size);
	SET_VARSIZE(tests, VARHDRSZ + size);
	memcpy(VARDATA(tests), e->tests, size);

	values[0] = UUIDPGetDatum(deployment_id);
	values[1] = Int32GetDatum(collection->rollout.attempt);
	values[2] = CStringGetTextDatum(e->settings);
	values[3] = TimestampTzGetDatum(e->settled);
	values[4] = PointerGetDatum(construct_array(changes, change_count,
												TIMESTAMPTZOID,
												sizeof(TimestampTz),
												FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	values[5] = Int64GetDatum(e->excluded_buckets);
	values[6] = Int64GetDatum(e->canary_errors);
	values[7] = Int64GetDatum(e->canary_requests);
	values[8] = Int64GetDatum(e->baseline_errors);
	values[9] = Int64GetDatum(e->baseline_requests);
	values[10] = PointerGetDatum(tests);
	canary_spi_execute("INSERT INTO canary.sequential_evidence AS s "
					   "(deployment_id, attempt, settings, judged_until, "
					   "traffic_changes, excluded_buckets, canary_errors, "
					   "canary_requests, baseline_errors, baseline_requests, "
					   "tests) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
					   "ON CONFLICT (deployment_id) DO UPDATE SET "
					   "attempt = excluded.attempt, "
					   "settings = excluded.settings, "
					   "judged_until = excluded.judged_until, "
					   "traffic_changes = excluded.traffic_changes, "
					   "excluded_buckets = excluded.excluded_buckets, "
					   "canary_errors = excluded.canary_errors, "
					   "canary_requests = excluded.canary_requests, "
					   "baseline_errors = excluded.baseline_errors, "
					   "baseline_requests = excluded.baseline_requests, "
					   "tests = excluded.tests, updated_at = pg_catalog.now()",
					   11, argtypes, values, NULL, SPI_OK_INSERT, 1);
}

/*
 * Set up the sequential judge of the current attempt: its tests, the
 * complete buckets since the origin and the attempt's traffic changes.  A
 * rollout that has not started, or whose origin is not before "at", has no
 * evidence.  read_log fills the buckets.
 */
static void
prepare_sequential(Collection *collection, const LogTable *table,
				   const pg_uuid_t *deployment_id)
{
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;

	init_sequential(collection);
	if (!r->has_attempt_start || collection->at <= r->attempt_window_start)
		return;

	/* The last complete bucket ends at or before "at". */
	e->computed = true;
	e->origin = r->attempt_window_start;
	e->complete_buckets = (collection->at - e->origin) / e->bucket_usecs;
	e->end = e->origin + e->complete_buckets * e->bucket_usecs;
	e->judged_from = e->origin;
	load_sequential_state(deployment_id, r);
	set_traffic_changes(collection);

	/* The settings are needed only to match stored evidence or store it. */
	if (r->has_stored_evidence || collection->keep_evidence)
		e->settings = evidence_settings(collection, table);
	restore_evidence(collection);

	/*
	 * Rows may still arrive for the buckets within the window, so the next
	 * evaluation reads those again, and only the buckets before them are
	 * stored.
	 */
	e->settled = e->origin;
	if (collection->reread_from > e->origin)
		e->settled = e->origin +
			(collection->reread_from - e->origin) / e->bucket_usecs *
			e->bucket_usecs;
	e->settled = Min(e->settled, e->end);
}


/*
 * Reading the execution log
 *
 * Each version is read by its own index range scan on (agent_id, version,
 * "timestamp"), in "timestamp" order.  A plain table with a suitable index
 * is scanned directly (see logscan.c).  Any other table is read through a
 * cursor whose batches go from the executor straight into a LogStream's
 * arrays through a DestReceiver, so no row is formed into a tuple for SPI.
 * For the sequential judge both streams are read one bucket at a time.  Each
 * row counts toward its version's window, toward the stage rows before the
 * window that min_samples counts, and toward the current bucket of the
 * sequential judge, as its timestamp falls.  A bucket is judged when the
 * next bucket with rows opens.
 * Each version's range is the smallest one that covers all three, so every
 * row is read once, and memory contains one batch per version and one
 * bucket.
 */

/* Versions, in the order of the reader's arrays. */
#define SIDE_BASELINE 0
#define SIDE_CANARY 1

/* Status classes of a log row. */
#define LOG_STATUS_OTHER 0
#define LOG_STATUS_SUCCESS 1
#define LOG_STATUS_ERROR 2

/* Rows fetched from a version's cursor at a time. */
#define LOG_BATCH_ROWS 1000

/* A time range (from, to]; empty when from >= to. */
typedef struct TimeRange
{
	TimestampTz from;
	TimestampTz to;
} TimeRange;

/* The statuses of one class, from a text[] setting. */
typedef struct StatusList
{
	int			count;
	const char **data;
	int		   *lengths;
} StatusList;

/*
 * One version's cursor and its current batch.  Row i of the batch has
 * timestamps[i], classes[i], and its values, latency_ms first, at
 * values[i * value_count] with the matching nulls.
 */
typedef struct LogStream
{
	DestReceiver pub;			/* receives the batch; must be first */
	const struct LogReader *reader;
	LogIndexScan *scan;			/* the direct scan, or NULL */
	Portal		portal;			/* the cursor when SQL reads */
	int			value_count;
	int			rows;			/* rows in the batch */
	int			next;			/* next row to merge */
	bool		done;			/* the cursor has no more rows */
	TimestampTz *timestamps;
	int		   *classes;
	double	   *values;
	bool	   *nulls;
} LogStream;

/* State of one pass over both versions; see the comment above. */
typedef struct LogReader
{
	Collection *collection;
	int			value_count;
	StatusList	success;
	StatusList	error;
	VersionWindow *windows[2];
	TimeRange	window_ranges[2];
	TimeRange	stage_ranges[2];	/* stage rows before the window */
	int64		stage_rows[2];
	bool		bucketed;		/* the sequential judge reads buckets */
	bool		bucket_open;	/* sides hold the rows of bucket */
	int64		bucket;
	BucketSide	sides[2];
	PooledValues pooled;		/* the judge's scratch space */
	int			plan_choice;	/* the log table's plan_choice */
	LogIndex   *log_index;		/* direct scans, or NULL to read with SQL */
	LogStream	streams[2];
} LogReader;

/*
 * Build the query of one version.  Columns: "timestamp", status,
 * latency_ms and each extra metric as float8.  Parameters: agent, version,
 * and the range (from, to].
 */
static char *
build_log_query(const LogTable *table, const RolloutSettings *rollout)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT \"timestamp\", status::text, "
						   "latency_ms::float8");
	for (int i = 0; i < rollout->metric_count; i++)
		appendStringInfo(&sql, ", %s::float8",
						 quote_identifier(rollout->metrics[i].column));
	appendStringInfo(&sql, " FROM %s WHERE agent_id = $1 AND version = $2 "
					 "AND \"timestamp\" > $3 AND \"timestamp\" <= $4 "
					 "ORDER BY \"timestamp\"", table->qualified);
	return sql.data;
}

/*
 * Read a text[] status setting into list.  NULL elements match nothing.
 */
static void
status_list_init(StatusList *list, Datum statuses)
{
	Datum	   *elements;
	bool	   *nulls;
	int			count;

	deconstruct_array(DatumGetArrayTypeP(statuses), TEXTOID, -1, false,
					  TYPALIGN_INT, &elements, &nulls, &count);
	list->count = 0;
	list->data = palloc(sizeof(char *) * Max(count, 1));
	list->lengths = palloc(sizeof(int) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		text	   *status;

		if (nulls[i])
			continue;
		status = DatumGetTextPP(elements[i]);
		list->data[list->count] = VARDATA_ANY(status);
		list->lengths[list->count] = VARSIZE_ANY_EXHDR(status);
		list->count++;
	}
}

/*
 * Whether a status of length bytes is in list.
 */
static bool
status_listed(const StatusList *list, const char *data, int length)
{
	for (int i = 0; i < list->count; i++)
		if (list->lengths[i] == length &&
			memcmp(list->data[i], data, length) == 0)
			return true;
	return false;
}

/*
 * Return the class of a row's status: success, error or other.  A NULL
 * status is other.
 */
static int
status_class(const LogReader *reader, const text *status)
{
	const char *data;
	int			length;

	if (status == NULL)
		return LOG_STATUS_OTHER;
	data = VARDATA_ANY(status);
	length = VARSIZE_ANY_EXHDR(status);
	if (status_listed(&reader->success, data, length))
		return LOG_STATUS_SUCCESS;
	if (status_listed(&reader->error, data, length))
		return LOG_STATUS_ERROR;
	return LOG_STATUS_OTHER;
}

/*
 * DestReceiver callback: append one row to the stream's batch.
 */
static bool
stream_receive(TupleTableSlot *slot, DestReceiver *self)
{
	LogStream  *stream = (LogStream *) self;
	int			row = stream->rows++;

	slot_getallattrs(slot);
	stream->timestamps[row] = DatumGetTimestampTz(slot->tts_values[0]);
	stream->classes[row] = status_class(stream->reader,
										slot->tts_isnull[1] ? NULL :
										DatumGetTextPP(slot->tts_values[1]));
	for (int i = 0; i < stream->value_count; i++)
	{
		int			cell = row * stream->value_count + i;

		stream->nulls[cell] = slot->tts_isnull[i + 2];
		stream->values[cell] = stream->nulls[cell] ? 0.0 :
			DatumGetFloat8(slot->tts_values[i + 2]);
	}
	return true;
}

/* DestReceiver callbacks with nothing to do */
static void
stream_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
stream_shutdown(DestReceiver *self)
{
}

static void
stream_destroy(DestReceiver *self)
{
}

/*
 * Open a version's cursor over (range->from, range->to].
 */
static void
stream_open(LogReader *reader, LogStream *stream, const char *sql,
			const char *version, const TimeRange *range)
{
	RolloutSettings *r = &reader->collection->rollout;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[4];

	memset(stream, 0, sizeof(LogStream));
	stream->pub.receiveSlot = stream_receive;
	stream->pub.rStartup = stream_startup;
	stream->pub.rShutdown = stream_shutdown;
	stream->pub.rDestroy = stream_destroy;

	/*
	 * DestNone only marks the receiver as no built-in one.  PortalRunFetch
	 * treats it as "discard" for a count of 0 or a backward fetch, which
	 * stream_has_row never requests.
	 */
	stream->pub.mydest = DestNone;
	stream->reader = reader;
	stream->value_count = reader->value_count;
	stream->timestamps = palloc(sizeof(TimestampTz) * LOG_BATCH_ROWS);
	stream->classes = palloc(sizeof(int) * LOG_BATCH_ROWS);
	stream->values = palloc(sizeof(double) * LOG_BATCH_ROWS * reader->value_count);
	stream->nulls = palloc(sizeof(bool) * LOG_BATCH_ROWS * reader->value_count);

	/* An empty range needs no scan. */
	if (range->from >= range->to)
	{
		stream->done = true;
		return;
	}
	if (reader->log_index != NULL)
	{
		stream->scan = canary_log_index_begin(reader->log_index, r->agent_id,
											  version, range->from, range->to);
		return;
	}
	values[0] = CStringGetTextDatum(r->agent_id);
	values[1] = CStringGetTextDatum(version);
	values[2] = TimestampTzGetDatum(range->from);
	values[3] = TimestampTzGetDatum(range->to);
	stream->portal = canary_spi_cursor_open(sql, 4, argtypes, values, NULL,
											reader->plan_choice);
}

/*
 * Classify a status for canary_log_index_fetch: argument is the LogReader.
 */
static int
classify_status(const void *argument, const text *status)
{
	return status_class((const LogReader *) argument, status);
}

/*
 * Fill a stream's batch from its direct scan.
 */
static void
stream_scan(LogStream *stream)
{
	stream->rows = canary_log_index_fetch(stream->scan, LOG_BATCH_ROWS,
										  classify_status, stream->reader,
										  stream->timestamps, stream->classes,
										  stream->values, stream->nulls);
}

/*
 * Fetch a stream's next batch, and return whether it has a row.
 */
static pg_noinline bool
stream_fetch(LogStream *stream)
{
	if (stream->done)
		return false;
	stream->rows = 0;
	stream->next = 0;
	if (stream->scan != NULL)
		stream_scan(stream);
	else
		PortalRunFetch(stream->portal, FETCH_FORWARD, LOG_BATCH_ROWS,
					   &stream->pub);
	if (stream->rows < LOG_BATCH_ROWS)
		stream->done = true;
	return stream->rows > 0;
}

/*
 * Whether the stream has a row to read, fetching the next batch when the
 * current one is used up.
 */
static inline bool
stream_has_row(LogStream *stream)
{
	return stream->next < stream->rows || stream_fetch(stream);
}

/*
 * Close a stream's scan or cursor.
 */
static void
stream_close(LogStream *stream)
{
	if (stream->scan != NULL)
		canary_log_index_end(stream->scan);
	if (stream->portal != NULL)
		SPI_cursor_close(stream->portal);
	stream->scan = NULL;
	stream->portal = NULL;
}

/*
 * Judge the bucket the sides hold, if any.
 */
static void
reader_close_bucket(LogReader *reader)
{
	if (!reader->bucket_open)
		return;
	judge_bucket(reader->collection, &reader->pooled,
				 &reader->sides[SIDE_CANARY], &reader->sides[SIDE_BASELINE],
				 reader->bucket);
	reader->bucket_open = false;
}

/*
 * Keep a copy of the evidence as it is now, when every bucket up to
 * "settled" is judged and no later one is, unless a copy was kept already.
 */
static void
reader_checkpoint(LogReader *reader)
{
	SequentialEvidence *e = &reader->collection->evidence;

	if (e->checkpoint != NULL)
		return;
	e->checkpoint = MemoryContextAlloc(reader->collection->values_context,
									   sizeof(SequentialEvidence));
	memcpy(e->checkpoint, e, sizeof(SequentialEvidence));
}

/*
 * Count row `row` of a stream's batch into a version's window.
 */
static void
window_add(LogReader *reader, VersionWindow *window, const LogStream *stream,
		   int row)
{
	int			class = stream->classes[row];
	const double *values = &stream->values[row * stream->value_count];
	const bool *nulls = &stream->nulls[row * stream->value_count];

	window->requests++;
	if (class == LOG_STATUS_SUCCESS)
		window->successes++;
	else if (class == LOG_STATUS_ERROR)
		window->errors++;
	else
		window->unrecognized++;

	for (int i = 0; i < reader->value_count; i++)
	{
		if (nulls[i])
			window->samples[i].missing++;
		else
			sample_add(&window->samples[i],
					   reader->collection->values_context, values[i]);
	}
}

/*
 * Open the bucket that contains timestamp and return its end.  The open
 * bucket is judged first, and the evidence is copied as the checkpoint
 * when the new bucket starts at or after "settled".
 */
static TimestampTz
reader_open_bucket(LogReader *reader, TimestampTz timestamp)
{
	SequentialEvidence *e = &reader->collection->evidence;
	int64		bucket = (timestamp - e->origin - 1) / e->bucket_usecs;

	reader_close_bucket(reader);
	if (e->origin + bucket * e->bucket_usecs >= e->settled)
		reader_checkpoint(reader);
	bucket_reset(&reader->sides[SIDE_BASELINE], reader->value_count);
	bucket_reset(&reader->sides[SIDE_CANARY], reader->value_count);
	reader->bucket = bucket;
	reader->bucket_open = true;
	return e->origin + (bucket + 1) * e->bucket_usecs;
}

/*
 * Count row `row` of a stream's batch into the open bucket.
 */
static inline void
bucket_add(LogReader *reader, int side, const LogStream *stream, int row)
{
	BucketSide *target = &reader->sides[side];
	int			class = stream->classes[row];
	const double *values = &stream->values[row * stream->value_count];
	const bool *nulls = &stream->nulls[row * stream->value_count];

	if (class == LOG_STATUS_SUCCESS || class == LOG_STATUS_ERROR)
		target->requests++;
	if (class == LOG_STATUS_ERROR)
		target->errors++;
	for (int i = 0; i < reader->value_count; i++)
		if (!nulls[i])
			sample_add(&target->samples[i],
					   reader->collection->values_context, values[i]);
}

/*
 * Sort the next row of a version into its window and the stage count, and
 * return its position in the stream's batch.
 */
static inline int
reader_take(LogReader *reader, int side)
{
	LogStream  *stream = &reader->streams[side];
	int			row = stream->next++;
	TimestampTz timestamp = stream->timestamps[row];

	if (timestamp > reader->window_ranges[side].from &&
		timestamp <= reader->window_ranges[side].to)
		window_add(reader, reader->windows[side], stream, row);
	if (timestamp > reader->stage_ranges[side].from &&
		timestamp <= reader->stage_ranges[side].to)
		reader->stage_rows[side]++;
	return row;
}

/*
 * Set up a version's window: no rows yet, and a reservoir per column.
 */
static void
window_init(VersionWindow *window, int value_count)
{
	memset(window, 0, sizeof(VersionWindow));
	window->samples = palloc0(value_count * sizeof(ValueSample));
	for (int i = 0; i < value_count; i++)
		pg_prng_seed(&window->samples[i].prng, RESERVOIR_SEED);
}

/*
 * Widen *hull to cover range; an empty range leaves it as it is.
 */
static void
range_cover(TimeRange *hull, const TimeRange *range)
{
	if (range->from >= range->to)
		return;
	if (hull->from >= hull->to)
	{
		*hull = *range;
		return;
	}
	hull->from = Min(hull->from, range->from);
	hull->to = Max(hull->to, range->to);
}

/*
 * Read both versions' streams for the sequential judge.  The rows of each
 * bucket are read the baseline's first, then the canary's, and the bucket
 * is judged when the next bucket with rows opens, or after the last row.
 * Rows outside the buckets are merged by "timestamp", the baseline first on
 * a tie.  Each version's rows keep their order, which is all the windows
 * and buckets depend on.
 */
static void
reader_merge(LogReader *reader)
{
	SequentialEvidence *e = &reader->collection->evidence;
	LogStream  *baseline = &reader->streams[SIDE_BASELINE];
	LogStream  *canary = &reader->streams[SIDE_CANARY];

	for (;;)
	{
		bool		baseline_row = stream_has_row(baseline);
		bool		canary_row = stream_has_row(canary);
		int			first;
		TimestampTz timestamp;
		TimestampTz bucket_end;

		if (baseline_row && canary_row)
			first = baseline->timestamps[baseline->next] <=
				canary->timestamps[canary->next] ? SIDE_BASELINE : SIDE_CANARY;
		else if (baseline_row)
			first = SIDE_BASELINE;
		else if (canary_row)
			first = SIDE_CANARY;
		else
			break;

		timestamp = reader->streams[first].timestamps[reader->streams[first].next];
		if (timestamp <= e->judged_from || timestamp > e->end)
		{
			reader_take(reader, first);
			continue;
		}

		bucket_end = reader_open_bucket(reader, timestamp);
		for (int side = SIDE_BASELINE; side <= SIDE_CANARY; side++)
		{
			LogStream  *stream = &reader->streams[side];

			while (stream_has_row(stream) &&
				   stream->timestamps[stream->next] <= bucket_end)
				bucket_add(reader, side, stream, reader_take(reader, side));
		}
	}
}

/*
 * Prepare direct scans of a plain log table: latency_ms and the extra
 * metrics as float8.  NULL means the rows are read with SQL.
 */
static LogIndex *
open_log_index(const LogTable *table, const RolloutSettings *rollout)
{
	const char **columns = palloc(sizeof(char *) * (rollout->metric_count + 1));

	columns[0] = "latency_ms";
	for (int i = 0; i < rollout->metric_count; i++)
		columns[i + 1] = rollout->metrics[i].column;
	return canary_log_index_open(table->relid, columns,
								 rollout->metric_count + 1);
}

/*
 * Read both versions' rows in one pass: the windows, the stage rows that
 * min_samples counts and, with the sequential judge, every complete bucket
 * since the origin.
 *
 * min_samples: the sequential judge decides on evidence gathered since the
 * attempt started, so there min_samples counts the whole stage.  When the
 * stage is older than the window, the rows between the stage start (plus
 * warmup) and the window count too, and a stage at low traffic can still
 * collect its samples.  At 100% traffic the baseline's historic window
 * stands for its stage.  The threshold judge checks the window's rows only,
 * so min_samples counts those.
 */
static void
read_log(Collection *collection, const LogTable *table)
{
	RolloutSettings *r = &collection->rollout;
	SequentialEvidence *e = &collection->evidence;
	const char *versions[2];
	LogReader	reader = {0};
	char	   *sql = build_log_query(table, r);
	bool		stage_older;

	reader.collection = collection;
	reader.value_count = r->metric_count + 1;
	reader.plan_choice = table->plan_choice;
	if (table->plan_choice == CURSOR_OPT_GENERIC_PLAN)
		reader.log_index = open_log_index(table, r);
	status_list_init(&reader.success, r->success_statuses);
	status_list_init(&reader.error, r->error_statuses);

	versions[SIDE_BASELINE] = r->baseline_version;
	versions[SIDE_CANARY] = r->canary_version;
	reader.windows[SIDE_BASELINE] = &collection->baseline;
	reader.windows[SIDE_CANARY] = &collection->canary;
	window_init(&collection->baseline, reader.value_count);
	window_init(&collection->canary, reader.value_count);
	reader.window_ranges[SIDE_BASELINE].from = collection->baseline_window_start;
	reader.window_ranges[SIDE_BASELINE].to = collection->baseline_window_end;
	reader.window_ranges[SIDE_CANARY].from = collection->window_start;
	reader.window_ranges[SIDE_CANARY].to = collection->at;

	/* Stage rows before the window count only for the sequential judge. */
	stage_older = collection->sequential &&
		(strcmp(r->status, "running") == 0 ||
		 strcmp(r->status, "paused") == 0) &&
		r->has_stage_window_start &&
		r->stage_window_start < collection->window_start;
	for (int side = SIDE_BASELINE; side <= SIDE_CANARY; side++)
		if (stage_older &&
			(side == SIDE_CANARY || !collection->historic_baseline))
		{
			reader.stage_ranges[side].from = r->stage_window_start;
			reader.stage_ranges[side].to = collection->window_start;
		}

	reader.bucketed = collection->sequential && e->computed;
	if (reader.bucketed)
	{
		reader.pooled.context = CurrentMemoryContext;
		for (int side = SIDE_BASELINE; side <= SIDE_CANARY; side++)
			reader.sides[side].samples =
				palloc0(reader.value_count * sizeof(ValueSample));
	}

	/* Each version's range covers its window, stage rows and buckets. */
	for (int side = SIDE_BASELINE; side <= SIDE_CANARY; side++)
	{
		TimeRange	hull = {0, 0};

		range_cover(&hull, &reader.window_ranges[side]);
		range_cover(&hull, &reader.stage_ranges[side]);
		if (reader.bucketed)
		{
			TimeRange	buckets = {e->judged_from, e->end};

			range_cover(&hull, &buckets);
		}
		stream_open(&reader, &reader.streams[side], sql, versions[side],
					&hull);
	}

	/*
	 * Without buckets, each version's rows count only toward that version,
	 * so the versions are read one after the other.  With buckets, both
	 * versions' rows of a bucket are read before the next bucket's.
	 */
	if (!reader.bucketed)
	{
		for (int side = SIDE_BASELINE; side <= SIDE_CANARY; side++)
			while (stream_has_row(&reader.streams[side]))
				reader_take(&reader, side);
	}
	else
		reader_merge(&reader);
	stream_close(&reader.streams[SIDE_BASELINE]);
	stream_close(&reader.streams[SIDE_CANARY]);
	if (reader.log_index != NULL)
		canary_log_index_close(reader.log_index);

	if (reader.bucketed)
	{
		reader_close_bucket(&reader);
		reader_checkpoint(&reader);
	}
	collection->stage_canary_requests =
		collection->canary.requests + reader.stage_rows[SIDE_CANARY];
	collection->stage_baseline_requests =
		collection->baseline.requests + reader.stage_rows[SIDE_BASELINE];
}

/*
 * Comparisons
 */

/*
 * Set a comparison's verdict from its test: high or low when the change is
 * significant at alpha and its relative size exceeds the tolerance.  When
 * the baseline's level is 0 the relative size is undefined, and any
 * significant change counts.  The comparison fails when the change goes in
 * the bad direction.
 */
static void
classify(MetricComparison *m, double alpha)
{
	bool		beyond;

	beyond = isnan(m->relative_effect) ?
		m->effect != 0.0 : fabs(m->relative_effect) > m->tolerance;
	m->verdict = "pass";
	if (m->p_value < alpha && beyond)
		m->verdict = m->effect > 0.0 ? "high" : "low";
	m->failed = m->decrease_is_bad ?
		strcmp(m->verdict, "low") == 0 : strcmp(m->verdict, "high") == 0;
}

/*
 * Start a comparison with every number missing.
 */
static void
init_comparison(MetricComparison *m, const char *name, double tolerance,
				bool decrease_is_bad, bool critical, bool must_have_data)
{
	m->name = name;
	m->verdict = "nodata";
	m->failed = false;
	m->test = NULL;
	m->statistic = m->z = m->p_value = get_float8_nan();
	m->effect = m->relative_effect = m->baseline_level = get_float8_nan();
	m->tolerance = tolerance;
	m->decrease_is_bad = decrease_is_bad;
	m->critical = critical;
	m->must_have_data = must_have_data;
}

/*
 * Compare error rates: Fisher's exact test when an expected cell count of
 * the 2x2 table is below 5, the two-proportion z-test otherwise, both
 * two-sided.  The effect is the difference of the rates and no tolerance
 * applies, so any significant increase fails.
 */
static void
compare_error_rates(Collection *collection, MetricComparison *m)
{
	VersionWindow *c = &collection->canary;
	VersionWindow *b = &collection->baseline;
	double		total = (double) c->requests + b->requests;
	double		errors = (double) c->errors + b->errors;
	double		smallest;

	init_comparison(m, "error_rate", 0.0, false, false, false);
	if (collection->canary_nodata || collection->baseline_nodata)
		return;

	smallest = Min(errors, total - errors) * Min(c->requests, b->requests) / total;
	if (smallest < 5.0)
	{
		m->test = "fisher_exact";
		m->p_value = canary_stats_fisher_exact(c->errors, c->requests,
											   b->errors, b->requests,
											   CANARY_ALT_TWO_SIDED);
	}
	else
	{
		m->test = "two_proportion_z";
		canary_stats_two_proportion_z(c->errors, c->requests,
									  b->errors, b->requests,
									  CANARY_ALT_TWO_SIDED, &m->z, &m->p_value);
		m->statistic = m->z;
	}
	m->baseline_level = b->error_rate;
	m->effect = c->error_rate - b->error_rate;
	if (b->error_rate > 0.0)
		m->relative_effect = m->effect / b->error_rate;
	classify(m, collection->rollout.alpha);
}

/*
 * Compare the values of one numeric column with the two-sided Mann-Whitney
 * U test (tie-corrected; exact for small samples without ties).  The effect
 * is the Hodges-Lehmann shift, relative to the baseline median.
 */
static void
compare_values(Collection *collection, int index, MetricComparison *m)
{
	ValueSample *c = &collection->canary.samples[index];
	ValueSample *b = &collection->baseline.samples[index];
	int64		min_samples = collection->rollout.min_samples;
	CanaryMannWhitney result;

	if (c->count < min_samples || b->count < min_samples)
	{
		m->failed = m->must_have_data;
		return;
	}

	canary_stats_mann_whitney(c->values, c->kept, b->values, b->kept,
							  CANARY_ALT_TWO_SIDED, &result);
	m->test = "mann_whitney_u";
	m->statistic = result.u;
	m->z = result.z;
	m->p_value = result.has_exact ? result.p_exact : result.p_value;
	m->effect = canary_stats_hodges_lehmann(c->values, c->kept,
											b->values, b->kept);
	m->baseline_level = b->p50;
	if (b->p50 != 0.0)
		m->relative_effect = m->effect / fabs(b->p50);
	classify(m, collection->rollout.alpha);
}

/*
 * Run every statistical comparison: error rate, latency (tolerance
 * p95_latency_ratio - 1), then each extra metric.
 */
static void
compare_metrics(Collection *collection)
{
	RolloutSettings *rollout = &collection->rollout;
	MetricComparison *m = collection->comparisons;

	compare_error_rates(collection, &m[0]);
	init_comparison(&m[1], "latency_ms", rollout->p95_latency_ratio - 1.0,
					false, false, false);
	if (!collection->canary_nodata && !collection->baseline_nodata)
		compare_values(collection, 0, &m[1]);
	for (int i = 0; i < rollout->metric_count; i++)
	{
		MetricConfig *config = &rollout->metrics[i];

		init_comparison(&m[i + 2], config->column, config->tolerance,
						config->decrease_is_bad, config->critical,
						config->must_have_data);
		if (!collection->canary_nodata && !collection->baseline_nodata)
			compare_values(collection, i + 1, &m[i + 2]);
	}
	collection->comparison_count = rollout->metric_count + 2;
}


/*
 * Checks and verdict
 */

/*
 * Append a reason to the collection's list.
 */
static void
add_reason(Collection *collection, const char *fmt,...) pg_attribute_printf(2, 3);

static void
add_reason(Collection *collection, const char *fmt,...)
{
	StringInfoData text;

	initStringInfo(&text);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&text, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&text, needed);
	}
	collection->reasons = lappend(collection->reasons, text.data);
}

/*
 * Check the fixed thresholds.  The canary's error rate limit needs only
 * min_samples canary requests; the ratios to the baseline need min_samples
 * on both sides, and the p95 ratio min_samples latencies on both sides.
 */
static void
check_hard_limits(Collection *collection)
{
	RolloutSettings *r = &collection->rollout;
	VersionWindow *c = &collection->canary;
	VersionWindow *b = &collection->baseline;
	ValueSample *cl = &c->samples[0];
	ValueSample *bl = &b->samples[0];

	if (!collection->canary_nodata && c->error_rate > r->max_error_rate)
	{
		collection->hard_limit_breached = true;
		add_reason(collection,
				   "canary error rate %.2f%% (%lld of %lld requests) is above the maximum of %.2f%%",
				   100.0 * c->error_rate, (long long) c->errors,
				   (long long) c->requests, 100.0 * r->max_error_rate);
	}
	if (collection->canary_nodata || collection->baseline_nodata)
		return;

	if (c->success_rate < r->success_rate_ratio * b->success_rate)
	{
		collection->hard_limit_breached = true;
		add_reason(collection,
				   "canary success rate %.2f%% is below %g x the baseline's %.2f%% (%.2f%%)",
				   100.0 * c->success_rate, r->success_rate_ratio,
				   100.0 * b->success_rate,
				   100.0 * r->success_rate_ratio * b->success_rate);
	}
	if (cl->count >= r->min_samples && bl->count >= r->min_samples &&
		cl->p95 > r->p95_latency_ratio * bl->p95)
	{
		collection->hard_limit_breached = true;
		add_reason(collection,
				   "canary p95 latency %.1f ms is above %g x the baseline's %.1f ms (%.1f ms)",
				   cl->p95, r->p95_latency_ratio, bl->p95,
				   r->p95_latency_ratio * bl->p95);
	}
}

/*
 * Return the name of a comparison's test for a reason text.
 */
static const char *
test_display_name(const char *test)
{
	if (strcmp(test, "mann_whitney_u") == 0)
		return "Mann-Whitney U test";
	if (strcmp(test, "fisher_exact") == 0)
		return "Fisher's exact test";
	return "two-proportion z-test";
}

/*
 * Describe a failed or dropped comparison in the reasons.
 */
static void
explain_comparison(Collection *collection, const MetricComparison *m)
{
	int64		min_samples = collection->rollout.min_samples;
	int			index = m - collection->comparisons - 1;

	if (strcmp(m->verdict, "nodata") == 0 && index >= 0)
	{
		add_reason(collection,
				   "%s has too few values to compare (canary %lld, baseline %lld, min_samples %lld)%s",
				   m->name,
				   (long long) collection->canary.samples[index].count,
				   (long long) collection->baseline.samples[index].count,
				   (long long) min_samples,
				   m->must_have_data ? " and must have data" :
				   " and is left out of the verdict");
		return;
	}
	if (index < 0)
		add_reason(collection,
				   "error rate is significantly %s in the canary: %.2f%% vs %.2f%% in the baseline (%s, p = %.2g)",
				   m->effect > 0 ? "higher" : "lower",
				   100.0 * collection->canary.error_rate,
				   100.0 * collection->baseline.error_rate,
				   test_display_name(m->test), m->p_value);
	else if (isnan(m->relative_effect))
		add_reason(collection,
				   "%s%s is significantly %s in the canary: shift %+.4g%s from a baseline median of 0 (%s, p = %.2g)",
				   m->critical ? "critical metric " : "", m->name,
				   m->effect > 0 ? "higher" : "lower", m->effect,
				   index == 0 ? " ms" : "",
				   test_display_name(m->test), m->p_value);
	else
		add_reason(collection,
				   "%s%s is significantly %s in the canary: shift %+.4g%s (%+.1f%% of the baseline median %.4g), beyond the tolerance of %.1f%% (%s, p = %.2g)",
				   m->critical ? "critical metric " : "", m->name,
				   m->effect > 0 ? "higher" : "lower", m->effect,
				   index == 0 ? " ms" : "",
				   100.0 * m->relative_effect, m->baseline_level,
				   100.0 * m->tolerance, test_display_name(m->test),
				   m->p_value);
}

/*
 * Check the traffic split: a chi-square goodness-of-fit test (1 degree of
 * freedom) of the observed canary share against the rollout's percentage,
 * run while the rollout routes a share strictly between 0 and 100 percent
 * and both expected counts are at least 5.
 */
static void
check_sample_ratio(Collection *collection)
{
	RolloutSettings *r = &collection->rollout;
	double		canary = (double) collection->canary.requests;
	double		total = canary + collection->baseline.requests;
	double		expected_canary;
	double		expected_baseline;
	double		chi_square;

	collection->expected_share = r->percentage_value / 100.0;
	if (total > 0)
		collection->observed_share = canary / total;
	if ((strcmp(r->status, "running") != 0 && strcmp(r->status, "paused") != 0) ||
		!(collection->expected_share > 0.0 && collection->expected_share < 1.0))
		return;

	expected_canary = total * collection->expected_share;
	expected_baseline = total - expected_canary;
	if (expected_canary < 5.0 || expected_baseline < 5.0)
		return;
	chi_square = (canary - expected_canary) * (canary - expected_canary) / expected_canary +
		(total - canary - expected_baseline) * (total - canary - expected_baseline) / expected_baseline;
	collection->sample_ratio_p_value = canary_stats_chi_square_sf(chi_square, 1);
	if (collection->sample_ratio_p_value < SAMPLE_RATIO_ALPHA)
	{
		collection->sample_ratio_mismatch = true;
		add_reason(collection,
				   "sample ratio mismatch: the canary served %.2f%% of %.0f requests, but the rollout routes %.2f%% to it (chi-square %.1f, p = %.2g), so the comparison is suspect",
				   100.0 * collection->observed_share, total,
				   r->percentage_value, chi_square,
				   collection->sample_ratio_p_value);
	}
}

/*
 * Decide with the fixed thresholds plus the stage's statistical tests, each
 * at alpha: analysis 'threshold'.
 */
static void
decide_threshold(Collection *collection)
{
	RolloutSettings *r = &collection->rollout;
	bool		failed = false;

	check_hard_limits(collection);
	compare_metrics(collection);
	if (!collection->canary_nodata && !collection->baseline_nodata)
	{
		for (int i = 0; i < collection->comparison_count; i++)
		{
			MetricComparison *m = &collection->comparisons[i];

			if (m->failed || strcmp(m->verdict, "nodata") == 0)
				explain_comparison(collection, m);
			failed |= m->failed;
			if (m->failed && m->critical)
				collection->hard_limit_breached = true;
		}
	}

	if (!collection->baseline_nodata &&
		collection->baseline.error_rate > r->max_error_rate)
	{
		collection->baseline_unhealthy = true;
		add_reason(collection,
				   "baseline error rate %.2f%% is above the maximum of %.2f%% as well, so the cause may lie outside the canary",
				   100.0 * collection->baseline.error_rate,
				   100.0 * r->max_error_rate);
	}
	check_sample_ratio(collection);

	if (collection->canary_nodata || collection->baseline_nodata)
	{
		collection->verdict = CANARY_VERDICT_NODATA;
		collection->is_healthy_isnull = !collection->hard_limit_breached;
		collection->is_healthy = false;
		return;
	}
	collection->is_healthy = !(failed || collection->hard_limit_breached);
	collection->verdict = collection->is_healthy ?
		CANARY_VERDICT_PASS : CANARY_VERDICT_FAIL;
}

/*
 * Format evidence given as its logarithm: three significant digits below
 * 1000, whole numbers below a million, and e^x from there on.
 */
static char *
format_evidence(double log_evidence)
{
	double		evidence = exp(log_evidence);

	if (evidence >= 1e6)
		return psprintf("e^%.1f", log_evidence);
	if (evidence >= 1000.0)
		return psprintf("%.0f", evidence);
	return psprintf("%.3g", evidence);
}

/*
 * Fail every sequential test whose evidence has reached the threshold at
 * the end of some bucket, and explain it.  A failed critical extra metric
 * counts as a hard-limit breach.  Returns true when any test failed.
 */
static bool
check_sequential_tests(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	bool		failed = false;

	for (int i = 0; i < e->test_count; i++)
	{
		CanarySequentialTest *t = &e->tests[i];

		if (t->max_log_evidence < e->log_threshold)
			continue;
		e->failed[i] = failed = true;
		if (i >= SEQUENTIAL_FIRST_EXTRA &&
			collection->rollout.metrics[i - SEQUENTIAL_FIRST_EXTRA].critical)
			collection->hard_limit_breached = true;
		add_reason(collection,
				   "%s%s worse in the canary: evidence e^%.2f = %s against threshold %s over %lld buckets, canary %lld/%lld vs baseline %lld/%lld %s, estimated odds ratio %.2f",
				   i >= SEQUENTIAL_FIRST_EXTRA &&
				   collection->rollout.metrics[i - SEQUENTIAL_FIRST_EXTRA].critical ?
				   "critical metric " : "",
				   e->names[i], t->max_log_evidence,
				   format_evidence(t->max_log_evidence),
				   format_evidence(e->log_threshold), (long long) t->buckets,
				   (long long) t->canary_events,
				   (long long) t->canary_requests,
				   (long long) t->baseline_events,
				   (long long) t->baseline_requests, e->events[i],
				   canary_stats_sequential_odds_ratio(t));
	}
	return failed;
}

/*
 * Return whether some test's current evidence has reached the square root
 * of its threshold (half of it on the log scale, 20 for a threshold of 400)
 * without failing: a regression is then likely enough that promoting
 * without a human look would be rash.  The lifecycle lets such a stage run
 * its course and applies inconclusive_action at its deadline.  When the
 * canary is no worse, Markov's inequality bounds the chance that one test's
 * evidence is at that level at a given evaluation by the inverse of that
 * level, and it is far lower in practice, because the evidence of a
 * healthy canary drifts towards 0.
 */
static bool
check_sequential_inconclusive(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	bool		inconclusive = false;

	for (int i = 0; i < e->test_count; i++)
	{
		CanarySequentialTest *t = &e->tests[i];

		if (t->log_evidence < e->log_threshold / 2)
			continue;
		inconclusive = true;
		add_reason(collection,
				   "%s inconclusive: evidence %s of %s needed, beyond %s, over %lld buckets, canary %lld/%lld vs baseline %lld/%lld %s",
				   e->names[i], format_evidence(t->log_evidence),
				   format_evidence(e->log_threshold),
				   format_evidence(e->log_threshold / 2),
				   (long long) t->buckets,
				   (long long) t->canary_events,
				   (long long) t->canary_requests,
				   (long long) t->baseline_events,
				   (long long) t->baseline_requests, e->events[i]);
	}
	return inconclusive;
}

/*
 * Check the error-rate limit of the sequential judge over the attempt's
 * buckets: the baseline is unhealthy when its evidence of exceeding
 * max_error_rate reaches the threshold, and otherwise the canary breaks the
 * hard limit when its evidence does.
 */
static void
check_sequential_rate_limit(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	double		limit = collection->rollout.max_error_rate;

	e->canary_rate_log_evidence =
		canary_stats_rate_log_evidence(&e->tests[SEQUENTIAL_ERRORS],
									   e->canary_errors, e->canary_requests,
									   limit);
	e->baseline_rate_log_evidence =
		canary_stats_rate_log_evidence(&e->tests[SEQUENTIAL_ERRORS],
									   e->baseline_errors,
									   e->baseline_requests, limit);

	if (e->baseline_rate_log_evidence >= e->log_threshold)
	{
		collection->baseline_unhealthy = true;
		add_reason(collection,
				   "baseline error rate %.2f%% (%lld of %lld requests since the attempt started) is above the maximum of %.2f%% as well, with evidence %s against threshold %s, so the cause may lie outside the canary",
				   100.0 * e->baseline_errors / e->baseline_requests,
				   (long long) e->baseline_errors,
				   (long long) e->baseline_requests, 100.0 * limit,
				   format_evidence(e->baseline_rate_log_evidence),
				   format_evidence(e->log_threshold));
	}
	else if (e->canary_rate_log_evidence >= e->log_threshold)
	{
		e->rate_breached = true;
		collection->hard_limit_breached = true;
		add_reason(collection,
				   "canary error rate %.2f%% (%lld of %lld requests since the attempt started) is above the maximum of %.2f%%: evidence %s against threshold %s",
				   100.0 * e->canary_errors / e->canary_requests,
				   (long long) e->canary_errors,
				   (long long) e->canary_requests, 100.0 * limit,
				   format_evidence(e->canary_rate_log_evidence),
				   format_evidence(e->log_threshold));
	}
}

/*
 * Write the evidence of every sequential test in one line, such as
 * "sequential evidence, 400 needed per test: errors M = 2.3 over 41
 * buckets, ...".
 */
static void
describe_evidence(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	StringInfoData text;

	initStringInfo(&text);
	if (!e->computed || e->complete_buckets == 0)
	{
		e->summary = psprintf("sequential evidence: none yet, no complete %s bucket since the attempt started",
							  describe_bucket(e->bucket_usecs));
		return;
	}

	appendStringInfo(&text, "sequential evidence, %s needed per test:",
					 format_evidence(e->log_threshold));
	for (int i = 0; i < e->test_count; i++)
		appendStringInfo(&text, "%s %s M = %s over %lld buckets",
						 i > 0 ? "," : "", e->names[i],
						 format_evidence(e->tests[i].log_evidence),
						 (long long) e->tests[i].buckets);
	appendStringInfo(&text, ", canary error rate above %.2f%% M = %s over %lld requests",
					 100.0 * collection->rollout.max_error_rate,
					 format_evidence(e->canary_rate_log_evidence),
					 (long long) e->canary_requests);
	if (e->excluded_buckets > 0)
		appendStringInfo(&text, " (%lld buckets around traffic changes left out)",
						 (long long) e->excluded_buckets);
	e->summary = text.data;
}

/*
 * Return whether the current stage has at least one complete bucket of
 * sequential evidence, and add a reason when it has none.  A stage shorter
 * than a bucket would otherwise pass on evidence from earlier stages only.
 */
static bool
sequential_stage_judged(Collection *collection)
{
	SequentialEvidence *e = &collection->evidence;
	RolloutSettings *r = &collection->rollout;

	if (!e->computed || !r->has_stage_window_start ||
		e->end > r->stage_window_start)
		return true;

	add_reason(collection,
			   "no complete %s bucket of sequential evidence in stage %d yet",
			   describe_bucket(e->bucket_usecs), r->stage);
	return false;
}

/*
 * Decide with the sequential judge; see the comment above prepare_sequential.
 * The stage's comparisons are still run and stored, but a test result of
 * theirs never fails the verdict; only a must_have_data metric without
 * data does, as in threshold mode.  A failed sequential test fails the
 * verdict even when the stage has fewer than min_samples rows, because
 * its guarantee does not depend on min_samples.
 */
static void
decide_sequential(Collection *collection)
{
	bool		failed = false;
	bool		inconclusive;

	compare_metrics(collection);
	for (int i = 0; i < collection->comparison_count; i++)
	{
		MetricComparison *m = &collection->comparisons[i];

		if (m->test != NULL)
			m->failed = false;
		if (m->failed && !collection->canary_nodata &&
			!collection->baseline_nodata)
		{
			explain_comparison(collection, m);
			failed = true;
		}
	}

	failed |= check_sequential_tests(collection);
	if (collection->evidence.computed)
		check_sequential_rate_limit(collection);
	failed |= collection->evidence.rate_breached;
	inconclusive = !failed && check_sequential_inconclusive(collection);
	check_sample_ratio(collection);
	describe_evidence(collection);
	add_reason(collection, "%s", collection->evidence.summary);

	if (failed)
	{
		collection->verdict = CANARY_VERDICT_FAIL;
		collection->is_healthy = false;
	}
	else if (collection->canary_nodata || collection->baseline_nodata ||
			 !sequential_stage_judged(collection))
	{
		collection->verdict = CANARY_VERDICT_NODATA;
		collection->is_healthy_isnull = true;
	}
	else if (inconclusive)
	{
		collection->verdict = CANARY_VERDICT_INCONCLUSIVE;
		collection->is_healthy_isnull = true;
	}
	else
	{
		collection->verdict = CANARY_VERDICT_PASS;
		collection->is_healthy = true;
	}
}

/*
 * Decide health and verdict with the rollout's analysis, and write every
 * reason.  The verdict is nodata while the stage has fewer than min_samples
 * canary or baseline rows, unless the canary fails.
 */
static void
decide(Collection *collection)
{
	RolloutSettings *r = &collection->rollout;

	List	   *nodata_reasons = NIL;
	int			judged_from = list_length(collection->reasons);

	collection->canary_nodata = collection->stage_canary_requests < r->min_samples;
	collection->baseline_nodata = collection->stage_baseline_requests < r->min_samples;
	if (collection->canary_nodata)
		nodata_reasons = lappend(nodata_reasons,
								 psprintf("canary has %lld requests counted for the stage, fewer than min_samples %lld",
										  (long long) collection->stage_canary_requests,
										  (long long) r->min_samples));
	if (collection->baseline_nodata)
		nodata_reasons = lappend(nodata_reasons,
								 psprintf("baseline has %lld requests counted for the stage, fewer than min_samples %lld",
										  (long long) collection->stage_baseline_requests,
										  (long long) r->min_samples));

	if (collection->sequential)
		decide_sequential(collection);
	else
		decide_threshold(collection);

	/*
	 * Missing samples come before the judge's reasons when they decide the
	 * verdict; after a failure they are only a remark, so they follow the
	 * failing checks.
	 */
	if (collection->verdict == CANARY_VERDICT_FAIL)
		collection->reasons = list_concat(collection->reasons, nodata_reasons);
	else
	{
		List	   *judged = list_copy_tail(collection->reasons, judged_from);

		collection->reasons = list_truncate(collection->reasons, judged_from);
		collection->reasons = list_concat(list_concat(collection->reasons,
													  nodata_reasons),
										  judged);
	}
}


/*
 * Storing the result
 */

/* SQL name of each verdict. */
static const char *const verdict_names[] = {
	[CANARY_VERDICT_PASS] = "pass",
	[CANARY_VERDICT_FAIL] = "fail",
	[CANARY_VERDICT_INCONCLUSIVE] = "inconclusive",
	[CANARY_VERDICT_NODATA] = "nodata",
};

/*
 * A jsonb value under construction.  Values are pushed straight into the
 * jsonb builder, so no JSON text is written and parsed again.  The writers
 * below push the fixed keys of each object in jsonb's own order (shorter
 * keys first, keys of equal length bytewise), so the builder's sort finds
 * them sorted.
 */
typedef struct JsonWriter
{
	JsonbParseState *state;
	JsonbValue *result;			/* the finished top-level object */
} JsonWriter;

/*
 * Push a key, or nothing when key is NULL (the top-level object or an
 * array element).
 */
static void
json_key(JsonWriter *w, const char *key)
{
	JsonbValue	value;

	if (key == NULL)
		return;
	value.type = jbvString;
	value.val.string.val = (char *) key;
	value.val.string.len = strlen(key);
	pushJsonbValue(&w->state, WJB_KEY, &value);
}

/* Push a scalar after its key. */
static void
json_scalar(JsonWriter *w, const char *key, JsonbValue *value)
{
	json_key(w, key);
	pushJsonbValue(&w->state, w->state->contVal.type == jbvArray ?
				   WJB_ELEM : WJB_VALUE, value);
}

static void
json_open(JsonWriter *w, const char *key)
{
	json_key(w, key);
	pushJsonbValue(&w->state, WJB_BEGIN_OBJECT, NULL);
}

static void
json_close(JsonWriter *w)
{
	w->result = pushJsonbValue(&w->state, WJB_END_OBJECT, NULL);
}

static void
json_open_array(JsonWriter *w, const char *key)
{
	json_key(w, key);
	pushJsonbValue(&w->state, WJB_BEGIN_ARRAY, NULL);
}

static void
json_close_array(JsonWriter *w)
{
	pushJsonbValue(&w->state, WJB_END_ARRAY, NULL);
}

/*
 * Push a number; NaN and infinities become null.  The number is the
 * shortest decimal that reads back as value, whatever the session's
 * extra_float_digits.
 */
static void
json_number(JsonWriter *w, const char *key, double value)
{
	JsonbValue	number;

	if (isfinite(value))
	{
		char		digits[DOUBLE_SHORTEST_DECIMAL_LEN];

		double_to_shortest_decimal_buf(value, digits);
		number.type = jbvNumeric;
		number.val.numeric =
			DatumGetNumeric(DirectFunctionCall3(numeric_in,
												CStringGetDatum(digits),
												ObjectIdGetDatum(InvalidOid),
												Int32GetDatum(-1)));
	}
	else
		number.type = jbvNull;
	json_scalar(w, key, &number);
}

static void
json_int(JsonWriter *w, const char *key, int64 value)
{
	JsonbValue	number;

	number.type = jbvNumeric;
	number.val.numeric = int64_to_numeric(value);
	json_scalar(w, key, &number);
}

static void
json_bool(JsonWriter *w, const char *key, bool value)
{
	JsonbValue	boolean;

	boolean.type = jbvBool;
	boolean.val.boolean = value;
	json_scalar(w, key, &boolean);
}

/*
 * Push a string; NULL becomes null.  The string is copied, since the
 * builder keeps a pointer and some callers pass a static buffer.
 */
static void
json_string(JsonWriter *w, const char *key, const char *value)
{
	JsonbValue	string;

	if (value == NULL)
		string.type = jbvNull;
	else
	{
		string.type = jbvString;
		string.val.string.val = pstrdup(value);
		string.val.string.len = strlen(value);
	}
	json_scalar(w, key, &string);
}

/*
 * Write one version's figures for a comparison.
 */
static void
write_version_figures(JsonWriter *w, const char *key,
					  const VersionWindow *window, int index)
{
	json_open(w, key);
	if (index < 0)
	{
		json_number(w, "rate", window->error_rate);
		json_int(w, "errors", window->errors);
		json_int(w, "requests", window->requests);
	}
	else
	{
		const ValueSample *s = &window->samples[index];

		json_number(w, "p50", s->p50);
		json_number(w, "p95", s->p95);
		json_number(w, "p99", s->p99);
		json_number(w, "mean", s->mean);
		json_int(w, "count", s->count);
		json_int(w, "missing", s->missing);
		json_bool(w, "sampled", s->sampled);
	}
	json_close(w);
}

/*
 * Write one sequential test's evidence and counts.
 */
static void
write_sequential_test(JsonWriter *w, const SequentialEvidence *e, int i)
{
	const CanarySequentialTest *t = &e->tests[i];

	json_open(w, NULL);
	json_string(w, "events", e->events[i]);
	json_bool(w, "failed", e->failed[i]);
	json_string(w, "metric", e->names[i]);
	json_int(w, "buckets", t->buckets);
	json_number(w, "odds_ratio", canary_stats_sequential_odds_ratio(t));
	json_number(w, "log_evidence", t->log_evidence);
	json_int(w, "canary_events", t->canary_events);
	json_int(w, "baseline_events", t->baseline_events);
	json_int(w, "canary_requests", t->canary_requests);
	json_number(w, "max_log_evidence", t->max_log_evidence);
	json_int(w, "baseline_requests", t->baseline_requests);
	json_close(w);
}

/*
 * Write the "sequential" object of the details: the span, threshold, each
 * test's evidence and the error-rate limit's evidence.
 */
static void
write_sequential_details(JsonWriter *w, const Collection *collection)
{
	const SequentialEvidence *e = &collection->evidence;

	json_open(w, "sequential");
	json_string(w, "end", e->computed ? timestamptz_to_str(e->end) : NULL);
	json_open_array(w, "tests");
	for (int i = 0; i < e->test_count; i++)
		write_sequential_test(w, e, i);
	json_close_array(w);
	json_string(w, "origin", e->computed ? timestamptz_to_str(e->origin) : NULL);
	json_bool(w, "computed", e->computed);
	json_number(w, "test_alpha", e->test_alpha);
	json_string(w, "stored_until",
				e->restored ? timestamptz_to_str(e->judged_from) : NULL);
	json_number(w, "log_threshold", e->log_threshold);
	json_number(w, "bucket_seconds", (double) e->bucket_usecs / USECS_PER_SEC);
	json_int(w, "complete_buckets", e->complete_buckets);
	json_open(w, "error_rate_limit");
	json_bool(w, "breached", e->rate_breached);
	json_int(w, "canary_errors", e->canary_errors);
	json_int(w, "baseline_errors", e->baseline_errors);
	json_int(w, "canary_requests", e->canary_requests);
	json_int(w, "baseline_requests", e->baseline_requests);
	json_number(w, "canary_log_evidence", e->canary_rate_log_evidence);
	json_number(w, "baseline_log_evidence", e->baseline_rate_log_evidence);
	json_close(w);
	json_int(w, "excluded_buckets", e->excluded_buckets);
	json_close(w);
}

/*
 * Build the details column: the settings behind the comparison and, per
 * metric, its verdict, test, statistic, p-value, effect and figures.  A
 * sequential rollout adds the "sequential" object.
 */
static Jsonb *
build_details(const Collection *collection)
{
	JsonWriter	w = {0};

	json_open(&w, NULL);
	json_number(&w, "alpha", collection->rollout.alpha);
	json_open(&w, "metrics");
	for (int i = 0; i < collection->comparison_count; i++)
	{
		const MetricComparison *m = &collection->comparisons[i];

		json_open(&w, m->name);
		json_number(&w, "z", m->z);
		json_string(&w, "test", m->test);
		write_version_figures(&w, "canary", &collection->canary, i - 1);
		json_number(&w, "effect", m->effect);
		json_bool(&w, "failed", m->failed);
		json_number(&w, "p_value", m->p_value);
		json_string(&w, "verdict", m->verdict);
		write_version_figures(&w, "baseline", &collection->baseline, i - 1);
		json_bool(&w, "critical", m->critical);
		json_string(&w, "direction", m->decrease_is_bad ? "decrease_is_bad" : "increase_is_bad");
		json_number(&w, "statistic", m->statistic);
		json_number(&w, "tolerance", m->tolerance);
		json_bool(&w, "must_have_data", m->must_have_data);
		json_number(&w, "relative_effect", m->relative_effect);
		json_close(&w);
	}
	json_close(&w);
	json_string(&w, "analysis", collection->rollout.analysis);
	if (collection->sequential)
		write_sequential_details(&w, collection);
	json_int(&w, "min_samples", collection->rollout.min_samples);
	json_close(&w);
	return JsonbValueToJsonb(w.result);
}

/* Columns and values of the canary.metrics row being stored. */
typedef struct MetricsRow
{
	int			count;
	const char *columns[64];
	Oid			types[64];
	Datum		values[64];
	bool		nulls[64];
} MetricsRow;

static void
add_column(MetricsRow *row, const char *column, Oid type, Datum value,
		   bool isnull)
{
	Assert(row->count < (int) lengthof(row->columns));
	row->columns[row->count] = column;
	row->types[row->count] = type;
	row->values[row->count] = value;
	row->nulls[row->count] = isnull;
	row->count++;
}

/* Add a double column; NaN becomes NULL. */
static void
add_float(MetricsRow *row, const char *column, double value)
{
	add_column(row, column, FLOAT8OID, Float8GetDatum(value), isnan(value));
}

/* Column names of each version's figures, in the order they are added. */
static const char *const baseline_columns[] = {
	"baseline_requests", "baseline_successes", "baseline_errors",
	"baseline_unrecognized", "baseline_null_latency", "baseline_success_rate",
	"baseline_error_rate", "baseline_p50", "baseline_p95", "baseline_p99",
	"baseline_mean_latency", "baseline_latency_sampled"
};
static const char *const canary_columns[] = {
	"canary_requests", "canary_successes", "canary_errors",
	"canary_unrecognized", "canary_null_latency", "canary_success_rate",
	"canary_error_rate", "canary_p50", "canary_p95", "canary_p99",
	"canary_mean_latency", "canary_latency_sampled"
};

/*
 * Add the columns of one version, named by columns.
 */
static void
add_version_columns(MetricsRow *row, const char *const *columns,
					const VersionWindow *w)
{
	const ValueSample *latency = &w->samples[0];

	add_column(row, columns[0], INT8OID, Int64GetDatum(w->requests), false);
	add_column(row, columns[1], INT8OID, Int64GetDatum(w->successes), false);
	add_column(row, columns[2], INT8OID, Int64GetDatum(w->errors), false);
	add_column(row, columns[3], INT8OID, Int64GetDatum(w->unrecognized), false);
	add_column(row, columns[4], INT8OID, Int64GetDatum(latency->missing), false);
	add_float(row, columns[5], w->success_rate);
	add_float(row, columns[6], w->error_rate);
	add_float(row, columns[7], latency->p50);
	add_float(row, columns[8], latency->p95);
	add_float(row, columns[9], latency->p99);
	add_float(row, columns[10], latency->mean);
	add_column(row, columns[11], BOOLOID, BoolGetDatum(latency->sampled), false);
}

/*
 * Turn the reasons into a text[].
 */
static Datum
reasons_array(const Collection *collection)
{
	int			count = list_length(collection->reasons);
	Datum	   *elements = palloc(Max(count, 1) * sizeof(Datum));
	ListCell   *cell;
	int			i = 0;

	foreach(cell, collection->reasons)
		elements[i++] = CStringGetTextDatum((char *) lfirst(cell));
	return PointerGetDatum(construct_array(elements, count, TEXTOID, -1,
										   false, TYPALIGN_INT));
}

/*
 * Join the reasons into one string, separated by "; ".
 */
static char *
join_reasons(const Collection *collection)
{
	StringInfoData text;
	ListCell   *cell;

	initStringInfo(&text);
	foreach(cell, collection->reasons)
	{
		if (text.len > 0)
			appendStringInfoString(&text, "; ");
		appendStringInfoString(&text, (char *) lfirst(cell));
	}
	return text.data;
}

/*
 * Insert the collection's canary.metrics row.  Returns its id, and the
 * stored row: as a composite Datum when want_row, else as jsonb, allocated
 * in the SPI procedure context.
 */
static int64
store_metrics(const Collection *c, const pg_uuid_t *deployment_id,
			  bool want_row, Datum *stored)
{
	static char *insert_sql[2];	/* by want_row, in TopMemoryContext */
	MetricsRow	row = {0};
	bool		isnull;

	add_column(&row, "deployment_id", UUIDOID, UUIDPGetDatum(deployment_id), false);
	add_column(&row, "stage", INT4OID, Int32GetDatum(c->rollout.stage), false);
	add_column(&row, "percentage", NUMERICOID, c->rollout.percentage, false);
	add_column(&row, "collected_at", TIMESTAMPTZOID, TimestampTzGetDatum(c->at), false);
	add_column(&row, "window_start", TIMESTAMPTZOID, TimestampTzGetDatum(c->window_start), false);
	add_column(&row, "window_end", TIMESTAMPTZOID, TimestampTzGetDatum(c->at), false);
	add_column(&row, "baseline_window_start", TIMESTAMPTZOID, TimestampTzGetDatum(c->baseline_window_start), false);
	add_column(&row, "baseline_window_end", TIMESTAMPTZOID, TimestampTzGetDatum(c->baseline_window_end), false);
	add_column(&row, "baseline_version", TEXTOID, CStringGetTextDatum(c->rollout.baseline_version), false);
	add_column(&row, "canary_version", TEXTOID, CStringGetTextDatum(c->rollout.canary_version), false);
	add_version_columns(&row, baseline_columns, &c->baseline);
	add_version_columns(&row, canary_columns, &c->canary);
	add_float(&row, "success_rate_ratio", c->success_rate_ratio);
	add_float(&row, "p95_latency_ratio", c->p95_latency_ratio);
	add_float(&row, "expected_canary_share", c->expected_share);
	add_float(&row, "observed_canary_share", c->observed_share);
	add_float(&row, "sample_ratio_p_value", c->sample_ratio_p_value);
	add_column(&row, "sample_ratio_mismatch", BOOLOID, BoolGetDatum(c->sample_ratio_mismatch), false);
	add_column(&row, "stage_baseline_requests", INT8OID, Int64GetDatum(c->stage_baseline_requests), false);
	add_column(&row, "stage_canary_requests", INT8OID, Int64GetDatum(c->stage_canary_requests), false);
	add_column(&row, "hard_limit_breached", BOOLOID, BoolGetDatum(c->hard_limit_breached), false);
	add_column(&row, "baseline_unhealthy", BOOLOID, BoolGetDatum(c->baseline_unhealthy), false);
	add_column(&row, "baseline_nodata", BOOLOID, BoolGetDatum(c->baseline_nodata), false);
	add_column(&row, "is_healthy", BOOLOID, BoolGetDatum(c->is_healthy), c->is_healthy_isnull);
	add_column(&row, "verdict", TEXTOID, CStringGetTextDatum(verdict_names[c->verdict]), false);
	add_column(&row, "reasons", TEXTARRAYOID, reasons_array(c), false);
	add_column(&row, "details", JSONBOID, JsonbPGetDatum(build_details(c)), false);

	/* The columns are always the same, so the statement is built once. */
	if (insert_sql[want_row] == NULL)
	{
		StringInfoData sql;
		MemoryContext old_context = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&sql);
		appendStringInfoString(&sql, "INSERT INTO canary.metrics AS m (");
		for (int i = 0; i < row.count; i++)
			appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", row.columns[i]);
		appendStringInfoString(&sql, ") VALUES (");
		for (int i = 0; i < row.count; i++)
			appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
		appendStringInfoString(&sql, want_row ? ") RETURNING m.id, m" :
							   ") RETURNING m.id, pg_catalog.to_jsonb(m.*)");
		MemoryContextSwitchTo(old_context);
		insert_sql[want_row] = sql.data;
	}

	canary_spi_execute(insert_sql[want_row], row.count, row.types, row.values,
					   row.nulls, SPI_OK_INSERT_RETURNING, 1);
	*stored = canary_spi_get(0, 2, &isnull);
	return DatumGetInt64(canary_spi_get(0, 1, &isnull));
}


/*
 * Collection
 */

/*
 * Compute the window start: at minus the window, moved up to stage start
 * plus warmup while the rollout is running or paused.  A start at or after
 * "at" leaves the window empty.
 */
static void
compute_window(Collection *collection, const Interval *window)
{
	RolloutSettings *r = &collection->rollout;

	collection->window_start =
		DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												TimestampTzGetDatum(collection->at),
												IntervalPGetDatum(window)));
	collection->reread_from = collection->window_start;
	if ((strcmp(r->status, "running") == 0 || strcmp(r->status, "paused") == 0) &&
		r->has_stage_window_start &&
		r->stage_window_start > collection->window_start)
		collection->window_start = r->stage_window_start;
	if (collection->window_start > collection->at)
		collection->window_start = collection->at;
}

/*
 * Compute the baseline's window.  It is the canary's window, except while
 * a running or paused rollout routes 100% of the traffic to the canary:
 * then the baseline serves nothing, and its window is the evaluation window
 * that ends at its last row before the current stage (or bake time)
 * started, within the attempt.  A bake time after a 100% stage thus reaches
 * back to the stage before.  NOTE: that historic baseline saw other hours
 * of traffic than the canary, so load and time of day do not cancel out as
 * they do in a shared window; the sequential tests use only shared buckets
 * and so get no new evidence at 100%.
 */
static void
compute_baseline_window(Collection *collection, const LogTable *table,
						const Interval *window)
{
	RolloutSettings *r = &collection->rollout;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[4];
	bool		isnull;
	char	   *sql;
	char	   *start_text;
	char	   *end_text;

	collection->baseline_window_start = collection->window_start;
	collection->baseline_window_end = collection->at;
	if ((strcmp(r->status, "running") != 0 && strcmp(r->status, "paused") != 0) ||
		r->percentage_value < 100.0 || !r->has_stage_start ||
		!r->has_attempt_start)
		return;

	/* The index on (agent_id, version, "timestamp") finds the last row. */
	collection->historic_baseline = true;
	values[0] = CStringGetTextDatum(r->agent_id);
	values[1] = CStringGetTextDatum(r->baseline_version);
	values[2] = TimestampTzGetDatum(r->attempt_start);
	values[3] = TimestampTzGetDatum(Min(r->stage_start, collection->at));
	sql = psprintf("SELECT \"timestamp\" FROM %s WHERE agent_id = $1 "
				   "AND version = $2 AND \"timestamp\" > $3 "
				   "AND \"timestamp\" <= $4 ORDER BY \"timestamp\" DESC LIMIT 1",
				   table->qualified);
	if (canary_spi_execute(sql, 4, argtypes, values, NULL, SPI_OK_SELECT, 1) == 0)
	{
		collection->baseline_window_start = collection->at;
		add_reason(collection,
				   "canary serves all traffic and the baseline has no row in the attempt before the stage started, so there is no baseline to compare with");
		return;
	}

	collection->baseline_window_end =
		DatumGetTimestampTz(canary_spi_get(0, 1, &isnull));
	collection->baseline_window_start =
		DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
												TimestampTzGetDatum(collection->baseline_window_end),
												IntervalPGetDatum(window)));
	/* timestamptz_to_str returns a static buffer, so copy each result. */
	start_text = pstrdup(timestamptz_to_str(collection->baseline_window_start));
	end_text = pstrdup(timestamptz_to_str(collection->baseline_window_end));
	add_reason(collection,
			   "canary serves all traffic, so the baseline is its window before the stage started, from %s to %s",
			   start_text, end_text);
}

/*
 * Check the window and evaluation time of a collection.
 */
static void
validate_collect_arguments(const Interval *window, TimestampTz at)
{
	Interval	zero = {0};

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(window),
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evaluation window %s is not positive",
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(window)))),
				 errhint("Give a positive interval, for example '10 minutes'.")));
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evaluation time must be finite"),
				 errhint("Pass a finite time, such as now().")));
}

/*
 * Read both versions, compare them and decide.  Runs connected to SPI.
 */
static void
collect(Collection *collection, const pg_uuid_t *deployment_id,
		const Interval *window)
{
	RolloutSettings *r = &collection->rollout;
	LogTable	table;
	int			value_count;

	/* Read the rollout and compute the window. */
	load_rollout(deployment_id, r);
	collection->sequential = strcmp(r->analysis, "sequential") == 0;
	compute_window(collection, window);

	/* Find the execution log and check its columns. */
	resolve_log_table(&table);
	check_log_columns(&table, r);

	/* Read both versions in one pass over the execution log. */
	compute_baseline_window(collection, &table, window);
	if (collection->sequential)
		prepare_sequential(collection, &table, deployment_id);
	read_log(collection, &table);
	value_count = r->metric_count + 1;
	summarize_version(&collection->baseline, value_count);
	summarize_version(&collection->canary, value_count);

	/* Ratios are defined only for a positive baseline figure. */
	collection->success_rate_ratio = get_float8_nan();
	collection->p95_latency_ratio = get_float8_nan();
	collection->expected_share = get_float8_nan();
	collection->observed_share = get_float8_nan();
	collection->sample_ratio_p_value = get_float8_nan();
	if (collection->baseline.success_rate > 0.0)
		collection->success_rate_ratio =
			collection->canary.success_rate / collection->baseline.success_rate;
	if (collection->baseline.samples[0].p95 > 0.0)
		collection->p95_latency_ratio =
			collection->canary.samples[0].p95 / collection->baseline.samples[0].p95;

	decide(collection);
}

/*
 * Collect metrics of a rollout over the window ending at "at" and store
 * them as a canary.metrics row; see the file header for the window rules.
 * Fills summary with figures allocated in the caller's memory context.  The
 * caller may be connected to SPI and may be inside its own transaction.
 */
void
canary_metrics_collect(const pg_uuid_t *deployment_id, const Interval *window,
					   TimestampTz at, bool want_row, bool keep_evidence,
					   CanaryMetricsSummary *summary)
{
	MemoryContext caller = CurrentMemoryContext;
	Collection *collection;
	Datum		stored;
	int			nest_level;

	validate_collect_arguments(window, at);

	collection = palloc0(sizeof(Collection));
	collection->at = at;
	collection->keep_evidence = keep_evidence;
	collection->values_context = AllocSetContextCreate(caller,
													   "canary metrics values",
													   ALLOCSET_DEFAULT_SIZES);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	canary_run_with_safe_settings_begin(&nest_level);

	collect(collection, deployment_id, window);
	summary->metrics_id = store_metrics(collection, deployment_id, want_row,
										&stored);
	if (collection->keep_evidence && collection->sequential)
		store_evidence(collection, deployment_id);

	/* Copy the summary into the caller's context before SPI frees its own. */
	MemoryContextSwitchTo(caller);
	summary->canary_requests = collection->stage_canary_requests;
	summary->baseline_requests = collection->stage_baseline_requests;
	summary->canary_error_rate = collection->canary.error_rate;
	summary->baseline_error_rate = collection->baseline.error_rate;
	summary->canary_p95 = collection->canary.samples[0].p95;
	summary->baseline_p95 = collection->baseline.samples[0].p95;
	summary->verdict = collection->verdict;
	summary->hard_limit_breached = collection->hard_limit_breached;
	summary->baseline_unhealthy = collection->baseline_unhealthy;
	summary->baseline_nodata = collection->baseline_nodata;
	summary->sample_ratio_mismatch = collection->sample_ratio_mismatch;
	summary->reason = join_reasons(collection);
	summary->evidence = collection->evidence.summary ?
		pstrdup(collection->evidence.summary) : NULL;
	summary->snapshot = NULL;
	summary->row = (Datum) 0;
	if (want_row)
		summary->row = datumCopy(stored, false, -1);
	else
		summary->snapshot = (Jsonb *) PG_DETOAST_DATUM_COPY(stored);
	summary->is_healthy = collection->is_healthy;
	summary->is_healthy_isnull = collection->is_healthy_isnull;

	canary_run_with_safe_settings_end(nest_level);
	SPI_finish();
	MemoryContextDelete(collection->values_context);
	pfree(collection);
}

/*
 * SQL function canary_collect_metrics(deployment_id, window, at): collects
 * and stores the metrics of a rollout and returns the canary.metrics row.
 */
PG_FUNCTION_INFO_V1(canary_collect_metrics);
Datum
canary_collect_metrics(PG_FUNCTION_ARGS)
{
	CanaryMetricsSummary summary;

	CANARY_REQUIRE_ARG(fcinfo, 0, "rollout id");
	CANARY_REQUIRE_ARG(fcinfo, 1, "evaluation window");
	CANARY_REQUIRE_ARG(fcinfo, 2, "evaluation time");

	canary_metrics_collect(PG_GETARG_UUID_P(0), PG_GETARG_INTERVAL_P(1),
						   PG_GETARG_TIMESTAMPTZ(2), true, false, &summary);
	PG_RETURN_DATUM(summary.row);
}
