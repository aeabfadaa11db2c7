/*-------------------------------------------------------------------------
 *
 * rollout.c
 *		Register agents, and create and start rollouts.
 *
 * Every function here runs under the search_path its SQL definition sets
 * and takes row locks in one order, agent first and then rollout, so that
 * concurrent calls for one agent serialize instead of deadlocking.
 *
 * src/rollout.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "canary.h"
#include "evaluation.h"
#include "metrics.h"
#include "rollout.h"
#include "spi_helpers.h"

/* Largest number of stages a rollout may have. */
#define CANARY_MAX_STAGES 100

/*
 * Render a numeric Datum as text for a message.
 */
static char *
numeric_text(Datum value)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, value));
}

/*
 * Check a stage list: not empty, no NULLs, each percentage in (0, 100] with
 * at most two decimals, strictly increasing.
 */
static void
validate_stages(ArrayType *stages)
{
	Datum	   *values;
	bool	   *nulls;
	int			count;
	Datum		zero = DirectFunctionCall1(int4_numeric, Int32GetDatum(0));
	Datum		hundred = DirectFunctionCall1(int4_numeric, Int32GetDatum(100));

	if (ARR_NDIM(stages) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stage list must be a one-dimensional array")));
	deconstruct_array(stages, NUMERICOID, -1, false, TYPALIGN_INT,
					  &values, &nulls, &count);
	if (count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stage list must not be empty"),
				 errhint("Give at least one traffic percentage, for example ARRAY[5, 25, 50, 75, 100].")));
	if (count > CANARY_MAX_STAGES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stage list has %d stages, more than the maximum of %d",
						count, CANARY_MAX_STAGES)));

	for (int i = 0; i < count; i++)
	{
		Datum		rounded;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("stage %d percentage must not be null", i + 1)));
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, values[i], zero)) <= 0 ||
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, values[i], hundred)) > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stage %d percentage %s is out of range",
							i + 1, numeric_text(values[i])),
					 errhint("Each stage percentage must be greater than 0 and at most 100.")));
		rounded = DirectFunctionCall2(numeric_round, values[i], Int32GetDatum(2));
		if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, values[i], rounded)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stage %d percentage %s has more than two decimal places",
							i + 1, numeric_text(values[i])),
					 errhint("Routing works in steps of 0.01 percent.")));
		if (i > 0 &&
			DatumGetInt32(DirectFunctionCall2(numeric_cmp, values[i], values[i - 1])) <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stage %d percentage %s does not exceed stage %d percentage %s",
							i + 1, numeric_text(values[i]),
							i, numeric_text(values[i - 1])),
					 errhint("Stage percentages must be strictly increasing.")));
	}
}

/*
 * Check that a float setting lies in [low, high], or (low, high] when
 * low_exclusive; NaN fails every range.
 */
static void
validate_range(const char *name, double value, double low, bool low_exclusive,
			   double high, const char *hint)
{
	if (isnan(value) || value > high || value < low ||
		(low_exclusive && value == low))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %g is out of range", name, value),
				 errhint("%s", hint)));
}

/*
 * Check a stage duration: positive.
 */
static void
validate_duration(const char *name, Interval *duration)
{
	Interval	zero = {0};

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(duration),
										  IntervalPGetDatum(&zero))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s is not positive", name,
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(duration)))),
				 errhint("Give a positive interval, for example '30 minutes'.")));
}

/*
 * Lock an agent's row and return its stable version (palloc'd in the SPI
 * procedure context), raising an error when the agent is not registered.
 */
static char *
lock_agent(Datum agent_id)
{
	Oid			argtypes[1] = {TEXTOID};

	if (canary_spi_execute("SELECT stable_version FROM canary.agents "
						   "WHERE agent_id = $1 FOR UPDATE",
						   1, argtypes, &agent_id, NULL,
						   SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" is not registered",
						TextDatumGetCString(agent_id)),
				 errhint("Register the agent and its stable version with canary_register_agent().")));
	return canary_spi_get_text(0, 1);
}

