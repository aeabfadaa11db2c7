/*-------------------------------------------------------------------------
 *
 * evaluation.c
 *		The rollout state machine: evaluate a rollout, decide, record the
 *		decision and act on it, all in the caller's transaction.
 *
 * States of a rollout (canary.deployments.status, plus the bake phase):
 *
 * - pending: created, not started.  Evaluation is rejected.
 * - running, stage k of n: the canary gets stages[k] percent of the
 *   traffic.  Each evaluation reads the metrics of the stage, counted from
 *   stage_started_at, and decides:
 *     continue  too few samples, the stage duration has not elapsed, the
 *               verdict is inconclusive, or an unhealthy verdict has not yet
 *               reached failure_threshold or max_stage_failures;
 *     progress  healthy, duration elapsed, enough samples: stage k + 1 starts
 *               with its clock at the evaluation time, or the bake time
 *               starts after the last stage;
 *     promote   the last stage is complete and there is no bake time;
 *     rollback  unhealthy often enough, at once on a hard-limit breach when
 *               rollback_on_hard_limit is set, or per nodata_action or
 *               inconclusive_action;
 *     pause     the baseline is unhealthy, or lacks data past the no-data
 *               deadline; the canary lacks data past it and nodata_action is
 *               pause; the verdict is inconclusive at the end of the stage
 *               and inconclusive_action is pause; or the next stage waits
 *               for canary_approve().
 * - running, baking (bake_started_at set): the last stage is done and the
 *   canary keeps the last stage's percentage under watch for bake_time.
 *   The same checks apply, and completion promotes.
 * - paused: traffic stays at the current split.  pause_kind says why.  An
 *   evaluation records a "continue" decision, unless the canary is proven
 *   worse while the baseline is healthy: the failure limits then apply and
 *   may roll it back, since the frozen split still serves the canary.
 * - promoted, rolled_back, superseded: terminal.  Evaluation is rejected;
 *   canary_retry() starts a new attempt of a rolled-back rollout.
 *
 * Locking: every state change locks the agent's row and then the rollout's
 * row, the order canary_create uses, and reads the rollout after the lock.
 * Concurrent evaluations of one rollout therefore run one after the other,
 * and the second decides on the state the first left.  An evaluation at or
 * before the last evaluation time of the attempt records nothing and
 * returns that evaluation's decision.
 *
 * Every transition inserts a canary.transitions row and a canary.events row
 * and queues a notification on channel canary_events with the event id.
 *
 * src/evaluation.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "evaluation.h"
#include "metrics.h"
#include "notify.h"
#include "rollout.h"
#include "spi_helpers.h"

/* A decision being made: its name and reason. */
typedef struct Decision
{
	const char *decision;
	char	   *reason;
} Decision;

static void wait_paused(const CanaryRollout *r, Decision *d, TimestampTz at);

/* canary_evaluate's result row, copied out of SPI memory. */
typedef struct EvaluationResult
{
	Datum		values[6];
	bool		nulls[6];
} EvaluationResult;

/* Columns of the SELECT in canary_eval_lock_rollout, counted from 1. */
static const char *const lock_rollout_sql =
"SELECT d.id::text, d.agent_id, d.status::text, d.attempt, d.current_stage, "
"pg_catalog.cardinality(d.stages), "
"pg_catalog.trim_scale(d.current_percentage)::text, "
"pg_catalog.trim_scale(d.stages[d.current_stage + 1])::text, "
"d.canary_version, d.pause_kind, d.status_reason, d.evaluation_window, "
"d.min_samples, "
"coalesce(extract(epoch FROM $2 - d.stage_started_at), 0)::float8, "
"extract(epoch FROM d.stage_duration)::float8, "
"extract(epoch FROM d.nodata_deadline)::float8, "
"extract(epoch FROM d.bake_time)::float8, "
"d.bake_started_at IS NOT NULL, d.failure_threshold, d.max_stage_failures, "
"d.consecutive_failures, d.stage_failures, d.rollback_on_hard_limit, "
"d.nodata_action, d.inconclusive_action, d.inconclusive_accepted, "
"coalesce((d.current_stage + 1) = ANY (d.approval_stages) "
"AND d.approved_stage IS DISTINCT FROM d.current_stage + 1, false), "
"coalesce(d.last_evaluated_at >= $2, false), "
"coalesce(d.stage_started_at > $2, false) "
"FROM canary.deployments d WHERE d.id = $1 FOR UPDATE";

/*
 * Return column "column" of the first result row as text, NULL or palloc'd.
 */
static char *
row_text(int column)
{
	return canary_spi_get_text(0, column);
}

/*
 * Return an int4, int8, float8 or bool column of the first result row;
 * NULL reads as zero or false.
 */
