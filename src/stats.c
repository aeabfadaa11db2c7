/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Statistical tests that compare a canary with its baseline.  Latencies
 *	  get the Mann-Whitney U test and the Hodges-Lehmann shift, error counts
 *	  get Fisher's exact test and the pooled two-proportion z-test.  The
 *	  normal, chi-square and percentile helpers serve them and their callers.
 *
 * The core functions keep no state and touch no catalogs.  They copy any
 * input they sort, so caller arrays are never modified, and they allocate
 * scratch memory with palloc in the current memory context.  Samples must
 * contain only finite values, so the SQL wrappers at the end of this file
 * reject NULL, NaN and infinite elements before calling in.
 *
 * Conventions, those of wilcox.test and fisher.test in R 4.2.2:
 * - U is the Mann-Whitney statistic of the canary sample: the number of
 *	 (canary, baseline) pairs with canary > baseline, ties counting 1/2.
 * - The asymptotic Mann-Whitney p-value uses the tie-corrected variance and
 *	 a continuity correction of 0.5, as wilcox.test(exact = FALSE,
 *	 correct = TRUE) does.
 * - "greater" means that canary values or canary error odds are larger.
 * - No function returns NaN for a degenerate test (empty sample, all values
 *	 equal, no errors at all): the p-value is 1 and the statistic 0.  The
 *	 Hodges-Lehmann shift and percentiles of an empty sample are NaN in C,
 *	 and their SQL callers return NULL instead.
 *
 * src/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"

#include "stats.h"


/* Exchange two doubles. */
#define SWAP_DOUBLES(a, b) \
	do { double swap_ = (a); (a) = (b); (b) = swap_; } while (0)
/* sqrt(2 * pi) */
#define SQRT_TWO_PI 2.50662827463100050242

/* R's relative tolerance when comparing table probabilities in fisher.test */
#define FISHER_RELATIVE_TOLERANCE 1e-7

/*
 * Fisher's test sums hypergeometric weights relative to the mode, which has
 * weight 1.  The walk away from the mode stops below this weight, because
 * the rest of the tail is then smaller than 2^63 * 1e-300, below 1e-280.
 */
#define FISHER_NEGLIGIBLE_WEIGHT 1e-300

/* Iteration limit of the incomplete gamma series and continued fraction */
#define GAMMA_MAX_ITERATIONS 1000000

static double *sorted_copy(const double *values, int n);


/*
 * Alternatives
 */

/*
 * Parse the name of an alternative hypothesis: "two-sided", "greater" or
 * "less".  Raises an error for anything else.
 */
CanaryAlternative
canary_stats_parse_alternative(const char *text)
{
	if (strcmp(text, "two-sided") == 0)
		return CANARY_ALT_TWO_SIDED;
	if (strcmp(text, "greater") == 0)
		return CANARY_ALT_GREATER;
	if (strcmp(text, "less") == 0)
		return CANARY_ALT_LESS;

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized alternative hypothesis \"%s\"", text),
			 errhint("Valid alternatives are \"two-sided\", \"greater\" and \"less\".")));
	return CANARY_ALT_TWO_SIDED;	/* keep compiler quiet */
}

/*
 * Return the name that canary_stats_parse_alternative accepts for alt.
 */
const char *
canary_stats_alternative_name(CanaryAlternative alt)
{
	switch (alt)
	{
		case CANARY_ALT_TWO_SIDED:
			return "two-sided";
		case CANARY_ALT_GREATER:
			return "greater";
		case CANARY_ALT_LESS:
			return "less";
	}
	elog(ERROR, "unrecognized alternative hypothesis: %d", (int) alt);
	return NULL;				/* keep compiler quiet */
}

/*
 * Convert a standard normal deviate into the p-value of alt: the upper tail
 * for "greater", the lower tail for "less" and twice the smaller tail for
 * "two-sided".
 */
static double
normal_p_value(double z, CanaryAlternative alt)
{
	switch (alt)
	{
		case CANARY_ALT_TWO_SIDED:
			return Min(1.0, 2.0 * canary_stats_normal_sf(fabs(z)));
		case CANARY_ALT_GREATER:
			return canary_stats_normal_sf(z);
		case CANARY_ALT_LESS:
			return canary_stats_normal_cdf(z);
	}
	elog(ERROR, "unrecognized alternative hypothesis: %d", (int) alt);
	return 1.0;					/* keep compiler quiet */
}


/*
 * Normal and chi-square distributions
 */

/*
 * Standard normal distribution function, P(Z <= x).  Computed from erfc, so
 * the lower tail keeps a relative error of about 1e-13 or less down to
 * 1e-300 (checked against pnorm in R 4.2.2).
 */
double
canary_stats_normal_cdf(double x)
{
	return 0.5 * erfc(-x / M_SQRT2);
}

/*
 * Standard normal survival function, P(Z > x).  Computed from erfc like
 * canary_stats_normal_cdf, so the upper tail keeps the same precision,
 * where 1 - cdf would round to 0 beyond x = 8.3.
 */
double
canary_stats_normal_sf(double x)
{
	return 0.5 * erfc(x / M_SQRT2);
}

/*
 * Quantile of the standard normal distribution for 0 < p <= 0.5.
 *
 * The start value is formula 26.2.23 of Abramowitz and Stegun, Handbook of
 * Mathematical Functions (1964), with an absolute error below 4.5e-4.  Each
 * Halley step on cdf(x) = p then roughly triples the number of correct
 * digits, so four steps reach double precision even for p close to 0.5.
 * For subnormal p the correction would overflow, so the start value is
 * returned as it is.
 */
static double
lower_normal_quantile(double p)
{
	double		t = sqrt(-2.0 * log(p));
	double		x;
	int			i;

	x = -(t - (2.515517 + t * (0.802853 + t * 0.010328)) /
		  (1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))));
	if (p < DBL_MIN)
		return x;

	for (i = 0; i < 4; i++)
	{
		double		error;
		double		u;

		/*
		 * Near the center, cdf(x) - p cancels to a few digits, so compare
		 * erf(x) with 0.5 - p there instead, which is exact for p >= 0.25.
		 */
		if (p >= 0.25)
			error = 0.5 * erf(x / M_SQRT2) + (0.5 - p);
		else
			error = canary_stats_normal_cdf(x) - p;
		u = error * SQRT_TWO_PI * exp(x * x / 2.0);
		x -= u / (1.0 + x * u / 2.0);
	}
	return x;
}

/*
 * Quantile function of the standard normal distribution: the x with
 * P(Z <= x) = p.  Returns -Infinity for 0, Infinity for 1 and NaN for p
 * outside [0, 1].
 */
double
canary_stats_normal_quantile(double p)
{
	if (isnan(p) || p < 0.0 || p > 1.0)
		return get_float8_nan();
	if (p == 0.0)
		return -get_float8_infinity();
	if (p == 1.0)
		return get_float8_infinity();
	if (p == 0.5)
		return 0.0;

	/* 1 - p is exact for p > 0.5, so solve in whichever tail p lies */
	if (p > 0.5)
		return -lower_normal_quantile(1.0 - p);
	return lower_normal_quantile(p);
}

/*
 * Regularized upper incomplete gamma function Q(a, x) for a > 0, x > 0.
 *
 * Below x = a + 1 the series for P(a, x) converges fast, and Q = 1 - P keeps
 * its relative precision because Q is not small there.  Above it, the
 * continued fraction for Q is evaluated with the modified Lentz method.
 * The common factor x^a e^-x / Gamma(a) comes from lgamma, whose rounding
 * limits the relative precision to about 1e-16 * a * log(x).
 */
static double
gamma_upper_regularized(double a, double x)
{
	double		log_factor = a * log(x) - x - lgamma(a);
	double		tiny = DBL_MIN / DBL_EPSILON;
	double		b,
				c,
				d,
				fraction;
	int			i;

	if (x < a + 1.0)
	{
		double		term = 1.0 / a;
		double		sum = term;

		for (i = 1; i < GAMMA_MAX_ITERATIONS; i++)
		{
			term *= x / (a + i);
			sum += term;
			if (term < sum * DBL_EPSILON)
				break;
		}
		return Max(0.0, 1.0 - sum * exp(log_factor));
	}

	b = x + 1.0 - a;
	c = 1.0 / tiny;
	d = 1.0 / b;
	fraction = d;
	for (i = 1; i < GAMMA_MAX_ITERATIONS; i++)
	{
		double		an = -i * (i - a);
		double		delta;

		b += 2.0;
		d = an * d + b;
		if (fabs(d) < tiny)
			d = tiny;
		c = b + an / c;
		if (fabs(c) < tiny)
			c = tiny;
		d = 1.0 / d;
		delta = d * c;
		fraction *= delta;
		if (fabs(delta - 1.0) < DBL_EPSILON)
			break;
	}
	return Min(1.0, exp(log_factor) * fraction);
}

