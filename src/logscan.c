/*-------------------------------------------------------------------------
 *
 * logscan.c
 *		Direct index range scans of the execution log.
 *
 * A metrics collection reads each version's rows of one agent in a time
 * range.  When the execution log is a plain table with a btree index on
 * (agent_id, version, "timestamp"), the rows are read here through the
 * index access method, without a query.  So no plan, portal or executor
 * node is set up, and no row passes through a projection.  When the index
 * also contains every other column read, rows on all-visible pages come from
 * the index tuples alone, as in an index-only scan.  Other rows are checked
 * against the heap, or read from it.
 *
 * canary_log_index_open returns NULL whenever the query would behave
 * differently from the scan.  That is the case without a suitable index, for
 * a caller that the executor's permission check rejects, under row-level
 * security, with inheritance children, under serializable isolation (which
 * needs the predicate locks a query takes), and for another session's
 * temporary table.  The caller then reads with SQL, which raises the error
 * or applies the policy.
 *
 * src/logscan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "logscan.h"

/* Key columns of the index, in order. */
#define KEY_AGENT 0
#define KEY_VERSION 1
#define KEY_TIMESTAMP 2
#define KEY_COLUMNS 3

/* Input types of the key columns' operator classes. */
static const Oid key_types[KEY_COLUMNS] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};

/*
 * Scan keys of a range scan: agent_id = $1, version = $2, "timestamp" > $3
 * and "timestamp" <= $4.
 */
#define SCAN_KEYS 4

static const struct
{
	int			key;			/* KEY_AGENT, KEY_VERSION or KEY_TIMESTAMP */
	StrategyNumber strategy;
}			scan_keys[SCAN_KEYS] = {
	{KEY_AGENT, BTEqualStrategyNumber},
	{KEY_VERSION, BTEqualStrategyNumber},
	{KEY_TIMESTAMP, BTGreaterStrategyNumber},
	{KEY_TIMESTAMP, BTLessEqualStrategyNumber},
};

/* A column the scan returns. */
typedef struct LogColumn
{
	AttrNumber	heap_attno;
	int			index_position; /* position in the index tuple from 0, or -1 */
	Oid			type;			/* base type */
} LogColumn;

/* The execution log and the index that a collection's scans read. */
struct LogIndex
{
	Relation	heap;
	Relation	index;
	Snapshot	snapshot;
	bool		index_only;		/* the index contains every column returned */
	Oid			key_procs[SCAN_KEYS];	/* operator functions of scan_keys */
	Oid			key_collations[SCAN_KEYS];
	bool		bytewise_equality;	/* agent and version compare as bytes */
	LogColumn	timestamp;
	LogColumn	status;
	int			column_count;
	LogColumn  *columns;		/* the numeric columns, as float8 */
	AttrNumber	last_heap_attno;	/* the highest heap column returned */
};

/* One range scan of one version. */
struct LogIndexScan
{
	LogIndex   *log_index;
	IndexScanDesc desc;
	TupleTableSlot *slot;		/* heap rows, or visibility checks */
	Buffer		vm_buffer;
	MemoryContext scratch;		/* conversions of the current batch */
	Datum	   *index_values;
	bool	   *index_nulls;
};

/*
 * Find a table column by name: its number, base type and collation.  Return
 * false when the table has no such column.
 */
static bool
find_column(Relation heap, const char *name, LogColumn *column,
			Oid *collation)
{
	TupleDesc	desc = RelationGetDescr(heap);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute attribute = TupleDescAttr(desc, i);

		if (attribute->attisdropped ||
			strcmp(NameStr(attribute->attname), name) != 0)
			continue;
		column->heap_attno = attribute->attnum;
		column->index_position = -1;
		column->type = getBaseType(attribute->atttypid);
		if (collation != NULL)
			*collation = attribute->attcollation;
		return true;
	}
	return false;
}

/*
 * Return the function of an index key column's btree operator for a
 * strategy, comparing the column's type with itself, or InvalidOid.
 */
static Oid
key_operator_proc(Relation index, int key, StrategyNumber strategy)
{
	Oid			operator = get_opfamily_member(index->rd_opfamily[key],
											   key_types[key], key_types[key],
											   strategy);

	return OidIsValid(operator) ? get_opcode(operator) : InvalidOid;
}