static int64
row_int(int column)
{
	bool		isnull;
	Datum		value = canary_spi_get(0, column, &isnull);

	if (isnull)
		return 0;
	if (SPI_gettypeid(SPI_tuptable->tupdesc, column) == INT8OID)
		return DatumGetInt64(value);
	return DatumGetInt32(value);
}

static double
row_float(int column)
{
	bool		isnull;
	Datum		value = canary_spi_get(0, column, &isnull);

	return isnull ? 0.0 : DatumGetFloat8(value);
}

static bool
row_bool(int column)
{
	bool		isnull;
	Datum		value = canary_spi_get(0, column, &isnull);

	return !isnull && DatumGetBool(value);
}

/*
 * Lock the agent's row, then the rollout's row, and read the rollout as of
 * "at".  The caller is connected to SPI.  Raises UNDEFINED_OBJECT for an
 * unknown rollout.
 */
void
canary_eval_lock_rollout(const pg_uuid_t *id, TimestampTz at,
						 CanaryRollout *r)
{
	Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	Interval   *window;
	bool		isnull;

	values[0] = UUIDPGetDatum(id);
	values[1] = TimestampTzGetDatum(at);

	/* Lock the agent first, as canary_create does. */
	if (canary_spi_execute("SELECT a.agent_id FROM canary.agents a "
						   "JOIN canary.deployments d ON d.agent_id = a.agent_id "
						   "WHERE d.id = $1 FOR UPDATE OF a",
						   1, argtypes, values, NULL, SPI_OK_SELECT, 1) == 0 ||
		canary_spi_execute(lock_rollout_sql, 2, argtypes, values, NULL,
						   SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("rollout %s does not exist",
						DatumGetCString(DirectFunctionCall1(uuid_out, values[0]))),
				 errhint("List rollouts with SELECT * FROM canary.rollouts.")));

	memcpy(&r->id, id, sizeof(pg_uuid_t));
	r->id_text = row_text(1);
	r->agent_id = row_text(2);
	r->status = row_text(3);
	r->attempt = (int) row_int(4);
	r->stage = (int) row_int(5);
	r->stage_count = (int) row_int(6);
	r->percentage = row_text(7);
	r->next_percentage = row_text(8);
	r->canary_version = row_text(9);
	r->pause_kind = row_text(10);
	r->status_reason = row_text(11);
	window = (Interval *) palloc(sizeof(Interval));
	memcpy(window, DatumGetIntervalP(canary_spi_get(0, 12, &isnull)),
		   sizeof(Interval));
	r->window = window;
	r->min_samples = row_int(13);
	r->stage_elapsed = row_float(14);
	r->stage_duration = row_float(15);
	r->nodata_deadline = row_float(16);
	r->bake_time = row_float(17);
	r->baking = row_bool(18);
	r->failure_threshold = (int) row_int(19);
	r->max_stage_failures = (int) row_int(20);
	r->consecutive_failures = (int) row_int(21);
	r->stage_failures = (int) row_int(22);
	r->rollback_on_hard_limit = row_bool(23);
	r->nodata_action = row_text(24);
	r->inconclusive_action = row_text(25);
	r->inconclusive_accepted = row_bool(26);
	r->next_needs_approval = row_bool(27);
	r->evaluated_since = row_bool(28);
	r->started_after = row_bool(29);
}

/*
 * Raise OBJECT_NOT_IN_PREREQUISITE_STATE for an action that the rollout's
 * status does not allow.
 */
void
canary_eval_reject_status(const CanaryRollout *r, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("rollout %s is %s", r->id_text, r->status),
			 errhint("%s", hint)));
}

/*
 * Insert the canary.events row for a transition and queue its notification
 * on channel canary_events.  Returns the event id.
 */
int64
canary_eval_record_event(const char *transition_id)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	char	   *event_id;

	values[0] = CStringGetTextDatum(transition_id);
	canary_spi_execute("INSERT INTO canary.events "
					   "(deployment_id, agent_id, event_type, payload) "
					   "SELECT t.deployment_id, t.agent_id, t.event, "
					   "jsonb_build_object('transition_id', t.id, "
					   "'deployment_id', t.deployment_id, 'agent_id', t.agent_id, "
					   "'attempt', t.attempt, 'event', t.event, "
					   "'old_status', t.old_status, 'new_status', t.new_status, "
					   "'old_stage', t.old_stage, 'new_stage', t.new_stage, "
					   "'old_percentage', t.old_percentage, "
					   "'new_percentage', t.new_percentage, "
					   "'automatic', t.automatic, 'actor', t.actor, "
					   "'reason', t.reason, 'at', t.at) "
					   "FROM canary.transitions t WHERE t.id = $1::bigint "
					   "RETURNING id",
					   1, argtypes, values, NULL, SPI_OK_INSERT_RETURNING, 1);
	event_id = row_text(1);
	Async_Notify(CANARY_CHANNEL_EVENTS, event_id);
	return row_int(1);
}

