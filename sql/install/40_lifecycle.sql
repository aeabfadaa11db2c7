--
-- Rollout lifecycle: runtime state, history, events, evaluation and
-- operator actions
--

-- Runtime state of a rollout, kept in its row so that every decision reads
-- it under the row lock.
ALTER TABLE canary.deployments
	ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
	ADD COLUMN attempt_started_at timestamptz,
	ADD COLUMN stage_samples bigint NOT NULL DEFAULT 0,
	ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0,
	ADD COLUMN stage_failures integer NOT NULL DEFAULT 0,
	ADD COLUMN inconclusive_accepted boolean NOT NULL DEFAULT false,
	ADD COLUMN approved_stage integer,
	ADD COLUMN bake_started_at timestamptz,
	ADD COLUMN pause_kind text
		CHECK (pause_kind IN ('manual', 'baseline', 'nodata', 'inconclusive', 'approval')),
	ADD COLUMN last_evaluated_at timestamptz;
COMMENT ON COLUMN canary.deployments.attempt IS 'Attempt number, 1 for the first run and one more for each canary_retry()';
COMMENT ON COLUMN canary.deployments.attempt_started_at IS 'Time the current attempt started';
COMMENT ON COLUMN canary.deployments.stage_samples IS 'Canary samples counted in the current stage at the last evaluation';
COMMENT ON COLUMN canary.deployments.consecutive_failures IS 'Unhealthy evaluations in a row in the current stage';
COMMENT ON COLUMN canary.deployments.stage_failures IS 'Unhealthy evaluations in the current stage, consecutive or not';
COMMENT ON COLUMN canary.deployments.inconclusive_accepted IS 'Whether an operator accepted an inconclusive verdict with canary_resume(); it holds for the rest of the attempt, so the same evidence does not pause the rollout again, while a failure still rolls it back';
COMMENT ON COLUMN canary.deployments.approved_stage IS 'Stage number that canary_approve() allowed to start';
COMMENT ON COLUMN canary.deployments.bake_started_at IS 'Start of the bake time after the last stage; NULL while stages run';
COMMENT ON COLUMN canary.deployments.pause_kind IS 'Why a paused rollout waits: manual, baseline, nodata, inconclusive or approval';
COMMENT ON COLUMN canary.deployments.last_evaluated_at IS 'Evaluation time of the last automatic decision of the current attempt';

--
-- History
--

-- Decisions and transitions take their ids from one sequence, so that
-- ordering by id gives the order in which they were recorded.
CREATE SEQUENCE canary.history_id_seq;
COMMENT ON SEQUENCE canary.history_id_seq IS 'Ids of canary.decisions and canary.transitions, in recording order';

CREATE TABLE canary.decisions (
	id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('canary.history_id_seq'),
	deployment_id uuid NOT NULL REFERENCES canary.deployments (id) ON DELETE CASCADE,
	attempt integer NOT NULL,
	decision text NOT NULL
		CHECK (decision IN ('continue', 'progress', 'promote', 'rollback', 'pause')),
	reason text NOT NULL,
	verdict text CHECK (verdict IN ('pass', 'fail', 'inconclusive', 'nodata')),
	stage integer NOT NULL,
	percentage numeric(5,2) NOT NULL,
	metrics_id bigint,
	metrics jsonb,
	automatic boolean NOT NULL,
	actor text NOT NULL,
	at timestamptz NOT NULL
);
COMMENT ON TABLE canary.decisions IS 'Every decision about a rollout: one row per evaluation, and one per manual pause, rollback or promotion';
COMMENT ON COLUMN canary.decisions.verdict IS 'Verdict of the metrics the decision was based on; NULL when no metrics were read';
COMMENT ON COLUMN canary.decisions.stage IS 'Stage of the rollout after the decision';
COMMENT ON COLUMN canary.decisions.percentage IS 'Canary traffic percentage after the decision';
COMMENT ON COLUMN canary.decisions.metrics IS 'Snapshot of the metrics the decision was based on';

-- Every evaluation writes a metrics row with its details and a decision
-- with its snapshot, of about 2 to 4 kB with the sequential judge.  Rows up
-- to 4080 bytes stay in the table uncompressed, instead of being compressed
-- and, when that is not enough, moved to the TOAST table, which costs a
-- second insert per row.  Larger rows are compressed with lz4, several
-- times faster than the default pglz; a server built without lz4 keeps
-- the default.
ALTER TABLE canary.metrics SET (toast_tuple_target = 4080);
ALTER TABLE canary.decisions SET (toast_tuple_target = 4080);
DO $$
BEGIN
	ALTER TABLE canary.metrics ALTER COLUMN details SET COMPRESSION lz4;
	ALTER TABLE canary.decisions ALTER COLUMN metrics SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
	NULL;