/*
 * Return the default btree operator family of a key column's type.  Built-in
 * types keep their default operator classes, so each backend looks them up
 * once.
 */
static Oid
default_btree_family(int key)
{
	static Oid	families[KEY_COLUMNS];

	if (!OidIsValid(families[key]))
		families[key] = get_opclass_family(GetDefaultOpClass(key_types[key],
															 BTREE_AM_OID));
	return families[key];
}

/*
 * Whether index can serve the scans.  It must be a valid btree index without
 * predicate whose first key columns are agent_id, version and "timestamp" in
 * ascending order.  Their types' default operator families and the columns'
 * own collations make its operators mean the same as the query's.  Fill in
 * the scan keys' operators on success.
 */
static bool
index_is_suitable(LogIndex *log_index, Relation index,
				  const LogColumn *keys, const Oid *collations)
{
	Form_pg_index form = index->rd_index;

	if (index->rd_rel->relam != BTREE_AM_OID || !form->indisvalid ||
		form->indcheckxmin ||
		IndexRelationGetNumberOfKeyAttributes(index) < KEY_COLUMNS ||
		RelationGetIndexPredicate(index) != NIL)
		return false;
	for (int key = 0; key < KEY_COLUMNS; key++)
	{
		if (form->indkey.values[key] != keys[key].heap_attno ||
			index->rd_opcintype[key] != key_types[key] ||
			index->rd_opfamily[key] != default_btree_family(key) ||
			(index->rd_indoption[key] & INDOPTION_DESC) != 0 ||
			index->rd_indcollation[key] != collations[key])
			return false;
	}

	for (int i = 0; i < SCAN_KEYS; i++)
	{
		log_index->key_procs[i] = key_operator_proc(index, scan_keys[i].key,
													scan_keys[i].strategy);
		if (!OidIsValid(log_index->key_procs[i]))
			return false;
		log_index->key_collations[i] = collations[scan_keys[i].key];
	}
	log_index->bytewise_equality =
		(!OidIsValid(collations[KEY_AGENT]) ||
		 get_collation_isdeterministic(collations[KEY_AGENT])) &&
		(!OidIsValid(collations[KEY_VERSION]) ||
		 get_collation_isdeterministic(collations[KEY_VERSION]));
	return true;
}

/*
 * Find the position of a column in the index, if the index can return it.
 */
static void
locate_in_index(Relation index, LogColumn *column)
{
	int			count = IndexRelationGetNumberOfAttributes(index);

	column->index_position = -1;
	for (int i = 0; i < count; i++)
		if (index->rd_index->indkey.values[i] == column->heap_attno &&
			index_can_return(index, i + 1))
		{
			column->index_position = i;
			return;
		}
}

/*
 * Return whether a query of the columns read would return every row.  The
 * executor's permission check must let the caller select them, with any
 * ExecutorCheckPerms_hook that an audit or label module installs, and no
 * row-level security policy may apply.
 */
static bool
query_would_read_all(const LogIndex *log_index, const LogColumn *keys)
{
	RangeTblEntry *entry = makeNode(RangeTblEntry);
	Oid			relid = RelationGetRelid(log_index->heap);

#define SELECTED(attno) ((attno) - FirstLowInvalidHeapAttributeNumber)

	entry->rtekind = RTE_RELATION;
	entry->relid = relid;
	entry->relkind = RELKIND_RELATION;
	entry->rellockmode = AccessShareLock;
	entry->requiredPerms = ACL_SELECT;
	for (int key = 0; key < KEY_COLUMNS; key++)
		entry->selectedCols = bms_add_member(entry->selectedCols,
											 SELECTED(keys[key].heap_attno));
	entry->selectedCols = bms_add_member(entry->selectedCols,
										 SELECTED(log_index->status.heap_attno));
	for (int i = 0; i < log_index->column_count; i++)
		entry->selectedCols =
			bms_add_member(entry->selectedCols,
						   SELECTED(log_index->columns[i].heap_attno));

#undef SELECTED

	return ExecCheckRTPerms(list_make1(entry), false) &&
		check_enable_rls(relid, InvalidOid, true) != RLS_ENABLED;
}

