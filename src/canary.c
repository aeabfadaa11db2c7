/*-------------------------------------------------------------------------
 *
 * canary.c
 *		Module wiring for the canary extension: settings, callbacks and
 *		helpers shared by every file.
 *
 * The library may be loaded through shared_preload_libraries or on first
 * use.  Everything but the background worker works either way.
 *
 * src/canary.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/float.h"
#include "utils/guc.h"

#include "canary.h"
#include "routing.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load callback: registers the routing cache's invalidation callback
 * and defines the settings.  While preloading, also registers the launcher
 * of the background workers.
 */
void
_PG_init(void)
{
	canary_routing_init();

	DefineCustomStringVariable("canary.execution_log_table",
							   "Execution log table that metrics collection reads.",
							   "A name without a schema means schema public. The table needs columns agent_id, version, status, latency_ms and \"timestamp\".",
							   &canary_execution_log_table,
							   "public.agent_execution_logs",
							   PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomStringVariable("canary.database",
							   "Databases whose running rollouts the background worker evaluates.",
							   "A comma-separated list; one worker runs per database.",
							   &canary_database,
							   "postgres",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   canary_worker_check_database_list, NULL, NULL);

	DefineCustomIntVariable("canary.evaluation_interval",
							"Time between two evaluations of every running rollout by the background worker.",
							NULL,
							&canary_evaluation_interval,
							30000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("canary.worker_enabled",
							 "Runs the background worker that evaluates rollouts.",
							 "Takes effect only when canary is in shared_preload_libraries.",
							 &canary_worker_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("canary.worker_role",
							   "Role the background worker connects as.",
							   "Empty means the bootstrap superuser. The role needs LOGIN and the right to run canary_evaluate().",
							   &canary_worker_role,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("canary");

	if (process_shared_preload_libraries_in_progress)
		canary_worker_register_launcher();
}

/*
 * Make the SQL that a C function runs through SPI independent of the
 * caller's search_path, and its float output exact whatever the caller's
 * extra_float_digits, so stored text and jsonb keep every digit.  Returns
 * the GUC nest level to pass to the matching end call, which restores the
 * caller's settings.
 */
void
canary_run_with_safe_settings_begin(int *nest_level)
{
	*nest_level = NewGUCNestLevel();

	if (extra_float_digits <= 0)
		(void) set_config_option("extra_float_digits", "1",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);

	/* The SET clause of canary's SQL functions has usually done it already. */
	if (namespace_search_path != NULL &&
		strcmp(namespace_search_path, CANARY_SAFE_SEARCH_PATH) == 0)
		return;
	(void) set_config_option("search_path", CANARY_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
canary_run_with_safe_settings_end(int nest_level)
{
	AtEOXact_GUC(true, nest_level);
}
