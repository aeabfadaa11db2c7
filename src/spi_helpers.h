/*-------------------------------------------------------------------------
 *
 * spi_helpers.h
 *		Thin wrappers around SPI for canary's C functions.
 *
 * src/spi_helpers.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_SPI_HELPERS_H
#define CANARY_SPI_HELPERS_H

#include "executor/spi.h"

extern int	canary_spi_execute(const char *sql, int nargs, const Oid *argtypes,
							   const Datum *values, const bool *isnull,
							   int expected_code, long max_rows);
extern SPIPlanPtr canary_spi_plan(const char *sql, int nargs,
								  const Oid *argtypes);
extern Portal canary_spi_cursor_open(const char *sql, int nargs,
									 const Oid *argtypes, const Datum *values,
									 const bool *isnull, int plan_choice);
extern Datum canary_spi_get(int row, int column, bool *isnull);
extern char *canary_spi_get_text(int row, int column);

#endif							/* CANARY_SPI_HELPERS_H */
