/*-------------------------------------------------------------------------
 *
 * routing.c
 *		Route requests between an agent's baseline and canary versions.
 *
 * A request's bucket is the first 4 bytes of SHA-256 over the UTF-8 string
 * "<deployment id>:<hash key>", read as a big-endian unsigned integer,
 * modulo 10000.  The request goes to the canary when bucket / 100.0 is below
 * the rollout's current percentage.  Percentages have at most two decimals,
 * so the test is done exactly in integers: bucket < percentage * 100.  Any
 * client can reproduce the assignment, a key keeps its version while the
 * percentage is unchanged, and a key in the canary at p% stays in it at any
 * larger percentage.
 *
 * Routing cache: each backend keeps, per agent, what routing needs (stable
 * version, and for a running or paused rollout its id, versions and
 * threshold).  A cache hit runs no SQL.  Invariants:
 *
 * - Statement triggers on canary.agents and canary.deployments send a
 *   relcache invalidation for the changed table.  The message is queued at
 *   commit, after the change is visible, and hot standbys replay it from the
 *   commit record.  The callback below empties the whole cache on any such
 *   message.
 * - The first call of each statement processes pending invalidations, so a
 *   statement that starts after a change committed never sees the old split,
 *   even inside a transaction block where no lock is taken.
 * - A miss reads the tables with the latest snapshot, taken after the
 *   invalidations were processed, so the cache is never filled from a
 *   snapshot older than the invalidation it just processed.
 *
 * src/routing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "canary.h"
#include "routing.h"

/* Cached routing state of one agent. */
typedef struct CanaryRouteEntry
{
	char		agent_id[CANARY_AGENT_ID_MAXLEN + 1];	/* hash key */
	text	   *stable_version;
	bool		has_rollout;	/* running or paused rollout */
	pg_uuid_t	deployment_id;
	text	   *baseline_version;
	text	   *canary_version;
	int32		threshold;		/* canary when bucket < threshold */
} CanaryRouteEntry;

/* Agent id to CanaryRouteEntry; NULL until first use or after a reset. */
static HTAB *route_cache = NULL;
static MemoryContext route_cache_context = NULL;

/* Set by the invalidation callback; the next lookup empties the cache. */
static bool route_cache_stale = false;

/* Identifies the statement that last processed invalidations. */
static TimestampTz last_statement_start = 0;
static LocalTransactionId last_local_xid = InvalidLocalTransactionId;

/* Prepared plan that loads one agent's routing state. */
static SPIPlanPtr route_load_plan = NULL;

/* Result row descriptor of canary_route, and the type it describes. */
static TupleDesc route_result_desc = NULL;
static Oid	route_result_type = InvalidOid;

/* SHA-256 digest state, reused for every key. */
static EVP_MD_CTX *sha256_context = NULL;
static EVP_MD *sha256_method = NULL;

/* Relations whose changes empty the cache; looked up when it is filled. */
static Oid	agents_relid = InvalidOid;
static Oid	deployments_relid = InvalidOid;

/* Owner of canary.deployments; a cache miss reads the tables as this role. */
static Oid	tables_owner = InvalidOid;

/*
 * Relcache invalidation callback: marks the cache stale when canary's
 * tables changed, or on a full reset (relid InvalidOid).  Messages for other
 * relations, such as the execution log's statistics updates, keep it.
 */
static void
route_cache_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == agents_relid ||
		relid == deployments_relid)
		route_cache_stale = true;
}

/*
 * Register the invalidation callback.  Called from _PG_init.
 */
void
canary_routing_init(void)
{
	CacheRegisterRelcacheCallback(route_cache_invalidate, (Datum) 0);
}

/*
 * Prepare the SHA-256 state on first use.  OpenSSL allocates it outside
 * PostgreSQL's memory contexts; it lives as long as the backend.
 */