END
$$;
COMMENT ON COLUMN canary.decisions.at IS 'Evaluation time given to canary_evaluate(), or the transaction time of a manual action';
CREATE INDEX decisions_deployment ON canary.decisions (deployment_id, id);

CREATE TABLE canary.transitions (
	id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('canary.history_id_seq'),
	deployment_id uuid REFERENCES canary.deployments (id) ON DELETE CASCADE,
	agent_id text NOT NULL,
	attempt integer,
	event text NOT NULL,
	old_status canary.status,
	new_status canary.status,
	old_stage integer,
	new_stage integer,
	old_percentage numeric(5,2),
	new_percentage numeric(5,2),
	automatic boolean NOT NULL,
	actor text NOT NULL,
	reason text NOT NULL,
	at timestamptz NOT NULL
);
COMMENT ON TABLE canary.transitions IS 'Every change of a rollout''s status, stage or percentage, and every stable version change by canary_undo()';
COMMENT ON COLUMN canary.transitions.deployment_id IS 'Rollout that changed; NULL for canary_undo() of a version no rollout promoted';
COMMENT ON COLUMN canary.transitions.event IS 'Type of the canary.events row recorded with the transition';
CREATE INDEX transitions_deployment ON canary.transitions (deployment_id, id);

CREATE SEQUENCE canary.events_id_seq;
COMMENT ON SEQUENCE canary.events_id_seq IS 'Ids of canary.events';

CREATE TABLE canary.events (
	id bigint PRIMARY KEY DEFAULT pg_catalog.nextval('canary.events_id_seq'),
	deployment_id uuid,
	agent_id text NOT NULL,
	event_type text NOT NULL
		CHECK (event_type IN ('started', 'progressed', 'paused', 'resumed',
							  'rolled_back', 'promoted', 'superseded', 'retried',
							  'approved', 'percentage_set', 'undone')),
	payload jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	claimed_at timestamptz,
	claimed_by text
);
COMMENT ON TABLE canary.events IS
'Outbox of rollout events, one row per transition; each insert notifies channel canary_events with the event id.  '
'A relay claims a batch exactly once with: '
'UPDATE canary.events SET claimed_at = now(), claimed_by = ''relay-1'' '
'WHERE id IN (SELECT id FROM canary.events WHERE claimed_at IS NULL '
'ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING *; '
'concurrent relays skip each other''s locked rows, and a relay that aborts releases its rows for the next one';
COMMENT ON COLUMN canary.events.payload IS 'The transition: old and new status, stage and percentage, reason, actor, attempt and time';
COMMENT ON COLUMN canary.events.claimed_at IS 'Time a relay claimed the event; NULL while unclaimed';
CREATE INDEX events_unclaimed ON canary.events (id) WHERE claimed_at IS NULL;