/*
 * Upper tail P(X > x) of the chi-square distribution with df degrees of
 * freedom, the p-value of a chi-square test such as the sample-ratio check.
 * Returns 1 for x <= 0.  df must be at least 1.
 */
double
canary_stats_chi_square_sf(double x, int df)
{
	if (df < 1)
		elog(ERROR, "chi-square degrees of freedom must be positive: %d", df);
	if (isnan(x))
		return get_float8_nan();
	if (x <= 0.0)
		return 1.0;
	if (isinf(x))
		return 0.0;

	return gamma_upper_regularized(df / 2.0, x / 2.0);
}


/*
 * Percentiles and sorting helpers
 */

/*
 * Raise an error unless fraction is a percentile between 0 and 1.
 */
static void
check_percentile_fraction(double fraction)
{
	if (isnan(fraction) || fraction < 0.0 || fraction > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("percentile value %g is not between 0 and 1",
						fraction)));
}

/*
 * Continuous percentile of an ascending array, interpolating linearly
 * between the two nearest values with the same formula as percentile_cont.
 * Returns NaN for an empty array, which callers turn into SQL NULL as
 * percentile_cont does.
 */
double
canary_stats_percentile_sorted(const double *sorted, int n, double fraction)
{
	double		position;
	int64		first;
	int64		second;

	check_percentile_fraction(fraction);
	if (n <= 0)
		return get_float8_nan();

	position = fraction * (n - 1);
	first = (int64) floor(position);
	second = (int64) ceil(position);
	if (first == second)
		return sorted[first];

	return sorted[first] +
		(position - first) * (sorted[second] - sorted[first]);
}

/*
 * Move the k-th smallest of values[left..right] (k counts from 0 at
 * values[0]) to values[k], with no larger value before it and no smaller
 * one after it within that range.  Quickselect with the median of three as
 * pivot, in expected time linear in the range's length.  The partition
 * loop has no data-dependent branch, because on unordered data such a
 * branch is mispredicted half the time.  Values equal to the pivot are set
 * aside in one more pass, so many ties cannot make the search quadratic.
 * Short ranges are finished by insertion sort.
 */
static void
select_kth(double *values, int left, int right, int k)
{
	while (right - left >= 16)
	{
		int			middle = left + (right - left) / 2;
		int			store = left;
		bool		ties;
		double		pivot;

		/* Order the three samples, then move their median to the right. */
		if (values[middle] < values[left])
			SWAP_DOUBLES(values[middle], values[left]);
		if (values[right] < values[left])
			SWAP_DOUBLES(values[right], values[left]);
		if (values[right] < values[middle])
			SWAP_DOUBLES(values[right], values[middle]);
		ties = values[left] == values[middle];
		SWAP_DOUBLES(values[middle], values[right]);
		pivot = values[right];

		for (int i = left; i < right; i++)
		{
			double		value = values[i];

			values[i] = values[store];
			values[store] = value;
			store += value < pivot;
		}
		SWAP_DOUBLES(values[store], values[right]);

		/* Now values[left..store - 1] < pivot <= values[store + 1..right]. */
		if (k == store)
			return;
		if (k < store)
		{
			right = store - 1;
			continue;
		}
		left = store + 1;

		/* The minimum sample equals the pivot, so skip the values equal to it. */
		if (ties)
		{
			int			equal_end = left;

			for (int i = left; i <= right; i++)
			{
				double		value = values[i];

				values[i] = values[equal_end];
				values[equal_end] = value;
				equal_end += value <= pivot;
			}
			if (k < equal_end)
				return;
			left = equal_end;
		}
	}

	for (int i = left + 1; i <= right; i++)
	{
		double		value = values[i];
		int			j = i - 1;

		while (j >= left && values[j] > value)
		{
			values[j + 1] = values[j];
			j--;
		}
		values[j + 1] = value;
	}
}

/*
 * Compute count percentiles of n finite values, fractions in ascending
 * order, as canary_stats_percentile_sorted computes them over the sorted
 * values, but by selection in expected linear time.  The values are
 * reordered.  Each selection searches only the values above the previous
 * one's.
 */
void
canary_stats_percentiles_select(double *values, int n,
								const double *fractions, int count,
								double *results)
{
	int			left = 0;

	for (int f = 0; f < count; f++)
	{
		double		fraction = fractions[f];
		double		position;
		int			first;
		double		lower;
		double		upper;

		check_percentile_fraction(fraction);
		Assert(f == 0 || fraction >= fractions[f - 1]);
		if (n <= 0)
		{
			results[f] = get_float8_nan();
			continue;
		}

		position = fraction * (n - 1);
		first = (int) floor(position);
		select_kth(values, left, n - 1, first);
		lower = values[first];
		left = first;
		if (ceil(position) == first)
		{
			results[f] = lower;
			continue;
		}

		/* The next order statistic is the minimum after the selected one. */
		upper = values[first + 1];
		for (int i = first + 2; i < n; i++)
			if (values[i] < upper)
				upper = values[i];
		results[f] = lower + (position - first) * (upper - lower);
	}
}

/*
 * A sort of doubles with the comparison inlined instead of called through
 * a function pointer as qsort does.  Values are never NaN here.
 */
#define ST_SORT sort_doubles
#define ST_ELEMENT_TYPE double
#define ST_COMPARE(a, b) ((*(a) > *(b)) - (*(a) < *(b)))
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/* Minimum number of values that canary_stats_sort sorts by radix. */
#define RADIX_SORT_MIN 512

/*
 * Return an unsigned key of a double whose order is the order of the
 * doubles: the sign bit is flipped for positive values, and every bit for
 * negative ones.
 */
static inline uint64
radix_key(double value)
{
	uint64		bits;

	memcpy(&bits, &value, sizeof(bits));
	return (bits & UINT64CONST(0x8000000000000000)) ? ~bits :
		bits | UINT64CONST(0x8000000000000000);
}

/*
 * Sort n doubles by their keys, one byte at a time from the lowest (an LSD
 * radix sort, stable in each pass).  One pass over the keys counts the
 * bytes at every position.  A position where every key has the same byte
 * needs no pass, as the low mantissa bytes of latencies in whole
 * milliseconds show.
 */
static void
radix_sort_doubles(double *values, int n)
{
	uint64	   *keys = palloc(sizeof(uint64) * n);
	uint64	   *scratch = palloc(sizeof(uint64) * n);
	int		   (*counts)[256] = palloc0(sizeof(int[8][256]));

	for (int i = 0; i < n; i++)
	{
		uint64		key = radix_key(values[i]);

		keys[i] = key;
		for (int digit = 0; digit < 8; digit++)
			counts[digit][(key >> (8 * digit)) & 0xFF]++;
	}

	for (int digit = 0; digit < 8; digit++)
	{
		int			shift = 8 * digit;
		int		   *offsets = counts[digit];
		int			position = 0;
		uint64	   *swap;

		if (offsets[(keys[0] >> shift) & 0xFF] == n)
			continue;
		for (int byte = 0; byte < 256; byte++)
		{
			int			count = offsets[byte];

			offsets[byte] = position;
			position += count;
		}
		for (int i = 0; i < n; i++)
			scratch[offsets[(keys[i] >> shift) & 0xFF]++] = keys[i];
		swap = keys;
		keys = scratch;
		scratch = swap;
	}

	/* Turn the keys back into the doubles they came from. */
	for (int i = 0; i < n; i++)
	{
		uint64		bits = (keys[i] & UINT64CONST(0x8000000000000000)) ?
			keys[i] & ~UINT64CONST(0x8000000000000000) : ~keys[i];

		memcpy(&values[i], &bits, sizeof(bits));
	}
	pfree(keys);
	pfree(scratch);
	pfree(counts);
}

/*
 * Sort n finite values in ascending order, in place.  From RADIX_SORT_MIN
 * values on a radix sort is used, below that a comparison sort.
 */
void
canary_stats_sort(double *values, int n)
{
	int			sorted_prefix = 1;

	/* Samples are often sorted already, and then one look suffices. */
	while (sorted_prefix < n && values[sorted_prefix - 1] <= values[sorted_prefix])
		sorted_prefix++;
	if (sorted_prefix >= n)
		return;

	if (n >= RADIX_SORT_MIN)
		radix_sort_doubles(values, n);
	else if (n > 1)
		sort_doubles(values, n);
}

