/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Background workers that evaluate every running or paused rollout on a timer.
 *
 * Two kinds of process run when the library is in shared_preload_libraries:
 *
 * - The launcher (bgw_type "canary launcher") is registered at preload.  It
 *   connects to no database and reads the shared catalogs pg_database and
 *   pg_authid to check the databases in canary.database and the role in
 *   canary.worker_role.  It starts one dynamic worker per database and stops
 *   the workers whose database, database OID or role no longer matches the
 *   settings.  A worker that exits is started again at most once per
 *   CANARY_WORKER_RESTART_DELAY_MS.  The postmaster restarts the launcher
 *   itself after the same delay, and at once after a crash restart.
 *
 * - A worker (bgw_type "canary worker") connects to one database.  Each tick
 *   lists the running and paused rollouts in one transaction, then calls
 *   canary_evaluate() for each rollout in a transaction of its own.  The
 *   evaluation locks the rollout's row, so a manual call or a pg_cron job at
 *   the same moment waits and then sees the state this one left.  An error
 *   in one rollout is reported, its transaction is aborted and the others
 *   go on.
 *
 * Workers are registered with BGW_NEVER_RESTART and the launcher alone
 * restarts them.  After a crash restart the postmaster forgets them, so the
 * restarted launcher can never find a leftover worker next to the one it
 * starts.  When the launcher exits it terminates its workers for the same
 * reason.
 *
 * Problems with the settings (a missing database or role, a database
 * without the extension) are logged once per configuration reload and the
 * processes keep waiting, checking again on each wake-up.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "common/hashfn.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/varlena.h"

#include "canary.h"
#include "spi_helpers.h"
#include "worker.h"

/* Shortest time between two starts of the launcher or of one worker. */
#define CANARY_WORKER_RESTART_DELAY_MS 5000

/* Settings; defined in _PG_init. */
char	   *canary_database = NULL;
int			canary_evaluation_interval = 30000;
bool		canary_worker_enabled = true;
char	   *canary_worker_role = NULL;

/* A database in canary.database and the launcher's worker for it. */
typedef struct DatabaseWorker
{
	char		dbname[NAMEDATALEN];
	Oid			dboid;			/* database the worker connected to */
	Oid			roleoid;		/* role it connected as; InvalidOid for the
								 * bootstrap superuser */
	BackgroundWorkerHandle *handle; /* NULL when no worker runs */
	TimestampTz last_start;		/* when the worker was last registered */
	bool		problem_reported;	/* a problem was logged since the reload */
} DatabaseWorker;

/* Launcher state, in launcher_context; sync_context is reset every wake-up. */
static MemoryContext launcher_context = NULL;
static MemoryContext sync_context = NULL;
static List *database_workers = NIL;
static bool role_problem_reported = false;

/* Worker state. */
static char *worker_dbname = NULL;
static bool extension_missing_reported = false;

/* One unit of work, run in its own transaction by run_in_transaction. */
typedef void (*WorkerUnit) (void *arg);

/* A running or paused rollout as listed at the start of a tick. */
typedef struct RolloutRef
{
	pg_uuid_t	id;
	char	   *id_text;
	char	   *agent_id;
} RolloutRef;

/* A rollout whose last evaluation failed, and how its failures repeat. */
typedef struct FailingRollout
{
	char		id_text[UUID_LEN * 2 + 5];	/* hash key */
	uint32		message_hash;	/* hash of the last error message */
	int64		repeats;		/* failures in a row with that message */
} FailingRollout;

/*
 * Rollouts whose evaluation failed at the last tick.  A failure that
 * repeats the previous one's message is logged in full only every
 * FAILURE_REPORT_EVERY ticks, and at DEBUG1 in between.
 */
static HTAB *failing_rollouts = NULL;
#define FAILURE_REPORT_EVERY 100

/* Set while a rollout is evaluated, for the error filter below. */
static const RolloutRef *evaluating_rollout = NULL;
static bool evaluation_error_repeated = false;