/*
 * Raise an error if the agent has an active (pending, running or paused)
 * rollout.  The caller holds the agent's row lock.
 */
static void
reject_active_rollout(Datum agent_id, const char *hint)
{
	Oid			argtypes[1] = {TEXTOID};

	if (canary_spi_execute("SELECT id::text, status::text FROM canary.deployments "
						   "WHERE agent_id = $1 "
						   "AND status IN ('pending', 'running', 'paused')",
						   1, argtypes, &agent_id, NULL,
						   SPI_OK_SELECT, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("agent \"%s\" already has an active rollout",
						TextDatumGetCString(agent_id)),
				 errdetail("Rollout %s is %s.", canary_spi_get_text(0, 1),
						   canary_spi_get_text(0, 2)),
				 errhint("%s", hint)));
}

/*
 * SQL function canary_register_agent(agent_id, version, organization_id):
 * creates an agent, or updates its stable version and organization.  The
 * stable version cannot change while a rollout of the agent is active,
 * because that rollout compares against it.
 */
PG_FUNCTION_INFO_V1(canary_register_agent);
Datum
canary_register_agent(PG_FUNCTION_ARGS)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];
	bool		isnull[3] = {false, false, false};
	char	   *agent_id;
	char	   *version;

	CANARY_REQUIRE_ARG(fcinfo, 0, "agent id");
	CANARY_REQUIRE_ARG(fcinfo, 1, "version");
	agent_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	version = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (agent_id[0] == '\0' || strlen(agent_id) > CANARY_AGENT_ID_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("agent id \"%s\" is invalid", agent_id),
				 errhint("Agent ids have 1 to %d bytes.", CANARY_AGENT_ID_MAXLEN)));
	if (version[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("version must not be empty")));

	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	isnull[2] = PG_ARGISNULL(2);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* Lock the agent's row if it exists, then reject a version change under a rollout. */
	if (canary_spi_execute("SELECT stable_version FROM canary.agents "
						   "WHERE agent_id = $1 FOR UPDATE",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) > 0 &&
		strcmp(canary_spi_get_text(0, 1), version) != 0)
		reject_active_rollout(values[0],
							  "Promote or roll back that rollout before changing the stable version.");

	canary_spi_execute("INSERT INTO canary.agents AS a "
					   "(agent_id, stable_version, organization_id) "
					   "VALUES ($1, $2, $3) "
					   "ON CONFLICT (agent_id) DO UPDATE SET "
					   "previous_stable_version = CASE "
					   "WHEN a.stable_version <> excluded.stable_version "
					   "THEN a.stable_version ELSE a.previous_stable_version END, "
					   "stable_version = excluded.stable_version, "
					   "organization_id = coalesce(excluded.organization_id, a.organization_id), "
					   "updated_at = now()",
					   3, argtypes, values, isnull, SPI_OK_INSERT, 0);
	SPI_finish();
	PG_RETURN_VOID();
}

/* Columns of canary.deployments filled from canary_create's arguments. */
typedef struct CreateColumn
{
	const char *column;
	Oid			type;
	int			argno;			/* argument number, or -1 when computed */
} CreateColumn;

