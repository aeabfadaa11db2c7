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
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "spi_helpers.h"

/* Key of a kept statement: its text and cursor options. */
typedef struct PlanKey
{
	const char *sql;			/* a copy in TopMemoryContext once entered */
	int			cursor_options;
} PlanKey;

/* A prepared statement kept for the life of the backend. */
typedef struct PlanCacheEntry
{
	PlanKey		key;
	SPIPlanPtr	plan;
} PlanCacheEntry;

static HTAB *plan_cache = NULL;

static uint32
plan_key_hash(const void *key, Size keysize)
{
	const PlanKey *plan_key = (const PlanKey *) key;

	return string_hash(plan_key->sql, strlen(plan_key->sql) + 1) ^
		(uint32) plan_key->cursor_options;
}

static int
plan_key_match(const void *key1, const void *key2, Size keysize)
{
	const PlanKey *a = (const PlanKey *) key1;
	const PlanKey *b = (const PlanKey *) key2;

	if (a->cursor_options != b->cursor_options)
		return 1;
	return strcmp(a->sql, b->sql);
}

/*
 * Return the kept plan of a statement, preparing it on first use.  Every
 * caller passes the same argument types with the same text, so the text
 * and the cursor options are the key.  The plan cache replans when a table
 * the statement reads changes, and when the search_path differs from the
 * one it was planned under.
 */
static SPIPlanPtr
kept_plan(const char *sql, int nargs, const Oid *argtypes, int cursor_options)
{
	PlanKey		key = {sql, cursor_options};
	PlanCacheEntry *entry;
	SPIPlanPtr	plan;
	bool		found;

	if (plan_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PlanKey);
		ctl.entrysize = sizeof(PlanCacheEntry);
		ctl.hash = plan_key_hash;
		ctl.match = plan_key_match;
		plan_cache = hash_create("canary statement plans", 64, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE);
	}

	entry = hash_search(plan_cache, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->plan;

	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, cursor_options);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed with %s for: %s",
			 SPI_result_code_string(SPI_result), sql);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");

	key.sql = MemoryContextStrdup(TopMemoryContext, sql);
	entry = hash_search(plan_cache, &key, HASH_ENTER, &found);
	entry->plan = plan;
	return plan;
}

/*
 * Return the kept plan of a statement that is executed, not opened as a
 * cursor.
 */
SPIPlanPtr
canary_spi_plan(const char *sql, int nargs, const Oid *argtypes)
{
	return kept_plan(sql, nargs, argtypes, 0);
}

/*
 * Fill SPI's null flags from an optional array of booleans.
 */
static void
fill_nulls(char *nulls, int nargs, const bool *isnull)
{
	Assert(nargs <= FUNC_MAX_ARGS);
	for (int i = 0; i < nargs; i++)
		nulls[i] = (isnull != NULL && isnull[i]) ? 'n' : ' ';
}

/*
 * Run a parameterized statement through its kept plan and check its result
 * code.  isnull may be NULL when no argument is null.  Returns the number
 * of rows processed.
 */
int
canary_spi_execute(const char *sql, int nargs, const Oid *argtypes,
				   const Datum *values, const bool *isnull,
				   int expected_code, long max_rows)
{
	char		nulls[FUNC_MAX_ARGS] = {0};
	int			ret;

	fill_nulls(nulls, nargs, isnull);
	ret = SPI_execute_plan(canary_spi_plan(sql, nargs, argtypes),
						   (Datum *) values, nulls, false, max_rows);
	if (ret != expected_code)
		elog(ERROR, "unexpected SPI result %s for: %s",
			 SPI_result_code_string(ret), sql);
	return (int) SPI_processed;
}

/*
 * Open a cursor over a parameterized query through its kept plan.
 * plan_choice is CURSOR_OPT_GENERIC_PLAN, CURSOR_OPT_CUSTOM_PLAN or 0 to
 * let the plan cache choose.
 */
Portal
canary_spi_cursor_open(const char *sql, int nargs, const Oid *argtypes,
					   const Datum *values, const bool *isnull,
					   int plan_choice)
{
	char		nulls[FUNC_MAX_ARGS] = {0};

	fill_nulls(nulls, nargs, isnull);
	return SPI_cursor_open(NULL,
						   kept_plan(sql, nargs, argtypes,
									 CURSOR_OPT_NO_SCROLL | plan_choice),
						   (Datum *) values, nulls, false);
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
