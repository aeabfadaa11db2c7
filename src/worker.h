/*-------------------------------------------------------------------------
 *
 * worker.h
 *		Background workers that evaluate running rollouts on a timer.
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_WORKER_H
#define CANARY_WORKER_H

#include "postgres.h"

#include "utils/guc.h"

extern void canary_worker_register_launcher(void);
extern bool canary_worker_check_database_list(char **newval, void **extra,
											  GucSource source);

extern PGDLLEXPORT void canary_launcher_main(Datum main_arg);
extern PGDLLEXPORT void canary_worker_main(Datum main_arg);

#endif							/* CANARY_WORKER_H */
