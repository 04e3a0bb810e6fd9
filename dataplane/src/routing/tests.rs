//! Tests of routing: breaker, health registry and the attempt order.
use std::sync::Arc;

use omg_shared::config::RoutingStrategy;
use omg_shared::money::Pricing;
use omg_shared::provider::ProviderKind;
use omg_shared::routing::HealthPolicy;
use omg_shared::snapshot::Deployment;

use super::health::{HealthRegistry, Outcome};
use super::select::{order, Order};
use crate::snapshot::DeploymentEntry;

fn entry(registry: &HealthRegistry, id: &str, weight: u32, priority: u32) -> Arc<DeploymentEntry> {
    let deployment = Deployment {
        id: id.to_owned(),
        provider: ProviderKind::OpenAiCompatible,
        provider_model: "m".to_owned(),
        endpoint: None,
        deployment: None,
        api_key: None,
        api_version: None,
        region: None,
        weight,
        priority,
        health_check: false,
        enabled: true,
        pricing: Pricing::default(),
        metadata: Default::default(),
        aws_keys: None,
    };
    let health = registry.entry(&deployment);
    Arc::new(DeploymentEntry {
        deployment,
        mock: None,
        adapter: None,
        health,
    })
}

fn ids(order: &Order) -> Vec<String> {
    match order {
        Order::Try(list) => list.iter().map(|d| d.deployment.id.clone()).collect(),
        Order::AllResting { .. } => Vec::new(),
    }
}

fn trip(entry: &DeploymentEntry) {
    let policy = HealthPolicy::default();
    for _ in 0..policy.failure_threshold {
        entry.health.record(Outcome::Failure("test"), &policy);
    }
}

#[test]
fn weighted_first_picks_follow_the_weights() {
    let registry = HealthRegistry::default();
    let list = vec![entry(&registry, "w#0", 1, 0), entry(&registry, "w#1", 3, 0)];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut rng = move |total: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % total
    };
    let mut heavy = 0;
    for _ in 0..10_000 {
        let picked = order(&list, RoutingStrategy::Weighted, 0, &mut rng);
        let names = ids(&picked);
        assert_eq!(names.len(), 2, "every deployment is in the order");
        if names[0] == "w#1" {
            heavy += 1;
        }
    }
    assert!((7_200..=7_800).contains(&heavy), "{heavy} of 10000");
}

#[test]
fn priority_groups_come_in_order_and_resting_ones_are_left_out() {
    let registry = HealthRegistry::default();
    let list = vec![
        entry(&registry, "p#0", 1, 0),
        entry(&registry, "p#1", 1, 0),
        entry(&registry, "p#2", 1, 1),
    ];
    let first = ids(&order(&list, RoutingStrategy::Weighted, 0, |_| 0));
    assert_eq!(first[2], "p#2", "the backup group comes last: {first:?}");
    trip(&list[0]);
    trip(&list[1]);
    assert_eq!(
        ids(&order(&list, RoutingStrategy::Weighted, 0, |_| 0)),
        ["p#2"]
    );
    trip(&list[2]);
    match order(&list, RoutingStrategy::Weighted, 0, |_| 0) {
        Order::AllResting { retry_in_ms } => assert!(retry_in_ms.is_some()),
        Order::Try(list) => panic!("expected every deployment resting, got {}", list.len()),
    }
}

#[test]
fn least_busy_prefers_the_fewest_in_flight() {
    let registry = HealthRegistry::default();
    let list = vec![entry(&registry, "l#0", 5, 0), entry(&registry, "l#1", 1, 0)];
    let held = list[0].health.acquire().expect("closed");
    assert_eq!(list[0].health.in_flight(), 1);
    assert_eq!(
        ids(&order(&list, RoutingStrategy::LeastBusy, 0, |_| 0)),
        ["l#1", "l#0"]
    );
    drop(held);
    assert_eq!(list[0].health.in_flight(), 0);
    // Equal loads: weighted among them (ticket 0 picks the first by weight).
    assert_eq!(
        ids(&order(&list, RoutingStrategy::LeastBusy, 0, |_| 0)),
        ["l#0", "l#1"]
    );
}

#[test]
fn a_half_open_deployment_takes_one_probe_and_a_dropped_permit_frees_it() {
    let registry = HealthRegistry::default();
    let one = entry(&registry, "h#0", 1, 0);
    let policy = HealthPolicy {
        cooldown_ms: 0,
        ..HealthPolicy::default()
    };
    for _ in 0..3 {
        one.health.record(Outcome::Failure("test"), &policy);
    }
    let probe = one.health.acquire().expect("rest over: the probe");
    assert!(probe.is_probe());
    assert!(one.health.acquire().is_none(), "one probe at a time");
    drop(probe);
    let probe = one.health.acquire().expect("the probe slot is free again");
    probe.finish(Outcome::Success, &policy);
    let normal = one.health.acquire().expect("closed again");
    assert!(!normal.is_probe());
    assert_eq!(one.health.status(&policy, false).state, "closed");
}

#[test]
fn registry_entries_survive_while_held_and_follow_the_definition() {
    let registry = HealthRegistry::default();
    let a = entry(&registry, "r#0", 1, 0);
    let again = entry(&registry, "r#0", 1, 0);
    assert!(
        Arc::ptr_eq(&a.health, &again.health),
        "same definition, same health"
    );
    drop(again);
    registry.prune();
    let still = entry(&registry, "r#0", 1, 0);
    assert!(
        Arc::ptr_eq(&a.health, &still.health),
        "held entries are kept"
    );
    drop((a, still));
    registry.prune();
    let fresh = entry(&registry, "r#0", 1, 0);
    assert_eq!(fresh.health.in_flight(), 0);
}
