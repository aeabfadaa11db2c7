/*-------------------------------------------------------------------------
 *
 * canary.h
 *		Settings and limits shared by the canary extension's source files.
 *
 * src/canary.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_H
#define CANARY_H

/* Maximum length of an agent id in bytes; canary.agents enforces it too. */
#define CANARY_AGENT_ID_MAXLEN 255

/* Number of routing buckets: a bucket is a value in [0, 10000). */
#define CANARY_BUCKETS 10000

/* Name of the schema that contains canary's tables, views and types. */
#define CANARY_SCHEMA "canary"

/* search_path that SQL run by canary's C functions executes under. */
#define CANARY_SAFE_SEARCH_PATH "pg_catalog, pg_temp"

/* Setting canary.execution_log_table: the table metrics collection reads. */
extern char *canary_execution_log_table;

/* Background worker settings; see canary.c for their meaning. */
extern char *canary_database;
extern int	canary_evaluation_interval;
extern bool canary_worker_enabled;
extern char *canary_worker_role;

extern void canary_run_with_safe_settings_begin(int *nest_level);
extern void canary_run_with_safe_settings_end(int nest_level);

#endif							/* CANARY_H */
