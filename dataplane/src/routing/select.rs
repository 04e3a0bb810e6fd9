//! The order in which a request tries an alias's deployments: priority groups lowest first;
//! within a group, resting deployments are left out and the rest ordered by the strategy
//! (`weighted`: random in proportion to weight; `least_busy`: fewest in flight, ties by
//! weight). Pure: availability, load and randomness are passed in.

use std::sync::Arc;

use omg_shared::config::RoutingStrategy;

use super::breaker::Availability;
use crate::snapshot::DeploymentEntry;

/// The attempt order, or when every deployment rests, the earliest time one may take a
/// probe again (`None` when unknown, e.g. probes already out).
#[derive(Debug)]
pub enum Order {
    /// Deployments to try, in order (never empty).
    Try(Vec<Arc<DeploymentEntry>>),
    /// None can take the request now.
    AllResting {
        /// Milliseconds until the first rest ends.
        retry_in_ms: Option<u64>,
    },
}

/// Orders `deployments` (sorted by priority, as the snapshot keeps them).
/// `roll(total)` returns a uniform number in `0..total`.
pub fn order(
    deployments: &[Arc<DeploymentEntry>],
    strategy: RoutingStrategy,
    now_ms: u64,
    mut roll: impl FnMut(u64) -> u64,
) -> Order {
    let mut out = Vec::with_capacity(deployments.len());
    let mut earliest: Option<u64> = None;
    let mut start = 0;
    while start < deployments.len() {
        let priority = deployments[start].deployment.priority;
        let end = deployments[start..]
            .iter()
            .position(|d| d.deployment.priority != priority)
            .map_or(deployments.len(), |offset| start + offset);
        let mut group: Vec<(Arc<DeploymentEntry>, u32)> = Vec::with_capacity(end - start);
        for entry in &deployments[start..end] {
            match entry.health.availability() {
                Availability::Open | Availability::Probe => {
                    group.push((Arc::clone(entry), entry.health.in_flight()));
                }
                Availability::Resting { until_ms } => {
                    if let Some(until) = until_ms {
                        let wait = until.saturating_sub(now_ms);
                        earliest = Some(earliest.map_or(wait, |e| e.min(wait)));
                    }
                }
            }
        }
        match strategy {
            RoutingStrategy::Weighted => weighted(group, &mut out, &mut roll),
            RoutingStrategy::LeastBusy => {
                // Fewest in flight first; equal loads in weighted random order.
                group.sort_by_key(|(_, load)| *load);
                let mut index = 0;
                while index < group.len() {
                    let load = group[index].1;
                    let same = group[index..]
                        .iter()
                        .take_while(|(_, l)| *l == load)
                        .count();
                    let tier: Vec<_> = group[index..index + same].to_vec();
                    weighted(tier, &mut out, &mut roll);
                    index += same;
                }
            }
        }
        start = end;
    }
    if out.is_empty() {
        Order::AllResting {
            retry_in_ms: earliest,
        }
    } else {
        Order::Try(out)
    }
}

/// Appends `group` in weighted random order.
fn weighted(
    mut group: Vec<(Arc<DeploymentEntry>, u32)>,
    out: &mut Vec<Arc<DeploymentEntry>>,
    roll: &mut impl FnMut(u64) -> u64,
) {
    while !group.is_empty() {
        let total: u64 = group
            .iter()
            .map(|(d, _)| u64::from(d.deployment.weight.max(1)))
            .sum();
        let mut ticket = roll(total);
        let mut chosen = group.len() - 1;
        for (index, (candidate, _)) in group.iter().enumerate() {
            let weight = u64::from(candidate.deployment.weight.max(1));
            if ticket < weight {
                chosen = index;
                break;
            }
            ticket -= weight;
        }
        out.push(group.swap_remove(chosen).0);
    }
}