/*
 * Return an ascending palloc'd copy of values, leaving the caller's array
 * untouched.
 */
static double *
sorted_copy(const double *values, int n)
{
	double	   *copy = palloc(sizeof(double) * Max(n, 1));

	if (n > 0)
		memcpy(copy, values, sizeof(double) * n);
	canary_stats_sort(copy, n);
	return copy;
}


/*
 * Mann-Whitney U test
 */

/* Rank summary of two samples, from a merge of their sorted copies */
typedef struct RankSummary
{
	int64		pairs_below;	/* pairs with canary > baseline */
	int64		pairs_tied;		/* pairs with canary = baseline */
	double		tie_sum;		/* sum of t^3 - t over groups of t equal values */
	bool		has_ties;		/* whether any value occurs twice */
	bool		all_equal;		/* whether every value is the same */
} RankSummary;

/*
 * Merge two ascending samples and count, for each distinct value, how many
 * canary and baseline values share it.  This gives U and the tie correction
 * in O(n + m) after sorting, the same as assigning mid-ranks.
 */
static void
summarize_ranks(const double *canary, int n, const double *baseline, int m,
				RankSummary *summary)
{
	int			i = 0;
	int			j = 0;

	memset(summary, 0, sizeof(RankSummary));
	while (i < n || j < m)
	{
		double		value;
		int64		canary_equal = 0;
		int64		baseline_equal = 0;
		int64		group;

		/* The next distinct value and its count in each sample */
		if (j >= m || (i < n && canary[i] <= baseline[j]))
			value = canary[i];
		else
			value = baseline[j];
		while (i < n && canary[i] == value)
		{
			canary_equal++;
			i++;
		}
		while (j < m && baseline[j] == value)
		{
			baseline_equal++;
			j++;
		}

		/* Canary values here beat the baseline values already passed */
		summary->pairs_below += canary_equal * (j - baseline_equal);
		summary->pairs_tied += canary_equal * baseline_equal;

		group = canary_equal + baseline_equal;
		if (group > 1)
			summary->has_ties = true;
		if (group == (int64) n + m)
			summary->all_equal = true;
		summary->tie_sum += (double) group * group * group - group;
	}
}

/*
 * Exact null distribution of U for sample sizes n and m: element u of the
 * returned array, 0 <= u <= n * m, is P(U = u).
 *
 * The largest of the i + j values belongs to the canary sample with
 * probability i / (i + j) and then exceeds all j baseline values, which
 * gives f(i, j, u) = (i f(i - 1, j, u - j) + j f(i, j - 1, u)) / (i + j).
 * Every term is a positive probability, so the recurrence loses no
 * precision to cancellation.  It takes O(n^2 m^2) time and O(n m^2) space,
 * which bounds the sample sizes (CANARY_STATS_EXACT_MAX_SAMPLE).
 */
static double *
mann_whitney_null_distribution(int n, int m)
{
	int			stride = n * m + 1;
	double	   *previous = palloc0(sizeof(double) * (m + 1) * stride);
	double	   *current = palloc0(sizeof(double) * (m + 1) * stride);
	double	   *result;
	int			i;
	int			j;
	int			u;

	/* Row i stores f(i, j, .) for every j at offset j * stride */
	for (i = 0; i <= n; i++)
	{
		for (j = 0; j <= m; j++)
		{
			double	   *density = current + j * stride;
			const double *fewer_canary;
			const double *fewer_baseline;

			if (i == 0 || j == 0)
			{
				density[0] = 1.0;
				continue;
			}

			fewer_canary = previous + j * stride;	/* f(i - 1, j, .) */
			fewer_baseline = density - stride;	/* f(i, j - 1, .) */
			for (u = 0; u <= i * j; u++)
			{
				double		canary_largest = 0.0;
				double		baseline_largest = 0.0;

				if (u >= j)
					canary_largest = fewer_canary[u - j];
				if (u <= i * (j - 1))
					baseline_largest = fewer_baseline[u];
				density[u] = (i * canary_largest + j * baseline_largest) / (i + j);
			}
		}

		/* This row becomes the previous one */
		result = previous;
		previous = current;
		current = result;
	}

	result = palloc(sizeof(double) * stride);
	memcpy(result, previous + m * stride, sizeof(double) * stride);
	pfree(previous);
	pfree(current);
	return result;
}

/*
 * Exact p-value for an integer U, following wilcox.test: the upper tail for
 * "greater", the lower tail for "less", and for "two-sided" twice the tail
 * on the side of the mean where U lies, at most 1.
 */
static double
mann_whitney_exact_p(int64 u, int n, int m, CanaryAlternative alt)
{
	double	   *density = mann_whitney_null_distribution(n, m);
	double		upper = 0.0;
	double		lower = 0.0;
	int64		k;
	double		p;

	/* Both tails include U itself */
	for (k = u; k <= (int64) n * m; k++)
		upper += density[k];
	for (k = 0; k <= u; k++)
		lower += density[k];
	pfree(density);

	if (alt == CANARY_ALT_GREATER)
		p = upper;
	else if (alt == CANARY_ALT_LESS)
		p = lower;
	else if (2 * u > (int64) n * m)
		p = 2.0 * upper;
	else
		p = 2.0 * lower;
	return Min(1.0, p);
}

/*
 * Asymptotic p-value of U as wilcox.test(exact = FALSE, correct = TRUE)
 * computes it.  The variance, corrected for groups of t tied values, is
 *	 n m / 12 * ((N + 1) - sum(t^3 - t) / (N (N - 1)))	with N = n + m,
 * and U - n m / 2 moves 0.5 towards 0 (two-sided) or towards the side that
 * makes the test more conservative (one-sided).
 */
static void
mann_whitney_asymptotic(const RankSummary *summary, int n, int m,
						CanaryAlternative alt, CanaryMannWhitney *result)
{
	double		total = (double) n + m;
	double		variance;
	double		difference;
	double		correction;

	result->z = 0.0;
	result->p_value = 1.0;
	if (n == 0 || m == 0 || summary->all_equal)
		return;

	variance = (double) n * m / 12.0 *
		((total + 1.0) - summary->tie_sum / (total * (total - 1.0)));
	if (!(variance > 0.0))
		return;

	difference = result->u - (double) n * m / 2.0;
	if (alt == CANARY_ALT_GREATER)
		correction = 0.5;
	else if (alt == CANARY_ALT_LESS)
		correction = -0.5;
	else
		correction = (difference > 0.0) ? 0.5 : (difference < 0.0) ? -0.5 : 0.0;

	result->z = (difference - correction) / sqrt(variance);
	result->p_value = normal_p_value(result->z, alt);
}

/*
 * Mann-Whitney U test of the canary sample against the baseline sample.
 *
 * Runs in O(N log N) for N values in total.  The exact p-value is added
 * when both samples have fewer than CANARY_STATS_EXACT_MAX_SAMPLE values
 * and there are no ties.  It is 1 when a sample is empty.
 */
void
canary_stats_mann_whitney(const double *canary, int n_canary,
						  const double *baseline, int n_baseline,
						  CanaryAlternative alt, CanaryMannWhitney *result)
{
	double	   *canary_sorted = sorted_copy(canary, n_canary);
	double	   *baseline_sorted = sorted_copy(baseline, n_baseline);
	RankSummary summary;

	summarize_ranks(canary_sorted, n_canary, baseline_sorted, n_baseline,
					&summary);
	pfree(canary_sorted);
	pfree(baseline_sorted);

	result->u = (double) summary.pairs_below + summary.pairs_tied / 2.0;
	mann_whitney_asymptotic(&summary, n_canary, n_baseline, alt, result);

	result->has_exact = (!summary.has_ties &&
						 n_canary < CANARY_STATS_EXACT_MAX_SAMPLE &&
						 n_baseline < CANARY_STATS_EXACT_MAX_SAMPLE);
	result->p_exact = 1.0;
	if (result->has_exact && n_canary > 0 && n_baseline > 0)
		result->p_exact = mann_whitney_exact_p(summary.pairs_below,
											   n_canary, n_baseline, alt);
}


/*
 * Hodges-Lehmann shift
 */

/*
 * Map a double onto an int64 so that the integer order is the numeric
 * order of the doubles, and back.  Adjacent doubles get adjacent integers,
 * so a bisection over the integers visits every double in a range.
 */
static int64
double_to_ordered(double value)
{
	int64		bits;

	memcpy(&bits, &value, sizeof(bits));
	return (bits < 0) ? (bits ^ PG_INT64_MAX) : bits;
}

static double
ordered_to_double(int64 key)
{
	int64		bits = (key < 0) ? (key ^ PG_INT64_MAX) : key;
	double		value;

	memcpy(&value, &bits, sizeof(value));
	return value;
}

