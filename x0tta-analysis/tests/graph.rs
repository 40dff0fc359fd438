//! GraphSAGE: the forward pass against a 3-node example computed by hand, learning a task only
//! neighbours reveal (and the no-graph model failing it), and `patterns.bin`: round trip,
//! tampering and wrong signers refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use x0tta_analysis::graph::{Graph, GraphError, GraphSage, Labelled, SageConfig};
use x0tta_core::{NodeId, Rejection, SignError, Signature, Signer, Verdict, Verifier};

/// A toy signer for the tests: the signature is a keyed digest (not cryptography; the real
/// node signs with ML-DSA-65 through the same traits).
struct Toy(NodeId, u8);
impl Signer for Toy {
    fn node_id(&self) -> &NodeId {
        &self.0
    }
    fn sign(&self, ctx: &[u8], m: &[u8]) -> Result<Signature, SignError> {
        Ok(Signature {
            signer: self.0.clone(),
            alg: "toy".into(),
            bytes: digest(self.1, ctx, m),
        })
    }
}
impl Verifier for Toy {
    fn verify(&self, ctx: &[u8], m: &[u8], s: &Signature) -> Verdict {
        if s.signer == self.0 && s.alg == "toy" && s.bytes == digest(self.1, ctx, m) {
            Verdict::Valid
        } else {
            Verdict::Reject(Rejection::BadSignature)
        }
    }
}
fn digest(key: u8, ctx: &[u8], m: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(key);
    for b in ctx.iter().chain(m) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h.to_le_bytes().to_vec()
}

#[test]
fn the_forward_pass_matches_a_hand_computed_example() {
    // Path 0 - 1 - 2, two features, two hidden units, two classes.
    let g = Graph::new(
        vec![vec![1.0, 0.0], vec![0.0, 2.0], vec![3.0, 1.0]],
        &[(0, 1), (1, 2)],
    )
    .unwrap();
    let cfg = SageConfig {
        features: 2,
        hidden: 2,
        classes: 2,
        samples: [10, 10],
        use_graph: true,
    };
    let mut m = GraphSage::new(cfg, 1).unwrap();
    // l1: hidden = W1 · [x ‖ mean(neighbours' x)] + b1, W1 rows over (x0, x1, n0, n1).
    // l2: logits = W2 · [h ‖ mean(neighbours' h)] + b2.
    m.set_weights(&HashMap::from([
        ("l1.weight", vec![1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, -1.0]),
        ("l1.bias", vec![0.0, 0.5]),
        ("l2.weight", vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]),
        ("l2.bias", vec![0.0, -1.0]),
    ]))
    .unwrap();
    // By hand. Neighbour means of x: n(0) = x1 = (0, 2); n(1) = (x0 + x2)/2 = (2, 0.5);
    // n(2) = x1 = (0, 2).
    // h = relu(W1 · [x ‖ n] + b1):
    //   node 0: (1 + 0.5·0, 0 − 2 + 0.5) = (1, −1.5) → (1, 0)
    //   node 1: (0 + 0.5·2, 2 − 0.5 + 0.5) = (1, 2)
    //   node 2: (3 + 0, 1 − 2 + 0.5) = (3, −0.5) → (3, 0)
    // Neighbour means of h: m(0) = h1 = (1, 2); m(1) = (h0 + h2)/2 = (2, 0); m(2) = (1, 2).
    // logits = W2 · [h ‖ m] + b2 = (h0 + m0, h1 + m1 − 1):
    //   node 0: (2, 1); node 1: (3, 1); node 2: (4, 1).
    let logits = m.logits(&g, 0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(logits, vec![vec![2.0, 1.0], vec![3.0, 1.0], vec![4.0, 1.0]]);
    assert_eq!(m.predict(&g, 0).unwrap(), vec![0, 0, 0]);

    // Without the graph the neighbour halves are zero: logits = (h0, h1 − 1) with h from x alone.
    let mut blind = GraphSage::new(
        SageConfig {
            use_graph: false,
            ..cfg
        },
        1,
    )
    .unwrap();
    blind
        .set_weights(&HashMap::from([
            ("l1.weight", vec![1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, -1.0]),
            ("l1.bias", vec![0.0, 0.5]),
            ("l2.weight", vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]),
            ("l2.bias", vec![0.0, -1.0]),
        ]))
        .unwrap();
    // h = relu((x0, x1 + 0.5)): (1, 0.5), (0, 2.5), (3, 1.5); logits (h0, h1 − 1).
    let logits = blind.logits(&g, 0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(
        logits,
        vec![vec![1.0, -0.5], vec![0.0, 1.5], vec![3.0, 0.5]]
    );
}

/// Rings of 12 nodes with identical features; the node next to a "faulty" node (feature 1)
/// is labelled 1. Only a model that looks at neighbours can tell.
fn rings(count: usize, seed: u64) -> Vec<Labelled> {
    let mut out = Vec::new();
    let mut x = seed;
    for _ in 0..count {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let faulty = (x >> 33) as usize % 12;
        let features: Vec<Vec<f32>> = (0..12)
            .map(|v| vec![if v == faulty { 1.0 } else { 0.0 }, 1.0])
            .collect();
        let edges: Vec<(usize, usize)> = (0..12).map(|v| (v, (v + 1) % 12)).collect();
        let labels = (0..12)
            .map(|v| u32::from(v == (faulty + 1) % 12 || v == (faulty + 11) % 12))
            .collect();
        out.push(Labelled {
            graph: Graph::new(features, &edges).unwrap(),
            labels,
        });
    }
    out
}