static const CreateColumn create_columns[] = {
	{"organization_id", TEXTOID, 8},
	{"agent_id", TEXTOID, 0},
	{"baseline_version", TEXTOID, -1},
	{"canary_version", TEXTOID, 1},
	{"stages", NUMERICARRAYOID, 2},
	{"stage_duration", INTERVALOID, 3},
	{"min_samples", INT4OID, 4},
	{"success_rate_ratio", FLOAT8OID, 5},
	{"p95_latency_ratio", FLOAT8OID, 6},
	{"max_error_rate", FLOAT8OID, 7},
	{"created_by", TEXTOID, 9},
	{"evaluation_window", INTERVALOID, 10},
	{"warmup", INTERVALOID, 11},
	{"success_statuses", TEXTARRAYOID, 12},
	{"error_statuses", TEXTARRAYOID, 13},
	{"metrics", JSONBOID, 14},
	{"analysis", TEXTOID, 15},
	{"alpha", FLOAT8OID, 16},
	{"failure_threshold", INT4OID, 17},
	{"max_stage_failures", INT4OID, 18},
	{"rollback_on_hard_limit", BOOLOID, 19},
	{"nodata_deadline", INTERVALOID, 20},
	{"nodata_action", TEXTOID, 21},
	{"inconclusive_action", TEXTOID, 22},
	{"approval_stages", INT4ARRAYOID, 23},
	{"bake_time", INTERVALOID, 24},
	{"id", UUIDOID, 26},
};

#define CREATE_COLUMN_COUNT lengthof(create_columns)

/* canary_create's argument numbers that may be NULL. */
#define ARG_ORGANIZATION_ID 8
#define ARG_CREATED_BY 9
#define ARG_SUPERSEDE 25
#define ARG_ID 26

/* Names of canary_create's arguments, for messages about NULLs. */
static const char *const create_argument_names[] = {
	"agent_id", "canary_version", "stages", "stage_duration", "min_samples",
	"success_rate_ratio", "p95_latency_ratio", "max_error_rate",
	"organization_id", "created_by", "evaluation_window", "warmup",
	"success_statuses", "error_statuses", "metrics", "analysis", "alpha",
	"failure_threshold", "max_stage_failures", "rollback_on_hard_limit",
	"nodata_deadline", "nodata_action", "inconclusive_action",
	"approval_stages", "bake_time", "supersede", "id"
};

/*
 * Check that an interval is not negative.
 */
static void
validate_nonnegative_duration(const char *name, Interval *duration)
{
	Interval	zero = {0};

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
										  IntervalPGetDatum(duration),
										  IntervalPGetDatum(&zero))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s %s is negative", name,
						DatumGetCString(DirectFunctionCall1(interval_out,
															IntervalPGetDatum(duration)))),
				 errhint("Give zero or a positive interval.")));
}

/*
 * Check a text setting against its allowed values.
 */
static void
validate_choice(const char *name, text *value, const char *const *choices,
				const char *hint)
{
	char	   *str = text_to_cstring(value);

	for (int i = 0; choices[i] != NULL; i++)
		if (strcmp(str, choices[i]) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized %s \"%s\"", name, str),
			 errhint("%s", hint)));
}

/*
 * Check a status list: one-dimensional, no NULL or empty element, and none
 * in common with other (when given).  Returns the number of elements.
 */
static int
validate_status_list(const char *name, ArrayType *statuses, ArrayType *other)
{
	Datum	   *values;
	bool	   *nulls;
	int			count;
	Datum	   *other_values = NULL;
	int			other_count = 0;

	if (ARR_NDIM(statuses) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", name)));
	deconstruct_array(statuses, TEXTOID, -1, false, TYPALIGN_INT,
					  &values, &nulls, &count);
	if (other != NULL)
		deconstruct_array(other, TEXTOID, -1, false, TYPALIGN_INT,
						  &other_values, NULL, &other_count);

	for (int i = 0; i < count; i++)
	{
		char	   *status;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", name)));
		status = TextDatumGetCString(values[i]);
		if (status[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not contain an empty status", name)));
		for (int j = 0; j < other_count; j++)
			if (other_values[j] != (Datum) 0 &&
				strcmp(status, TextDatumGetCString(other_values[j])) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("status \"%s\" is both a success and an error status",
								status),
						 errhint("Each status counts either as success or as error.")));
	}
	return count;
}

/*
 * Check the stage numbers that wait for approval: each within the stage list.
 */
static void
validate_approval_stages(ArrayType *approval_stages, int stage_count)
{
	Datum	   *values;
	bool	   *nulls;
	int			count;

	deconstruct_array(approval_stages, INT4OID, 4, true, TYPALIGN_INT,
					  &values, &nulls, &count);
	for (int i = 0; i < count; i++)
	{
		int32		stage;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("approval_stages must not contain nulls")));
		stage = DatumGetInt32(values[i]);
		if (stage < 1 || stage > stage_count)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("approval stage %d is out of range", stage),
					 errhint("Stages are numbered from 1 to %d.", stage_count)));
	}
}

