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

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "canary.h"
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
reject_active_rollout(Datum agent_id)
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
				 errhint("Promote or roll back that rollout first.")));
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

	/* Lock the agent's row if it exists, then refuse a version change under a rollout. */
	if (canary_spi_execute("SELECT stable_version FROM canary.agents "
						   "WHERE agent_id = $1 FOR UPDATE",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) > 0 &&
		strcmp(canary_spi_get_text(0, 1), version) != 0)
		reject_active_rollout(values[0]);

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

/*
 * SQL function canary_create(agent_id, canary_version, ...settings):
 * validates every setting and creates a pending rollout.  Returns its id.
 */
PG_FUNCTION_INFO_V1(canary_create);
Datum
canary_create(PG_FUNCTION_ARGS)
{
	Oid			argtypes[11] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		NUMERICARRAYOID, INTERVALOID, INT4OID, FLOAT8OID, FLOAT8OID,
	FLOAT8OID, TEXTOID};
	Datum		values[11];
	bool		isnull[11] = {0};
	char	   *canary_version;
	char	   *baseline_version;
	int32		min_samples;
	pg_uuid_t  *result;

	/* Check the arguments. */
	CANARY_REQUIRE_ARG(fcinfo, 0, "agent id");
	CANARY_REQUIRE_ARG(fcinfo, 1, "canary version");
	CANARY_REQUIRE_ARG(fcinfo, 2, "stage list");
	CANARY_REQUIRE_ARG(fcinfo, 3, "stage duration");
	CANARY_REQUIRE_ARG(fcinfo, 4, "minimum samples");
	CANARY_REQUIRE_ARG(fcinfo, 5, "success rate ratio");
	CANARY_REQUIRE_ARG(fcinfo, 6, "p95 latency ratio");
	CANARY_REQUIRE_ARG(fcinfo, 7, "maximum error rate");

	canary_version = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (canary_version[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("canary version must not be empty")));
	validate_stages(PG_GETARG_ARRAYTYPE_P(2));
	validate_duration("stage duration", PG_GETARG_INTERVAL_P(3));
	min_samples = PG_GETARG_INT32(4);
	if (min_samples < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("minimum samples %d is out of range", min_samples),
				 errhint("Each stage needs at least 1 canary sample.")));
	validate_range("success rate ratio", PG_GETARG_FLOAT8(5), 0.0, true, 1.0,
				   "The canary's success rate must be at least this fraction of the baseline's: give a value greater than 0 and at most 1.");
	validate_range("p95 latency ratio", PG_GETARG_FLOAT8(6), 1.0, false, 1000.0,
				   "The canary's p95 latency may be at most this multiple of the baseline's: give a value from 1 to 1000.");
	validate_range("maximum error rate", PG_GETARG_FLOAT8(7), 0.0, false, 1.0,
				   "Give the largest tolerated canary error rate as a fraction from 0 to 1.");

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
	reject_active_rollout(PG_GETARG_DATUM(0));

	/* Insert the rollout. */
	values[0] = PG_ARGISNULL(8) ? (Datum) 0 : PG_GETARG_DATUM(8);
	isnull[0] = PG_ARGISNULL(8);
	values[1] = PG_GETARG_DATUM(0);
	values[2] = CStringGetTextDatum(baseline_version);
	values[3] = PG_GETARG_DATUM(1);
	for (int i = 2; i <= 7; i++)
		values[i + 2] = PG_GETARG_DATUM(i);
	values[10] = PG_ARGISNULL(9) ? (Datum) 0 : PG_GETARG_DATUM(9);
	isnull[10] = PG_ARGISNULL(9);

	canary_spi_execute("INSERT INTO canary.deployments "
					   "(organization_id, agent_id, baseline_version, canary_version, "
					   "stages, stage_duration, min_samples, success_rate_ratio, "
					   "p95_latency_ratio, max_error_rate, created_by) "
					   "VALUES (coalesce($1, (SELECT organization_id FROM canary.agents "
					   "WHERE agent_id = $2)), $2, $3, $4, $5, $6, $7, $8, $9, $10, "
					   "coalesce($11, current_user)) RETURNING id",
					   11, argtypes, values, isnull, SPI_OK_INSERT_RETURNING, 1);

	result = (pg_uuid_t *) SPI_palloc(sizeof(pg_uuid_t));
	memcpy(result, DatumGetUUIDP(canary_spi_get(0, 1, &isnull[0])),
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
	SPI_finish();
	PG_RETURN_VOID();
}