/*
 * Count the pairs with a[i] - b[j] <= limit, for ascending a and b.  For a
 * fixed i the qualifying j form a suffix of b, which only shrinks as i
 * grows, so one pass over both arrays suffices.  Floating-point
 * subtraction is monotonic in each operand, so the count is consistent
 * with the differences as computed.  Also sets *largest_below to the
 * largest difference at most limit and *least_above to the least one above
 * it, each left as it is when there is none.
 */
static int64
count_differences_at_most(const double *a, int n, const double *b, int m,
						  double limit, double *largest_below,
						  double *least_above)
{
	int64		count = 0;
	int			i;
	int			j = 0;
	bool		has_below = false;
	bool		has_above = false;
	double		largest = 0.0;
	double		least = 0.0;

	for (i = 0; i < n; i++)
	{
		while (j < m && a[i] - b[j] > limit)
			j++;
		count += m - j;

		/* In row i, a[i] - b[j] is the largest at most limit. */
		if (j < m && (!has_below || a[i] - b[j] > largest))
		{
			largest = a[i] - b[j];
			has_below = true;
		}
		if (j > 0 && (!has_above || a[i] - b[j - 1] < least))
		{
			least = a[i] - b[j - 1];
			has_above = true;
		}
	}
	if (has_below)
		*largest_below = largest;
	if (has_above)
		*least_above = least;
	return count;
}

/*
 * Return the k-th smallest of the differences a[i] - b[j] that lie in
 * (lower, upper], or are at most upper when has_lower is false, for
 * ascending a and b.  There are count of them.
 */
static double
kth_difference_in_range(const double *a, int n, const double *b, int m,
						bool has_lower, double lower, double upper,
						int64 count, int64 k)
{
	double	   *differences = palloc(sizeof(double) * Max(count, 1));
	int64		found = 0;
	int			first = 0;		/* first j with a[i] - b[j] <= upper */
	int			last = 0;		/* first j with a[i] - b[j] <= lower */
	double		result;

	for (int i = 0; i < n; i++)
	{
		/* Both bounds move right as a[i] grows. */
		while (first < m && a[i] - b[first] > upper)
			first++;
		if (last < first)
			last = first;
		while (has_lower && last < m && a[i] - b[last] > lower)
			last++;
		for (int j = first; j < (has_lower ? last : m); j++)
		{
			Assert(found < count);
			differences[found++] = a[i] - b[j];
		}
	}
	Assert(found == count);
	select_kth(differences, 0, (int) found - 1, (int) (k - 1));
	result = differences[k - 1];
	pfree(differences);
	return result;
}

/*
 * Return the k-th smallest (counting from 1) of the n * m differences
 * a[i] - b[j], for ascending a and b.
 *
 * Searches between the smallest and the largest difference for the
 * smallest double with at least k differences at or below it, with one
 * counting pass of O(n + m) per step.  A step probes where the k-th
 * difference would be if the differences between the bounds were evenly
 * spread, and each bound then moves to the nearest difference.  After a
 * step that did not halve the differences between the bounds, the next one
 * bisects the doubles' ordered integer keys.  That bounds the search to
 * fewer than 192 steps (64 bisections, as many probes that failed and 62
 * that halved).  On 1,250 against 10,000 log-normal latencies in whole
 * milliseconds it took 4 to 5 steps, where plain bisection of the keys took
 * up to 63, since the k-th difference is shared by many pairs.  Once no
 * more than n + m differences are left between the bounds, they are listed
 * and the k-th is selected.  The result is one of the differences, exact,
 * and the pairs are never all enumerated.
 */
static double
kth_smallest_difference(const double *a, int n, const double *b, int m,
						int64 k)
{
	int64		low = double_to_ordered(a[0] - b[m - 1]);
	int64		high = double_to_ordered(a[n - 1] - b[0]);
	int64		below = 0;		/* differences below low */
	int64		at_most_high = (int64) n * m;	/* differences up to high */
	bool		has_lower = false;
	double		lower = 0.0;	/* below low, no difference in between */
	bool		interpolate = true;

	while (low < high)
	{
		/* Unsigned arithmetic, because high - low can exceed PG_INT64_MAX */
		int64		middle;
		int64		count;
		int64		remaining;
		double		largest_below = 0.0;
		double		least_above = 0.0;

		if (at_most_high - below <= (int64) n + m)
			return kth_difference_in_range(a, n, b, m, has_lower, lower,
										   ordered_to_double(high),
										   at_most_high - below, k - below);

		middle = low + (int64) (((uint64) high - (uint64) low) / 2);
		if (interpolate)
		{
			double		low_value = ordered_to_double(low);
			double		high_value = ordered_to_double(high);
			double		share = (double) (k - below) / (at_most_high - below);
			double		guess = low_value + share * (high_value - low_value);

			if (isfinite(guess))
				middle = Min(Max(double_to_ordered(guess), low), high - 1);
		}
		count = count_differences_at_most(a, n, b, m,
										  ordered_to_double(middle),
										  &largest_below, &least_above);

		/*
		 * Move the bound to the nearest difference, so that a value that
		 * many pairs share ends the search once both bounds reach it.  The
		 * limits keep the step from moving back on a difference of 0.0 at
		 * a limit of -0.0, which compare equal but have other keys.
		 * Interpolate again only after a step that halved the candidates.
		 */
		remaining = at_most_high - below;
		if (count >= k)
		{
			high = Min(double_to_ordered(largest_below), middle);
			at_most_high = count;
		}
		else
		{
			low = Max(double_to_ordered(least_above), middle + 1);
			below = count;
			has_lower = true;
			lower = ordered_to_double(middle);
		}
		interpolate = !interpolate || at_most_high - below <= remaining / 2;
	}
	return ordered_to_double(low);
}

/*
 * Hodges-Lehmann estimate of the shift from baseline to canary: the median
 * of all differences canary - baseline, averaging the two middle ones when
 * there is an even number of them.  Runs in O(N log N + 192 N) for N values
 * in total, and usually much less (see kth_smallest_difference).  Returns
 * NaN when either sample is empty.
 */
double
canary_stats_hodges_lehmann(const double *canary, int n_canary,
							const double *baseline, int n_baseline)
{
	double	   *a;
	double	   *b;
	int64		pairs = (int64) n_canary * n_baseline;
	int64		middle = (pairs + 1) / 2;
	double		lower;
	double		upper;
	double		unused;

	if (pairs == 0)
		return get_float8_nan();

	a = sorted_copy(canary, n_canary);
	b = sorted_copy(baseline, n_baseline);

	/* With an even number of pairs, the next difference is needed as well */
	lower = kth_smallest_difference(a, n_canary, b, n_baseline, middle);
	upper = lower;
	if (pairs % 2 == 0 &&
		count_differences_at_most(a, n_canary, b, n_baseline, lower,
								  &unused, &unused) <= middle)
		upper = kth_smallest_difference(a, n_canary, b, n_baseline, middle + 1);
	pfree(a);
	pfree(b);

	/*
	 * Halving first cannot overflow, but it would round a subnormal value to
	 * 0, so a single middle difference is returned as it is.  Adding 0.0
	 * turns -0 into 0.
	 */
	if (lower == upper)
		return lower + 0.0;
	return lower / 2.0 + upper / 2.0 + 0.0;
}


/*
 * Error counts: Fisher's exact test and the two-proportion z-test
 */

/*
 * Check the error and request counts of both groups, raising an error that
 * names the SQL argument unless no count is negative, errors do not exceed
 * requests and the total request count fits in int64.
 */
void
canary_stats_check_counts(int64 canary_errors, int64 canary_requests,
						  int64 baseline_errors, int64 baseline_requests)
{
	const char *names[] = {"canary_errors", "canary_requests",
	"baseline_errors", "baseline_requests"};
	int64		counts[] = {canary_errors, canary_requests,
	baseline_errors, baseline_requests};
	int64		total;
	int			i;

	for (i = 0; i < 4; i++)
	{
		if (counts[i] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" must not be negative, but is %lld",
							names[i], (long long) counts[i]),
					 errhint("Pass error and request counts of zero or more.")));
	}
	for (i = 0; i < 4; i += 2)
	{
		if (counts[i] > counts[i + 1])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"%s\" (%lld) exceeds \"%s\" (%lld)",
							names[i], (long long) counts[i],
							names[i + 1], (long long) counts[i + 1]),
					 errhint("Every failed request also counts as a request, so errors cannot exceed requests.")));
	}
	if (pg_add_s64_overflow(canary_requests, baseline_requests, &total))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("total request count %lld + %lld is out of range",
						(long long) canary_requests,
						(long long) baseline_requests),
				 errhint("The canary and baseline request counts must add up to at most 9223372036854775807.")));
}