/* Input and output of list_rollouts_unit. */
typedef struct ListUnit
{
	MemoryContext result_context;
	bool		extension_installed;
	char	   *evaluate_sql;	/* SELECT ... FROM <schema>.canary_evaluate($1) */
	List	   *rollouts;		/* RolloutRef pointers */
} ListUnit;

/* Input and output of evaluate_unit. */
typedef struct EvaluateUnit
{
	MemoryContext result_context;
	const char *evaluate_sql;
	const RolloutRef *rollout;
	char	   *decision;
	char	   *reason;
	char	   *stage;
	char	   *percentage;
} EvaluateUnit;


/*
 * Check hook of canary.database: a comma-separated list of database names,
 * each shorter than NAMEDATALEN.
 */
bool
canary_worker_check_database_list(char **newval, void **extra,
								  GucSource source)
{
	char	   *rawstring = pstrdup(*newval);
	List	   *names;
	ListCell   *lc;

	if (!SplitGUCList(rawstring, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(rawstring);
		list_free(names);
		return false;
	}
	foreach(lc, names)
	{
		if (strlen((char *) lfirst(lc)) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Database name \"%s\" is longer than %d bytes.",
								(char *) lfirst(lc), NAMEDATALEN - 1);
			pfree(rawstring);
			list_free(names);
			return false;
		}
	}
	pfree(rawstring);
	list_free(names);
	return true;
}

/*
 * Register the launcher.  Called from _PG_init while preloading.
 */
void
canary_worker_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = CANARY_WORKER_RESTART_DELAY_MS / 1000;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "canary");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "canary_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "canary launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "canary launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Set application_name so that pg_stat_activity shows the process.  The
 * override source keeps a reload from replacing it.
 */
static void
set_application_name(const char *name)
{
	SetConfigOption("application_name", name, PGC_SUSET, PGC_S_OVERRIDE);
}


/* ---------------------------------------------------------------------
 * Launcher
 * ---------------------------------------------------------------------
 */

/*
 * Log problems with the settings again after a configuration reload.
 */
static void
launcher_forget_reports(void)
{
	ListCell   *lc;

	role_problem_reported = false;
	foreach(lc, database_workers)
		((DatabaseWorker *) lfirst(lc))->problem_reported = false;
}

/*
 * Find the entry of a database name, creating it when create is true.
 */
static DatabaseWorker *
launcher_find_entry(const char *dbname, bool create)
{
	ListCell   *lc;
	DatabaseWorker *entry;
	MemoryContext oldcontext;

	foreach(lc, database_workers)
	{
		entry = (DatabaseWorker *) lfirst(lc);
		if (strcmp(entry->dbname, dbname) == 0)
			return entry;
	}
	if (!create)
		return NULL;

	oldcontext = MemoryContextSwitchTo(launcher_context);
	entry = palloc0(sizeof(DatabaseWorker));
	strlcpy(entry->dbname, dbname, NAMEDATALEN);
	database_workers = lappend(database_workers, entry);
	MemoryContextSwitchTo(oldcontext);
	return entry;
}

/*
 * Find a row of a shared catalog by its name column with a heap scan, and
 * return a copy of it or NULL.  The launcher reads no index: without a
 * database, only the shared catalogs themselves are sure to be in the
 * relation cache, because the shared relcache init file may not exist yet
 * when the launcher starts.
 */
static HeapTuple
launcher_find_shared_row(Oid relid, AttrNumber name_attnum, const char *name)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TableScanDesc scan = table_beginscan_catalog(rel, 0, NULL);
	HeapTuple	tuple;
	HeapTuple	found = NULL;

	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, name_attnum,
										 RelationGetDescr(rel), &isnull);

		if (!isnull && strcmp(NameStr(*DatumGetName(value)), name) == 0)
		{
			found = heap_copytuple(tuple);
			break;
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Look up canary.worker_role in the current transaction.  Sets *roleoid
 * (InvalidOid when the setting is empty) and returns whether the workers
 * can connect as that role.
 */
static bool
launcher_lookup_role(Oid *roleoid)
{
	HeapTuple	tuple;
	bool		can_login;

	*roleoid = InvalidOid;
	if (canary_worker_role == NULL || canary_worker_role[0] == '\0')
		return true;

	tuple = launcher_find_shared_row(AuthIdRelationId, Anum_pg_authid_rolname,
									 canary_worker_role);
	if (tuple == NULL)
	{
		if (!role_problem_reported)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("role \"%s\" set in \"canary.worker_role\" does not exist",
							canary_worker_role),
					 errhint("Create the role with LOGIN, or change \"canary.worker_role\" and reload the configuration.")));
		role_problem_reported = true;
		return false;
	}
	*roleoid = ((Form_pg_authid) GETSTRUCT(tuple))->oid;
	can_login = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;

	if (!can_login)
	{
		if (!role_problem_reported)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("role \"%s\" set in \"canary.worker_role\" is not permitted to log in",
							canary_worker_role),
					 errhint("Grant the role LOGIN, or change \"canary.worker_role\" and reload the configuration.")));
		role_problem_reported = true;
		return false;
	}
	return true;
}

