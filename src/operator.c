/*-------------------------------------------------------------------------
 *
 * operator.c
 *		Manual actions on rollouts: pause, resume, roll back, promote,
 *		approve, override the percentage, undo a promotion and retry.
 *
 * Each action locks the agent's row and then the rollout's row (see
 * evaluation.c), checks the status it reads after the lock, and either
 * fails with OBJECT_NOT_IN_PREREQUISITE_STATE and a hint naming what is
 * possible, or changes the rollout through canary_eval_transition, which
 * records the transition and its event.  The actor is current_user and the
 * time is the transaction's start time, now().
 *
 * src/operator.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "evaluation.h"
#include "operator.h"
#include "rollout.h"
#include "spi_helpers.h"

/*
 * Connect to SPI and lock the rollout given as the first argument.
 */
static void
begin_action(FunctionCallInfo fcinfo, CanaryRollout *r)
{
	CANARY_REQUIRE_ARG(fcinfo, 0, "rollout id");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	canary_eval_lock_rollout(PG_GETARG_UUID_P(0),
							 GetCurrentTransactionStartTimestamp(), r);
}

/*
 * Return true when the rollout's status is the one given.
 */
static bool
has_status(const CanaryRollout *r, const char *status)
{
	return strcmp(r->status, status) == 0;
}

/*
 * Reject an action on a rollout in a status that does not allow it, with a
 * hint that names what is possible in that status.
 */
static void
reject_action(const CanaryRollout *r, const char *action)
{
	const char *possible;

	if (has_status(r, "pending"))
		possible = "Start it with canary_start(), or roll it back with canary_rollback().";
	else if (has_status(r, "running"))
		possible = "A running rollout can be paused, rolled back, promoted or given a percentage.";
	else if (has_status(r, "paused"))
		possible = "A paused rollout can be resumed, rolled back, promoted or given a percentage.";
	else if (has_status(r, "rolled_back"))
		possible = "A rolled-back rollout can only be retried with canary_retry().";
	else if (has_status(r, "promoted"))
		possible = "A promoted rollout is final; canary_undo() returns its agent to the previous stable version.";
	else
		possible = "A superseded rollout is final; act on the rollout that replaced it.";

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot %s rollout %s because it is %s",
					action, r->id_text, r->status),
			 errhint("%s", possible)));
}

/*
 * Apply a manual transition as of now().
 */
static void
manual_transition(const CanaryRollout *r, const char *status,
				  const char *percentage, const char *pause_kind,
				  const char *event, const char *reason)
{
	CanaryTransition t;

	t.status = status;
	t.stage = r->stage;
	t.percentage = percentage;
	t.pause_kind = pause_kind;
	t.restart_stage = false;
	t.event = event;
	t.reason = reason;
	t.automatic = false;
	t.at = GetCurrentTransactionStartTimestamp();
	canary_eval_transition(r, &t);
}

/*
 * Return the text argument n, rejecting NULL.
 */
