/*-------------------------------------------------------------------------
 *
 * spi_helpers.c
 *		Thin wrappers around SPI for canary's C functions.
 *
 * Callers connect to SPI themselves and run under the search_path that the
 * SQL function's definition sets, so statements here resolve names the same
 * way whoever calls them.
 *
 * src/spi_helpers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "spi_helpers.h"

/*
 * Run a parameterized statement and check its result code.  isnull may be
 * NULL when no argument is null.  Returns the number of rows processed.
 */
int
canary_spi_execute(const char *sql, int nargs, const Oid *argtypes,
				   const Datum *values, const bool *isnull,
				   int expected_code, long max_rows)
{
	char		nulls[FUNC_MAX_ARGS] = {0};
	int			ret;

	Assert(nargs <= FUNC_MAX_ARGS);
	for (int i = 0; i < nargs; i++)
		nulls[i] = (isnull != NULL && isnull[i]) ? 'n' : ' ';

	ret = SPI_execute_with_args(sql, nargs, (Oid *) argtypes,
								(Datum *) values, nulls, false, max_rows);
	if (ret != expected_code)
		elog(ERROR, "unexpected SPI result %s for: %s",
			 SPI_result_code_string(ret), sql);
	return (int) SPI_processed;
}

/*
 * Return a column (counted from 1) of a row of the last result.
 */
Datum
canary_spi_get(int row, int column, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						 column, isnull);
}

/*
 * Return a column of a row of the last result as text, or NULL.
 */
char *
canary_spi_get_text(int row, int column)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
						column);
}