/*
 * Record a change of a rollout that the caller has already written: a
 * canary.transitions row with the old values given here and the new ones
 * read from the row, and its event.  The caller is connected to SPI and
 * holds the rollout's row lock.  canary_create and canary_start call this
 * too.
 */
void
canary_eval_record_transition(const char *deployment_id,
							  const char *old_status, int old_stage,
							  const char *old_percentage, const char *event,
							  const char *reason, bool automatic,
							  TimestampTz at)
{
	Oid			argtypes[8] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	BOOLOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[8];

	values[0] = CStringGetTextDatum(deployment_id);
	values[1] = CStringGetTextDatum(event);
	values[2] = CStringGetTextDatum(old_status);
	values[3] = Int32GetDatum(old_stage);
	values[4] = CStringGetTextDatum(old_percentage);
	values[5] = BoolGetDatum(automatic);
	values[6] = CStringGetTextDatum(reason);
	values[7] = TimestampTzGetDatum(at);

	if (canary_spi_execute("INSERT INTO canary.transitions (deployment_id, "
						   "agent_id, attempt, event, old_status, new_status, "
						   "old_stage, new_stage, old_percentage, new_percentage, "
						   "automatic, actor, reason, at) "
						   "SELECT d.id, d.agent_id, d.attempt, $2, "
						   "$3::canary.status, d.status, $4, d.current_stage, "
						   "$5::numeric, d.current_percentage, $6, current_user, "
						   "$7, $8 FROM canary.deployments d WHERE d.id = $1::uuid "
						   "RETURNING id::text",
						   8, argtypes, values, NULL,
						   SPI_OK_INSERT_RETURNING, 1) != 1)
		elog(ERROR, "rollout %s vanished while recording a transition",
			 deployment_id);
	canary_eval_record_event(row_text(1));
}

/*
 * Transition function of the state machine: write the new status, stage,
 * percentage and pause kind of a locked rollout, restart the stage clock
 * and counters when asked, and record the transition and its event.
 */
void
canary_eval_transition(const CanaryRollout *r, const CanaryTransition *t)
{
	Oid			argtypes[8] = {UUIDOID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
	TEXTOID, BOOLOID, TIMESTAMPTZOID};
	Datum		values[8];
	bool		isnull[8] = {false};

	values[0] = UUIDPGetDatum(&r->id);
	values[1] = CStringGetTextDatum(t->status);
	values[2] = Int32GetDatum(t->stage);
	values[3] = CStringGetTextDatum(t->percentage);
	isnull[4] = (t->pause_kind == NULL);
	values[4] = isnull[4] ? (Datum) 0 : CStringGetTextDatum(t->pause_kind);
	values[5] = CStringGetTextDatum(t->reason);
	values[6] = BoolGetDatum(t->restart_stage);
	values[7] = TimestampTzGetDatum(t->at);

	canary_spi_execute("UPDATE canary.deployments SET "
					   "status = $2::canary.status, current_stage = $3, "
					   "current_percentage = $4::numeric, pause_kind = $5, "
					   "status_reason = $6, "
					   "stage_started_at = CASE WHEN $7 THEN $8 ELSE stage_started_at END, "
					   "stage_samples = CASE WHEN $7 THEN 0 ELSE stage_samples END, "
					   "consecutive_failures = CASE WHEN $7 THEN 0 ELSE consecutive_failures END, "
					   "stage_failures = CASE WHEN $7 THEN 0 ELSE stage_failures END, "
					   "completed_at = CASE WHEN $2 IN ('promoted', 'rolled_back', "
					   "'superseded') THEN $8 END, "
					   "updated_at = pg_catalog.now() WHERE id = $1",
					   8, argtypes, values, isnull, SPI_OK_UPDATE, 0);
	canary_eval_record_transition(r->id_text, r->status, r->stage,
								  r->percentage, t->event, t->reason,
								  t->automatic, t->at);
}

/*
 * Make a locked rollout's canary version its agent's stable version,
 * keeping the old one as previous_stable_version.  The caller holds the
 * agent's row lock.
 */
void
canary_eval_promote_agent(const CanaryRollout *r)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(r->agent_id);
	values[1] = CStringGetTextDatum(r->canary_version);
	canary_spi_execute("UPDATE canary.agents SET "
					   "previous_stable_version = stable_version, "
					   "stable_version = $2, updated_at = pg_catalog.now() "
					   "WHERE agent_id = $1",
					   2, argtypes, values, NULL, SPI_OK_UPDATE, 0);
}

/*
 * Insert a canary.decisions row with the rollout's stage and percentage
 * after the decision.  summary is NULL when no metrics were read.
 */