/*
 * Look up a configured database in the current transaction.  Returns its
 * OID, or InvalidOid when it does not exist or does not accept connections.
 */
static Oid
launcher_lookup_database(DatabaseWorker *entry)
{
	HeapTuple	tuple = launcher_find_shared_row(DatabaseRelationId,
												 Anum_pg_database_datname,
												 entry->dbname);

	if (tuple == NULL)
	{
		if (!entry->problem_reported)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_DATABASE),
					 errmsg("database \"%s\" set in \"canary.database\" does not exist",
							entry->dbname),
					 errhint("Create the database, or change \"canary.database\" and reload the configuration.")));
		entry->problem_reported = true;
		return InvalidOid;
	}
	if (!((Form_pg_database) GETSTRUCT(tuple))->datallowconn)
	{
		if (!entry->problem_reported)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("database \"%s\" set in \"canary.database\" does not accept connections",
							entry->dbname),
					 errhint("Allow connections with ALTER DATABASE, or change \"canary.database\" and reload the configuration.")));
		entry->problem_reported = true;
		return InvalidOid;
	}
	return ((Form_pg_database) GETSTRUCT(tuple))->oid;
}

/*
 * Forget the handle of a worker that has stopped.  Returns whether a worker
 * is registered or running.
 */
static bool
launcher_worker_alive(DatabaseWorker *entry)
{
	pid_t		pid;

	if (entry->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(entry->handle, &pid) == BGWH_STOPPED)
	{
		pfree(entry->handle);
		entry->handle = NULL;
		return false;
	}
	return true;
}

/*
 * Terminate an entry's worker and wait until it has exited, so that a
 * replacement never runs next to it.
 */
static void
launcher_stop_worker(DatabaseWorker *entry, const char *reason)
{
	if (!launcher_worker_alive(entry))
		return;

	ereport(LOG,
			(errmsg("stopping canary worker for database \"%s\" because %s",
					entry->dbname, reason)));
	TerminateBackgroundWorker(entry->handle);
	(void) WaitForBackgroundWorkerShutdown(entry->handle);
	pfree(entry->handle);
	entry->handle = NULL;
}

/*
 * Register the worker of a database.  Returns false when no background
 * worker slot is free.
 */
static bool
launcher_start_worker(DatabaseWorker *entry, Oid dboid, Oid roleoid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	MemoryContext oldcontext;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "canary");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "canary_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "canary worker for database %s",
			 entry->dbname);
	snprintf(worker.bgw_type, BGW_MAXLEN, "canary worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(worker.bgw_extra, &roleoid, sizeof(Oid));
	worker.bgw_notify_pid = MyProcPid;

	entry->last_start = GetCurrentTimestamp();
	oldcontext = MemoryContextSwitchTo(launcher_context);
	registered = RegisterDynamicBackgroundWorker(&worker, &handle);
	MemoryContextSwitchTo(oldcontext);
	if (!registered)
		return false;

	ereport(LOG,
			(errmsg("starting canary worker for database \"%s\"",
					entry->dbname)));
	entry->handle = handle;
	entry->dboid = dboid;
	entry->roleoid = roleoid;
	return true;
}