/*
 * Prepare direct scans of the execution log relid that return "timestamp",
 * status and the numeric columns named.  Return NULL when SQL must read the
 * table instead (see the comment at the top of the file).  The caller has
 * locked the table.  The scans of one LogIndex share a snapshot, taken as a
 * statement of the calling function would take it.
 */
LogIndex *
canary_log_index_open(Oid relid, const char *const *columns, int column_count)
{
	LogIndex   *log_index;
	LogColumn	keys[KEY_COLUMNS];
	Oid			collations[KEY_COLUMNS];
	List	   *index_oids;
	ListCell   *cell;

	if (IsolationIsSerializable() ||
		get_rel_relkind(relid) != RELKIND_RELATION)
		return NULL;

	log_index = palloc0(sizeof(LogIndex));
	log_index->heap = table_open(relid, AccessShareLock);

	/*
	 * A query would also read a child table created since the caller checked
	 * for children, so such a table is read with SQL.
	 */
	if (RELATION_IS_OTHER_TEMP(log_index->heap) || has_subclass(relid) ||
		!find_column(log_index->heap, "agent_id", &keys[KEY_AGENT],
					 &collations[KEY_AGENT]) ||
		!find_column(log_index->heap, "version", &keys[KEY_VERSION],
					 &collations[KEY_VERSION]) ||
		!find_column(log_index->heap, "timestamp", &keys[KEY_TIMESTAMP],
					 &collations[KEY_TIMESTAMP]) ||
		!find_column(log_index->heap, "status", &log_index->status, NULL))
	{
		table_close(log_index->heap, AccessShareLock);
		return NULL;
	}
	log_index->timestamp = keys[KEY_TIMESTAMP];
	log_index->column_count = column_count;
	log_index->columns = palloc(sizeof(LogColumn) * Max(column_count, 1));
	for (int i = 0; i < column_count; i++)
		if (!find_column(log_index->heap, columns[i], &log_index->columns[i],
						 NULL))
		{
			table_close(log_index->heap, AccessShareLock);
			return NULL;
		}

	if (!query_would_read_all(log_index, keys))
	{
		table_close(log_index->heap, AccessShareLock);
		return NULL;
	}

	index_oids = RelationGetIndexList(log_index->heap);
	foreach(cell, index_oids)
	{
		Relation	index = index_open(lfirst_oid(cell), AccessShareLock);

		if (index_is_suitable(log_index, index, keys, collations))
		{
			log_index->index = index;
			break;
		}
		index_close(index, AccessShareLock);
	}
	list_free(index_oids);
	if (log_index->index == NULL)
	{
		table_close(log_index->heap, AccessShareLock);
		return NULL;
	}

	locate_in_index(log_index->index, &log_index->timestamp);
	locate_in_index(log_index->index, &log_index->status);
	log_index->index_only = log_index->timestamp.index_position >= 0 &&
		log_index->status.index_position >= 0;
	log_index->last_heap_attno = Max(log_index->timestamp.heap_attno,
									 log_index->status.heap_attno);
	for (int i = 0; i < column_count; i++)
	{
		locate_in_index(log_index->index, &log_index->columns[i]);
		if (log_index->columns[i].index_position < 0)
			log_index->index_only = false;
		log_index->last_heap_attno = Max(log_index->last_heap_attno,
										 log_index->columns[i].heap_attno);
	}

	/* Make the function's own writes visible, as SPI does for a statement. */
	CommandCounterIncrement();
	log_index->snapshot = RegisterSnapshot(GetTransactionSnapshot());
	return log_index;
}

/*
 * Release what canary_log_index_open took.  The locks stay until the end of
 * the transaction, as a query's do.
 */
void
canary_log_index_close(LogIndex *log_index)
{
	UnregisterSnapshot(log_index->snapshot);
	index_close(log_index->index, NoLock);
	table_close(log_index->heap, NoLock);
}

/*
 * Compare two text values for equality byte by byte, which is what texteq
 * does under a deterministic collation.  The index tuple's values are short
 * and inline, so this skips texteq's detoasting and collation lookup, which
 * the scan would otherwise pay for on every row.  Compressed or external
 * values go to texteq itself.
 */