/*
 * The 2x2 table [[canary errors, canary successes], [baseline errors,
 * baseline successes]] with fixed margins.  Under the null hypothesis the
 * canary error count X is hypergeometric: `errors` of all requests failed,
 * `successes` did not, and the canary served `canary` of them.
 */
typedef struct HypergeometricTable
{
	int64		errors;
	int64		successes;
	int64		canary;
	int64		lowest;			/* smallest possible canary error count */
	int64		highest;		/* largest possible canary error count */
	int64		mode;			/* the most probable canary error count */
} HypergeometricTable;

/* Sums of hypergeometric weights that Fisher's test needs */
typedef struct FisherSums
{
	double		total;			/* all weights */
	double		at_least;		/* weights of X >= observed */
	double		at_most;		/* weights of X <= observed */
	double		as_extreme;		/* weights no larger than the observed one */
} FisherSums;

/* P(X = y + 1) / P(X = y) */
static double
hypergeometric_ratio_up(const HypergeometricTable *table, int64 y)
{
	return ((double) (table->errors - y) * (double) (table->canary - y)) /
		((double) (y + 1) * (double) (table->successes - table->canary + y + 1));
}

/* P(X = y - 1) / P(X = y) */
static double
hypergeometric_ratio_down(const HypergeometricTable *table, int64 y)
{
	return ((double) y * (double) (table->successes - table->canary + y)) /
		((double) (table->errors - y + 1) * (double) (table->canary - y + 1));
}

/*
 * Weight of X = x relative to the mode, by walking from the mode with the
 * same multiplications as fisher_sum_weights, so both agree to the last
 * bit.  Returns 0 when the weight falls below FISHER_NEGLIGIBLE_WEIGHT
 * before x is reached.
 */
static double
hypergeometric_weight(const HypergeometricTable *table, int64 x)
{
	double		weight = 1.0;
	int64		y;

	for (y = table->mode; y < x; y++)
	{
		weight *= hypergeometric_ratio_up(table, y);
		if (weight < FISHER_NEGLIGIBLE_WEIGHT)
			return 0.0;
	}
	for (y = table->mode; y > x; y--)
	{
		weight *= hypergeometric_ratio_down(table, y);
		if (weight < FISHER_NEGLIGIBLE_WEIGHT)
			return 0.0;
	}
	return weight;
}

/* Add the weight of X = y to each sum it belongs to */
static void
fisher_add_weight(FisherSums *sums, int64 y, double weight, int64 observed,
				  double threshold)
{
	sums->total += weight;
	if (y >= observed)
		sums->at_least += weight;
	if (y <= observed)
		sums->at_most += weight;
	if (weight <= threshold)
		sums->as_extreme += weight;
}

/*
 * Sum the weights outward from the mode on both sides until they become
 * negligible.  That takes about 74 standard deviations of X in steps, and
 * the standard deviation is at most sqrt(min(errors, successes)) / 2.
 */
static void
fisher_sum_weights(const HypergeometricTable *table, int64 observed,
				   double threshold, FisherSums *sums)
{
	double		weight = 1.0;
	int64		y;

	memset(sums, 0, sizeof(FisherSums));
	for (y = table->mode; y <= table->highest; y++)
	{
		fisher_add_weight(sums, y, weight, observed, threshold);
		if (y == table->highest)
			break;
		weight *= hypergeometric_ratio_up(table, y);
		if (weight < FISHER_NEGLIGIBLE_WEIGHT)
			break;
	}

	weight = 1.0;
	for (y = table->mode; y > table->lowest; y--)
	{
		weight *= hypergeometric_ratio_down(table, y);
		if (weight < FISHER_NEGLIGIBLE_WEIGHT)
			break;
		fisher_add_weight(sums, y - 1, weight, observed, threshold);
	}
}

/*
 * Fisher's exact test on the canary and baseline error counts, as R's
 * fisher.test computes it for a 2x2 table with odds ratio 1 under the null
 * hypothesis.  "greater" is P(X >= observed), "less" is P(X <= observed),
 * and "two-sided" sums the probabilities of all tables no more probable
 * than the observed one, with R's relative tolerance of 1e-7.
 *
 * Probabilities come from the ratio of consecutive hypergeometric
 * probabilities, not from factorials, so large counts cannot overflow.
 * p-values below about 1e-280 may be returned as 0.
 *
 * NOTE: the run time grows with the square root of the smaller of the
 * error and success totals: up to about 37 million steps at 1e12 errors.
 */
double
canary_stats_fisher_exact(int64 canary_errors, int64 canary_requests,
						  int64 baseline_errors, int64 baseline_requests,
						  CanaryAlternative alt)
{
	HypergeometricTable table;
	FisherSums	sums;
	double		mode;
	double		threshold;

	canary_stats_check_counts(canary_errors, canary_requests,
							  baseline_errors, baseline_requests);

	table.errors = canary_errors + baseline_errors;
	table.successes = (canary_requests - canary_errors) +
		(baseline_requests - baseline_errors);
	table.canary = canary_requests;
	table.lowest = Max(0, table.canary - table.successes);
	table.highest = Min(table.canary, table.errors);
	if (table.lowest == table.highest)
		return 1.0;

	/* The mode of the hypergeometric distribution, as a double */
	mode = floor(((double) table.canary + 1.0) * ((double) table.errors + 1.0) /
				 ((double) table.errors + (double) table.successes + 2.0));
	table.mode = Min(Max((int64) mode, table.lowest), table.highest);

	threshold = hypergeometric_weight(&table, canary_errors) *
		(1.0 + FISHER_RELATIVE_TOLERANCE);
	fisher_sum_weights(&table, canary_errors, threshold, &sums);

	switch (alt)
	{
		case CANARY_ALT_GREATER:
			return Min(1.0, sums.at_least / sums.total);
		case CANARY_ALT_LESS:
			return Min(1.0, sums.at_most / sums.total);
		case CANARY_ALT_TWO_SIDED:
			return Min(1.0, sums.as_extreme / sums.total);
	}
	elog(ERROR, "unrecognized alternative hypothesis: %d", (int) alt);
	return 1.0;					/* keep compiler quiet */
}

/*
 * Two-proportion z-test with pooled variance: z is the canary error rate
 * minus the baseline error rate, divided by its standard error under the
 * null hypothesis of one common rate.  When either group has no requests,
 * or no request or every request failed, the variance is 0 and the result
 * is z = 0, p = 1.
 */
void
canary_stats_two_proportion_z(int64 canary_errors, int64 canary_requests,
							  int64 baseline_errors, int64 baseline_requests,
							  CanaryAlternative alt, double *z, double *p_value)
{
	double		pooled;
	double		standard_error;

	canary_stats_check_counts(canary_errors, canary_requests,
							  baseline_errors, baseline_requests);

	*z = 0.0;
	*p_value = 1.0;
	if (canary_requests == 0 || baseline_requests == 0)
		return;

	pooled = ((double) canary_errors + (double) baseline_errors) /
		((double) canary_requests + (double) baseline_requests);
	standard_error = sqrt(pooled * (1.0 - pooled) *
						  (1.0 / canary_requests + 1.0 / baseline_requests));
	if (!(standard_error > 0.0))
		return;

	*z = ((double) canary_errors / canary_requests -
		  (double) baseline_errors / baseline_requests) / standard_error;
	*p_value = normal_p_value(*z, alt);
}


/*
 * Sequential test on a stream of 2x2 tables
 *
 * Each table compares one time bucket: the canary had canary_events events
 * (errors, or values beyond a pooled percentile) among canary_requests, the
 * baseline baseline_events among baseline_requests.  When both versions draw
 * from the same distribution and requests are routed at random, then given
 * the pooled data of the bucket, and so given the event total K, the canary
 * event count U is hypergeometric: the canary's requests are a uniform
 * random subset of the bucket's requests.  This holds exactly, whatever the
 * distribution and however small the counts.
 *
 * Fisher's noncentral hypergeometric distribution with odds ratio psi tilts
 * that law by psi^u, so its likelihood ratio against the null is
 *	 L(psi) = psi^x / E_0[psi^U].
 * Under the null, E_0[L(psi)] = 1 in every bucket given the past, so the
 * product of L over buckets is a nonnegative martingale with mean 1, the
 * likelihood ratio product of Wald's sequential probability ratio test
 * (Wald, "Sequential tests of statistical hypotheses", Ann. Math. Statist.
 * 16, 1945).  For
 * psi > 1 the product stays a supermartingale when the canary's true odds
 * ratio is at most 1, because psi^U is increasing in U and U is then
 * stochastically smaller than under the null.  A mixture
 *	 M = sum_k w_k prod_j L_j(psi_k),  sum_k w_k = 1,
 * is again such a (super)martingale (Robbins, "Statistical methods related
 * to the law of the iterated logarithm", Ann. Math. Statist. 41, 1970), and
 * Ville's maximal inequality (Ville, "Etude critique de la notion de
 * collectif", 1939) bounds the chance that it ever reaches 1/a by a:
 *	 P(sup_t M_t >= 1/a) <= a.
 * Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform, nonparametric,
 * nonasymptotic confidence sequences" (Ann. Statist. 49, 2021) put such
 * tests in a general framework.  So rejecting when M >= 1/a, at any of
 * arbitrarily many looks, rolls back a canary that is no worse with
 * probability at most a.
 */