/*
 * Read the configured databases and role from the catalogs.  Sets
 * *role_ok and *roleoid, and returns the DatabaseWorker entries of the
 * configured databases, without duplicates.  *current_dboids receives each
 * database's OID in the same order, InvalidOid for one that cannot be used.
 * Temporary allocations go into the caller's memory context.
 */
static List *
launcher_read_settings(bool *role_ok, Oid *roleoid, List **current_dboids)
{
	MemoryContext caller_context = CurrentMemoryContext;
	char	   *rawstring = pstrdup(canary_database ? canary_database : "");
	List	   *names = NIL;
	List	   *configured = NIL;
	ListCell   *lc;

	(void) SplitGUCList(rawstring, ',', &names);

	StartTransactionCommand();
	MemoryContextSwitchTo(caller_context);
	*role_ok = launcher_lookup_role(roleoid);
	foreach(lc, names)
	{
		DatabaseWorker *entry = launcher_find_entry(lfirst(lc), true);

		if (list_member_ptr(configured, entry))
			continue;
		configured = lappend(configured, entry);
		*current_dboids = lappend_oid(*current_dboids,
									  launcher_lookup_database(entry));
	}
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller_context);
	return configured;
}

/*
 * Bring the running workers in line with the settings: stop the workers
 * that no longer match, start the missing ones.  Returns how long to wait
 * before the next check, in milliseconds.
 */
static long
launcher_sync_workers(void)
{
	MemoryContext oldcontext = MemoryContextSwitchTo(sync_context);
	bool		role_ok;
	Oid			roleoid;
	List	   *current_dboids = NIL;
	List	   *configured;
	ListCell   *lc;
	ListCell   *oid_cell;
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = CANARY_WORKER_RESTART_DELAY_MS;

	configured = launcher_read_settings(&role_ok, &roleoid, &current_dboids);

	/* Stop the workers that the settings no longer ask for. */
	foreach(lc, database_workers)
	{
		DatabaseWorker *entry = (DatabaseWorker *) lfirst(lc);

		if (!canary_worker_enabled)
			launcher_stop_worker(entry, "\"canary.worker_enabled\" is off");
		else if (!list_member_ptr(configured, entry))
			launcher_stop_worker(entry, "it is no longer in \"canary.database\"");
		else if (!role_ok || entry->roleoid != roleoid)
			launcher_stop_worker(entry, "\"canary.worker_role\" changed");
	}

	/* Start the missing workers, each at most once per restart delay. */
	forboth(lc, configured, oid_cell, current_dboids)
	{
		DatabaseWorker *entry = (DatabaseWorker *) lfirst(lc);
		Oid			dboid = lfirst_oid(oid_cell);
		long		wait_ms;

		if (launcher_worker_alive(entry) && entry->dboid != dboid)
			launcher_stop_worker(entry, "the database was dropped or recreated");
		if (!canary_worker_enabled || !role_ok || !OidIsValid(dboid) ||
			launcher_worker_alive(entry))
			continue;

		wait_ms = TimestampDifferenceMilliseconds(now,
												  TimestampTzPlusMilliseconds(entry->last_start,
																			  CANARY_WORKER_RESTART_DELAY_MS));
		if (wait_ms > 0)
			timeout = Min(timeout, wait_ms);
		else if (!launcher_start_worker(entry, dboid, roleoid) &&
				 !entry->problem_reported)
		{
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not start canary worker for database \"%s\"",
							entry->dbname),
					 errhint("Raise \"max_worker_processes\".")));
			entry->problem_reported = true;
		}
	}

	MemoryContextSwitchTo(oldcontext);
	MemoryContextReset(sync_context);
	return Max(timeout, 1);
}

/*
 * Terminate every worker when the launcher exits, so that the launcher
 * the postmaster starts next does not find workers it does not know.
 */
static void
launcher_shutdown(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, database_workers)
	{
		DatabaseWorker *entry = (DatabaseWorker *) lfirst(lc);

		if (entry->handle != NULL)
			TerminateBackgroundWorker(entry->handle);
	}
	ereport(LOG, (errmsg("canary launcher stopped")));
}

/*
 * Entry point of the launcher: keeps one worker per configured database.
 */
