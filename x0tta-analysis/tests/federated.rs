//! Federated learning in the simulated mesh: 30 nodes exchange signed updates on
//! `x0tta/fl/1`, 10 of them poisoned (sign-flipped, scaled ×100, random). The robust rules
//! keep the honest model's macro-F1; FedAvg collapses. Malformed and oversized updates are
//! refused without panics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use x0tta_analysis::federated::sim::{self, Attack, SimRun};
use x0tta_analysis::federated::{Federation, FlConfig, FlError, Rule, norm};
use x0tta_analysis::graph::{GraphSage, Labelled, SageConfig};
use x0tta_analysis::scenario::{self, Scenario, ScenarioConfig};
use x0tta_core::{NodeId, Signer};
use x0tta_pqc::{KeyRing, MlDsa65Keypair, MlDsa65Signer};

const NODES: usize = 30;
const POISONED: usize = 10;
const ROUNDS: usize = 40;

fn sage() -> SageConfig {
    scenario::sage_config(true)
}

fn labelled(s: &[Scenario]) -> Vec<Labelled> {
    s.iter().map(|s| s.labelled().unwrap()).collect()
}

fn f1(model: &GraphSage, test: &[Labelled]) -> f64 {
    scenario::evaluate(model, test).unwrap().0
}

struct Keys {
    signers: Vec<Arc<dyn Signer>>,
    concrete: Vec<Arc<MlDsa65Signer>>,
    ring: KeyRing,
}

fn keys() -> Keys {
    let mut ring = KeyRing::new();
    let concrete: Vec<Arc<MlDsa65Signer>> = (0..NODES)
        .map(|i| {
            let id = NodeId::new(format!("n{i}")).unwrap();
            let kp = MlDsa65Keypair::generate();
            ring.insert(id.clone(), kp.public_key().clone());
            Arc::new(MlDsa65Signer::new(id, kp))
        })
        .collect();
    let signers = concrete
        .iter()
        .map(|s| Arc::clone(s) as Arc<dyn Signer>)
        .collect();
    Keys {
        signers,
        concrete,
        ring,
    }
}

#[tokio::test(start_paused = true)]
async fn robust_rules_keep_honest_accuracy_with_a_third_poisoned_and_fedavg_collapses() {
    // Each node's own incidents: one scenario of every fault, from its own seed.
    let (data, test) = tokio::task::spawn_blocking(|| {
        let cfg = ScenarioConfig::default();
        let data: Vec<Vec<Labelled>> = (0..NODES as u64)
            .map(|i| labelled(&scenario::generate(100 + i..101 + i, &cfg).unwrap()))
            .collect();
        (data, labelled(&scenario::generate(900..910, &cfg).unwrap()))
    })
    .await
    .unwrap();
    let keys = keys();
    let run = |rule| SimRun {
        rounds: ROUNDS,
        fl: FlConfig {
            rule,
            ..FlConfig::default()
        },
        sage: sage(),
        seed: 1,
        wait: Duration::from_secs(2),
    };
    let honest = sim::run(
        &run(Rule::FedAvg),
        &data[POISONED..],
        &[None; NODES - POISONED],
        &keys.signers[POISONED..],
        &keys.ring,
    )
    .await
    .unwrap();
    let honest = f1(&honest.model, &test);
    let attacks: Vec<Option<Attack>> = (0..NODES)
        .map(|i| (i < POISONED).then(|| Attack::mixed(i)))
        .collect();
    let mut results = Vec::new();
    for rule in [
        Rule::FedAvg,
        Rule::Median,
        Rule::TrimmedMean { trim: 1.0 / 3.0 },
    ] {
        let out = sim::run(&run(rule), &data, &attacks, &keys.signers, &keys.ring)
            .await
            .unwrap();
        assert_eq!(out.refused, 0, "liars sign properly: nothing is refused");
        let score = f1(&out.model, &test);
        eprintln!(
            "{:<13} macro-F1 {score:.4} (honest-only FedAvg {honest:.4})",
            rule.name()
        );
        results.push((rule, score));
    }
    let fedavg = results[0].1;
    assert!(fedavg < honest - 0.3, "FedAvg {fedavg} vs honest {honest}");
    for (rule, score) in &results[1..] {
        assert!(
            *score >= honest - 0.02,
            "{} {score} vs honest {honest}",
            rule.name()
        );
    }
}