static void
insert_decision(const CanaryRollout *r, const char *decision,
				const char *reason, const CanaryMetricsSummary *summary,
				bool automatic, TimestampTz at)
{
	static const char *const verdicts[] = {"pass", "fail", "inconclusive", "nodata"};
	Oid			argtypes[7] = {UUIDOID, TEXTOID, TEXTOID, TEXTOID, INT8OID,
	JSONBOID, BOOLOID};
	Oid			all_argtypes[8];
	Datum		values[8];
	bool		isnull[8] = {false};

	memcpy(all_argtypes, argtypes, sizeof(argtypes));
	all_argtypes[7] = TIMESTAMPTZOID;
	values[0] = UUIDPGetDatum(&r->id);
	values[1] = CStringGetTextDatum(decision);
	values[2] = CStringGetTextDatum(reason);
	isnull[3] = (summary == NULL);
	values[3] = isnull[3] ? (Datum) 0 : CStringGetTextDatum(verdicts[summary->verdict]);
	isnull[4] = (summary == NULL || summary->metrics_id <= 0);
	values[4] = isnull[4] ? (Datum) 0 : Int64GetDatum(summary->metrics_id);
	isnull[5] = (summary == NULL || summary->snapshot == NULL);
	values[5] = isnull[5] ? (Datum) 0 : JsonbPGetDatum(summary->snapshot);
	values[6] = BoolGetDatum(automatic);
	values[7] = TimestampTzGetDatum(at);

	canary_spi_execute("INSERT INTO canary.decisions (deployment_id, attempt, "
					   "decision, reason, verdict, stage, percentage, metrics_id, "
					   "metrics, automatic, actor, at) "
					   "SELECT d.id, d.attempt, $2, $3, $4, d.current_stage, "
					   "d.current_percentage, $5, $6, $7, current_user, $8 "
					   "FROM canary.deployments d WHERE d.id = $1",
					   8, all_argtypes, values, isnull, SPI_OK_INSERT, 0);
}

/*
 * Record a manual decision (pause, rollback, promote) of an operator.
 */
void
canary_eval_record_decision(const CanaryRollout *r, const char *decision,
							const char *reason, bool automatic,
							TimestampTz at)
{
	insert_decision(r, decision, reason, NULL, automatic, at);
}

/*
 * Describe the current phase with its percentage: "stage 2 (25%)", or
 * "bake time (50%)" once the last stage is done.
 */
static char *
describe_phase(const CanaryRollout *r)
{
	if (r->baking)
		return psprintf("bake time (%s%%)", r->percentage);
	return psprintf("stage %d (%s%%)", r->stage, r->percentage);
}

/*
 * Format "elapsed of total <unit>" in whole minutes when the total is a
 * whole number of minutes, else in seconds.
 */
static char *
describe_elapsed(double elapsed, double total)
{
	double		unit = (total >= 60.0 && fmod(total, 60.0) == 0.0) ? 60.0 : 1.0;

	return psprintf("%.0f of %.0f %s", floor(elapsed / unit), total / unit,
					unit == 60.0 ? "minutes" : "seconds");
}

/*
 * Format a duration in whole minutes, or in seconds when it is not a whole
 * number of minutes.
 */
static char *
describe_duration(double seconds)
{
	if (seconds >= 60.0 && fmod(floor(seconds), 60.0) == 0.0)
		return psprintf("%.0f minutes", floor(seconds) / 60.0);
	return psprintf("%.0f seconds", floor(seconds));
}

/*
 * Change the status, stage or percentage of a rollout on behalf of the
 * state machine, and set the decision that caused it.
 */
static void
act(const CanaryRollout *r, Decision *d, const char *decision,
	const char *status, int stage, const char *percentage,
	const char *pause_kind, bool restart_stage, const char *event,
	char *reason, TimestampTz at)
{
	CanaryTransition t;

	t.status = status;
	t.stage = stage;
	t.percentage = percentage;
	t.pause_kind = pause_kind;
	t.restart_stage = restart_stage;
	t.event = event;
	t.reason = reason;
	t.automatic = true;
	t.at = at;
	canary_eval_transition(r, &t);

	d->decision = decision;
	d->reason = reason;
}

/*
 * Pause a running rollout at its current split.
 */
static void
act_pause(const CanaryRollout *r, Decision *d, const char *kind,
		  char *reason, TimestampTz at)
{
	act(r, d, "pause", "paused", r->stage, r->percentage, kind, false,
		"paused", reason, at);
}

/*
 * Roll a rollout back: all traffic returns to the baseline.
 */
static void
act_rollback(const CanaryRollout *r, Decision *d, char *reason,
			 TimestampTz at)
{
	act(r, d, "rollback", "rolled_back", r->stage, "0", NULL, false,
		"rolled_back", reason, at);
}