/*
 * Default mixture: odds ratios from 1.1 to 30 on a roughly geometric grid,
 * equally weighted.  Against any single odds ratio of the grid the mixture
 * loses at most log(10) = 2.3 in log evidence, and the grid covers both the
 * small shifts of a large rollout and the large ones that a few requests
 * can show.
 */
static const double default_odds_ratios[] = {
	1.1, 1.2, 1.35, 1.5, 1.75, 2.0, 3.0, 5.0, 10.0, 30.0
};

/*
 * Add x to the log-sum-exp accumulator (*max, *sum): afterwards
 * log(sum of exp of all values added) = *max + log(*sum).  Start with
 * *max = -Infinity and *sum = 0.
 */
static inline void
log_sum_exp_add(double *max, double *sum, double x)
{
	if (x <= *max)
		*sum += exp(x - *max);
	else
	{
		*sum = *sum * exp(*max - x) + 1.0;
		*max = x;
	}
}

/*
 * Set up a sequential test with the given odds ratios (each > 1) and
 * weights (each >= 0, not all 0; they are scaled to sum to 1).  NULL
 * odds_ratios selects the default grid with equal weights, and NULL
 * weights with given odds ratios weigh them equally.  Callers check the
 * values; count must be between 1 and CANARY_STATS_MAX_ODDS_RATIOS.
 */
void
canary_stats_sequential_init(CanarySequentialTest *test,
							 const double *odds_ratios,
							 const double *weights, int count)
{
	double		total = 0.0;
	int			k;

	if (odds_ratios == NULL)
	{
		odds_ratios = default_odds_ratios;
		weights = NULL;
		count = lengthof(default_odds_ratios);
	}
	if (count < 1 || count > CANARY_STATS_MAX_ODDS_RATIOS)
		elog(ERROR, "invalid number of odds ratios: %d", count);

	memset(test, 0, sizeof(CanarySequentialTest));
	test->count = count;
	for (k = 0; k < count; k++)
		total += weights ? weights[k] : 1.0;
	for (k = 0; k < count; k++)
	{
		double		weight = weights ? weights[k] : 1.0;

		int			exponent;

		test->odds_ratio[k] = odds_ratios[k];
		test->weight[k] = weight / total;
		test->likelihood[k] = frexp(test->weight[k], &exponent);
		test->exponent[k] = exponent;
	}
}

/* Supports shorter than this are first summed in plain arithmetic. */
#define HYPERGEOMETRIC_SHORT_SUPPORT 64

/*
 * A weighted likelihood product is kept as a mantissa in this range times a
 * power of two, so that neither part overflows however many tables are
 * added.
 */
#define LIKELIHOOD_LOW 0x1p-256
#define LIKELIHOOD_HIGH 0x1p256

/*
 * Sum the null law of U in plain arithmetic, for a support shorter than
 * HYPERGEOMETRIC_SHORT_SUPPORT, instead of with one exp() per term and odds
 * ratio.  With w_u = P(u) / P(lowest) over the support lowest .. highest
 * (see hypergeometric_log_mgf_log_space), sets *null_sum to sum_u w_u,
 * sum[k] to sum_u w_u psi_k^(u - lowest) and power_at[k] to
 * psi_k^(at - lowest), for a u named at inside the support.  Then
 *	 E_0[psi_k^U] = psi_k^lowest * sum[k] / *null_sum.
 * Returns false, when the support is long or a sum overflowed or vanished,
 * for the caller to sum in log space instead.
 */
static bool
hypergeometric_sums(int64 n_c, int64 n_b, int64 events, const double *psi,
					int count, int64 at, double *null_sum, double *sum,
					double *power_at)
{
	int64		lowest = Max(0, events - n_b);
	int64		highest = Min(events, n_c);
	double		weight = 1.0;	/* P(u) / P(lowest) */
	double		power[CANARY_STATS_MAX_ODDS_RATIOS];	/* psi^(u - lowest) */
	int			k;

	if (highest - lowest >= HYPERGEOMETRIC_SHORT_SUPPORT)
		return false;
	*null_sum = 0.0;
	for (k = 0; k < count; k++)
	{
		power[k] = 1.0;
		sum[k] = 0.0;
	}

	for (int64 u = lowest; u <= highest; u++)
	{
		if (u == at)
			memcpy(power_at, power, sizeof(double) * count);
		*null_sum += weight;
		for (k = 0; k < count; k++)
		{
			sum[k] += weight * power[k];
			power[k] *= psi[k];
		}
		if (u < highest)
			weight *= ((double) (n_c - u) * (double) (events - u)) /
				((double) (u + 1) * (double) (n_b - events + u + 1));
	}

	if (!isfinite(*null_sum) || *null_sum <= 0.0)
		return false;
	for (k = 0; k < count; k++)
		if (!isfinite(sum[k]) || sum[k] <= 0.0)
			return false;
	return true;
}

/*
 * Compute log E_0[psi_k^U] for each of count log odds ratios into log_mgf
 * in log space, where U is hypergeometric: the canary's share of `events`
 * events among canary_requests + baseline_requests requests, canary_requests
 * of them the canary's.  The support is max(0, K - n_b) .. min(K, n_c), and
 * consecutive probabilities follow
 *	 P(u + 1) / P(u) = (n_c - u)(K - u) / ((u + 1)(n_b - K + u + 1)),
 * so that no count overflows.
 *
 * NOTE: the run time is linear in the support, up to min(K, n_c) + 1 terms
 * times count, which bounds the cost of a bucket with many requests.
 */
static void
hypergeometric_log_mgf_log_space(int64 n_c, int64 n_b, int64 events,
								 const double *log_psi, int count,
								 double *log_mgf)
{
	int64		lowest = Max(0, events - n_b);
	int64		highest = Min(events, n_c);
	double		log_weight = 0.0;	/* log P(u) / P(lowest) */
	double		null_max = -get_float8_infinity();
	double		null_sum = 0.0;
	double		max[CANARY_STATS_MAX_ODDS_RATIOS];
	double		sum[CANARY_STATS_MAX_ODDS_RATIOS];
	int64		u;
	int			k;

	for (k = 0; k < count; k++)
	{
		max[k] = -get_float8_infinity();
		sum[k] = 0.0;
	}

	for (u = lowest; u <= highest; u++)
	{
		log_sum_exp_add(&null_max, &null_sum, log_weight);
		for (k = 0; k < count; k++)
			log_sum_exp_add(&max[k], &sum[k], log_weight + u * log_psi[k]);
		if (u < highest)
			log_weight += log((double) (n_c - u) * (double) (events - u)) -
				log((double) (u + 1) * (double) (n_b - events + u + 1));
	}

	for (k = 0; k < count; k++)
		log_mgf[k] = (max[k] + log(sum[k])) - (null_max + log(null_sum));
}

/*
 * Multiply weighted likelihood product k of a test by factor, a finite
 * positive number, keeping the mantissa within LIKELIHOOD_LOW ..
 * LIKELIHOOD_HIGH.  A product of weight 0 stays 0.
 */
static inline void
scale_likelihood(CanarySequentialTest *test, int k, double factor)
{
	int			exponent;

	if (test->likelihood[k] == 0.0)
		return;
	if (!(factor >= LIKELIHOOD_LOW && factor <= LIKELIHOOD_HIGH))
	{
		factor = frexp(factor, &exponent);
		test->exponent[k] += exponent;
	}
	test->likelihood[k] *= factor;
	if (!(test->likelihood[k] >= LIKELIHOOD_LOW &&
		  test->likelihood[k] <= LIKELIHOOD_HIGH))
	{
		test->likelihood[k] = frexp(test->likelihood[k], &exponent);
		test->exponent[k] += exponent;
	}
}