static char *
reason_argument(FunctionCallInfo fcinfo, int n)
{
	CANARY_REQUIRE_ARG(fcinfo, n, "reason");
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * Run a statement whose only parameter is the rollout id.
 */
static void
execute_for_rollout(const CanaryRollout *r, const char *sql)
{
	Oid			argtype = UUIDOID;
	Datum		value = UUIDPGetDatum(&r->id);

	canary_spi_execute(sql, 1, &argtype, &value, NULL, SPI_OK_UPDATE, 0);
}

/*
 * SQL function canary_pause(id, reason): pauses a running rollout at its
 * current split until canary_resume().
 */
PG_FUNCTION_INFO_V1(canary_pause);
Datum
canary_pause(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	char	   *reason = reason_argument(fcinfo, 1);

	begin_action(fcinfo, &r);
	if (!has_status(&r, "running"))
		reject_action(&r, "pause");

	manual_transition(&r, "paused", r.percentage, "manual", "paused", reason);
	canary_eval_record_decision(&r, "pause", reason, false,
								GetCurrentTransactionStartTimestamp());
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * SQL function canary_resume(id): resumes a paused rollout.  Resuming an
 * inconclusive pause accepts the stage, so that the same verdict lets it
 * progress; resuming an approval pause approves the next stage.
 */
PG_FUNCTION_INFO_V1(canary_resume);
Datum
canary_resume(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	char	   *reason;

	begin_action(fcinfo, &r);
	if (!has_status(&r, "paused"))
		reject_action(&r, "resume");

	if (strcmp(r.pause_kind, "inconclusive") == 0)
		reason = psprintf("resumed; inconclusive stage %d accepted", r.stage);
	else if (strcmp(r.pause_kind, "approval") == 0)
		reason = psprintf("resumed; stage %d approved", r.stage + 1);
	else
		reason = psprintf("resumed after %s pause", r.pause_kind);

	execute_for_rollout(&r, "UPDATE canary.deployments SET "
						"inconclusive_accepted = inconclusive_accepted "
						"OR pause_kind = 'inconclusive', "
						"approved_stage = CASE WHEN pause_kind = 'approval' "
						"THEN current_stage + 1 ELSE approved_stage END "
						"WHERE id = $1");
	manual_transition(&r, "running", r.percentage, NULL, "resumed", reason);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * SQL function canary_rollback(id, reason): ends a pending, running or
 * paused rollout; all traffic returns to the baseline.
 */
PG_FUNCTION_INFO_V1(canary_rollback);
Datum
canary_rollback(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	char	   *reason = reason_argument(fcinfo, 1);

	begin_action(fcinfo, &r);
	if (!has_status(&r, "pending") && !has_status(&r, "running") &&
		!has_status(&r, "paused"))
		reject_action(&r, "roll back");

	manual_transition(&r, "rolled_back", "0", NULL, "rolled_back", reason);
	canary_eval_record_decision(&r, "rollback", reason, false,
								GetCurrentTransactionStartTimestamp());
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Return true when the latest evaluation of the rollout's current attempt
 * that read metrics found the canary unhealthy.
 */
static bool
last_verdict_failed(const CanaryRollout *r)
{
	Oid			argtype = UUIDOID;
	Datum		value = UUIDPGetDatum(&r->id);
	bool		isnull;

	if (canary_spi_execute("SELECT verdict = 'fail' FROM canary.decisions "
						   "WHERE deployment_id = $1 AND verdict IS NOT NULL "
						   "AND attempt = (SELECT attempt FROM canary.deployments "
						   "WHERE id = $1) ORDER BY id DESC LIMIT 1",
						   1, &argtype, &value, NULL, SPI_OK_SELECT, 1) == 0)
		return false;
	return DatumGetBool(canary_spi_get(0, 1, &isnull));
}

/*
 * SQL function canary_promote(id, reason, force): promotes a running or
 * paused rollout now, skipping its remaining stages.  After an unhealthy
 * verdict it needs force => true.
 */
PG_FUNCTION_INFO_V1(canary_promote);
Datum
canary_promote(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	char	   *reason = reason_argument(fcinfo, 1);
	bool		force;

	CANARY_REQUIRE_ARG(fcinfo, 2, "force");
	force = PG_GETARG_BOOL(2);
	begin_action(fcinfo, &r);
	if (!has_status(&r, "running") && !has_status(&r, "paused"))
		reject_action(&r, "promote");

	if (last_verdict_failed(&r))
	{
		if (!force)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot promote rollout %s because its last evaluation found the canary unhealthy",
							r.id_text),
					 errhint("Roll it back with canary_rollback(), or pass force => true to promote it anyway.")));
		reason = psprintf("%s (forced over an unhealthy verdict)", reason);
	}

	canary_eval_promote_agent(&r);
	manual_transition(&r, "promoted", "100", NULL, "promoted", reason);
	canary_eval_record_decision(&r, "promote", reason, false,
								GetCurrentTransactionStartTimestamp());
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * SQL function canary_approve(id): approves the next stage of a rollout
 * whose next stage is listed in approval_stages.  A rollout paused at the
 * gate runs again, and its next evaluation moves to the approved stage
 * without restarting the current one.  A running rollout may be approved
 * before it reaches the gate.
 */
PG_FUNCTION_INFO_V1(canary_approve);
Datum
canary_approve(PG_FUNCTION_ARGS)
{
	CanaryRollout r;

	begin_action(fcinfo, &r);
	if (!has_status(&r, "running") &&
		!(has_status(&r, "paused") && strcmp(r.pause_kind, "approval") == 0))
		reject_action(&r, "approve");
	if (!r.next_needs_approval || r.baking)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("rollout %s has no stage waiting for approval", r.id_text),
				 errhint("Stage %d is not listed in approval_stages, or it is already approved.",
						 r.stage + 1)));

	execute_for_rollout(&r, "UPDATE canary.deployments SET "
						"approved_stage = current_stage + 1 WHERE id = $1");
	manual_transition(&r, "running", r.percentage, NULL, "approved",
					  psprintf("stage %d approved", r.stage + 1));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Check a manual percentage: in [0, 100] with at most two decimals.
 * Returns it as text without trailing zeros.
 */
static char *
check_percentage(Datum percentage)
{
	Oid			argtype = NUMERICOID;
	bool		isnull;

	canary_spi_execute("SELECT $1 >= 0 AND $1 <= 100 AND round($1, 2) = $1, "
					   "trim_scale($1)::text",
					   1, &argtype, &percentage, NULL, SPI_OK_SELECT, 1);
	if (!DatumGetBool(canary_spi_get(0, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("percentage %s is out of range", canary_spi_get_text(0, 2)),
				 errhint("Give a percentage from 0 to 100 with at most two decimal places.")));
	return canary_spi_get_text(0, 2);
}

/*
 * SQL function canary_set_percentage(id, pct): overrides the canary's
 * traffic share of a running or paused rollout.  The stage stays; the next
 * stage sets its own percentage.
 */
PG_FUNCTION_INFO_V1(canary_set_percentage);
Datum
canary_set_percentage(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	char	   *percentage;

	CANARY_REQUIRE_ARG(fcinfo, 1, "percentage");
	begin_action(fcinfo, &r);
	if (!has_status(&r, "running") && !has_status(&r, "paused"))
		reject_action(&r, "set the percentage of");
	percentage = check_percentage(PG_GETARG_DATUM(1));

	manual_transition(&r, r.status, percentage, r.pause_kind, "percentage_set",
					  psprintf("manual override in stage %d: %s%% to %s%%",
							   r.stage, r.percentage, percentage));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * SQL function canary_retry(id, at): starts a new attempt of a rolled-back
 * rollout at stage 1, with fresh counters and its stage clock at "at", so
 * that its analysis counts only executions from then on.
 */
PG_FUNCTION_INFO_V1(canary_retry);
Datum
canary_retry(PG_FUNCTION_ARGS)
{
	CanaryRollout r;
	Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	CanaryTransition t;

	CANARY_REQUIRE_ARG(fcinfo, 1, "retry time");
	begin_action(fcinfo, &r);
	if (!has_status(&r, "rolled_back"))
		reject_action(&r, "retry");

	/* The agent must be free, and the baseline still its stable version. */
	values[0] = UUIDPGetDatum(&r.id);
	values[1] = PG_GETARG_DATUM(1);
	if (canary_spi_execute("SELECT o.id::text, o.status::text FROM canary.deployments o "
						   "JOIN canary.deployments d ON d.agent_id = o.agent_id "
						   "WHERE d.id = $1 AND o.status IN ('pending', 'running', 'paused')",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("agent \"%s\" already has an active rollout", r.agent_id),
				 errdetail("Rollout %s is %s.", canary_spi_get_text(0, 1),
						   canary_spi_get_text(0, 2)),
				 errhint("Promote or roll back that rollout before retrying this one.")));
	if (canary_spi_execute("SELECT a.stable_version, d.baseline_version "
						   "FROM canary.deployments d JOIN canary.agents a USING (agent_id) "
						   "WHERE d.id = $1 AND a.stable_version <> d.baseline_version",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot retry rollout %s because its baseline version \"%s\" is no longer the stable version \"%s\"",
						r.id_text, canary_spi_get_text(0, 2), canary_spi_get_text(0, 1)),
				 errhint("Create a new rollout with canary_create().")));

	/* Start the new attempt. */
	canary_spi_execute("UPDATE canary.deployments SET attempt = attempt + 1, "
					   "attempt_started_at = $2, last_evaluated_at = NULL, "
					   "approved_stage = NULL, bake_started_at = NULL, "
					   "inconclusive_accepted = false "
					   "WHERE id = $1 RETURNING pg_catalog.trim_scale(stages[1])::text, attempt",
					   2, argtypes, values, NULL, SPI_OK_UPDATE_RETURNING, 1);
	t.status = "running";
	t.stage = 1;
	t.percentage = canary_spi_get_text(0, 1);
	t.pause_kind = NULL;
	t.restart_stage = true;
	t.event = "retried";
	t.reason = psprintf("attempt %s started at stage 1", canary_spi_get_text(0, 2));
	t.automatic = false;
	t.at = PG_GETARG_TIMESTAMPTZ(1);
	canary_eval_transition(&r, &t);
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * Lock an agent's row and return its stable and previous stable versions,
 * rejecting an agent that cannot be undone.
 */
static void
lock_agent_for_undo(Datum agent_id, char **stable, char **previous)
{
	Oid			argtype = TEXTOID;
	char	   *agent = TextDatumGetCString(agent_id);

	if (canary_spi_execute("SELECT stable_version, previous_stable_version "
						   "FROM canary.agents WHERE agent_id = $1 FOR UPDATE",
						   1, &argtype, &agent_id, NULL, SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" is not registered", agent),
				 errhint("Register the agent and its stable version with canary_register_agent().")));
	*stable = canary_spi_get_text(0, 1);
	*previous = canary_spi_get_text(0, 2);
	if (*previous == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("agent \"%s\" has no previous stable version", agent),
				 errhint("canary_undo() returns to the version that a promotion replaced, once.")));

	if (canary_spi_execute("SELECT id::text FROM canary.deployments "
						   "WHERE agent_id = $1 AND status IN ('pending', 'running', 'paused')",
						   1, &argtype, &agent_id, NULL, SPI_OK_SELECT, 1) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot undo agent \"%s\" while rollout %s is active",
						agent, canary_spi_get_text(0, 1)),
				 errhint("Roll back that rollout with canary_rollback() first.")));
}

