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

#include "fmgr.h"
#include "utils/guc.h"

#include "canary.h"
#include "routing.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load callback: registers the routing cache's invalidation callback.
 */
void
_PG_init(void)
{
	canary_routing_init();

	MarkGUCPrefixReserved("canary");
}

/*
 * Make the SQL that a C function runs through SPI independent of the
 * caller's search_path.  Returns the GUC nest level to pass to the matching
 * end call, which restores the caller's setting.
 */
void
canary_run_with_safe_search_path_begin(int *nest_level)
{
	*nest_level = NewGUCNestLevel();
	(void) set_config_option("search_path", CANARY_SAFE_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
canary_run_with_safe_search_path_end(int nest_level)
{
	AtEOXact_GUC(true, nest_level);
}