/*
 * Multiply weighted likelihood product k of a test by exp(log_factor), a
 * finite number: by 2^n exp(r) with 0 <= r < log(2).
 */
static void
scale_likelihood_log(CanarySequentialTest *test, int k, double log_factor)
{
	double		twos = floor(log_factor / M_LN2);

	test->exponent[k] += (int64) twos;
	scale_likelihood(test, k, exp(log_factor - twos * M_LN2));
}

/*
 * Return log M = log sum_k w_k prod_j L_j(psi_k) of a test.  The term with
 * the highest power of two has a mantissa of at least LIKELIHOOD_LOW, so
 * the sum is positive.
 */
static double
mixture_log_evidence(const CanarySequentialTest *test)
{
	int64		top = PG_INT64_MIN;
	double		sum = 0.0;
	int			k;

	for (k = 0; k < test->count; k++)
		if (test->likelihood[k] > 0.0 && test->exponent[k] > top)
			top = test->exponent[k];
	for (k = 0; k < test->count; k++)
	{
		int64		shift = test->exponent[k] - top;

		if (test->likelihood[k] == 0.0 || shift < -2 * DBL_MAX_EXP)
			continue;
		sum += shift == 0 ? test->likelihood[k] :
			ldexp(test->likelihood[k], (int) shift);
	}
	return top * M_LN2 + log(sum);
}

/*
 * Multiply the test's likelihood ratios by those of one bucket's 2x2 table
 * and update its evidence.  A bucket without requests of one version, or
 * whose requests are all events or all non-events, leaves the evidence as
 * it is: its hypergeometric law has a single point, so L = 1.  Counts must
 * be valid (0 <= events <= requests), which canary_stats_check_counts
 * checks for SQL callers.
 *
 * L_j(psi_k) = psi_k^x / E_0[psi_k^U] is psi_k^(x - lowest) * null_sum /
 * sum[k] with the sums of hypergeometric_sums, without exp() or log() per
 * odds ratio.  Long supports, and sums that overflow or vanish, are summed
 * in log space instead.
 */
void
canary_stats_sequential_add(CanarySequentialTest *test, int64 canary_events,
							int64 canary_requests, int64 baseline_events,
							int64 baseline_requests)
{
	int64		events = canary_events + baseline_events;
	int64		total = canary_requests + baseline_requests;
	double		null_sum;
	double		sum[CANARY_STATS_MAX_ODDS_RATIOS];
	double		power_at[CANARY_STATS_MAX_ODDS_RATIOS];
	int			k;

	if (canary_requests == 0 || baseline_requests == 0)
		return;

	/* Totals and the Mantel-Haenszel sums cover every compared bucket. */
	test->buckets++;
	test->canary_events += canary_events;
	test->canary_requests += canary_requests;
	test->baseline_events += baseline_events;
	test->baseline_requests += baseline_requests;
	test->mh_numerator += (double) canary_events *
		(double) (baseline_requests - baseline_events) / total;
	test->mh_denominator += (double) baseline_events *
		(double) (canary_requests - canary_events) / total;
	if (events == 0 || events == total)
		return;

	if (hypergeometric_sums(canary_requests, baseline_requests, events,
							test->odds_ratio, test->count, canary_events,
							&null_sum, sum, power_at))
	{
		for (k = 0; k < test->count; k++)
			scale_likelihood(test, k, power_at[k] * (null_sum / sum[k]));
	}
	else
	{
		double		log_psi[CANARY_STATS_MAX_ODDS_RATIOS] = {0};
		double		log_mgf[CANARY_STATS_MAX_ODDS_RATIOS];

		for (k = 0; k < test->count; k++)
			log_psi[k] = log(test->odds_ratio[k]);
		hypergeometric_log_mgf_log_space(canary_requests, baseline_requests,
										 events, log_psi, test->count,
										 log_mgf);
		for (k = 0; k < test->count; k++)
			scale_likelihood_log(test, k,
								 canary_events * log_psi[k] - log_mgf[k]);
	}

	test->log_evidence = mixture_log_evidence(test);
	test->max_log_evidence = Max(test->max_log_evidence, test->log_evidence);
}

/*
 * Mantel-Haenszel estimate of the common odds ratio (canary over baseline)
 * of the buckets added so far (Mantel and Haenszel, J. Natl. Cancer Inst.
 * 22, 1959): sum x_j (n_bj - y_j) / N_j over sum y_j (n_cj - x_j) / N_j.
 * Returns NaN when both sums are 0 and Infinity when only the second is.
 */
double
canary_stats_sequential_odds_ratio(const CanarySequentialTest *test)
{
	if (test->mh_denominator > 0.0)
		return test->mh_numerator / test->mh_denominator;
	if (test->mh_numerator > 0.0)
		return get_float8_infinity();
	return get_float8_nan();
}

/*
 * Log evidence that a rate exceeds limit, from `events` among `requests`
 * independent trials: the mixture, with the weights and odds ratios psi_k of
 * `mixture`, of the binomial likelihood ratios of q_k against limit, where
 * q_k has psi_k times the odds of limit:
 *	 L_k = (q_k / limit)^events ((1 - q_k) / (1 - limit))^(requests - events).
 * For q > limit each trial's factor has expectation at most 1 whenever the
 * trial's true rate is at most limit, so by Ville's inequality the evidence
 * reaches 1/a with probability at most a over all looks.  A limit of 1 or
 * more can never be exceeded (0 is returned); a limit of 0 or less is
 * exceeded for certain by one event (Infinity is returned).
 */
double
canary_stats_rate_log_evidence(const CanarySequentialTest *mixture,
							   int64 events, int64 requests, double limit)
{
	double		max = -get_float8_infinity();
	double		sum = 0.0;
	double		odds;
	int			k;

	if (limit >= 1.0)
		return 0.0;
	if (limit <= 0.0)
		return events > 0 ? get_float8_infinity() : 0.0;

	odds = limit / (1.0 - limit);
	for (k = 0; k < mixture->count; k++)
	{
		double		tilted = odds * mixture->odds_ratio[k];
		double		q = tilted / (1.0 + tilted);

		if (mixture->weight[k] > 0.0)
			log_sum_exp_add(&max, &sum, log(mixture->weight[k]) +
							events * log(q / limit) +
							(requests - events) * (log1p(-q) - log1p(-limit)));
	}
	return max + log(sum);
}


/*
 * SQL-callable wrappers
 */

/*
 * Return the float8[] argument argno as a palloc'd array of doubles, after
 * checking that it is not NULL, has at most one dimension and contains only
 * finite, non-NULL values.  sample names the argument in error messages.
 */
static double *
sample_argument(FunctionCallInfo fcinfo, int argno, const char *sample,
				int *count)
{
	ArrayType  *array;
	Datum	   *elements;
	bool	   *nulls;
	double	   *values;
	int			lower_bound;
	int			i;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s sample must not be null", sample),
				 errhint("Pass an empty array when there are no observations.")));

	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s sample must be a one-dimensional array, not %d-dimensional",
						sample, ARR_NDIM(array)),
				 errhint("Pass the observations as a flat float8 array.")));

	deconstruct_array(array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elements, &nulls, count);
	lower_bound = (ARR_NDIM(array) == 1) ? ARR_LBOUND(array)[0] : 1;

	values = palloc(sizeof(double) * Max(*count, 1));
	for (i = 0; i < *count; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s sample contains a null value at subscript %d",
							sample, lower_bound + i),
					 errhint("Remove the nulls first, for example with array_remove(sample, NULL).")));

		values[i] = DatumGetFloat8(elements[i]);
		if (isnan(values[i]) || isinf(values[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s sample contains invalid value \"%s\" at subscript %d",
							sample, float8out_internal(values[i]),
							lower_bound + i),
					 errhint("Only finite values can be compared, so remove NaN and infinite values first.")));
	}
	return values;
}

/* Return the bigint argument argno, called name in error messages */
static int64
count_argument(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("\"%s\" must not be null", name),
				 errhint("Pass 0 when nothing was counted.")));
	return PG_GETARG_INT64(argno);
}