void
canary_launcher_main(Datum main_arg)
{
	long		timeout;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* Connect to no database: the shared catalogs are all it reads. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	set_application_name("canary launcher");
	launcher_context = AllocSetContextCreate(TopMemoryContext,
											 "canary launcher",
											 ALLOCSET_DEFAULT_SIZES);
	sync_context = AllocSetContextCreate(launcher_context,
										 "canary launcher sync",
										 ALLOCSET_DEFAULT_SIZES);
	before_shmem_exit(launcher_shutdown, (Datum) 0);
	ereport(LOG, (errmsg("canary launcher started")));

	timeout = launcher_sync_workers();
	for (;;)
	{
		/* Wake up on a reload, a worker's start or exit, or the timeout. */
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			launcher_forget_reports();
		}

		timeout = launcher_sync_workers();
	}
}


/* ---------------------------------------------------------------------
 * Worker
 * ---------------------------------------------------------------------
 */

/*
 * Decide whether the error being handled should be reported: always, unless
 * a rollout is being evaluated and its previous evaluation failed with the
 * same message, in which case only every FAILURE_REPORT_EVERY-th repeat is.
 * Called in PG_CATCH, before the error state is flushed.
 */
static bool
error_is_news(void)
{
	ErrorData  *edata;
	FailingRollout *entry;
	uint32		message_hash;
	bool		found;

	evaluation_error_repeated = false;
	if (evaluating_rollout == NULL)
		return true;

	if (failing_rollouts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(entry->id_text);
		ctl.entrysize = sizeof(FailingRollout);
		failing_rollouts = hash_create("canary failing rollouts", 16, &ctl,
									   HASH_ELEM | HASH_STRINGS);
	}

	edata = CopyErrorData();
	message_hash = edata->message ? hash_bytes((const unsigned char *) edata->message,
											   strlen(edata->message)) : 0;
	FreeErrorData(edata);

	entry = hash_search(failing_rollouts, evaluating_rollout->id_text,
						HASH_ENTER, &found);
	if (found && entry->message_hash == message_hash)
		entry->repeats++;
	else
	{
		entry->message_hash = message_hash;
		entry->repeats = 0;
	}
	evaluation_error_repeated = (entry->repeats % FAILURE_REPORT_EVERY) != 0;
	return !evaluation_error_repeated;
}

/*
 * Forget a rollout's failures after a successful evaluation, and log it if
 * it had failed before.
 */
static void
forget_failures(const RolloutRef *rollout)
{
	FailingRollout *entry;

	if (failing_rollouts == NULL)
		return;
	entry = hash_search(failing_rollouts, rollout->id_text, HASH_FIND, NULL);
	if (entry == NULL)
		return;
	ereport(LOG,
			(errmsg_internal("rollout %s of agent \"%s\" evaluated again after %lld failed evaluations",
							 rollout->id_text, rollout->agent_id,
							 (long long) entry->repeats + 1)));
	hash_search(failing_rollouts, rollout->id_text, HASH_REMOVE, NULL);
}

/*
 * Run one unit of work in its own transaction, bracketed the way a client
 * statement is: statement timestamp, snapshot, SPI connection and activity
 * report.  An error is reported to the server log, the transaction is
 * aborted and false is returned, so that the caller goes on with the next
 * unit.  Returns to the caller's memory context either way.
 */
static bool
run_in_transaction(WorkerUnit unit, void *arg, const char *activity)
{
	MemoryContext caller_context = CurrentMemoryContext;
	volatile bool succeeded = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);

		unit(arg);

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* Report, then clean up as the end of a failed statement does. */
		MemoryContextSwitchTo(caller_context);
		if (error_is_news())
			EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		succeeded = false;
	}
	PG_END_TRY();

	MemoryContextSwitchTo(caller_context);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return succeeded;
}

/*
 * Unit of work: find the extension's schema and list the running and paused rollouts,
 * copied into the result context.
 */