/*
 * Promote a rollout: its canary version becomes the stable version and
 * serves all traffic.
 */
static void
act_promote(const CanaryRollout *r, Decision *d, char *reason,
			TimestampTz at)
{
	canary_eval_promote_agent(r);
	act(r, d, "promote", "promoted", r->stage, "100", NULL, false,
		"promoted", reason, at);
}

/*
 * Set a "continue" decision: nothing changes.
 */
static void
wait_with(Decision *d, char *reason)
{
	d->decision = "continue";
	d->reason = reason;
}

/*
 * Update the per-stage counters after a metrics collection: the sample
 * count, and the consecutive and cumulative unhealthy evaluations.  A
 * verdict without data neither counts as unhealthy nor breaks a streak.
 */
static void
update_counters(CanaryRollout *r, const CanaryMetricsSummary *s,
				TimestampTz at)
{
	Oid			argtypes[5] = {UUIDOID, INT8OID, INT4OID, INT4OID, TIMESTAMPTZOID};
	Datum		values[5];

	if (s->verdict == CANARY_VERDICT_FAIL && !s->baseline_unhealthy)
	{
		r->consecutive_failures++;
		r->stage_failures++;
	}
	else if (s->verdict != CANARY_VERDICT_NODATA)
		r->consecutive_failures = 0;

	values[0] = UUIDPGetDatum(&r->id);
	values[1] = Int64GetDatum(s->canary_requests);
	values[2] = Int32GetDatum(r->consecutive_failures);
	values[3] = Int32GetDatum(r->stage_failures);
	values[4] = TimestampTzGetDatum(at);
	canary_spi_execute("UPDATE canary.deployments SET stage_samples = $2, "
					   "consecutive_failures = $3, stage_failures = $4, "
					   "last_evaluated_at = $5 WHERE id = $1",
					   5, argtypes, values, NULL, SPI_OK_UPDATE, 0);
}

/*
 * Pause when the baseline gives no fair comparison: it is unhealthy, or it
 * has lacked data past the no-data deadline.  Returns true when it paused.
 */
static bool
judge_baseline(const CanaryRollout *r, const CanaryMetricsSummary *s,
			   Decision *d, TimestampTz at)
{
	if (s->baseline_unhealthy)
	{
		act_pause(r, d, "baseline",
				  psprintf("baseline unhealthy in %s, so no fair comparison is possible: %s",
						   describe_phase(r), s->reason ? s->reason : "no details"),
				  at);
		return true;
	}
	if (s->baseline_nodata && r->stage_elapsed >= r->nodata_deadline)
	{
		act_pause(r, d, "nodata",
				  psprintf("baseline has %lld samples in %s after %s, past the no-data deadline of %s",
						   (long long) s->baseline_requests, describe_phase(r),
						   describe_duration(r->stage_elapsed),
						   describe_duration(r->nodata_deadline)),
				  at);
		return true;
	}
	return false;
}

/*
 * Handle an unhealthy verdict: roll back at once on a hard-limit breach
 * when configured, or when either failure count reaches its limit; else
 * continue and report how close the rollout is to a rollback.
 */
static void
judge_unhealthy(const CanaryRollout *r, const CanaryMetricsSummary *s,
				Decision *d, TimestampTz at)
{
	const char *details = s->reason ? s->reason : "no details";

	if (r->rollback_on_hard_limit && s->hard_limit_breached)
		act_rollback(r, d, psprintf("hard limit breached in %s: %s",
									describe_phase(r), details), at);
	else if (r->consecutive_failures >= r->failure_threshold)
		act_rollback(r, d, psprintf("canary unhealthy in %s: consecutive unhealthy evaluations %d, reaching failure_threshold %d: %s",
									describe_phase(r), r->consecutive_failures,
									r->failure_threshold, details), at);
	else if (r->stage_failures >= r->max_stage_failures)
		act_rollback(r, d, psprintf("canary unhealthy in %s: unhealthy evaluations in the stage %d, reaching max_stage_failures %d: %s",
									describe_phase(r), r->stage_failures,
									r->max_stage_failures, details), at);
	else
		wait_with(d, psprintf("canary unhealthy in %s, %d of %d consecutive and %d of %d in the stage before rollback: %s",
							  describe_phase(r), r->consecutive_failures,
							  r->failure_threshold, r->stage_failures,
							  r->max_stage_failures, details));
}

/*
 * Handle too few canary or baseline samples: the stage cannot complete.
 * Before the no-data deadline the rollout continues; after it, the canary's
 * lack of data triggers nodata_action.  Returns false when there is enough
 * data.
 */
