/*-------------------------------------------------------------------------
 *
 * evaluation.h
 *		The rollout state machine and the history it records.
 *
 * src/evaluation.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_EVALUATION_H
#define CANARY_EVALUATION_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/*
 * A rollout's row as the state machine reads it under the row lock.  Times
 * are seconds; text values are palloc'd in the SPI procedure context.
 */
typedef struct CanaryRollout
{
	pg_uuid_t	id;
	char	   *id_text;
	char	   *agent_id;
	char	   *status;
	int			attempt;
	int			stage;			/* current stage, 0 before the start */
	int			stage_count;
	char	   *percentage;		/* current percentage without trailing zeros */
	char	   *next_percentage;	/* next stage's percentage, or NULL */
	char	   *canary_version;
	char	   *pause_kind;		/* NULL unless paused */
	char	   *status_reason;
	Interval   *window;			/* evaluation window */
	int64		min_samples;
	double		stage_elapsed;	/* since stage_started_at */
	double		stage_duration;
	double		nodata_deadline;
	double		bake_time;
	bool		baking;			/* the last stage is done and bake time runs */
	int			failure_threshold;
	int			max_stage_failures;
	int			consecutive_failures;
	int			stage_failures;
	bool		rollback_on_hard_limit;
	char	   *nodata_action;
	char	   *inconclusive_action;
	bool		inconclusive_accepted;
	bool		next_needs_approval;	/* next stage is gated and not approved */
	bool		evaluated_since;	/* last evaluation is at or after "at" */
	bool		started_after;	/* stage_started_at is after "at" */
} CanaryRollout;

/* One change of a rollout's status, stage or percentage. */
typedef struct CanaryTransition
{
	const char *status;			/* new status */
	int			stage;			/* new stage */
	const char *percentage;		/* new percentage as text */
	const char *pause_kind;		/* new pause kind, NULL unless paused */
	bool		restart_stage;	/* restart the stage clock and counters */
	const char *event;			/* canary.events type */
	const char *reason;
	bool		automatic;
	TimestampTz at;
} CanaryTransition;

extern void canary_eval_lock_rollout(const pg_uuid_t *id, TimestampTz at,
									 CanaryRollout *rollout);
extern void canary_eval_reject_status(const CanaryRollout *rollout,
									  const char *hint);
extern void canary_eval_transition(const CanaryRollout *rollout,
								   const CanaryTransition *transition);
extern void canary_eval_promote_agent(const CanaryRollout *rollout);
extern void canary_eval_record_transition(const char *deployment_id,
										  const char *old_status,
										  int old_stage,
										  const char *old_percentage,
										  const char *event,
										  const char *reason,
										  bool automatic, TimestampTz at);
extern int64 canary_eval_record_event(const char *transition_id);
extern void canary_eval_record_decision(const CanaryRollout *rollout,
										const char *decision,
										const char *reason,
										bool automatic, TimestampTz at);

#endif							/* CANARY_EVALUATION_H */