/*
 * Check every argument of canary_create except the agent, whose checks need
 * the agent's row.
 */
static void
validate_create_arguments(FunctionCallInfo fcinfo)
{
	static const char *const analyses[] = {"sequential", "threshold", NULL};
	static const char *const nodata_actions[] = {"pause", "rollback", NULL};
	static const char *const inconclusive_actions[] = {"pause", "continue", "rollback", NULL};
	ArrayType  *stages;
	int32		value;

	for (int i = 0; i < (int) lengthof(create_argument_names); i++)
		if (i != ARG_ORGANIZATION_ID && i != ARG_CREATED_BY && i != ARG_ID)
			CANARY_REQUIRE_ARG(fcinfo, i, create_argument_names[i]);

	if (VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("canary version must not be empty")));
	stages = PG_GETARG_ARRAYTYPE_P(2);
	validate_stages(stages);
	validate_duration("stage duration", PG_GETARG_INTERVAL_P(3));

	value = PG_GETARG_INT32(4);
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("minimum samples %d is out of range", value),
				 errhint("Each stage needs at least 1 canary sample.")));
	validate_range("success rate ratio", PG_GETARG_FLOAT8(5), 0.0, true, 1.0,
				   "The canary's success rate must be at least this fraction of the baseline's: give a value greater than 0 and at most 1.");
	validate_range("p95 latency ratio", PG_GETARG_FLOAT8(6), 1.0, false, 1000.0,
				   "The canary's p95 latency may be at most this multiple of the baseline's: give a value from 1 to 1000.");
	validate_range("maximum error rate", PG_GETARG_FLOAT8(7), 0.0, false, 1.0,
				   "Give the largest tolerated canary error rate as a fraction from 0 to 1.");

	validate_duration("evaluation window", PG_GETARG_INTERVAL_P(10));
	validate_nonnegative_duration("warmup", PG_GETARG_INTERVAL_P(11));
	if (validate_status_list("success_statuses", PG_GETARG_ARRAYTYPE_P(12), NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("success_statuses must not be empty"),
				 errhint("Name at least one status that counts as success, for example 'success'.")));
	validate_status_list("error_statuses", PG_GETARG_ARRAYTYPE_P(13),
						 PG_GETARG_ARRAYTYPE_P(12));
	canary_metrics_validate_config(PG_GETARG_JSONB_P(14));

	validate_choice("analysis", PG_GETARG_TEXT_PP(15), analyses,
					"Use 'sequential' or 'threshold'.");
	validate_range("alpha", PG_GETARG_FLOAT8(16), 0.0, true, 0.5,
				   "Give the tolerated probability of rolling back a healthy canary, greater than 0 and at most 0.5.");
	value = PG_GETARG_INT32(17);
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("failure threshold %d is out of range", value),
				 errhint("Give the number of consecutive unhealthy evaluations that roll back, at least 1.")));
	value = PG_GETARG_INT32(18);
	if (value < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("maximum stage failures %d is out of range", value),
				 errhint("Give the number of unhealthy evaluations in one stage that roll back, at least 1.")));
	validate_duration("no-data deadline", PG_GETARG_INTERVAL_P(20));
	validate_choice("no-data action", PG_GETARG_TEXT_PP(21), nodata_actions,
					"Use 'pause' or 'rollback'.");
	validate_choice("inconclusive action", PG_GETARG_TEXT_PP(22),
					inconclusive_actions,
					"Use 'pause', 'continue' or 'rollback'.");
	validate_approval_stages(PG_GETARG_ARRAYTYPE_P(23),
							 ArrayGetNItems(ARR_NDIM(stages), ARR_DIMS(stages)));
	validate_nonnegative_duration("bake time", PG_GETARG_INTERVAL_P(24));
}

