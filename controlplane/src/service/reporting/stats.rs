//! Sums of usage (saturating), their derived figures (error rate, USD, percentiles estimated
//! from the rollups' latency histograms) and the views they render as.

use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::reporting::{DailyRow, BUCKETS, LATENCY_BOUNDS_MS};

/// Raw sums: what rollup rows add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micro_usd: i64,
    pub latency_ms_sum: i64,
    pub ttft_count: i64,
    pub ttft_ms_sum: i64,
    pub latency_hist: [i64; BUCKETS],
    pub ttft_hist: [i64; BUCKETS],
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_micro_usd: 0,
            latency_ms_sum: 0,
            ttft_count: 0,
            ttft_ms_sum: 0,
            latency_hist: [0; BUCKETS],
            ttft_hist: [0; BUCKETS],
        }
    }
}

fn add_hist(into: &mut [i64; BUCKETS], from: &[i64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.saturating_add(*b);
    }
}

impl Sums {
    /// Adds one day's row (saturating).
    pub fn add_row(&mut self, row: &DailyRow) {
        self.requests = self.requests.saturating_add(row.requests);
        self.errors = self.errors.saturating_add(row.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(row.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(row.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(row.cached_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(row.cost_micro_usd);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(row.latency_ms_sum);
        self.ttft_count = self.ttft_count.saturating_add(row.ttft_count);
        self.ttft_ms_sum = self.ttft_ms_sum.saturating_add(row.ttft_ms_sum);
        add_hist(&mut self.latency_hist, &row.latency_hist);
        add_hist(&mut self.ttft_hist, &row.ttft_hist);
    }

    /// Adds other sums (saturating).
    pub fn add(&mut self, other: &Sums) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.cost_micro_usd = self.cost_micro_usd.saturating_add(other.cost_micro_usd);
        self.latency_ms_sum = self.latency_ms_sum.saturating_add(other.latency_ms_sum);
        self.ttft_count = self.ttft_count.saturating_add(other.ttft_count);
        self.ttft_ms_sum = self.ttft_ms_sum.saturating_add(other.ttft_ms_sum);
        add_hist(&mut self.latency_hist, &other.latency_hist);
        add_hist(&mut self.ttft_hist, &other.ttft_hist);
    }

    /// The figures shown.
    pub fn totals(&self) -> UsageTotals {
        let ratio = |n: i64, d: i64| if d > 0 { n as f64 / d as f64 } else { 0.0 };
        let mean = |sum: i64, n: i64| (n > 0).then(|| ratio(sum, n));
        UsageTotals {
            requests: self.requests,
            errors: self.errors,
            error_rate: ratio(self.errors, self.requests),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
            total_tokens: self.prompt_tokens.saturating_add(self.completion_tokens),
            spend_usd: crate::service::governance::micros_to_usd(self.cost_micro_usd),
            spend_micro_usd: self.cost_micro_usd,
            avg_latency_ms: mean(self.latency_ms_sum, self.requests),
            p50_latency_ms: percentile(&self.latency_hist, 0.50),
            p95_latency_ms: percentile(&self.latency_hist, 0.95),
            avg_ttft_ms: mean(self.ttft_ms_sum, self.ttft_count),
            p50_ttft_ms: percentile(&self.ttft_hist, 0.50),
            p95_ttft_ms: percentile(&self.ttft_hist, 0.95),
        }
    }
}

/// The `q` quantile (0–1) of a histogram over [`LATENCY_BOUNDS_MS`], interpolated linearly
/// inside its bucket; the open last bucket answers its lower bound. `None` when empty.
pub fn percentile(hist: &[i64; BUCKETS], q: f64) -> Option<f64> {
    let total: i64 = hist.iter().fold(0i64, |a, b| a.saturating_add(*b));
    if total <= 0 {
        return None;
    }
    let target = q * total as f64;
    let mut seen = 0.0;
    for (i, count) in hist.iter().enumerate() {
        let count = *count as f64;
        if count > 0.0 && seen + count >= target {
            let lower = if i == 0 { 0 } else { LATENCY_BOUNDS_MS[i - 1] } as f64;
            let Some(upper) = LATENCY_BOUNDS_MS.get(i) else {
                return Some(lower);
            };
            let within = ((target - seen) / count).clamp(0.0, 1.0);
            return Some((lower + (*upper as f64 - lower) * within).round());
        }
        seen += count;
    }
    Some(LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.len() - 1] as f64)
}

/// Usage figures of a range, a day or an entity.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageTotals {
    pub requests: i64,
    /// Requests answered with a status of 400 or more (499: the client left first).
    pub errors: i64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Tokens in (cached ones included).
    pub prompt_tokens: i64,
    /// Tokens out.
    pub completion_tokens: i64,
    /// Prompt tokens read from a provider's prompt cache (part of `prompt_tokens`).
    pub cached_tokens: i64,
    pub total_tokens: i64,
    /// Spend in USD (`spend_micro_usd` / 1,000,000).
    pub spend_usd: f64,
    /// Spend in micro-USD, exact.
    pub spend_micro_usd: i64,
    /// Mean latency (ms); `null` without requests.
    pub avg_latency_ms: Option<f64>,
    /// Median latency (ms), estimated from histogram buckets (docs/reporting.md).
    pub p50_latency_ms: Option<f64>,
    /// 95th percentile latency (ms), estimated likewise.
    pub p95_latency_ms: Option<f64>,
    /// Mean time to first token (ms) of streamed requests.
    pub avg_ttft_ms: Option<f64>,
    pub p50_ttft_ms: Option<f64>,
    pub p95_ttft_ms: Option<f64>,
}

/// One local day.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayPoint {
    /// The day in the report's timezone (`YYYY-MM-DD`).
    #[schema(value_type = String, format = Date)]
    pub date: NaiveDate,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_inside_buckets() {
        let mut hist = [0i64; BUCKETS];
        // 100 requests in [100, 150): the median is half-way, p95 near the top.
        hist[7] = 100;
        assert_eq!(percentile(&hist, 0.5), Some(125.0));
        assert_eq!(percentile(&hist, 0.95), Some(148.0));
        assert_eq!(percentile(&[0; BUCKETS], 0.5), None);
        let mut open = [0i64; BUCKETS];
        open[BUCKETS - 1] = 3;
        assert_eq!(percentile(&open, 0.5), Some(120_000.0));
    }

    #[test]
    fn sums_saturate() {
        let mut a = Sums {
            cost_micro_usd: i64::MAX - 1,
            ..Sums::default()
        };
        a.add(&Sums {
            cost_micro_usd: 5,
            ..Sums::default()
        });
        assert_eq!(a.cost_micro_usd, i64::MAX);
    }
}