/* Parse the text argument argno as an alternative hypothesis */
static CanaryAlternative
alternative_argument(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("alternative hypothesis must not be null"),
				 errhint("Valid alternatives are \"two-sided\", \"greater\" and \"less\".")));
	return canary_stats_parse_alternative(
		text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/* Build a row of the function's composite result type from values */
static Datum
result_row(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/*
 * canary_mann_whitney(canary float8[], baseline float8[], alternative text)
 * returns (u, z, p_value, p_exact).  p_exact is NULL when the exact
 * distribution is not computed.
 */
PG_FUNCTION_INFO_V1(canary_mann_whitney);
Datum
canary_mann_whitney(PG_FUNCTION_ARGS)
{
	int			n_canary;
	int			n_baseline;
	double	   *canary = sample_argument(fcinfo, 0, "canary", &n_canary);
	double	   *baseline = sample_argument(fcinfo, 1, "baseline", &n_baseline);
	CanaryAlternative alt = alternative_argument(fcinfo, 2);
	CanaryMannWhitney result;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	canary_stats_mann_whitney(canary, n_canary, baseline, n_baseline, alt,
							  &result);

	values[0] = Float8GetDatum(result.u);
	values[1] = Float8GetDatum(result.z);
	values[2] = Float8GetDatum(result.p_value);
	values[3] = Float8GetDatum(result.p_exact);
	nulls[3] = !result.has_exact;
	PG_RETURN_DATUM(result_row(fcinfo, values, nulls));
}

/*
 * canary_hodges_lehmann(canary float8[], baseline float8[]) returns the
 * median of the pairwise differences, or NULL when a sample is empty.
 */
PG_FUNCTION_INFO_V1(canary_hodges_lehmann);
Datum
canary_hodges_lehmann(PG_FUNCTION_ARGS)
{
	int			n_canary;
	int			n_baseline;
	double	   *canary = sample_argument(fcinfo, 0, "canary", &n_canary);
	double	   *baseline = sample_argument(fcinfo, 1, "baseline", &n_baseline);
	double		shift;

	if (n_canary == 0 || n_baseline == 0)
		PG_RETURN_NULL();

	/* A difference of two finite values can still overflow to infinity */
	shift = canary_stats_hodges_lehmann(canary, n_canary, baseline, n_baseline);
	if (isnan(shift) || isinf(shift))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("median difference between canary and baseline values is out of range for type double precision"),
				 errhint("Rescale both samples, for example to larger time units, so that their differences stay finite.")));
	PG_RETURN_FLOAT8(shift);
}

/*
 * canary_fisher_exact(canary_errors, canary_requests, baseline_errors,
 * baseline_requests bigint, alternative text) returns the p-value.
 */
PG_FUNCTION_INFO_V1(canary_fisher_exact);
Datum
canary_fisher_exact(PG_FUNCTION_ARGS)
{
	int64		canary_errors = count_argument(fcinfo, 0, "canary_errors");
	int64		canary_requests = count_argument(fcinfo, 1, "canary_requests");
	int64		baseline_errors = count_argument(fcinfo, 2, "baseline_errors");
	int64		baseline_requests = count_argument(fcinfo, 3, "baseline_requests");
	CanaryAlternative alt = alternative_argument(fcinfo, 4);

	PG_RETURN_FLOAT8(canary_stats_fisher_exact(canary_errors, canary_requests,
											   baseline_errors,
											   baseline_requests, alt));
}

/*
 * canary_two_proportion_z(canary_errors, canary_requests, baseline_errors,
 * baseline_requests bigint, alternative text) returns (z, p_value).
 */
PG_FUNCTION_INFO_V1(canary_two_proportion_z);
Datum
canary_two_proportion_z(PG_FUNCTION_ARGS)
{
	int64		canary_errors = count_argument(fcinfo, 0, "canary_errors");
	int64		canary_requests = count_argument(fcinfo, 1, "canary_requests");
	int64		baseline_errors = count_argument(fcinfo, 2, "baseline_errors");
	int64		baseline_requests = count_argument(fcinfo, 3, "baseline_requests");
	CanaryAlternative alt = alternative_argument(fcinfo, 4);
	double		z;
	double		p_value;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	canary_stats_two_proportion_z(canary_errors, canary_requests,
								  baseline_errors, baseline_requests, alt,
								  &z, &p_value);

	values[0] = Float8GetDatum(z);
	values[1] = Float8GetDatum(p_value);
	PG_RETURN_DATUM(result_row(fcinfo, values, nulls));
}

/*
 * Return the bigint[] argument argno as a palloc'd array, after checking
 * that it is not NULL, is one-dimensional or empty and has no NULL element.
 */
static int64 *
count_array_argument(FunctionCallInfo fcinfo, int argno, const char *name,
					 int *count)
{
	ArrayType  *array;
	Datum	   *elements;
	bool	   *nulls;
	int64	   *values;
	int			i;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("\"%s\" must not be null", name),
				 errhint("Pass one count per time bucket, or an empty array.")));
	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" must be a one-dimensional array, not %d-dimensional",
						name, ARR_NDIM(array))));
	deconstruct_array(array, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elements, &nulls, count);
	values = palloc(sizeof(int64) * Max(*count, 1));
	for (i = 0; i < *count; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("\"%s\" contains a null value at position %d",
							name, i + 1),
					 errhint("Pass 0 for a bucket without requests.")));
		values[i] = DatumGetInt64(elements[i]);
	}
	return values;
}

/*
 * Return the float8[] argument argno of canary_sequential_evidence, or NULL
 * when it is NULL.  Every element must be finite and, for odds ratios,
 * above 1, for weights at least 0.
 */
static double *
mixture_argument(FunctionCallInfo fcinfo, int argno, const char *name,
				 double minimum, bool minimum_allowed, int *count)
{
	double	   *values;
	int			i;

	*count = 0;
	if (PG_ARGISNULL(argno))
		return NULL;
	values = sample_argument(fcinfo, argno, name, count);
	if (*count < 1 || *count > CANARY_STATS_MAX_ODDS_RATIOS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s has %d elements, but 1 to %d are required",
						name, *count, CANARY_STATS_MAX_ODDS_RATIOS)));
	for (i = 0; i < *count; i++)
	{
		if (values[i] < minimum || (values[i] == minimum && !minimum_allowed))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s contains invalid value %g at position %d",
							name, values[i], i + 1),
					 minimum_allowed ?
					 errhint("Weights must be 0 or more.") :
					 errhint("Odds ratios must be above 1, because the test looks for a canary that is worse.")));
	}
	return values;
}

/*
 * Check the odds ratios and weights of canary_sequential_evidence and set
 * up the test.
 */
static void
sequential_mixture_arguments(FunctionCallInfo fcinfo,
							 CanarySequentialTest *test)
{
	int			n_odds;
	int			n_weights;
	double	   *odds_ratios = mixture_argument(fcinfo, 4, "odds_ratios",
											   1.0, false, &n_odds);
	double	   *weights = mixture_argument(fcinfo, 5, "weights",
										   0.0, true, &n_weights);
	double		total = 0.0;

	if (weights != NULL && odds_ratios == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights need odds_ratios"),
				 errhint("The default mixture weighs its odds ratios equally; pass odds_ratios with the weights.")));
	if (weights != NULL && n_weights != n_odds)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights has %d elements, but odds_ratios has %d",
						n_weights, n_odds)));
	for (int i = 0; i < n_weights; i++)
		total += weights[i];
	if (weights != NULL && !(total > 0.0 && isfinite(total)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights must have a positive, finite sum")));

	canary_stats_sequential_init(test, odds_ratios, weights, n_odds);
}

/*
 * canary_sequential_evidence(canary_events, canary_requests,
 * baseline_events, baseline_requests bigint[], odds_ratios, weights
 * float8[]) returns (log_evidence, evidence): the mixture martingale of
 * canary_stats_sequential_add after the given buckets, one array element
 * per bucket.
 */
PG_FUNCTION_INFO_V1(canary_sequential_evidence);
Datum
canary_sequential_evidence(PG_FUNCTION_ARGS)
{
	const char *names[] = {"canary_events", "canary_requests",
	"baseline_events", "baseline_requests"};
	int64	   *counts[4];
	int			lengths[4];
	CanarySequentialTest test;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			i;

	for (i = 0; i < 4; i++)
		counts[i] = count_array_argument(fcinfo, i, names[i], &lengths[i]);
	for (i = 1; i < 4; i++)
		if (lengths[i] != lengths[0])
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("\"%s\" has %d elements, but \"%s\" has %d",
							names[i], lengths[i], names[0], lengths[0]),
					 errhint("Pass one element per time bucket in each array.")));
	sequential_mixture_arguments(fcinfo, &test);

	for (i = 0; i < lengths[0]; i++)
	{
		canary_stats_check_counts(counts[0][i], counts[1][i],
								  counts[2][i], counts[3][i]);
		canary_stats_sequential_add(&test, counts[0][i], counts[1][i],
									counts[2][i], counts[3][i]);
	}

	values[0] = Float8GetDatum(test.log_evidence);
	values[1] = Float8GetDatum(exp(test.log_evidence));
	PG_RETURN_DATUM(result_row(fcinfo, values, nulls));
}