SELECT pg_catalog.pg_extension_config_dump('canary.decisions', '');
SELECT pg_catalog.pg_extension_config_dump('canary.transitions', '');
SELECT pg_catalog.pg_extension_config_dump('canary.events', '');
SELECT pg_catalog.pg_extension_config_dump('canary.history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('canary.events_id_seq', '');

CREATE VIEW canary.rollouts AS
SELECT d.agent_id,
	   d.id AS deployment_id,
	   d.baseline_version,
	   d.canary_version,
	   d.status,
	   CASE d.status
		   WHEN 'promoted' THEN 'promoted'
		   WHEN 'rolled_back' THEN 'rolled back'
		   WHEN 'superseded' THEN 'superseded'
		   ELSE 'in progress'
	   END AS outcome,
	   d.attempt,
	   d.created_at,
	   d.started_at,
	   d.completed_at,
	   d.completed_at - d.started_at AS duration,
	   (SELECT pg_catalog.max(t.new_stage) FROM canary.transitions t
		WHERE t.deployment_id = d.id) AS max_stage_reached,
	   pg_catalog.cardinality(d.stages) AS stage_count,
	   d.status_reason AS final_reason
FROM canary.deployments d;
COMMENT ON VIEW canary.rollouts IS 'Every rollout of every agent with its outcome, duration, highest stage reached and last reason';

--
-- Evaluation
--

-- A named row type lets the result have a column "at" beside the argument.
CREATE TYPE canary.evaluation AS (
	decision text,
	reason text,
	stage integer,
	percentage numeric,
	metrics_id bigint,
	at timestamptz
);
COMMENT ON TYPE canary.evaluation IS 'Result of canary_evaluate(): the decision with the stage and percentage after it';

CREATE FUNCTION canary_evaluate(deployment_id uuid,
								at timestamptz DEFAULT pg_catalog.now())
RETURNS canary.evaluation
AS 'MODULE_PATHNAME', 'canary_evaluate'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_evaluate(uuid, timestamptz) IS
'Compare the canary with the baseline in the current stage as of "at", then continue, progress, promote, roll back or pause; returns the recorded decision with the stage and percentage after it.  An evaluation at or before the last one returns that decision and records nothing.';

CREATE FUNCTION canary_evaluate_all(at timestamptz DEFAULT pg_catalog.now(),
									OUT deployment_id uuid, OUT agent_id text,
									OUT decision text, OUT reason text,
									OUT error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'canary_evaluate_all'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_evaluate_all(timestamptz) IS
'Evaluate every running or paused rollout, each in its own subtransaction; a failed evaluation reports its error and changes nothing';

--
-- Operator actions
--

CREATE FUNCTION canary_pause(id uuid, reason text DEFAULT 'manual pause')
RETURNS void
AS 'MODULE_PATHNAME', 'canary_pause'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_pause(uuid, text) IS
'Pause a running rollout at its current traffic split';

CREATE FUNCTION canary_resume(id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_resume'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_resume(uuid) IS
'Resume a paused rollout; resuming an inconclusive pause accepts the stage, resuming an approval pause approves the next stage';

CREATE FUNCTION canary_rollback(id uuid, reason text DEFAULT 'manual rollback')
RETURNS void
AS 'MODULE_PATHNAME', 'canary_rollback'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_rollback(uuid, text) IS
'Roll back a pending, running or paused rollout: all traffic returns to the baseline';

CREATE FUNCTION canary_promote(id uuid, reason text DEFAULT 'manual promotion',
							   force boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_promote'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_promote(uuid, text, boolean) IS
'Promote a running or paused rollout now, skipping its remaining stages; rejected after an unhealthy verdict unless force is true';

CREATE FUNCTION canary_approve(id uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_approve'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_approve(uuid) IS
'Approve the next stage of a rollout that waits for approval; the next evaluation moves to it without restarting the current stage';

CREATE FUNCTION canary_set_percentage(id uuid, pct numeric)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_set_percentage'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_set_percentage(uuid, numeric) IS
'Override the canary traffic percentage of a running or paused rollout until its next stage starts';

CREATE FUNCTION canary_undo(agent_id text)
RETURNS void
AS 'MODULE_PATHNAME', 'canary_undo'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_undo(text) IS
'Return an agent to its previous stable version at once, without stages; the rollout that promoted the current version is marked rolled back';

CREATE FUNCTION canary_retry(id uuid, at timestamptz DEFAULT pg_catalog.now())
RETURNS void
AS 'MODULE_PATHNAME', 'canary_retry'
LANGUAGE C VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_retry(uuid, timestamptz) IS
'Start a new attempt of a rolled-back rollout at stage 1; its analysis counts only executions from "at" on';

--
-- History
--

CREATE FUNCTION canary_history(deployment_id uuid)
RETURNS TABLE (id bigint, at timestamptz, kind text, action text,
			   status canary.status, stage integer, percentage numeric,
			   reason text, automatic boolean, actor text)
AS $$
	SELECT t.id, t.at, 'transition', t.event, t.new_status, t.new_stage,
		   t.new_percentage, t.reason, t.automatic, t.actor
	FROM canary.transitions t
	WHERE t.deployment_id = $1
	UNION ALL
	SELECT d.id, d.at, 'decision', d.decision, NULL, d.stage,
		   d.percentage, d.reason, d.automatic, d.actor
	FROM canary.decisions d
	WHERE d.deployment_id = $1
	ORDER BY 1
$$
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION canary_history(uuid) IS
'The whole story of a rollout, decisions and transitions merged in the order they were recorded';