fn federation(rule: Rule, max_norm: Option<f32>) -> Federation {
    Federation::new(
        GraphSage::new(sage(), 1).unwrap(),
        FlConfig {
            rule,
            max_norm,
            ..FlConfig::default()
        },
    )
}

#[test]
fn updates_from_strangers_other_rounds_or_other_shapes_are_refused() {
    let keys = keys();
    let fed = federation(Rule::Median, Some(5.0));
    let n = fed.model().parameter_count();
    let ok = fed
        .seal(&vec![0.01; n], 8, keys.concrete[0].as_ref())
        .unwrap();
    let update = fed.open(&ok, &keys.ring).unwrap();
    assert_eq!(update.from, NodeId::new("n0").unwrap());
    assert_eq!(update.delta, vec![0.01; n]);

    // A signer the ring does not trust.
    let stranger = MlDsa65Signer::new(NodeId::new("stranger").unwrap(), MlDsa65Keypair::generate());
    let bytes = fed.seal(&vec![0.01; n], 8, &stranger).unwrap();
    assert!(matches!(
        fed.open(&bytes, &keys.ring),
        Err(FlError::Rejected(_))
    ));

    // Another round.
    let mut later = federation(Rule::Median, Some(5.0));
    later.apply(&[vec![0.0; n]]).unwrap();
    assert!(matches!(
        later.open(&ok, &keys.ring),
        Err(FlError::Mismatch(_))
    ));

    // Another shape.
    let small = Federation::new(
        GraphSage::new(
            SageConfig {
                hidden: 8,
                ..sage()
            },
            1,
        )
        .unwrap(),
        FlConfig::default(),
    );
    let other = small
        .seal(
            &vec![0.0; small.model().parameter_count()],
            1,
            keys.concrete[1].as_ref(),
        )
        .unwrap();
    assert!(matches!(
        fed.open(&other, &keys.ring),
        Err(FlError::Mismatch(_))
    ));

    // Too long a step, and values that are not numbers.
    let long = fed
        .seal(&vec![1.0; n], 8, keys.concrete[2].as_ref())
        .unwrap();
    assert!(norm(&vec![1.0; n]) > 5.0);
    assert!(matches!(
        fed.open(&long, &keys.ring),
        Err(FlError::OutOfBounds(_))
    ));
    let mut nan = vec![0.0; n];
    nan[3] = f32::NAN;
    let nan = fed.seal(&nan, 8, keys.concrete[2].as_ref()).unwrap();
    assert!(matches!(
        fed.open(&nan, &keys.ring),
        Err(FlError::OutOfBounds(_))
    ));

    // Oversized bytes are refused before any decoding.
    let huge = vec![0u8; x0tta_analysis::federated::MAX_UPDATE_BYTES + 1];
    assert!(matches!(
        fed.open(&huge, &keys.ring),
        Err(FlError::TooLarge(_))
    ));

    // Krum cannot withstand a third of three updates.
    let mut krum = federation(Rule::Krum { byzantine: 1 }, None);
    assert!(matches!(
        krum.apply(&[vec![0.0; n], vec![0.0; n], vec![0.0; n]]),
        Err(FlError::TooFew(_))
    ));
    assert!("krum".parse::<Rule>().is_ok());
    assert!(matches!(
        "mean".parse::<Rule>(),
        Err(FlError::UnknownRule(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes: refused with a typed error or opened, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let keys = keys();
        let fed = federation(Rule::Median, Some(5.0));
        prop_assert!(fed.open(&bytes, &keys.ring).is_err());
    }

    /// A real update with bytes flipped or cut: refused, never a panic.
    #[test]
    fn damaged_updates_are_refused(at in 0usize..10_000, bit in 0u8..8, cut in any::<bool>()) {
        let keys = keys();
        let fed = federation(Rule::Median, Some(5.0));
        let n = fed.model().parameter_count();
        let mut bytes = fed.seal(&vec![0.01; n], 8, keys.concrete[0].as_ref()).unwrap();
        let at = at % bytes.len();
        if cut {
            bytes.truncate(at);
        } else {
            bytes[at] ^= 1 << bit;
        }
        prop_assert!(fed.open(&bytes, &keys.ring).is_err());
    }
}