static void
list_rollouts_unit(void *arg)
{
	ListUnit   *unit = (ListUnit *) arg;
	MemoryContext oldcontext;
	char	   *schema;
	int			count;

	/* The functions live in the extension's schema, which may vary. */
	count = canary_spi_execute("SELECT n.nspname FROM pg_catalog.pg_extension e "
							   "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
							   "WHERE e.extname = 'canary'",
							   0, NULL, NULL, NULL, SPI_OK_SELECT, 1);
	unit->extension_installed = (count == 1);
	if (!unit->extension_installed)
		return;
	schema = canary_spi_get_text(0, 1);

	count = canary_spi_execute("SELECT id, agent_id FROM canary.deployments "
							   "WHERE status IN ('running', 'paused') ORDER BY agent_id, id",
							   0, NULL, NULL, NULL, SPI_OK_SELECT, 0);

	oldcontext = MemoryContextSwitchTo(unit->result_context);
	unit->evaluate_sql = psprintf("SELECT decision, reason, stage, "
								  "pg_catalog.trim_scale(percentage) "
								  "FROM %s.canary_evaluate($1)",
								  quote_identifier(schema));
	for (int i = 0; i < count; i++)
	{
		RolloutRef *rollout = palloc(sizeof(RolloutRef));
		bool		isnull;

		memcpy(&rollout->id, DatumGetUUIDP(canary_spi_get(i, 1, &isnull)),
			   sizeof(pg_uuid_t));
		rollout->id_text = canary_spi_get_text(i, 1);
		rollout->agent_id = canary_spi_get_text(i, 2);
		unit->rollouts = lappend(unit->rollouts, rollout);
	}
	MemoryContextSwitchTo(oldcontext);
}

/*
 * Unit of work: evaluate one rollout through canary_evaluate(), which
 * decides and acts, and copy its decision into the result context.
 */
static void
evaluate_unit(void *arg)
{
	EvaluateUnit *unit = (EvaluateUnit *) arg;
	Oid			argtype = UUIDOID;
	Datum		value = UUIDPGetDatum(&unit->rollout->id);
	MemoryContext oldcontext;

	if (canary_spi_execute(unit->evaluate_sql, 1, &argtype, &value, NULL,
						   SPI_OK_SELECT, 1) != 1)
		elog(ERROR, "canary_evaluate returned no row for rollout %s",
			 unit->rollout->id_text);

	oldcontext = MemoryContextSwitchTo(unit->result_context);
	unit->decision = canary_spi_get_text(0, 1);
	unit->reason = canary_spi_get_text(0, 2);
	unit->stage = canary_spi_get_text(0, 3);
	unit->percentage = canary_spi_get_text(0, 4);
	MemoryContextSwitchTo(oldcontext);
}

/*
 * Error context callback: names the rollout whose evaluation failed.
 */
static void
evaluation_error_context(void *arg)
{
	const RolloutRef *rollout = (const RolloutRef *) arg;

	errcontext("canary worker evaluating rollout %s of agent \"%s\"",
			   rollout->id_text, rollout->agent_id);
}

/*
 * Evaluate one rollout in its own transaction.  Logs a decision that changed
 * the rollout at LOG, a "continue" at DEBUG2.  Returns false when the
 * evaluation failed; the error has then been logged with the rollout id.
 */
static bool
evaluate_rollout(const char *evaluate_sql, const RolloutRef *rollout,
				 bool *changed)
{
	EvaluateUnit unit = {0};
	ErrorContextCallback errcallback;
	bool		succeeded;

	unit.result_context = CurrentMemoryContext;
	unit.evaluate_sql = evaluate_sql;
	unit.rollout = rollout;

	errcallback.callback = evaluation_error_context;
	errcallback.arg = (void *) rollout;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	evaluating_rollout = rollout;
	succeeded = run_in_transaction(evaluate_unit, &unit,
								   "canary worker: evaluating a rollout");
	evaluating_rollout = NULL;
	error_context_stack = errcallback.previous;

	if (!succeeded)
	{
		if (evaluation_error_repeated)
			ereport(DEBUG1,
					(errmsg_internal("rollout %s of agent \"%s\" failed again with the same error",
									 rollout->id_text, rollout->agent_id)));
		return false;
	}
	forget_failures(rollout);

	*changed = (strcmp(unit.decision, "continue") != 0);
	ereport(*changed ? LOG : DEBUG2,
			(errmsg_internal("rollout %s of agent \"%s\": %s, now at stage %s with %s%% canary traffic",
							 rollout->id_text, rollout->agent_id,
							 unit.decision, unit.stage, unit.percentage),
			 errdetail_internal("%s", unit.reason ? unit.reason : "")));
	return true;
}