static bool
judge_nodata(const CanaryRollout *r, const CanaryMetricsSummary *s,
			 Decision *d, TimestampTz at)
{
	char	   *reason;

	if (s->baseline_nodata)
		reason = psprintf("baseline has %lld samples in %s, too few to compare",
						  (long long) s->baseline_requests, describe_phase(r));
	else if (s->canary_requests < r->min_samples ||
			 s->verdict == CANARY_VERDICT_NODATA)
		reason = psprintf("canary has %lld of %lld samples in %s",
						  (long long) s->canary_requests,
						  (long long) r->min_samples, describe_phase(r));
	else
		return false;

	/* judge_baseline already paused for a baseline past the deadline. */
	if (s->baseline_nodata || r->stage_elapsed < r->nodata_deadline)
	{
		wait_with(d, reason);
		return true;
	}

	reason = psprintf("%s after %s, past the no-data deadline of %s", reason,
					  describe_duration(r->stage_elapsed),
					  describe_duration(r->nodata_deadline));
	if (strcmp(r->nodata_action, "rollback") == 0)
		act_rollback(r, d, reason, at);
	else
		act_pause(r, d, "nodata", reason, at);
	return true;
}

/*
 * Handle an inconclusive verdict at the end of the stage per
 * inconclusive_action, unless an operator accepted an inconclusive verdict
 * of this attempt with canary_resume().  Returns false when the stage may
 * complete.
 */
static bool
judge_inconclusive(const CanaryRollout *r, const CanaryMetricsSummary *s,
				   Decision *d, TimestampTz at)
{
	char	   *reason;

	if (s->verdict != CANARY_VERDICT_INCONCLUSIVE || r->inconclusive_accepted)
		return false;

	reason = psprintf("verdict inconclusive at the end of %s: %s",
					  describe_phase(r), s->reason ? s->reason : "no details");
	if (strcmp(r->inconclusive_action, "rollback") == 0)
		act_rollback(r, d, reason, at);
	else if (strcmp(r->inconclusive_action, "pause") == 0)
		act_pause(r, d, "inconclusive", reason, at);
	else
		wait_with(d, psprintf("%s; waiting for a conclusive verdict", reason));
	return true;
}

/*
 * Judge the current stage or bake time from its metrics.  Returns true
 * when it is complete and healthy; otherwise d contains the decision taken.
 */
static bool
judge_phase(const CanaryRollout *r, const CanaryMetricsSummary *s,
			Decision *d, TimestampTz at)
{
	double		duration = r->baking ? r->bake_time : r->stage_duration;

	if (judge_baseline(r, s, d, at))
		return false;
	if (s->verdict == CANARY_VERDICT_FAIL)
	{
		judge_unhealthy(r, s, d, at);
		return false;
	}
	if (judge_nodata(r, s, d, at))
		return false;
	if (r->stage_elapsed < duration)
	{
		wait_with(d, psprintf("%s: %s elapsed%s%s%s", describe_phase(r),
							  describe_elapsed(r->stage_elapsed, duration),
							  s->verdict == CANARY_VERDICT_INCONCLUSIVE ?
							  ", verdict inconclusive so far" : "",
							  s->evidence ? "; " : "",
							  s->evidence ? s->evidence : ""));
		return false;
	}
	if (judge_inconclusive(r, s, d, at))
		return false;
	return true;
}

/*
 * State "running, stage k": after a complete, healthy stage, wait for an
 * approval gate, start the next stage, start the bake time, or promote.
 */
static void
evaluate_stage(const CanaryRollout *r, const CanaryMetricsSummary *s,
			   Decision *d, TimestampTz at)
{
	char	   *done;

	if (!judge_phase(r, s, d, at))
		return;

	done = psprintf("%s healthy after %s with %lld canary samples%s%s",
					describe_phase(r), describe_duration(r->stage_elapsed),
					(long long) s->canary_requests,
					s->evidence ? " (" : "",
					s->evidence ? psprintf("%s)", s->evidence) : "");
	if (r->stage < r->stage_count && r->next_needs_approval)
		act_pause(r, d, "approval",
				  psprintf("%s; stage %d (%s%%) waits for canary_approve()",
						   done, r->stage + 1, r->next_percentage), at);
	else if (r->stage < r->stage_count)
		act(r, d, "progress", "running", r->stage + 1, r->next_percentage,
			NULL, true, "progressed",
			psprintf("%s; moving to stage %d (%s%%)", done, r->stage + 1,
					 r->next_percentage), at);
	else if (r->bake_time > 0)
	{
		Oid			argtype = UUIDOID;
		Datum		value = UUIDPGetDatum(&r->id);

		canary_spi_execute("UPDATE canary.deployments SET bake_started_at = "
						   "stage_started_at WHERE id = $1",
						   1, &argtype, &value, NULL, SPI_OK_UPDATE, 0);
		act(r, d, "progress", "running", r->stage, r->percentage, NULL, true,
			"progressed",
			psprintf("%s; baking at %s%% for %s before promotion",
					 done, r->percentage, describe_duration(r->bake_time)), at);
	}
	else
		act_promote(r, d, psprintf("%s; last stage complete, promoted", done),
					at);
}

