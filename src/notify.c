/*-------------------------------------------------------------------------
 *
 * notify.c
 *		Send a notification for every committed change of routing state.
 *
 * Row triggers on canary.deployments and canary.agents queue a notification
 * on channel "canary" when a rollout's status, stage or percentage changes,
 * or an agent's stable version does.  NOTIFY is transactional: listeners get
 * the message only if the change commits.  The payload is a JSON object:
 *
 *	 {"deployment_id": "...", "agent_id": "...", "status": "running",
 *	  "stage": 2, "percentage": 25.00}
 *
 * for a rollout, and {"agent_id": "...", "stable_version": "..."} for an
 * agent.  Payloads stay far below NOTIFY's 8000-byte limit because agent ids
 * have at most 255 bytes.
 *
 * src/notify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/rel.h"

#include "notify.h"

/*
 * Return a column of a trigger tuple as text, or NULL.
 */
static char *
column_text(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			column = SPI_fnumber(desc, name);

	if (column <= 0)
		elog(ERROR, "column \"%s\" not found", name);
	return SPI_getvalue(tuple, desc, column);
}

/*
 * Return true when a column differs between two versions of a row.
 */
static bool
column_changed(HeapTuple old_tuple, HeapTuple new_tuple, TupleDesc desc,
			   const char *name)
{
	char	   *old_value = column_text(old_tuple, desc, name);
	char	   *new_value = column_text(new_tuple, desc, name);

	if (old_value == NULL || new_value == NULL)
		return old_value != new_value;
	return strcmp(old_value, new_value) != 0;
}

/*
 * Append "key": value to a JSON object under construction, quoting the
 * value as a JSON string unless it is a number.
 */
static void
append_member(StringInfo buf, const char *key, const char *value, bool number)
{
	if (buf->len > 1)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else if (number)
		appendStringInfoString(buf, value);
	else
		escape_json(buf, value);
}

/*
 * Row trigger AFTER INSERT OR UPDATE on canary.deployments: notifies on a
 * new rollout and on each change of status, stage or percentage.
 */
PG_FUNCTION_INFO_V1(canary_notify_rollout_trigger);
Datum
canary_notify_rollout_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	StringInfoData buf;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function can only be called as a row trigger")));

	desc = RelationGetDescr(trigdata->tg_relation);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		!column_changed(trigdata->tg_trigtuple, tuple, desc, "status") &&
		!column_changed(trigdata->tg_trigtuple, tuple, desc, "current_stage") &&
		!column_changed(trigdata->tg_trigtuple, tuple, desc, "current_percentage"))
		return PointerGetDatum(NULL);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_member(&buf, "deployment_id", column_text(tuple, desc, "id"), false);
	append_member(&buf, "agent_id", column_text(tuple, desc, "agent_id"), false);
	append_member(&buf, "status", column_text(tuple, desc, "status"), false);
	append_member(&buf, "stage", column_text(tuple, desc, "current_stage"), true);
	append_member(&buf, "percentage",
				  column_text(tuple, desc, "current_percentage"), true);
	appendStringInfoChar(&buf, '}');

	Async_Notify(CANARY_CHANNEL_STATE, buf.data);
	pfree(buf.data);
	return PointerGetDatum(NULL);
}

/*
 * Row trigger AFTER INSERT OR UPDATE on canary.agents: notifies when an
 * agent is registered or its stable version changes.
 */
PG_FUNCTION_INFO_V1(canary_notify_agent_trigger);
Datum
canary_notify_agent_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	StringInfoData buf;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function can only be called as a row trigger")));

	desc = RelationGetDescr(trigdata->tg_relation);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) &&
		!column_changed(trigdata->tg_trigtuple, tuple, desc, "stable_version"))
		return PointerGetDatum(NULL);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_member(&buf, "agent_id", column_text(tuple, desc, "agent_id"), false);
	append_member(&buf, "stable_version",
				  column_text(tuple, desc, "stable_version"), false);
	appendStringInfoChar(&buf, '}');

	Async_Notify(CANARY_CHANNEL_STATE, buf.data);
	pfree(buf.data);
	return PointerGetDatum(NULL);
}
