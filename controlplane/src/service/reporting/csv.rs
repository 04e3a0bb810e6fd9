//! A breakdown as CSV (RFC 4180: CRLF line ends, fields quoted when they hold a comma, a
//! quote, CR or LF, quotes doubled): a header row, then one row per entity and local day.

use super::stats::UsageTotals;
use super::Breakdown;

const HEADER: [&str; 18] = [
    "group_by",
    "key",
    "label",
    "date",
    "requests",
    "errors",
    "error_rate",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "spend_usd",
    "spend_micro_usd",
    "avg_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p50_ttft_ms",
    "p95_ttft_ms",
];

/// One field, quoted as RFC 4180 requires. Text a spreadsheet would run as a formula
/// (leading `=`, `+`, `-`, `@`, tab or CR) is prefixed with `'` (names are user input).
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn optional(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

fn figures(t: &UsageTotals) -> [String; 14] {
    [
        t.requests.to_string(),
        t.errors.to_string(),
        t.error_rate.to_string(),
        t.prompt_tokens.to_string(),
        t.completion_tokens.to_string(),
        t.cached_tokens.to_string(),
        t.total_tokens.to_string(),
        format!("{:.6}", t.spend_usd),
        t.spend_micro_usd.to_string(),
        optional(t.avg_latency_ms),
        optional(t.p50_latency_ms),
        optional(t.p95_latency_ms),
        optional(t.p50_ttft_ms),
        optional(t.p95_ttft_ms),
    ]
}

/// The CSV text of `breakdown`.
pub fn breakdown_csv(breakdown: &Breakdown) -> String {
    let mut out = HEADER.join(",");
    out.push_str("\r\n");
    for row in &breakdown.rows {
        for day in &row.days {
            let mut fields = vec![
                field(&breakdown.group_by),
                field(row.key.as_deref().unwrap_or("")),
                field(&row.label),
                day.date.to_string(),
            ];
            fields.extend(figures(&day.totals));
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn quoting() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
    }
}