/*
 * State "running, baking": promote once the bake time has elapsed healthy.
 * A regression still rolls back to the old stable version.
 */
static void
evaluate_bake(const CanaryRollout *r, const CanaryMetricsSummary *s,
			  Decision *d, TimestampTz at)
{
	if (!judge_phase(r, s, d, at))
		return;

	act_promote(r, d,
				psprintf("bake time healthy after %s with %lld canary samples; promoted",
						 describe_duration(r->stage_elapsed),
						 (long long) s->canary_requests),
				at);
}

/*
 * State "paused": the split stays frozen, so the canary still serves its
 * share.  A proven regression (an unhealthy verdict while the baseline is
 * healthy) still counts toward the failure limits and rolls back; anything
 * else records that the rollout waits.  Only canary_resume() (or
 * canary_approve() for an approval gate) lets it go on.
 */
static void
evaluate_paused(CanaryRollout *r, const CanaryMetricsSummary *s,
				Decision *d, TimestampTz at)
{
	if (s->verdict == CANARY_VERDICT_FAIL && !s->baseline_unhealthy)
	{
		update_counters(r, s, at);
		judge_unhealthy(r, s, d, at);
		if (strcmp(d->decision, "rollback") == 0)
			return;
	}
	wait_paused(r, d, at);
}

/*
 * Record that a paused rollout waits for an operator.
 */
static void
wait_paused(const CanaryRollout *r, Decision *d, TimestampTz at)
{
	Oid			argtypes[2] = {UUIDOID, TIMESTAMPTZOID};
	Datum		values[2];

	values[0] = UUIDPGetDatum(&r->id);
	values[1] = TimestampTzGetDatum(at);
	canary_spi_execute("UPDATE canary.deployments SET last_evaluated_at = $2 "
					   "WHERE id = $1",
					   2, argtypes, values, NULL, SPI_OK_UPDATE, 0);

	if (r->pause_kind != NULL && strcmp(r->pause_kind, "approval") == 0)
		wait_with(d, psprintf("rollout is paused before stage %d until canary_approve() or canary_resume()",
							  r->stage + 1));
	else
		wait_with(d, psprintf("rollout is paused (%s pause) until canary_resume()",
							  r->pause_kind ? r->pause_kind : "unrecognized"));
}

/*
 * Reject evaluation of a rollout that is not running or paused, and of an
 * evaluation time before the start of the current stage.
 */
static void
check_evaluable(const CanaryRollout *r, TimestampTz at)
{
	if (strcmp(r->status, "pending") == 0)
		canary_eval_reject_status(r, "Start the rollout with canary_start() before evaluating it.");
	if (strcmp(r->status, "running") != 0 && strcmp(r->status, "paused") != 0)
		canary_eval_reject_status(r, "Only running and paused rollouts can be evaluated; a rolled-back rollout can be retried with canary_retry().");
	if (r->started_after)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evaluation time %s is before the start of the current stage of rollout %s",
						timestamptz_to_str(at), r->id_text),
				 errhint("Evaluate at the current time, or, when replaying a clock, at or after the time the current stage started.")));
}

/*
 * Reject an infinite evaluation time, which no window can end at.
 */
static void
check_evaluation_time(TimestampTz at)
{
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("evaluation time must be finite"),
				 errhint("Pass a finite time, such as now().")));
}

/*
 * Read the latest automatic decision of the rollout's current attempt into
 * result, with values copied out of SPI memory.
 */
static void
read_last_decision(const CanaryRollout *r, EvaluationResult *result)
{
	Oid			argtype = UUIDOID;
	Datum		value = UUIDPGetDatum(&r->id);

	if (canary_spi_execute("SELECT decision, reason, stage, percentage, "
						   "metrics_id, at FROM canary.decisions "
						   "WHERE deployment_id = $1 AND automatic "
						   "AND attempt = (SELECT attempt FROM canary.deployments "
						   "WHERE id = $1) ORDER BY id DESC LIMIT 1",
						   1, &argtype, &value, NULL, SPI_OK_SELECT, 1) != 1)
		elog(ERROR, "rollout %s has no decision to return", r->id_text);

	for (int i = 0; i < 6; i++)
	{
		Form_pg_attribute attr = TupleDescAttr(SPI_tuptable->tupdesc, i);
		Datum		column = canary_spi_get(0, i + 1, &result->nulls[i]);

		result->values[i] = result->nulls[i] ? (Datum) 0 :
			SPI_datumTransfer(column, attr->attbyval, attr->attlen);
	}
}

