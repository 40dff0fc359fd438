//! The labelled scenarios: deterministic, labelled by the injector, showing each fault where a
//! node can see it; and on them GraphSAGE beats the same model without neighbours, and the
//! root-cause ranker beats the earliest alarm, on seeds never used in training.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use x0tta_analysis::graph::{GraphSage, Labelled};
use x0tta_analysis::rootcause::RootCause;
use x0tta_analysis::scenario::{self, Culprit, Fault, Scenario, ScenarioConfig, alarm};

const DOWN: usize = 3;
const LOSS_MAX: usize = 6;
const OFFSET_MEDIAN: usize = 7;
const OFFSET_MAX: usize = 8;
const INBOUND: usize = 2;

fn run(seed: u64, fault: Fault) -> Scenario {
    scenario::run(seed, fault, &ScenarioConfig::default()).expect("the scenario runs")
}

fn labelled(s: &Scenario) -> Vec<usize> {
    (0..s.len()).filter(|&v| s.labels[v] != 0).collect()
}

#[test]
fn a_seed_fixes_the_whole_run() {
    let a = run(11, Fault::LinkDegraded);
    let b = run(11, Fault::LinkDegraded);
    assert_eq!(a.reports, b.reports);
    assert_eq!(a.edges, b.edges);
    assert_eq!(a.culprit, b.culprit);
    let c = run(12, Fault::LinkDegraded);
    assert_ne!(a.reports, c.reports);
}

#[test]
fn a_crashed_node_goes_silent_and_its_neighbours_see_it() {
    let s = run(3, Fault::NodeCrash);
    let Culprit::Node(victim) = s.culprit else {
        panic!("a crash names a node: {:?}", s.culprit)
    };
    assert_eq!(labelled(&s), vec![victim]);
    assert_eq!(s.labels[victim], Fault::NodeCrash.class());
    // Its last report, from before the crash, is all anyone has of it.
    let before = s.reports[s.fault_tick - 1][victim];
    for tick in &s.reports[s.fault_tick..] {
        assert_eq!(tick[victim], before);
    }
    for u in &s.neighbours()[victim] {
        assert!(s.last()[*u][DOWN] > 0.0, "neighbour {u} sees it down");
    }
}

#[test]
fn each_fault_shows_where_a_node_can_see_it() {
    let none = run(5, Fault::None);
    assert!(labelled(&none).is_empty());
    assert_eq!(none.culprit, Culprit::None);

    let link = run(5, Fault::LinkDegraded);
    let Culprit::Link(a, b) = link.culprit else {
        panic!("a link: {:?}", link.culprit)
    };
    assert!(link.edges.contains(&(a, b)));
    assert_eq!(labelled(&link), vec![a, b]);
    assert!(link.last()[a][LOSS_MAX] > 0.0 && link.last()[b][LOSS_MAX] > 0.0);

    let cut = run(5, Fault::Partition);
    let Culprit::Region(region) = cut.culprit.clone() else {
        panic!("a region: {:?}", cut.culprit)
    };
    assert!((3..=5).contains(&region.len()));
    assert_eq!(labelled(&cut), region);
    // Everyone in it lost some neighbours (those outside).
    assert!(region.iter().any(|&v| cut.last()[v][DOWN] > 0.0));

    let skew = run(5, Fault::ClockSkew);
    let Culprit::Node(v) = skew.culprit else {
        panic!("a node")
    };
    assert!(
        skew.last()[v][OFFSET_MEDIAN] > 0.5,
        "it sees everyone's clock off"
    );
    for u in &skew.neighbours()[v] {
        assert!(
            skew.last()[*u][OFFSET_MAX] > 0.5,
            "neighbour {u} sees its clock off"
        );
    }

    let flood = run(5, Fault::Flooder);
    let Culprit::Node(f) = flood.culprit else {
        panic!("a node")
    };
    assert!(
        flood.last()[f][INBOUND] < 0.5,
        "the flooder reports itself normal"
    );
    for u in &flood.neighbours()[f] {
        assert!(flood.last()[*u][INBOUND] > 0.5, "neighbour {u} is flooded");
    }

    for fault in [Fault::CpuHog, Fault::MemoryLeak] {
        let s = run(5, fault);
        let Culprit::Node(v) = s.culprit else {
            panic!("a node")
        };
        assert_eq!(labelled(&s), vec![v]);
        assert!(
            alarm(&s.last()[v]).is_some(),
            "{fault:?} alarms on its own host"
        );
    }
}

#[test]
fn bad_configurations_are_refused() {
    let tiny = ScenarioConfig {
        nodes: 2,
        ..ScenarioConfig::default()
    };
    assert!(scenario::run(1, Fault::None, &tiny).is_err());
}

fn data(s: &[Scenario]) -> Vec<Labelled> {
    s.iter().map(|s| s.labelled().expect("a graph")).collect()
}

fn f1(model: &GraphSage, test: &[Labelled]) -> f64 {
    scenario::evaluate(model, test).expect("predicts").0
}

#[test]
fn graphsage_beats_the_blind_model_and_the_ranker_beats_the_first_alarm_on_unseen_seeds() {
    let cfg = ScenarioConfig::default();
    let train = data(&scenario::generate(0..12, &cfg).expect("training scenarios"));
    let test_scenarios = scenario::generate(500..504, &cfg).expect("test scenarios");
    let test = data(&test_scenarios);
    let mut scores = Vec::new();
    let mut models = Vec::new();
    for use_graph in [true, false] {
        let mut m = GraphSage::new(scenario::sage_config(use_graph), 1).expect("a model");
        m.train(&train, 40, 0.01).expect("trains");
        scores.push(f1(&m, &test));
        models.push(m);
    }
    eprintln!(
        "macro-F1: graph {:.3}, no graph {:.3}",
        scores[0], scores[1]
    );
    assert!(scores[0] > 0.85, "graph macro-F1 {}", scores[0]);
    // Crashes and flooders show only in their neighbours: the blind model misses them.
    assert!(scores[0] > scores[1] + 0.1, "{scores:?}");

    let (mut ranked_hits, mut first_hits, mut cases) = (0, 0, 0);
    for (i, s) in test_scenarios.iter().enumerate() {
        if s.culprit == Culprit::None {
            continue;
        }
        cases += 1;
        let p = models[0]
            .probabilities(&test[i].graph, i as u64)
            .expect("probabilities");
        let top = RootCause::new()
            .rank(&s.neighbours(), &s.evidence(&p), 3)
            .expect("ranks");
        if top
            .first()
            .is_some_and(|r| s.culprit.named_by(&r.candidate))
        {
            ranked_hits += 1;
        }
        // The baseline names a node; for a broken link either end counts.
        if s.earliest_alarm().is_some_and(|v| s.culprit.involves(v)) {
            first_hits += 1;
        }
    }
    eprintln!(
        "root cause top-1: ranker {ranked_hits}/{cases}, earliest alarm {first_hits}/{cases}"
    );
    assert!(ranked_hits * 10 >= cases * 8, "{ranked_hits}/{cases}");
    assert!(ranked_hits > first_hits);
}

#[test]
fn the_scenarios_classes_are_the_live_detectors() {
    for (c, f) in Fault::ALL.iter().enumerate() {
        assert_eq!(f.class(), c as u32);
        assert_eq!(f.kind(), x0tta_analysis::live::CLASS_KINDS[c], "{f:?}");
        if let Some(k) = f.kind() {
            assert_eq!(x0tta_analysis::live::class_of(k), Some(c as u32));
        }
    }
}