static void
sha256_init_once(void)
{
	if (sha256_context != NULL)
		return;

	sha256_method = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (sha256_method == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not load the SHA-256 implementation of OpenSSL")));
	sha256_context = EVP_MD_CTX_new();
	if (sha256_context == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
}

/*
 * Write the canonical lowercase text form of a UUID (36 characters, no
 * terminator) into out.
 */
static void
format_uuid(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			pos = 0;

	for (int i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[pos++] = '-';
		out[pos++] = hex[uuid->data[i] >> 4];
		out[pos++] = hex[uuid->data[i] & 0x0F];
	}
}

/*
 * Compute the routing bucket of a key under a rollout.  The key is in the
 * server encoding and is hashed as UTF-8.
 */
uint32
canary_routing_bucket(const pg_uuid_t *deployment_id, const char *key,
					  int key_len)
{
	char		id_text[36];
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len;
	const char *utf8_key = key;
	uint32		prefix;

	sha256_init_once();

	/* Hash keys as UTF-8 whatever the database encoding is. */
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		utf8_key = (const char *) pg_server_to_any(key, key_len, PG_UTF8);
		if (utf8_key != key)
			key_len = strlen(utf8_key);
	}

	format_uuid(deployment_id, id_text);
	if (EVP_DigestInit_ex(sha256_context, sha256_method, NULL) != 1 ||
		EVP_DigestUpdate(sha256_context, id_text, sizeof(id_text)) != 1 ||
		EVP_DigestUpdate(sha256_context, ":", 1) != 1 ||
		EVP_DigestUpdate(sha256_context, utf8_key, key_len) != 1 ||
		EVP_DigestFinal_ex(sha256_context, digest, &digest_len) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not compute a SHA-256 digest")));

	prefix = ((uint32) digest[0] << 24) | ((uint32) digest[1] << 16) |
		((uint32) digest[2] << 8) | (uint32) digest[3];
	return prefix % CANARY_BUCKETS;
}

/*
 * Process invalidation messages once per statement.  Statements that take
 * no lock would otherwise not see messages queued by other backends until
 * their transaction ends.
 */
static void
accept_invalidations_once_per_statement(void)
{
	TimestampTz statement_start = GetCurrentStatementStartTimestamp();

	if (statement_start == last_statement_start &&
		MyProc->lxid == last_local_xid)
		return;

	AcceptInvalidationMessages();
	last_statement_start = statement_start;
	last_local_xid = MyProc->lxid;
}

/*
 * Empty the cache if an invalidation arrived, and create it on first use.
 */
static void
route_cache_prepare(void)
{
	HASHCTL		ctl;

	if (route_cache_stale)
	{
		if (route_cache != NULL)
			MemoryContextReset(route_cache_context);
		route_cache = NULL;

		/* The tables may have been dropped and created again. */
		agents_relid = InvalidOid;
		deployments_relid = InvalidOid;
		tables_owner = InvalidOid;
	}
	route_cache_stale = false;

	if (route_cache != NULL)
		return;

	if (route_cache_context == NULL)
		route_cache_context = AllocSetContextCreate(CacheMemoryContext,
													"canary routing cache",
													ALLOCSET_DEFAULT_SIZES);

	ctl.keysize = CANARY_AGENT_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(CanaryRouteEntry);
	ctl.hcxt = route_cache_context;
	route_cache = hash_create("canary routing cache", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * Look up the OIDs of the tables whose changes invalidate the cache, and
 * the role that owns them.
 */
static void
lookup_watched_relations(void)
{
	Oid			namespace_oid = get_namespace_oid(CANARY_SCHEMA, false);
	HeapTuple	tuple;

	agents_relid = get_relname_relid("agents", namespace_oid);
	deployments_relid = get_relname_relid("deployments", namespace_oid);

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(deployments_relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", deployments_relid);
	tables_owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
}

/*
 * Read one agent's routing state into entry, with values copied into
 * context.  Returns false when the agent is not registered.
 */
static bool
route_load(const char *agent_id, CanaryRouteEntry *entry,
		   MemoryContext context)
{
	Datum		arg = CStringGetTextDatum(agent_id);
	Oid			argtype = TEXTOID;
	Snapshot	snapshot;
	int			nest_level;
	int			ret;
	bool		found = false;
	Oid			save_userid;
	int			save_sec_context;

	/*
	 * Read as the owner of canary's tables, so that any role allowed to
	 * execute canary_route can route without privileges on schema canary.
	 * An error restores the caller's identity when the transaction aborts.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(tables_owner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	canary_run_with_safe_settings_begin(&nest_level);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (route_load_plan == NULL)
	{
		SPIPlanPtr	plan;

		plan = SPI_prepare("SELECT a.stable_version, d.id, d.baseline_version, "
						   "d.canary_version, "
						   "(d.current_percentage * 100)::integer "
						   "FROM canary.agents a "
						   "LEFT JOIN canary.deployments d "
						   "ON d.agent_id = a.agent_id "
						   "AND d.status IN ('running', 'paused') "
						   "WHERE a.agent_id = $1",
						   1, &argtype);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		route_load_plan = plan;
	}

	/*
	 * Read with a snapshot taken after the invalidations were processed (see
	 * the file header).  Parallel mode cannot take a new snapshot, so there
	 * the statement's snapshot is used and the caller does not cache.
	 */
	snapshot = IsInParallelMode() ? GetActiveSnapshot() : GetLatestSnapshot();
	ret = SPI_execute_snapshot(route_load_plan, &arg, NULL, snapshot,
							   InvalidSnapshot, true, false, 2);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_snapshot returned %s",
			 SPI_result_code_string(ret));

	if (SPI_processed > 0)
	{
		HeapTuple	tuple = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old_context = MemoryContextSwitchTo(context);
		bool		isnull;
		Datum		value;

		found = true;
		entry->stable_version =
			DatumGetTextPCopy(SPI_getbinval(tuple, desc, 1, &isnull));
		value = SPI_getbinval(tuple, desc, 2, &isnull);
		entry->has_rollout = !isnull;
		if (entry->has_rollout)
		{
			memcpy(&entry->deployment_id, DatumGetUUIDP(value),
				   sizeof(pg_uuid_t));
			entry->baseline_version =
				DatumGetTextPCopy(SPI_getbinval(tuple, desc, 3, &isnull));
			entry->canary_version =
				DatumGetTextPCopy(SPI_getbinval(tuple, desc, 4, &isnull));
			entry->threshold =
				DatumGetInt32(SPI_getbinval(tuple, desc, 5, &isnull));
		}
		MemoryContextSwitchTo(old_context);
	}

	SPI_finish();
	canary_run_with_safe_settings_end(nest_level);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return found;
}

/*
 * Return the routing state of an agent, from the cache when possible.
 * Raises an error for an agent that is not registered.
 */
static CanaryRouteEntry *
route_lookup(const char *agent_id)
{
	static CanaryRouteEntry transient;	/* valid until the next call */
	CanaryRouteEntry *entry;
	bool		found;

	accept_invalidations_once_per_statement();
	route_cache_prepare();

	entry = hash_search(route_cache, agent_id, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	if (!OidIsValid(deployments_relid))
		lookup_watched_relations();

	/* A parallel operation reads with an older snapshot: do not cache it. */
	if (IsInParallelMode())
	{
		entry = &transient;
		found = route_load(agent_id, entry, CurrentMemoryContext);
	}
	else
	{
		CanaryRouteEntry loaded = {0};

		found = route_load(agent_id, &loaded, route_cache_context);
		if (found)
		{
			/*
			 * An invalidation that arrived during the load only sets the
			 * stale flag, so the entry is dropped at the next lookup.
			 */
			entry = hash_search(route_cache, agent_id, HASH_ENTER, NULL);
			memcpy(loaded.agent_id, entry->agent_id, sizeof(loaded.agent_id));
			*entry = loaded;
		}
	}

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" is not registered", agent_id),
				 errhint("Register the agent and its stable version with canary_register_agent().")));
	return entry;
}

/*
 * Return the row descriptor of canary_route's result type, built once per
 * backend and again if the type was created anew (a new OID) since.
 */
static TupleDesc
route_result_descriptor(FunctionCallInfo fcinfo)
{
	Oid			result_type = get_fn_expr_rettype(fcinfo->flinfo);

	if (route_result_desc == NULL || result_type != route_result_type)
	{
		MemoryContext old_context;
		TupleDesc	desc;

		if (!OidIsValid(result_type))
			elog(ERROR, "could not determine the result type of canary_route");
		old_context = MemoryContextSwitchTo(TopMemoryContext);
		desc = lookup_rowtype_tupdesc_copy(result_type, -1);
		MemoryContextSwitchTo(old_context);
		if (desc->natts != 2 || TupleDescAttr(desc, 0)->atttypid != TEXTOID ||
			TupleDescAttr(desc, 1)->atttypid != BOOLOID)
			elog(ERROR, "result type of canary_route is not (text, boolean)");
		if (route_result_desc != NULL)
			FreeTupleDesc(route_result_desc);
		route_result_desc = desc;
		route_result_type = result_type;
	}
	return route_result_desc;
}

/*
 * SQL function canary_route(agent_id, request_id, user_id): the version that
 * serves a request and whether it is the canary.  The hash key is the user id
 * when given and not empty, else the request id.
 */
PG_FUNCTION_INFO_V1(canary_route);
Datum
canary_route(PG_FUNCTION_ARGS)
{
	char		agent_id[CANARY_AGENT_ID_MAXLEN + 1];
	text	   *agent_text;
	text	   *key_text;
	int			agent_len;
	CanaryRouteEntry *entry;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		is_canary = false;

	/* Check the arguments. */
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("agent id must not be null")));
	agent_text = PG_GETARG_TEXT_PP(0);
	agent_len = VARSIZE_ANY_EXHDR(agent_text);

	if (!PG_ARGISNULL(2) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)) > 0)
		key_text = PG_GETARG_TEXT_PP(2);
	else if (!PG_ARGISNULL(1))
		key_text = PG_GETARG_TEXT_PP(1);
	else
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("request id must not be null when no user id is given"),
				 errhint("Pass a request id, or a user id to keep each user on one version.")));

	if (agent_len == 0 || agent_len > CANARY_AGENT_ID_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("agent \"%s\" is not registered",
						text_to_cstring(agent_text)),
				 errhint("Agent ids have 1 to %d bytes; register agents with canary_register_agent().",
						 CANARY_AGENT_ID_MAXLEN)));
	memcpy(agent_id, VARDATA_ANY(agent_text), agent_len);
	agent_id[agent_len] = '\0';

	/* Route. */
	entry = route_lookup(agent_id);
	if (entry->has_rollout)
	{
		uint32		bucket;

		bucket = canary_routing_bucket(&entry->deployment_id,
									   VARDATA_ANY(key_text),
									   VARSIZE_ANY_EXHDR(key_text));
		is_canary = (int64) bucket < (int64) entry->threshold;
		values[0] = PointerGetDatum(is_canary ? entry->canary_version :
									entry->baseline_version);
	}
	else
		values[0] = PointerGetDatum(entry->stable_version);
	values[1] = BoolGetDatum(is_canary);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(route_result_descriptor(fcinfo),
													  values, nulls)));
}

/*
 * SQL function canary_bucket(deployment_id, key): the routing bucket of a
 * key under a rollout, in [0, 10000).
 */
PG_FUNCTION_INFO_V1(canary_bucket);
Datum
canary_bucket(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *deployment_id = PG_GETARG_UUID_P(0);
	text	   *key = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT32((int32) canary_routing_bucket(deployment_id,
												  VARDATA_ANY(key),
												  VARSIZE_ANY_EXHDR(key)));
}

/*
 * Statement trigger on canary.agents and canary.deployments: queues a
 * relcache invalidation of the changed table, which every backend's routing
 * cache (and a hot standby's, through the commit record) processes once the
 * change commits.
 */
PG_FUNCTION_INFO_V1(canary_routing_invalidate_trigger);
Datum
canary_routing_invalidate_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function can only be called as a trigger")));

	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}