static Datum
text_equal_bytes(PG_FUNCTION_ARGS)
{
	struct varlena *left = (struct varlena *) PG_GETARG_POINTER(0);
	struct varlena *right = (struct varlena *) PG_GETARG_POINTER(1);
	Size		length;

	if (VARATT_IS_COMPRESSED(left) || VARATT_IS_EXTERNAL(left) ||
		VARATT_IS_COMPRESSED(right) || VARATT_IS_EXTERNAL(right))
		return DirectFunctionCall2Coll(texteq, PG_GET_COLLATION(),
									   PG_GETARG_DATUM(0), PG_GETARG_DATUM(1));
	length = VARSIZE_ANY_EXHDR(left);
	PG_RETURN_BOOL(length == VARSIZE_ANY_EXHDR(right) &&
				   memcmp(VARDATA_ANY(left), VARDATA_ANY(right), length) == 0);
}

/*
 * Start a scan of one version's rows in the range (from, to], in "timestamp"
 * order.
 */
LogIndexScan *
canary_log_index_begin(LogIndex *log_index, const char *agent_id,
					   const char *version, TimestampTz from, TimestampTz to)
{
	LogIndexScan *scan = palloc0(sizeof(LogIndexScan));
	ScanKeyData keys[SCAN_KEYS];
	Datum		arguments[SCAN_KEYS];

	arguments[0] = CStringGetTextDatum(agent_id);
	arguments[1] = CStringGetTextDatum(version);
	arguments[2] = TimestampTzGetDatum(from);
	arguments[3] = TimestampTzGetDatum(to);
	for (int i = 0; i < SCAN_KEYS; i++)
	{
		int			key = scan_keys[i].key;

		if (key != KEY_TIMESTAMP && log_index->bytewise_equality)
		{
			FmgrInfo	equal = {0};

			equal.fn_addr = text_equal_bytes;
			equal.fn_nargs = 2;
			equal.fn_strict = true;
			equal.fn_mcxt = CurrentMemoryContext;
			ScanKeyEntryInitializeWithInfo(&keys[i], 0, key + 1,
										   scan_keys[i].strategy,
										   key_types[key],
										   log_index->key_collations[i],
										   &equal, arguments[i]);
		}
		else
			ScanKeyEntryInitialize(&keys[i], 0, key + 1, scan_keys[i].strategy,
								   key_types[key],
								   log_index->key_collations[i],
								   log_index->key_procs[i], arguments[i]);
	}

	scan->log_index = log_index;
	scan->vm_buffer = InvalidBuffer;
	scan->slot = table_slot_create(log_index->heap, NULL);
	scan->scratch = AllocSetContextCreate(CurrentMemoryContext,
										  "canary log batch",
										  ALLOCSET_SMALL_SIZES);
	scan->index_values = palloc(sizeof(Datum) *
								IndexRelationGetNumberOfAttributes(log_index->index));
	scan->index_nulls = palloc(sizeof(bool) *
							   IndexRelationGetNumberOfAttributes(log_index->index));
	scan->desc = index_beginscan(log_index->heap, log_index->index,
								 log_index->snapshot, SCAN_KEYS, 0);
	scan->desc->xs_want_itup = log_index->index_only;
	index_rescan(scan->desc, keys, SCAN_KEYS, NULL, 0);
	return scan;
}

/*
 * Convert a numeric value to float8 as a cast to double precision does.
 */
static double
value_to_float8(Oid type, Datum value)
{
	switch (type)
	{
		case INT2OID:
			return (double) DatumGetInt16(value);
		case INT4OID:
			return (double) DatumGetInt32(value);
		case INT8OID:
			return (double) DatumGetInt64(value);
		case FLOAT4OID:
			return (double) DatumGetFloat4(value);
		case FLOAT8OID:
			return DatumGetFloat8(value);
		case NUMERICOID:
			return DatumGetFloat8(DirectFunctionCall1(numeric_float8, value));
	}
	elog(ERROR, "unexpected type %u of an execution log column", type);
	return 0.0;					/* keep the compiler quiet */
}

/*
 * Find the next row of the scan that is visible to the snapshot, and return
 * its values and nulls: the index tuple's when the index contains every
 * column returned, the heap row's otherwise.  Return false at the end of
 * the range.
 */