/*
 * One tick: evaluate every running or paused rollout of the database, each in its
 * own transaction.
 */
static void
worker_tick(void)
{
	ListUnit	list = {0};
	ListCell   *lc;
	int			changed_count = 0;
	int			failed_count = 0;
	TimestampTz started = GetCurrentTimestamp();

	list.result_context = CurrentMemoryContext;
	if (!run_in_transaction(list_rollouts_unit, &list,
							"canary worker: listing running and paused rollouts"))
		return;

	/* Without the extension there is nothing to do until it is created. */
	if (!list.extension_installed)
	{
		if (!extension_missing_reported)
			ereport(LOG,
					(errmsg("extension \"canary\" is not installed in database \"%s\"",
							worker_dbname),
					 errhint("Run CREATE EXTENSION canary in that database, or change \"canary.database\" and reload the configuration.")));
		extension_missing_reported = true;
		elog(DEBUG1, "canary worker tick in database \"%s\" skipped: extension not installed",
			 worker_dbname);
		return;
	}
	if (extension_missing_reported)
		ereport(LOG,
				(errmsg("extension \"canary\" found in database \"%s\"; evaluating its rollouts",
						worker_dbname)));
	extension_missing_reported = false;

	foreach(lc, list.rollouts)
	{
		bool		changed = false;

		CHECK_FOR_INTERRUPTS();
		if (!evaluate_rollout(list.evaluate_sql, lfirst(lc), &changed))
			failed_count++;
		else if (changed)
			changed_count++;
	}

	elog(DEBUG1, "canary worker tick in database \"%s\": %d rollouts evaluated, %d changed, %d failed in %ld ms",
		 worker_dbname, list_length(list.rollouts), changed_count,
		 failed_count,
		 TimestampDifferenceMilliseconds(started, GetCurrentTimestamp()));
}

/*
 * Milliseconds until the tick after the one that started at last_tick;
 * zero or less when it is due.
 */
static long
worker_tick_delay(TimestampTz last_tick)
{
	TimestampTz next_tick;

	if (last_tick == 0)
		return 0;
	next_tick = TimestampTzPlusMilliseconds(last_tick,
											canary_evaluation_interval);
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_tick);
}

/*
 * Log the worker's exit.
 */
static void
worker_shutdown(int code, Datum arg)
{
	ereport(LOG,
			(errmsg("canary worker for database \"%s\" stopped",
					worker_dbname ? worker_dbname : "?")));
}

/*
 * Entry point of a worker: evaluates the running and paused rollouts of the database
 * whose OID is main_arg, connected as the role whose OID is in bgw_extra,
 * every canary.evaluation_interval.
 */
void
canary_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	Oid			roleoid;
	MemoryContext loop_context;
	TimestampTz last_tick = 0;

	memcpy(&roleoid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, roleoid, 0);
	set_application_name("canary worker");

	/* Keep the database name for log lines. */
	StartTransactionCommand();
	worker_dbname = MemoryContextStrdup(TopMemoryContext,
										get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	before_shmem_exit(worker_shutdown, (Datum) 0);
	ereport(LOG,
			(errmsg("canary worker started for database \"%s\" with evaluation interval %d ms",
					worker_dbname, canary_evaluation_interval)));

	loop_context = AllocSetContextCreate(TopMemoryContext,
										 "canary worker loop",
										 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		delay = worker_tick_delay(last_tick);

		if (delay > 0)
		{
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 delay, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();

		/* A new interval applies from the start of the last tick. */
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			extension_missing_reported = false;
		}
		if (worker_tick_delay(last_tick) > 0)
			continue;

		last_tick = GetCurrentTimestamp();
		MemoryContextSwitchTo(loop_context);
		worker_tick();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_context);
	}
}
