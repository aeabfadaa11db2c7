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

extern LogIndex *canary_log_index_open(Oid relid, const char *const *columns,
									   int column_count);
extern void canary_log_index_close(LogIndex *log_index);
extern LogIndexScan *canary_log_index_begin(LogIndex *log_index,
											const char *agent_id,
											const char *version,
											TimestampTz from, TimestampTz to);
extern bool canary_log_index_next(LogIndexScan *scan, TimestampTz *timestamp,
								  text **status, double *values, bool *nulls);
extern void canary_log_index_end(LogIndexScan *scan);

#endif							/* CANARY_LOGSCAN_H */
