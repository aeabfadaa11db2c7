--
-- Statistical tests
--
-- "greater" means that the canary values, or the canary error odds, are
-- larger than the baseline ones.  Degenerate input (an empty sample, all
-- values equal, no errors at all) gives a p-value of 1, never NaN.
--

CREATE FUNCTION canary_mann_whitney(
	canary double precision[],
	baseline double precision[],
	alternative text DEFAULT 'two-sided',
	OUT u double precision,
	OUT z double precision,
	OUT p_value double precision,
	OUT p_exact double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'canary_mann_whitney'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_mann_whitney(double precision[], double precision[], text) IS
'Mann-Whitney U test of canary against baseline values: U of the canary sample, continuity-corrected z, its tie-corrected p-value, and the exact p-value when both samples have fewer than 50 values and no ties';

CREATE FUNCTION canary_hodges_lehmann(
	canary double precision[],
	baseline double precision[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'canary_hodges_lehmann'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_hodges_lehmann(double precision[], double precision[]) IS
'Hodges-Lehmann shift: median of all differences canary - baseline; NULL when a sample is empty';

CREATE FUNCTION canary_fisher_exact(
	canary_errors bigint,
	canary_requests bigint,
	baseline_errors bigint,
	baseline_requests bigint,
	alternative text DEFAULT 'two-sided',
	OUT p_value double precision)
RETURNS double precision
AS 'MODULE_PATHNAME', 'canary_fisher_exact'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_fisher_exact(bigint, bigint, bigint, bigint, text) IS
'Fisher''s exact test of the canary error rate against the baseline error rate, as R''s fisher.test';

CREATE FUNCTION canary_two_proportion_z(
	canary_errors bigint,
	canary_requests bigint,
	baseline_errors bigint,
	baseline_requests bigint,
	alternative text DEFAULT 'two-sided',
	OUT z double precision,
	OUT p_value double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'canary_two_proportion_z'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_two_proportion_z(bigint, bigint, bigint, bigint, text) IS
'Two-proportion z-test with pooled variance: z of the canary error rate minus the baseline error rate, and its p-value';

--
-- Sequential evidence
--

CREATE FUNCTION canary_sequential_evidence(
	canary_events bigint[],
	canary_requests bigint[],
	baseline_events bigint[],
	baseline_requests bigint[],
	odds_ratios double precision[] DEFAULT NULL,
	weights double precision[] DEFAULT NULL,
	OUT log_evidence double precision,
	OUT evidence double precision)
RETURNS record
AS 'MODULE_PATHNAME', 'canary_sequential_evidence'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION canary_sequential_evidence(bigint[], bigint[], bigint[], bigint[], double precision[], double precision[]) IS
'Evidence that the canary has higher event odds than the baseline over time buckets, one 2x2 table per array position: the mixture over odds ratios (default 1.1 to 30, equal weights, scaled to sum 1) of products of Fisher noncentral hypergeometric likelihood ratios; a test martingale, so it reaches 1/a with probability at most a when the canary is no worse';
