//! Calibration measures, and the healing trials they are computed on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use x0tta_analysis::calibration::{Forecast, brier, expected_calibration_error, reliability};

fn f(p: f64, outcome: bool) -> Forecast {
    Forecast { p, outcome }
}

#[test]
fn brier_and_reliability_follow_their_definitions() {
    assert_eq!(brier(&[]), None);
    assert_eq!(brier(&[f(1.0, true), f(0.0, false)]), Some(0.0));
    assert_eq!(brier(&[f(0.5, true), f(0.5, false)]), Some(0.25));
    // Out-of-range forecasts are left out, not counted as anything.
    assert_eq!(
        brier(&[f(f64::NAN, true), f(1.5, true), f(1.0, true)]),
        Some(0.0)
    );

    // Perfectly calibrated: 70% forecasts, 7 of 10 succeed.
    let mut v: Vec<Forecast> = (0..10).map(|i| f(0.7, i < 7)).collect();
    v.extend((0..10).map(|i| f(0.2, i < 2)));
    let t = reliability(&v, 10);
    assert_eq!(t.len(), 10);
    assert_eq!(t[7].count, 10);
    assert!((t[7].observed - 0.7).abs() < 1e-12);
    assert!((t[2].mean_forecast - 0.2).abs() < 1e-12);
    assert!(expected_calibration_error(&t) < 1e-12);
    // Overconfident: 90% forecasts, half succeed.
    let over: Vec<Forecast> = (0..10).map(|i| f(0.9, i % 2 == 0)).collect();
    let e = expected_calibration_error(&reliability(&over, 10));
    assert!((e - 0.4).abs() < 1e-12, "{e}");
    // 1.0 lands in the last bin.
    assert_eq!(reliability(&[f(1.0, true)], 4)[3].count, 1);
}

#[cfg(feature = "eval")]
#[test]
fn healing_trials_are_real_and_deterministic() {
    use x0tta_analysis::scenario::{Fault, HealConfig, heal_trial};
    let calm = HealConfig {
        max_loss: 0.0,
        deadline: std::time::Duration::from_secs(3),
        ..HealConfig::default()
    };
    for fault in [Fault::NodeCrash, Fault::LinkDegraded, Fault::Partition] {
        let t = heal_trial(4, fault, &calm).unwrap();
        assert!(t.healed, "{fault:?} heals on a lossless mesh: {t:?}");
        assert_eq!(t.loss, 0.0);
        assert_eq!(t, heal_trial(4, fault, &calm).unwrap(), "deterministic");
    }
    // Under heavy loss and a tight deadline, some trials fail: outcomes are not a constant.
    let harsh = HealConfig {
        max_loss: 0.6,
        deadline: std::time::Duration::from_millis(500),
        ..HealConfig::default()
    };
    let healed = (0..12)
        .filter(|&s| heal_trial(s, Fault::NodeCrash, &harsh).unwrap().healed)
        .count();
    assert!(healed < 12, "{healed} of 12");
    assert!(heal_trial(1, Fault::CpuHog, &calm).is_err());
}