/*
 * Record an undo for which no promoted rollout exists: a transition of the
 * agent alone, and its event.
 */
static void
record_agent_undo(Datum agent_id, const char *reason)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = agent_id;
	values[1] = CStringGetTextDatum(reason);
	canary_spi_execute("INSERT INTO canary.transitions (agent_id, event, "
					   "automatic, actor, reason, at) "
					   "VALUES ($1, 'undone', false, current_user, $2, pg_catalog.now()) "
					   "RETURNING id::text",
					   2, argtypes, values, NULL, SPI_OK_INSERT_RETURNING, 1);
	canary_eval_record_event(canary_spi_get_text(0, 1));
}

/*
 * SQL function canary_undo(agent_id): returns an agent to its previous
 * stable version at once, without stages.  The promoted rollout that
 * installed the current version, if any, becomes rolled back; the agent
 * keeps no previous version, so a second undo is rejected.
 */
PG_FUNCTION_INFO_V1(canary_undo);
Datum
canary_undo(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *stable;
	char	   *previous;
	char	   *reason;
	CanaryRollout r;

	CANARY_REQUIRE_ARG(fcinfo, 0, "agent id");
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	lock_agent_for_undo(PG_GETARG_DATUM(0), &stable, &previous);
	reason = psprintf("fast rollback from version %s to version %s", stable, previous);

	values[0] = PG_GETARG_DATUM(0);
	values[1] = CStringGetTextDatum(stable);
	canary_spi_execute("UPDATE canary.agents SET stable_version = previous_stable_version, "
					   "previous_stable_version = NULL, updated_at = pg_catalog.now() "
					   "WHERE agent_id = $1",
					   1, argtypes, values, NULL, SPI_OK_UPDATE, 0);

	/* Mark the rollout that promoted the undone version. */
	if (canary_spi_execute("SELECT id FROM canary.deployments WHERE agent_id = $1 "
						   "AND status = 'promoted' AND canary_version = $2 "
						   "ORDER BY completed_at DESC, created_at DESC LIMIT 1",
						   2, argtypes, values, NULL, SPI_OK_SELECT, 1) == 0)
		record_agent_undo(values[0], reason);
	else
	{
		pg_uuid_t	id;
		bool		isnull;

		memcpy(&id, DatumGetUUIDP(canary_spi_get(0, 1, &isnull)), sizeof(id));
		canary_eval_lock_rollout(&id, GetCurrentTransactionStartTimestamp(), &r);
		manual_transition(&r, "rolled_back", "0", NULL, "undone", reason);
		canary_eval_record_decision(&r, "rollback", reason, false,
									GetCurrentTransactionStartTimestamp());
	}
	SPI_finish();
	PG_RETURN_VOID();
}