/*
 * End the agent's active rollout so a new one can start: its status becomes
 * superseded and its traffic returns to the baseline, and the transition
 * and its event are recorded.  The caller holds the agent's row lock.
 */
static void
supersede_active_rollout(Datum agent_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		id;
	char	   *id_text;
	char	   *old_status;
	char	   *old_percentage;
	int			old_stage;
	bool		isnull;

	if (canary_spi_execute("SELECT id::text, status::text, current_stage, "
						   "current_percentage::text FROM canary.deployments "
						   "WHERE agent_id = $1 "
						   "AND status IN ('pending', 'running', 'paused') FOR UPDATE",
						   1, argtypes, &agent_id, NULL, SPI_OK_SELECT, 1) == 0)
		return;
	id_text = canary_spi_get_text(0, 1);
	old_status = canary_spi_get_text(0, 2);
	old_stage = DatumGetInt32(canary_spi_get(0, 3, &isnull));
	old_percentage = canary_spi_get_text(0, 4);

	id = CStringGetTextDatum(id_text);
	canary_spi_execute("UPDATE canary.deployments SET status = 'superseded', "
					   "current_percentage = 0, completed_at = now(), "
					   "updated_at = now(), pause_kind = NULL, "
					   "status_reason = 'superseded by a new rollout' "
					   "WHERE id = $1::uuid",
					   1, argtypes, &id, NULL, SPI_OK_UPDATE, 0);
	canary_eval_record_transition(id_text, old_status, old_stage,
								  old_percentage, "superseded",
								  "superseded by a new rollout", false,
								  GetCurrentTransactionStartTimestamp());
}

/*
 * Raise an error if a rollout with the id a caller chose exists already.
 */
static void
reject_existing_id(Datum id)
{
	Oid			argtypes[1] = {UUIDOID};

	if (canary_spi_execute("SELECT agent_id FROM canary.deployments WHERE id = $1",
						   1, argtypes, &id, NULL, SPI_OK_SELECT, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("rollout %s already exists",
						DatumGetCString(DirectFunctionCall1(uuid_out, id))),
				 errdetail("It is a rollout of agent \"%s\".",
						   canary_spi_get_text(0, 1)),
				 errhint("Omit the id to get a new random one, or choose another.")));
}

/*
 * Build the INSERT statement for canary.deployments from create_columns.
 */
static char *
build_create_statement(void)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "INSERT INTO canary.deployments (");
	for (int i = 0; i < (int) CREATE_COLUMN_COUNT; i++)
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", create_columns[i].column);
	appendStringInfoString(&sql, ") VALUES (");
	for (int i = 0; i < (int) CREATE_COLUMN_COUNT; i++)
	{
		const char *column = create_columns[i].column;

		if (i > 0)
			appendStringInfoString(&sql, ", ");
		if (strcmp(column, "organization_id") == 0)
			appendStringInfo(&sql, "coalesce($%d, (SELECT organization_id "
							 "FROM canary.agents WHERE agent_id = $2))", i + 1);
		else if (strcmp(column, "created_by") == 0)
			appendStringInfo(&sql, "coalesce($%d, current_user)", i + 1);
		else if (strcmp(column, "id") == 0)
			appendStringInfo(&sql, "coalesce($%d, gen_random_uuid())", i + 1);
		else
			appendStringInfo(&sql, "$%d", i + 1);
	}
	appendStringInfoString(&sql, ") RETURNING id");
	return sql.data;
}

/*
 * SQL function canary_create(agent_id, canary_version, ...settings):
 * validates every setting and creates a pending rollout.  Returns its id.
 */
