/*-------------------------------------------------------------------------
 *
 * operator.h
 *		Manual actions of an operator on rollouts and agents.
 *
 * The actions are SQL-callable functions only (canary_pause, canary_resume,
 * canary_rollback, canary_promote, canary_approve, canary_set_percentage,
 * canary_undo, canary_retry); they change state through evaluation.h.
 *
 * src/operator.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_OPERATOR_H
#define CANARY_OPERATOR_H

#include "fmgr.h"

extern Datum canary_pause(PG_FUNCTION_ARGS);
extern Datum canary_resume(PG_FUNCTION_ARGS);
extern Datum canary_rollback(PG_FUNCTION_ARGS);
extern Datum canary_promote(PG_FUNCTION_ARGS);
extern Datum canary_approve(PG_FUNCTION_ARGS);
extern Datum canary_set_percentage(PG_FUNCTION_ARGS);
extern Datum canary_undo(PG_FUNCTION_ARGS);
extern Datum canary_retry(PG_FUNCTION_ARGS);

#endif							/* CANARY_OPERATOR_H */