static bool
next_visible_row(LogIndexScan *scan, Datum **values, bool **nulls)
{
	LogIndex   *log_index = scan->log_index;
	IndexScanDesc desc = scan->desc;

	if (!log_index->index_only)
	{
		if (!index_getnext_slot(desc, ForwardScanDirection, scan->slot))
			return false;
		slot_getsomeattrs(scan->slot, log_index->last_heap_attno);
		*values = scan->slot->tts_values;
		*nulls = scan->slot->tts_isnull;
		return true;
	}

	for (;;)
	{
		ItemPointer tid = index_getnext_tid(desc, ForwardScanDirection);

		if (tid == NULL)
			return false;

		/*
		 * A row on a page whose rows are all visible to everyone needs no
		 * heap access.  For other rows, the heap fetch checks whether the
		 * row is visible to the snapshot.
		 */
		if (VM_ALL_VISIBLE(log_index->heap, ItemPointerGetBlockNumber(tid),
						   &scan->vm_buffer))
			break;
		if (index_fetch_heap(desc, scan->slot))
		{
			ExecClearTuple(scan->slot);
			break;
		}
	}
	index_deform_tuple(desc->xs_itup, desc->xs_itupdesc,
					   scan->index_values, scan->index_nulls);
	*values = scan->index_values;
	*nulls = scan->index_nulls;
	return true;
}

/*
 * Read up to max_rows more rows of the scan that are visible to the
 * snapshot.  Row i gets timestamps[i], the class that classify returns for
 * its status in classes[i], and its numeric columns as float8 at
 * values[i * column_count] and nulls[i * column_count].  A status is only
 * valid during its classify call, because the scan's next page replaces it.
 * Return the number of rows read, fewer than max_rows only at the end of
 * the range.
 */
int
canary_log_index_fetch(LogIndexScan *scan, int max_rows,
					   LogStatusClassifier classify, const void *argument,
					   TimestampTz *timestamps, int *classes,
					   double *values, bool *nulls)
{
	LogIndex   *log_index = scan->log_index;
	bool		from_index = log_index->index_only;
	int			count = log_index->column_count;
	int			timestamp_position;
	int			status_position;
	int		   *positions = palloc(sizeof(int) * Max(count, 1));
	MemoryContext old_context;
	int			rows = 0;

	/* Where each column is in the values of a row. */
	timestamp_position = from_index ? log_index->timestamp.index_position :
		log_index->timestamp.heap_attno - 1;
	status_position = from_index ? log_index->status.index_position :
		log_index->status.heap_attno - 1;
	for (int i = 0; i < count; i++)
		positions[i] = from_index ? log_index->columns[i].index_position :
			log_index->columns[i].heap_attno - 1;

	/*
	 * The index access method allocates what its scan keeps in the current
	 * context, so only the conversions of a row run in the scratch context.
	 */
	MemoryContextReset(scan->scratch);
	while (rows < max_rows)
	{
		Datum	   *row_values;
		bool	   *row_nulls;

		CHECK_FOR_INTERRUPTS();
		if (!next_visible_row(scan, &row_values, &row_nulls))
			break;
		old_context = MemoryContextSwitchTo(scan->scratch);
		timestamps[rows] = DatumGetTimestampTz(row_values[timestamp_position]);
		classes[rows] = classify(argument, row_nulls[status_position] ? NULL :
								 DatumGetTextPP(row_values[status_position]));
		for (int i = 0; i < count; i++)
		{
			int			cell = rows * count + i;

			nulls[cell] = row_nulls[positions[i]];
			values[cell] = nulls[cell] ? 0.0 :
				value_to_float8(log_index->columns[i].type,
								row_values[positions[i]]);
		}
		MemoryContextSwitchTo(old_context);
		rows++;
	}
	pfree(positions);
	return rows;
}

/*
 * End a scan and free its memory and buffers.
 */
void
canary_log_index_end(LogIndexScan *scan)
{
	index_endscan(scan->desc);
	ExecDropSingleTupleTableSlot(scan->slot);
	if (BufferIsValid(scan->vm_buffer))
		ReleaseBuffer(scan->vm_buffer);
	MemoryContextDelete(scan->scratch);
	pfree(scan->index_values);
	pfree(scan->index_nulls);
	pfree(scan);
}