/*
 * Evaluate one rollout as of "at" in the current transaction: lock it,
 * read its metrics, decide, act and record.  The result is allocated in
 * the caller's memory context.
 */
static void
evaluate_rollout(const pg_uuid_t *id, TimestampTz at, EvaluationResult *result)
{
	CanaryRollout r;
	CanaryMetricsSummary summary;
	Decision	d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	canary_eval_lock_rollout(id, at, &r);
	check_evaluable(&r, at);

	/* An evaluation at or before the last one changes nothing. */
	if (!r.evaluated_since)
	{
		if (strcmp(r.status, "paused") == 0)
		{
			memset(&summary, 0, sizeof(summary));
			canary_metrics_collect(&r.id, r.window, at, false, true, &summary);
			evaluate_paused(&r, &summary, &d, at);
			insert_decision(&r, d.decision, d.reason, &summary, true, at);
		}
		else
		{
			memset(&summary, 0, sizeof(summary));
			canary_metrics_collect(&r.id, r.window, at, false, true, &summary);
			update_counters(&r, &summary, at);
			if (r.baking)
				evaluate_bake(&r, &summary, &d, at);
			else
				evaluate_stage(&r, &summary, &d, at);
			insert_decision(&r, d.decision, d.reason, &summary, true, at);
		}
	}

	read_last_decision(&r, result);
	SPI_finish();
}

/*
 * SQL function canary_evaluate(deployment_id, at): evaluates a rollout and
 * returns the decision as a canary.evaluation row.
 */
PG_FUNCTION_INFO_V1(canary_evaluate);
Datum
canary_evaluate(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	EvaluationResult result;

	CANARY_REQUIRE_ARG(fcinfo, 0, "rollout id");
	CANARY_REQUIRE_ARG(fcinfo, 1, "evaluation time");
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	check_evaluation_time(PG_GETARG_TIMESTAMPTZ(1));
	evaluate_rollout(PG_GETARG_UUID_P(0), PG_GETARG_TIMESTAMPTZ(1), &result);
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, result.values,
													  result.nulls)));
}

/*
 * Evaluate one rollout in a subtransaction, as a PL/pgSQL exception block
 * does, and add its row to the result of canary_evaluate_all.  A failure
 * rolls back that rollout's work only and is reported in the error column.
 */
static void
evaluate_in_subtransaction(ReturnSetInfo *rsinfo, pg_uuid_t *id,
						   char *agent_id, TimestampTz at)
{
	MemoryContext caller_context = CurrentMemoryContext;
	ResourceOwner caller_owner = CurrentResourceOwner;
	EvaluationResult result;
	Datum		values[5];
	bool		nulls[5] = {false};

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller_context);
	PG_TRY();
	{
		evaluate_rollout(id, at, &result);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;

		values[2] = result.values[0];
		values[3] = result.values[1];
		nulls[4] = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller_context);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller_context);
		CurrentResourceOwner = caller_owner;

		nulls[2] = nulls[3] = true;
		values[4] = CStringGetTextDatum(edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	values[0] = UUIDPGetDatum(id);
	values[1] = CStringGetTextDatum(agent_id);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * SQL function canary_evaluate_all(at): evaluates every running or paused rollout,
 * each in its own subtransaction so that one failure does not stop the
 * others.  Returns one row per rollout.
 */
PG_FUNCTION_INFO_V1(canary_evaluate_all);
Datum
canary_evaluate_all(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz at;
	pg_uuid_t  *ids;
	char	  **agent_ids;
	int			count;

	CANARY_REQUIRE_ARG(fcinfo, 0, "evaluation time");
	at = PG_GETARG_TIMESTAMPTZ(0);
	check_evaluation_time(at);
	InitMaterializedSRF(fcinfo, 0);

	/* List the running and paused rollouts; each is locked when its turn comes. */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	count = canary_spi_execute("SELECT id, agent_id FROM canary.deployments "
							   "WHERE status IN ('running', 'paused') ORDER BY agent_id, id",
							   0, NULL, NULL, NULL, SPI_OK_SELECT, 0);
	ids = SPI_palloc(sizeof(pg_uuid_t) * Max(count, 1));
	agent_ids = SPI_palloc(sizeof(char *) * Max(count, 1));
	for (int i = 0; i < count; i++)
	{
		bool		isnull;
		char	   *agent_id = canary_spi_get_text(i, 2);

		memcpy(&ids[i], DatumGetUUIDP(canary_spi_get(i, 1, &isnull)),
			   sizeof(pg_uuid_t));
		agent_ids[i] = SPI_palloc(strlen(agent_id) + 1);
		strcpy(agent_ids[i], agent_id);
	}
	SPI_finish();

	for (int i = 0; i < count; i++)
		evaluate_in_subtransaction(rsinfo, &ids[i], agent_ids[i], at);
	return (Datum) 0;
}
