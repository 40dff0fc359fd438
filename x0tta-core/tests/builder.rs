//! Node::builder() refuses incomplete and inconsistent combinations with typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use x0tta_core::memory::{MemoryKnowledge, MemoryNetwork};
use x0tta_core::*;

fn parts(name: &str) -> (Arc<dyn Transport>, Arc<dyn KnowledgeStore>, Arc<dyn Signer>) {
    let net = MemoryNetwork::new();
    (
        Arc::new(net.join(id(name))),
        Arc::new(MemoryKnowledge::new(10)),
        Arc::new(TestSigner(id(name))),
    )
}

#[test]
fn missing_components_are_named() {
    let (t, k, s) = parts("a");
    let e = Node::builder()
        .knowledge(k.clone())
        .signer(s.clone())
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::Missing("transport")), "{e}");
    let e = Node::builder()
        .transport(t.clone())
        .signer(s)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::Missing("knowledge")), "{e}");
    let e = Node::builder()
        .transport(t)
        .knowledge(k)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::Missing("signer")));
    assert_eq!(
        e.to_string(),
        "node is missing its signer: call NodeBuilder::signer(…)"
    );
}

#[test]
fn signer_must_sign_as_the_transport_node() {
    let (t, k, _) = parts("a");
    let e = Node::builder()
        .transport(t)
        .knowledge(k)
        .signer(Arc::new(TestSigner(id("b"))))
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, BuildError::Inconsistent(m) if m.contains("signs as b")),
        "{e}"
    );
}

#[test]
fn templates_must_use_registered_actions() {
    let (t, k, s) = parts("a");
    let journal: Journal = Arc::new(Mutex::new(Vec::new()));
    let e = Node::builder()
        .transport(t.clone())
        .knowledge(k.clone())
        .signer(s.clone())
        .action(Scripted::ok("restart", &journal))
        .plan_template(template(
            "fix",
            AnomalyKind::ServiceDown,
            &["restart", "page_oncall"],
        ))
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, BuildError::Inconsistent(m) if m.contains("step 2 uses action `page_oncall`")),
        "{e}"
    );
    let ok = Node::builder()
        .transport(t)
        .knowledge(k)
        .signer(s)
        .action(Scripted::ok("restart", &journal))
        .plan_template(template("fix", AnomalyKind::ServiceDown, &["restart"]))
        .build();
    assert!(ok.is_ok());
}

#[test]
fn duplicate_names_are_refused() {
    let (t, k, s) = parts("a");
    let journal: Journal = Arc::new(Mutex::new(Vec::new()));
    let e = Node::builder()
        .transport(t.clone())
        .knowledge(k.clone())
        .signer(s.clone())
        .action(Scripted::ok("x", &journal))
        .action(Scripted::ok("x", &journal))
        .build()
        .unwrap_err();
    assert!(matches!(&e, BuildError::Inconsistent(m) if m.contains("two actions")));
    let e = Node::builder()
        .transport(t.clone())
        .knowledge(k.clone())
        .signer(s.clone())
        .sensor(Arc::new(Dial::default()))
        .sensor(Arc::new(Dial::default()))
        .build()
        .unwrap_err();
    assert!(matches!(&e, BuildError::Inconsistent(m) if m.contains("two sensors")));
    let e = Node::builder()
        .transport(t)
        .knowledge(k)
        .signer(s)
        .action(Scripted::ok("x", &journal))
        .plan_template(template("p", AnomalyKind::CpuOverload, &["x"]))
        .plan_template(template("p", AnomalyKind::CpuOverload, &["x"]))
        .build()
        .unwrap_err();
    assert!(matches!(&e, BuildError::Inconsistent(m) if m.contains("two plan templates")));
}

#[test]
fn invalid_policy_and_missing_governance_are_refused() {
    let (t, k, s) = parts("a");
    let mut p = Policy::default();
    p.thresholds.memory_percent = 101.0;
    let e = Node::builder()
        .transport(t.clone())
        .knowledge(k.clone())
        .signer(s.clone())
        .policy(p)
        .build()
        .unwrap_err();
    assert!(matches!(e, BuildError::Policy(_)), "{e}");
    let p = Policy {
        critical_needs_vote: true,
        ..Default::default()
    };
    let e = Node::builder()
        .transport(t)
        .knowledge(k)
        .signer(s)
        .policy(p)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, BuildError::Inconsistent(m) if m.contains("governance")),
        "{e}"
    );
}
