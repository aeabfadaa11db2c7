--
-- Statistics: the reference vectors, published examples, ties, empty and
-- single-value samples, large samples and argument checks.
--
-- Each numeric check is a query that lists the failing cases with the
-- computed and expected values, so it returns no rows when all pass.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS canary;
RESET client_min_messages;

-- Whether got agrees with expected to a relative 1e-9.  NULL, NaN and
-- infinity never agree.
CREATE FUNCTION pg_temp.close_to(got float8, expected float8) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
	SELECT coalesce(abs(got - expected) <= 1e-9 * abs(expected), false)
$$;

-- The SQLSTATE, message and hint of the error a statement raises.
CREATE FUNCTION pg_temp.error_of(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	message text;
	hint text;
BEGIN
	EXECUTE statement;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		hint = PG_EXCEPTION_HINT;
	RETURN state || ': ' || message || coalesce(' HINT: ' || nullif(hint, ''), '');
END
$$;

--
-- Reference vectors
--

\getenv vectors_dir CANARY_VECTORS_DIR
\set stats_file :vectors_dir '/statistics.json'
CREATE TEMP TABLE stats_vectors AS
SELECT pg_read_file(:'stats_file')::jsonb AS doc;

CREATE TEMP TABLE mw_vectors AS
SELECT c->>'name' AS name,
	ARRAY(SELECT v::float8 FROM jsonb_array_elements_text(c->'canary')
		  WITH ORDINALITY AS e(v, i) ORDER BY i) AS canary,
	ARRAY(SELECT v::float8 FROM jsonb_array_elements_text(c->'baseline')
		  WITH ORDINALITY AS e(v, i) ORDER BY i) AS baseline,
	c AS expected
FROM stats_vectors, jsonb_array_elements(doc->'mann_whitney_cases') AS c;

CREATE TEMP TABLE proportion_vectors AS
SELECT c->>'name' AS name,
	(c->>'canary_errors')::bigint AS canary_errors,
	(c->>'canary_requests')::bigint AS canary_requests,
	(c->>'baseline_errors')::bigint AS baseline_errors,
	(c->>'baseline_requests')::bigint AS baseline_requests,
	c AS expected
FROM stats_vectors, jsonb_array_elements(doc->'proportion_cases') AS c;

-- The number of cases and of values checked below, so that a case that
-- silently drops out shows up here.
SELECT count(*) AS mann_whitney_cases,
	sum(cardinality(canary) + cardinality(baseline)) AS sample_values
FROM mw_vectors;
SELECT count(*) AS mann_whitney_checks,
	count(*) FILTER (WHERE t.expected ? 'p_exact') AS exact_checks
FROM mw_vectors, jsonb_each(mw_vectors.expected->'mann_whitney') AS t(alternative, expected);
SELECT count(*) AS proportion_cases,
	sum((SELECT count(*) FROM jsonb_object_keys(expected->'fisher_exact'))) AS fisher_checks
FROM proportion_vectors;

-- Mann-Whitney U, asymptotic p-value and exact p-value of every case and
-- alternative.  p_exact must be NULL exactly where the vector has none.
SELECT name, t.alternative, r.u, r.p_value, r.p_exact, t.expected
FROM mw_vectors,
	jsonb_each(mw_vectors.expected->'mann_whitney') AS t(alternative, expected),
	canary_mann_whitney(canary, baseline, t.alternative) AS r
WHERE NOT (pg_temp.close_to(r.u, (t.expected->>'U_canary')::float8)
		   AND pg_temp.close_to(r.p_value, (t.expected->>'p_asymptotic_cc')::float8)
		   AND CASE WHEN t.expected ? 'p_exact'
			   THEN pg_temp.close_to(r.p_exact, (t.expected->>'p_exact')::float8)
			   ELSE r.p_exact IS NULL END)
ORDER BY name, t.alternative;

-- The two-sided p-value agrees with R's wilcox.test where R gives one
-- (R returns NaN when all values are equal).
SELECT name, r.p_value, expected->'r_wilcox_two_sided_p' AS r_p_value
FROM mw_vectors, canary_mann_whitney(canary, baseline) AS r
WHERE jsonb_typeof(expected->'r_wilcox_two_sided_p') = 'number'
	AND NOT pg_temp.close_to(r.p_value, (expected->>'r_wilcox_two_sided_p')::float8)
ORDER BY name;
SELECT count(*) AS r_checks FROM mw_vectors
WHERE jsonb_typeof(expected->'r_wilcox_two_sided_p') = 'number';

-- Hodges-Lehmann shift of every case.
SELECT name, canary_hodges_lehmann(canary, baseline) AS shift,
	expected->'hodges_lehmann_shift' AS expected_shift
FROM mw_vectors
WHERE NOT pg_temp.close_to(canary_hodges_lehmann(canary, baseline),
						   (expected->>'hodges_lehmann_shift')::float8)
ORDER BY name;

-- The sample medians follow percentile_cont, the convention that
-- canary_stats_percentile_sorted shares with it.
SELECT name,
	(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(canary) AS v) AS canary_median,
	(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(baseline) AS v) AS baseline_median
FROM mw_vectors
WHERE NOT pg_temp.close_to((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(canary) AS v),
						   (expected->>'median_canary')::float8)
	OR NOT pg_temp.close_to((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(baseline) AS v),
							(expected->>'median_baseline')::float8)
ORDER BY name;

-- Fisher's exact test of every case and alternative.
SELECT name, t.alternative, t.expected AS expected_p,
	canary_fisher_exact(canary_errors, canary_requests, baseline_errors,
						baseline_requests, t.alternative) AS p_value
FROM proportion_vectors,
	jsonb_each(proportion_vectors.expected->'fisher_exact') AS t(alternative, expected)
WHERE NOT pg_temp.close_to(canary_fisher_exact(canary_errors, canary_requests,
											   baseline_errors, baseline_requests,
											   t.alternative),
						   (t.expected #>> '{}')::float8)
ORDER BY name, t.alternative;

-- Pooled two-proportion z-test of every case: z, two-sided and "greater"
-- p-values.
SELECT name, two.z, two.p_value AS p_two_sided, greater.p_value AS p_greater,
	expected->'pooled_z' AS expected
FROM proportion_vectors,
	canary_two_proportion_z(canary_errors, canary_requests, baseline_errors,
							baseline_requests) AS two,
	canary_two_proportion_z(canary_errors, canary_requests, baseline_errors,
							baseline_requests, 'greater') AS greater
WHERE NOT (pg_temp.close_to(two.z, (expected#>>'{pooled_z,z}')::float8)
		   AND greater.z = two.z
		   AND pg_temp.close_to(two.p_value, (expected#>>'{pooled_z,p_two_sided}')::float8)
		   AND pg_temp.close_to(greater.p_value, (expected#>>'{pooled_z,p_greater}')::float8))
ORDER BY name;

--
-- Published examples
--

-- SciPy documentation of scipy.stats.mannwhitneyu, Examples: ages at
-- diagnosis of males and females.  U = 17, exact two-sided p =
-- 0.1111111111111111, asymptotic p = 0.11134688653314041, and with the
-- samples swapped, U = 3 and exact "less" p = 0.05555555555555555.
-- SciPy 1.10.1 returns the same values.
SELECT u, pg_temp.close_to(p_value, 0.11134688653314041) AS asymptotic_ok,
	pg_temp.close_to(p_exact, 0.1111111111111111) AS exact_ok
FROM canary_mann_whitney('{19, 22, 16, 29, 24}', '{20, 11, 17, 12}');
SELECT u, pg_temp.close_to(p_exact, 0.05555555555555555) AS exact_ok
FROM canary_mann_whitney('{20, 11, 17, 12}', '{19, 22, 16, 29, 24}', 'less');

-- R 4.2.2 help page of wilcox.test, two-sample example: permeability
-- constants from Hollander & Wolfe (1973), p. 69f.  The page prints no
-- values; these were computed with R 4.2.2: W = 35, exact "greater" p =
-- 0.1272061272061272, exact two-sided p = 0.2544122544122544, with
-- exact = FALSE "greater" p = 0.12231180256349168 and two-sided p =
-- 0.24462360512698336, and median(outer(x, y, "-")) = 0.305.
SELECT r.alternative, m.u,
	pg_temp.close_to(m.p_exact, r.p_exact) AS exact_ok,
	pg_temp.close_to(m.p_value, r.p_value) AS asymptotic_ok
FROM (VALUES ('greater', 0.1272061272061272, 0.12231180256349168),
			 ('two-sided', 0.2544122544122544, 0.24462360512698336))
	AS r(alternative, p_exact, p_value),
	canary_mann_whitney('{0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46}',
						'{1.15, 0.88, 0.90, 0.74, 1.21}', r.alternative) AS m
ORDER BY r.alternative;
SELECT pg_temp.close_to(canary_hodges_lehmann(
	'{0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46}',
	'{1.15, 0.88, 0.90, 0.74, 1.21}'), 0.305) AS shift_ok;

-- SciPy documentation of scipy.stats.fisher_exact, Examples: the table
-- [[6, 2], [1, 4]] gives two-sided p = 0.10256410256410257, "greater" p =
-- 0.08624708624708627 and "less" p = 0.9953379953379957.  SciPy 1.10.1
-- agrees to 15 digits.
SELECT r.alternative,
	pg_temp.close_to(canary_fisher_exact(6, 8, 1, 5, r.alternative), r.p_value) AS ok
FROM (VALUES ('two-sided', 0.10256410256410257), ('greater', 0.08624708624708627),
			 ('less', 0.9953379953379957)) AS r(alternative, p_value)
ORDER BY r.alternative;

-- R 4.2.2 help page of fisher.test, Fisher's Tea Drinker: the table
-- [[3, 1], [1, 3]] with alternative "greater" gives "p = 0.2429", which is
-- 17/70 exactly.  Criminal convictions of like-sex twins, [[2, 15],
-- [10, 3]], computed with R 4.2.2: "less" p = 0.0004651809433629053,
-- two-sided p = 0.00053672411914343636, "greater" p = 0.99998451901868612.
SELECT pg_temp.close_to(canary_fisher_exact(3, 4, 1, 4, 'greater'), 17.0 / 70) AS tea_ok;
SELECT r.alternative,
	pg_temp.close_to(canary_fisher_exact(2, 17, 10, 13, r.alternative), r.p_value) AS ok
FROM (VALUES ('less', 0.0004651809433629053), ('two-sided', 0.00053672411914343636),
			 ('greater', 0.99998451901868612)) AS r(alternative, p_value)
ORDER BY r.alternative;

--
-- Ties, equal values, empty and single-value samples
--

-- Ties within and across samples.  R 4.2.2 wilcox.test(a, b, exact = FALSE,
-- correct = TRUE) gives W = 7, two-sided p = 0.16205161436963686,
-- "greater" p = 0.94347501057183858, "less" p = 0.08102580718481843, and
-- median(outer(a, b, "-")) = -1.  With ties there is no exact p-value.
SELECT r.alternative, m.u, m.p_exact,
	pg_temp.close_to(m.p_value, r.p_value) AS ok
FROM (VALUES ('two-sided', 0.16205161436963686), ('greater', 0.94347501057183858),
			 ('less', 0.08102580718481843)) AS r(alternative, p_value),
	canary_mann_whitney('{1, 2, 2, 3, 5}', '{2, 3, 3, 4, 6, 6}', r.alternative) AS m
ORDER BY r.alternative;
SELECT canary_hodges_lehmann('{1, 2, 2, 3, 5}', '{2, 3, 3, 4, 6, 6}') AS shift;

-- A single middle difference is returned as it is, even when it is the
-- least subnormal double, which halving would round to 0.
SELECT canary_hodges_lehmann('{-0}', '{-5e-324}') AS subnormal_shift;

-- All values equal, empty samples and single values: p = 1 and z = 0
-- wherever the test has no information, never NaN.  p-values are rounded
-- because the last digit of erfc may differ between C libraries.
SELECT c.name, a.alternative, r.u, r.z, round(r.p_value::numeric, 12) AS p_value,
	round(r.p_exact::numeric, 12) AS p_exact,
	canary_hodges_lehmann(c.canary, c.baseline) AS shift
FROM (VALUES ('all equal', '{3, 3, 3}'::float8[], '{3, 3}'::float8[]),
			 ('both empty', '{}', '{}'),
			 ('empty canary', '{}', '{1, 2, 3}'),
			 ('empty baseline', '{1, 2, 3}', '{}'),
			 ('one value each, equal', '{5}', '{5}'),
			 ('one value against two', '{5}', '{4, 6}')) AS c(name, canary, baseline),
	(VALUES ('two-sided'), ('greater'), ('less')) AS a(alternative),
	canary_mann_whitney(c.canary, c.baseline, a.alternative) AS r
ORDER BY c.name, a.alternative;

-- The default alternative is two-sided.
SELECT (SELECT row(r.*) FROM canary_mann_whitney('{1, 2, 3}', '{4, 5}') AS r) =
	(SELECT row(r.*) FROM canary_mann_whitney('{1, 2, 3}', '{4, 5}', 'two-sided') AS r)
	AS mann_whitney_default,
	canary_fisher_exact(3, 10, 1, 10) = canary_fisher_exact(3, 10, 1, 10, 'two-sided')
	AS fisher_default;

-- Input arrays with other lower bounds and in any order give the same result.
SELECT (SELECT row(r.*) FROM canary_mann_whitney('[0:2]={3, 1, 2}', '{6, 4, 5}') AS r) =
	(SELECT row(r.*) FROM canary_mann_whitney('{1, 2, 3}', '{4, 5, 6}') AS r) AS order_ok;

-- Counts without information: no requests, no errors, only errors.
SELECT c.name, a.alternative,
	canary_fisher_exact(c.ce, c.cr, c.be, c.br, a.alternative) AS fisher_p,
	z.*
FROM (VALUES ('no canary requests', 0, 0, 5, 100),
			 ('no baseline requests', 3, 10, 0, 0),
			 ('no requests', 0, 0, 0, 0),
			 ('no errors', 0, 10, 0, 20),
			 ('only errors', 10, 10, 20, 20)) AS c(name, ce, cr, be, br),
	(VALUES ('two-sided'), ('greater'), ('less')) AS a(alternative),
	canary_two_proportion_z(c.ce, c.cr, c.be, c.br, a.alternative) AS z
ORDER BY c.name, a.alternative;

-- Swapping canary and baseline swaps "greater" and "less" and negates z.
SELECT canary_fisher_exact(40, 1000, 20, 1000, 'greater') =
	canary_fisher_exact(20, 1000, 40, 1000, 'less') AS fisher_swap,
	canary_fisher_exact(40, 1000, 20, 1000) =
	canary_fisher_exact(20, 1000, 40, 1000) AS fisher_two_sided_swap,
	(SELECT z FROM canary_two_proportion_z(40, 1000, 20, 1000)) =
	-(SELECT z FROM canary_two_proportion_z(20, 1000, 40, 1000)) AS z_swap,
	(SELECT p_value FROM canary_two_proportion_z(40, 1000, 20, 1000, 'greater')) =
	(SELECT p_value FROM canary_two_proportion_z(20, 1000, 40, 1000, 'less')) AS z_p_swap;

--
-- Large samples and counts
--

-- 100,000 distinct values per side, canary = baseline + 0.5: every canary
-- value beats the baseline values below it, so U = n (n + 1) / 2 and the
-- shift is 0.5.  R 4.2.2 wilcox.test(exact = FALSE, correct = TRUE) on the
-- same series gives two-sided p = 0.99690985273630539.
SELECT r.u, pg_temp.close_to(r.p_value, 0.99690985273630539) AS p_ok, r.p_exact,
	canary_hodges_lehmann(s.canary, s.baseline) AS shift
FROM (SELECT array_agg(i::float8) AS canary, array_agg(i - 0.5) AS baseline
	  FROM generate_series(1, 100000) AS i) AS s,
	canary_mann_whitney(s.canary, s.baseline) AS r;

-- 100,000 values per side with heavy ties (about 100 copies of each value).
-- R 4.2.2 wilcox.test(exact = FALSE, correct = TRUE) on the same series,
-- canary (i * 7) %% 1000 and baseline (i * 13) %% 997, gives W =
-- 5015212700, two-sided p = 0.23864981739943117, "greater" p =
-- 0.11932490869971558 and "less" p = 0.8806751067337909.
SELECT r.alternative, m.u, pg_temp.close_to(m.p_value, r.p_value) AS ok
FROM (SELECT array_agg(((i * 7) % 1000)::float8) AS canary,
			 array_agg(((i * 13) % 997)::float8) AS baseline
	  FROM generate_series(1, 100000) AS i) AS s,
	(VALUES ('two-sided', 0.23864981739943117), ('greater', 0.11932490869971558),
			('less', 0.8806751067337909)) AS r(alternative, p_value),
	canary_mann_whitney(s.canary, s.baseline, r.alternative) AS m
ORDER BY r.alternative;

-- U and the Hodges-Lehmann shift against brute force over all 75,000
-- pairs of two samples with ties and negative values.
CREATE TEMP TABLE pair_samples AS
SELECT (SELECT array_agg(((i * 37) % 101 - 40) / 4.0::float8)
		FROM generate_series(1, 300) AS i) AS canary,
	(SELECT array_agg(((i * 53) % 89 - 50) / 4.0::float8)
	 FROM generate_series(1, 250) AS i) AS baseline;
SELECT (SELECT u FROM canary_mann_whitney(canary, baseline)) =
	(SELECT sum(CASE WHEN c > b THEN 1 WHEN c = b THEN 0.5 ELSE 0 END)
	 FROM unnest(canary) AS c, unnest(baseline) AS b) AS u_ok,
	pg_temp.close_to(canary_hodges_lehmann(canary, baseline),
					 (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY c - b)
					  FROM unnest(canary) AS c, unnest(baseline) AS b)) AS shift_ok
FROM pair_samples;

-- The same with an odd number of pairs (299 x 251), where the median is a
-- single difference.
SELECT pg_temp.close_to(canary_hodges_lehmann(canary[1:299], baseline || 7.25::float8),
						(SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY c - b)
						 FROM unnest(canary[1:299]) AS c,
							 unnest(baseline || 7.25::float8) AS b)) AS odd_shift_ok
FROM pair_samples;

-- Randomized samples of up to 700 values with ties, negative values and
-- zeros, against brute force over all pairs.  Samples of 512 values or more
-- are sorted by radix, smaller ones by comparison.
SELECT setseed(0.4);
CREATE TEMP TABLE random_samples AS
SELECT c,
	(SELECT array_agg(round((random() * p.scale + 0 * i)::numeric, p.digits)::float8 - p.shift)
	 FROM generate_series(1, p.n_canary) AS i) AS canary,
	(SELECT array_agg(round((random() * p.scale + 0 * i)::numeric, p.digits)::float8 *
					  CASE WHEN random() < 0.1 THEN -1 ELSE 1 END)
	 FROM generate_series(1, p.n_baseline) AS i) AS baseline
FROM generate_series(1, 40) AS c,
	LATERAL (SELECT 1 + (random() * 700 + 0 * c)::integer AS n_canary,
					1 + (random() * 700)::integer AS n_baseline,
					(random() * 2)::integer AS digits,
					(ARRAY[1, 10, 1000])[1 + (random() * 2)::integer] AS scale,
					random() * 5 AS shift) AS p;
WITH pairs AS (
	SELECT c, sum(CASE WHEN x > y THEN 1 WHEN x = y THEN 0.5 ELSE 0 END) AS u,
		   percentile_cont(0.5) WITHIN GROUP (ORDER BY x - y) AS shift
	FROM random_samples, unnest(canary) AS x, unnest(baseline) AS y
	GROUP BY c)
SELECT count(*) AS cases,
	count(*) FILTER (WHERE greatest(array_length(canary, 1), array_length(baseline, 1)) >= 512) AS radix_sorted,
	count(*) FILTER (WHERE (canary_mann_whitney(canary, baseline)).u = pairs.u) AS u_exact,
	count(*) FILTER (WHERE canary_hodges_lehmann(canary, baseline) = pairs.shift) AS shift_exact
FROM random_samples JOIN pairs USING (c);

-- Millions of requests.  R 4.2.2 fisher.test on [[2100, 1997900], [18000,
-- 17982000]] gives two-sided p = 0.035251645230537601, "greater" p =
-- 0.018093160538208378 and "less" p = 0.98291448291702543, and
-- prop.test(correct = FALSE, alternative = "greater") gives z =
-- 2.1171009582323164 and p = 0.017125640197237505.
SELECT r.alternative,
	pg_temp.close_to(canary_fisher_exact(2100, 2000000, 18000, 18000000, r.alternative),
					 r.p_value) AS ok
FROM (VALUES ('two-sided', 0.035251645230537601), ('greater', 0.018093160538208378),
			 ('less', 0.98291448291702543)) AS r(alternative, p_value)
ORDER BY r.alternative;
SELECT pg_temp.close_to(z, 2.1171009582323164) AS z_ok,
	pg_temp.close_to(p_value, 0.017125640197237505) AS p_ok
FROM canary_two_proportion_z(2100, 2000000, 18000, 18000000, 'greater');

-- Counts near the bigint range stay finite and within [0, 1].
SELECT p_value BETWEEN 0 AND 1 AS fisher_in_range
FROM canary_fisher_exact(3000000000, 9000000000000000000, 1, 200000000000000000, 'less');

--
-- Argument checks
--

SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney(NULL, '{1}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', NULL)$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1, NULL}', '{1}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '[0:1]={2, NULL}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1, NaN}', '{1}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{Infinity}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{-Infinity}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{{1, 2}, {3, 4}}', '{1}')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{1}', NULL)$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{1}', 'two.sided')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{1}', 'Greater')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_mann_whitney('{1}', '{1}', '')$$);
SELECT pg_temp.error_of($$SELECT canary_hodges_lehmann(NULL, '{1}')$$);
SELECT pg_temp.error_of($$SELECT canary_hodges_lehmann('{1}', '{NULL}')$$);
SELECT pg_temp.error_of($$SELECT canary_hodges_lehmann('{NaN}', '{1}')$$);
SELECT pg_temp.error_of($$SELECT canary_hodges_lehmann('{1e308}', '{-1e308}')$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(NULL, 10, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, NULL, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, NULL, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, 1, NULL)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(-1, 10, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, -10, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, -1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, 1, -10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(11, 10, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, 11, 10)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 9223372036854775807, 1, 1)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, 1, 10, NULL)$$);
SELECT pg_temp.error_of($$SELECT canary_fisher_exact(1, 10, 1, 10, 'lesser')$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_two_proportion_z(NULL, 10, 1, 10)$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_two_proportion_z(1, 10, 1, -10)$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_two_proportion_z(1, 10, 11, 10)$$);
SELECT pg_temp.error_of($$SELECT * FROM canary_two_proportion_z(1, 10, 1, 10, 'both')$$);

-- The functions are immutable, parallel safe and not strict, so that NULL
-- arguments raise an error instead of returning NULL.
SELECT proname, provolatile, proparallel, proisstrict, pronargdefaults
FROM pg_proc
WHERE proname IN ('canary_mann_whitney', 'canary_hodges_lehmann',
				  'canary_fisher_exact', 'canary_two_proportion_z')
ORDER BY proname;

-- Leave an empty database for the next test.
SET client_min_messages = warning;
DROP EXTENSION canary CASCADE;
DROP SCHEMA public CASCADE;
CREATE SCHEMA public;
RESET client_min_messages;
