/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Statistical tests that compare a canary with its baseline.
 *
 * The functions declared here keep no state and read no catalogs, so the
 * metrics and evaluation code can call them on plain C arrays.  Samples must
 * contain only finite values, which the SQL wrappers in stats.c check before
 * calling in.
 *
 * src/stats.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CANARY_STATS_H
#define CANARY_STATS_H

/*
 * Alternative hypothesis of a test.  "Greater" means that the canary values
 * (latencies, error rates) tend to be larger than the baseline values.
 */
typedef enum CanaryAlternative
{
	CANARY_ALT_TWO_SIDED,
	CANARY_ALT_GREATER,
	CANARY_ALT_LESS
} CanaryAlternative;

/*
 * The exact Mann-Whitney p-value is computed only when both samples have
 * fewer values than this and no value occurs twice, the rule R's
 * wilcox.test applies by default.
 */
#define CANARY_STATS_EXACT_MAX_SAMPLE 50

/* Result of the Mann-Whitney U test */
typedef struct CanaryMannWhitney
{
	double		u;				/* pairs with canary > baseline, ties 1/2 */
	double		z;				/* continuity-corrected normal deviate */
	double		p_value;		/* normal approximation, tie-corrected */
	bool		has_exact;		/* whether p_exact was computed */
	double		p_exact;		/* p-value from the exact null distribution */
} CanaryMannWhitney;

extern CanaryAlternative canary_stats_parse_alternative(const char *text);
extern const char *canary_stats_alternative_name(CanaryAlternative alt);

extern double canary_stats_normal_cdf(double x);
extern double canary_stats_normal_sf(double x);
extern double canary_stats_normal_quantile(double p);
extern double canary_stats_chi_square_sf(double x, int df);

extern void canary_stats_sort(double *values, int n);
extern double canary_stats_percentile_sorted(const double *sorted, int n,
											 double fraction);
extern void canary_stats_percentiles_select(double *values, int n,
											const double *fractions,
											int count, double *results);

extern void canary_stats_mann_whitney(const double *canary, int n_canary,
									  const double *baseline, int n_baseline,
									  CanaryAlternative alt,
									  CanaryMannWhitney *result);
extern double canary_stats_hodges_lehmann(const double *canary, int n_canary,
										  const double *baseline,
										  int n_baseline);

extern void canary_stats_check_counts(int64 canary_errors,
									  int64 canary_requests,
									  int64 baseline_errors,
									  int64 baseline_requests);
extern double canary_stats_fisher_exact(int64 canary_errors,
										int64 canary_requests,
										int64 baseline_errors,
										int64 baseline_requests,
										CanaryAlternative alt);
extern void canary_stats_two_proportion_z(int64 canary_errors,
										  int64 canary_requests,
										  int64 baseline_errors,
										  int64 baseline_requests,
										  CanaryAlternative alt,
										  double *z, double *p_value);

/*
 * Sequential test of "the canary is worse" on a stream of 2x2 tables, one
 * per time bucket; see the comment above canary_stats_sequential_add in
 * stats.c for the method and its guarantee.
 */

/* Maximum number of odds ratios in the mixture of a sequential test */
#define CANARY_STATS_MAX_ODDS_RATIOS 64

/* State of one sequential test: a mixture of likelihood ratio products */
typedef struct CanarySequentialTest
{
	int			count;			/* odds ratios in the mixture */
	double		odds_ratio[CANARY_STATS_MAX_ODDS_RATIOS];
	double		weight[CANARY_STATS_MAX_ODDS_RATIOS];	/* weights sum to 1 */
	/* w_k prod_j L_j(psi_k) is likelihood[k] * 2^exponent[k] */
	double		likelihood[CANARY_STATS_MAX_ODDS_RATIOS];
	int64		exponent[CANARY_STATS_MAX_ODDS_RATIOS];
	double		log_evidence;	/* log M after the last table */
	double		max_log_evidence;	/* largest log M after any table, or 0 */
	int64		buckets;		/* tables with requests of both versions */
	int64		canary_events;	/* totals over those tables */
	int64		canary_requests;
	int64		baseline_events;
	int64		baseline_requests;
	double		mh_numerator;	/* Mantel-Haenszel odds ratio sums */
	double		mh_denominator;
} CanarySequentialTest;

extern void canary_stats_sequential_init(CanarySequentialTest *test,
										 const double *odds_ratios,
										 const double *weights, int count);
extern void canary_stats_sequential_add(CanarySequentialTest *test,
										int64 canary_events,
										int64 canary_requests,
										int64 baseline_events,
										int64 baseline_requests);
extern double canary_stats_sequential_odds_ratio(const CanarySequentialTest *test);
extern double canary_stats_rate_log_evidence(const CanarySequentialTest *mixture,
											 int64 events, int64 requests,
											 double limit);

#endif							/* CANARY_STATS_H */