PG_FUNCTION_INFO_V1(canary_create);
Datum
canary_create(PG_FUNCTION_ARGS)
{
	Oid			argtypes[CREATE_COLUMN_COUNT];
	Datum		values[CREATE_COLUMN_COUNT];
	bool		isnull[CREATE_COLUMN_COUNT];
	char	   *canary_version;
	char	   *baseline_version;
	pg_uuid_t  *result;
	bool		result_isnull;

	/* Check the arguments. */
	validate_create_arguments(fcinfo);
	canary_version = text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* The agent's row lock serializes creates for one agent. */
	baseline_version = lock_agent(PG_GETARG_DATUM(0));
	if (strcmp(baseline_version, canary_version) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("canary version \"%s\" is already the stable version of agent \"%s\"",
						canary_version, text_to_cstring(PG_GETARG_TEXT_PP(0))),
				 errhint("Give the new version that should replace the stable one.")));
	if (!PG_ARGISNULL(ARG_ID))
		reject_existing_id(PG_GETARG_DATUM(ARG_ID));
	if (PG_GETARG_BOOL(ARG_SUPERSEDE))
		supersede_active_rollout(PG_GETARG_DATUM(0));
	else
		reject_active_rollout(PG_GETARG_DATUM(0),
							  "Promote or roll back that rollout first, or pass supersede => true to replace it.");

	/* Insert the rollout. */
	for (int i = 0; i < (int) CREATE_COLUMN_COUNT; i++)
	{
		int			argno = create_columns[i].argno;

		argtypes[i] = create_columns[i].type;
		if (argno < 0)
		{
			values[i] = CStringGetTextDatum(baseline_version);
			isnull[i] = false;
		}
		else
		{
			isnull[i] = PG_ARGISNULL(argno);
			values[i] = isnull[i] ? (Datum) 0 : PG_GETARG_DATUM(argno);
		}
	}
	canary_spi_execute(build_create_statement(), CREATE_COLUMN_COUNT,
					   argtypes, values, isnull, SPI_OK_INSERT_RETURNING, 1);

	result = (pg_uuid_t *) SPI_palloc(sizeof(pg_uuid_t));
	memcpy(result, DatumGetUUIDP(canary_spi_get(0, 1, &result_isnull)),
		   sizeof(pg_uuid_t));
	SPI_finish();
	PG_RETURN_UUID_P(result);
}

/*
 * SQL function canary_start(id, at): moves a pending rollout to running at
 * its first stage, with the stage clock starting at "at".
 */
PG_FUNCTION_INFO_V1(canary_start);
Datum
canary_start(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	char	   *id_text;

	CANARY_REQUIRE_ARG(fcinfo, 0, "rollout id");
	CANARY_REQUIRE_ARG(fcinfo, 1, "start time");
	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	id_text = DatumGetCString(DirectFunctionCall1(uuid_out, values[0]));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* Lock the rollout and check its status. */
	if (canary_spi_execute("SELECT status::text FROM canary.deployments "
						   "WHERE id = $1 FOR UPDATE",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rollout %s does not exist", id_text)));
	if (strcmp(canary_spi_get_text(0, 1), "pending") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rollout %s is %s", id_text, canary_spi_get_text(0, 1)),
				 errhint("Only a pending rollout can be started.")));

	canary_spi_execute("UPDATE canary.deployments SET status = 'running', "
					   "current_stage = 1, current_percentage = stages[1], "
					   "started_at = $2, stage_started_at = $2, updated_at = now() "
					   "WHERE id = $1",
					   2, argtypes, values, NULL, SPI_OK_UPDATE, 0);
	canary_eval_record_transition(id_text, "pending", 0, "0", "started",
								  "started at stage 1", false,
								  DatumGetTimestampTz(values[1]));
	SPI_finish();
	PG_RETURN_VOID();
}
