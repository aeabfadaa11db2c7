/*-------------------------------------------------------------------------
 *
 * logscan.h
 *		Direct index range scans of the execution log.
 *
 * src/logscan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_LOGSCAN_H
#define CANARY_LOGSCAN_H

#include "datatype/timestamp.h"

typedef struct LogIndex LogIndex;
typedef struct LogIndexScan LogIndexScan;

/* Return the class of a row's status, which is NULL for a NULL status. */
typedef int (*LogStatusClassifier) (const void *argument, const text *status);

extern LogIndex *canary_log_index_open(Oid relid, const char *const *columns,
									   int column_count);
extern void canary_log_index_close(LogIndex *log_index);
extern LogIndexScan *canary_log_index_begin(LogIndex *log_index,
											const char *agent_id,
											const char *version,
											TimestampTz from, TimestampTz to);
extern int	canary_log_index_fetch(LogIndexScan *scan, int max_rows,
								   LogStatusClassifier classify,
								   const void *argument,
								   TimestampTz *timestamps, int *classes,
								   double *values, bool *nulls);
extern void canary_log_index_end(LogIndexScan *scan);

#endif							/* CANARY_LOGSCAN_H */