fn accuracy(m: &GraphSage, data: &[Labelled]) -> f64 {
    let (mut ok, mut n) = (0, 0);
    for d in data {
        let p = m.predict(&d.graph, 3).unwrap();
        ok += p.iter().zip(&d.labels).filter(|(a, b)| a == b).count();
        n += p.len();
    }
    ok as f64 / n as f64
}

#[test]
fn it_learns_what_only_neighbours_show_and_the_blind_model_cannot() {
    let train = rings(40, 1);
    let test = rings(20, 99);
    let cfg = SageConfig {
        features: 2,
        hidden: 16,
        classes: 2,
        samples: [4, 4],
        use_graph: true,
    };
    let mut with = GraphSage::new(cfg, 7).unwrap();
    let losses = with.train(&train, 60, 0.05).unwrap();
    assert!(losses.last().unwrap() < &losses[0], "{losses:?}");
    let mut blind = GraphSage::new(
        SageConfig {
            use_graph: false,
            ..cfg
        },
        7,
    )
    .unwrap();
    blind.train(&train, 60, 0.05).unwrap();
    let (a, b) = (accuracy(&with, &test), accuracy(&blind, &test));
    eprintln!("accuracy on unseen rings: with neighbours {a:.3}, without {b:.3}");
    assert!(a > 0.97, "{a}");
    // The blind model can do no better than "never next to a fault" (10 of 12 nodes).
    assert!(b < 0.85, "{b}");
}

#[test]
fn patterns_round_trip_and_refuse_tampering() {
    let keys = Toy(NodeId::new("trainer").unwrap(), 1);
    let cfg = SageConfig {
        features: 2,
        hidden: 8,
        classes: 3,
        samples: [5, 5],
        use_graph: true,
    };
    let m = GraphSage::new(cfg, 11).unwrap();
    let (bytes, id) = m.to_patterns(3, &keys).unwrap();
    let (back, version, id2) = GraphSage::from_patterns(&bytes, &keys).unwrap();
    assert_eq!((version, id2), (3, id));
    assert_eq!(back.config(), cfg);
    let g = Graph::new(
        vec![vec![0.3, 0.1], vec![0.9, 0.4], vec![0.2, 0.8]],
        &[(0, 1), (1, 2)],
    )
    .unwrap();
    assert_eq!(
        m.logits(&g, 5).unwrap().to_vec2::<f32>().unwrap(),
        back.logits(&g, 5).unwrap().to_vec2::<f32>().unwrap()
    );

    // Any flipped byte is refused: malformed, or a signature that no longer verifies.
    let mut refused = 0;
    let step = (bytes.len() / 50).max(1);
    for i in (0..bytes.len()).step_by(step) {
        let mut t = bytes.clone();
        t[i] ^= 0x40;
        match GraphSage::from_patterns(&t, &keys) {
            Err(GraphError::Malformed(_) | GraphError::Rejected(_)) => refused += 1,
            Err(other) => panic!("byte {i}: unexpected {other}"),
            Ok(_) => panic!("byte {i}: a tampered file was accepted"),
        }
    }
    assert!(refused >= 50, "{refused} flips tried");
    // Another signer's key does not verify it; truncation and junk are malformed.
    let stranger = Toy(NodeId::new("trainer").unwrap(), 2);
    assert!(matches!(
        GraphSage::from_patterns(&bytes, &stranger),
        Err(GraphError::Rejected(_))
    ));
    assert!(matches!(
        GraphSage::from_patterns(&bytes[..bytes.len() / 2], &keys),
        Err(GraphError::Malformed(_))
    ));
    assert!(matches!(
        GraphSage::from_patterns(b"not cbor", &keys),
        Err(GraphError::Malformed(_))
    ));
}

#[test]
fn bad_graphs_and_labels_are_typed_errors() {
    assert!(matches!(
        Graph::new(vec![], &[]),
        Err(GraphError::Invalid(_))
    ));
    assert!(matches!(
        Graph::new(vec![vec![1.0], vec![1.0, 2.0]], &[]),
        Err(GraphError::Invalid(_))
    ));
    assert!(matches!(
        Graph::new(vec![vec![f32::NAN]], &[]),
        Err(GraphError::Invalid(_))
    ));
    assert!(matches!(
        Graph::new(vec![vec![1.0]], &[(0, 3)]),
        Err(GraphError::Invalid(_))
    ));
    let cfg = SageConfig {
        features: 1,
        hidden: 2,
        classes: 2,
        ..SageConfig::default()
    };
    let mut m = GraphSage::new(cfg, 1).unwrap();
    let g = Graph::new(vec![vec![1.0], vec![2.0]], &[(0, 1)]).unwrap();
    let bad = Labelled {
        graph: g.clone(),
        labels: vec![0, 5],
    };
    assert!(matches!(
        m.train(&[bad], 1, 0.1),
        Err(GraphError::Invalid(_))
    ));
    let short = Labelled {
        graph: g,
        labels: vec![0],
    };
    assert!(matches!(
        m.train(&[short], 1, 0.1),
        Err(GraphError::Invalid(_))
    ));
    let wide = Graph::new(vec![vec![1.0, 2.0]], &[]).unwrap();
    assert!(matches!(m.logits(&wide, 0), Err(GraphError::Invalid(_))));
    assert!(GraphSage::new(SageConfig { classes: 1, ..cfg }, 1).is_err());
}
