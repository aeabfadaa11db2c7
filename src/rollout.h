/*-------------------------------------------------------------------------
 *
 * rollout.h
 *		Registering agents and creating and starting rollouts.
 *
 * src/rollout.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_ROLLOUT_H
#define CANARY_ROLLOUT_H

/* Reject a NULL argument of a non-strict SQL function. */
#define CANARY_REQUIRE_ARG(fcinfo, n, name) \
	do { \
		if (PG_ARGISNULL(n)) \
			ereport(ERROR, \
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), \
					 errmsg("%s must not be null", (name)))); \
	} while (0)

#endif							/* CANARY_ROLLOUT_H */
