//! The Nano eval end to end on the committed weights, at a tiny size: the report must be
//! well formed. Quality targets are the eval's job to report, not this test's to assert.

use std::path::PathBuf;

use happyhorse::nano::eval::{run, EvalConfig, EvalReport, Split};

#[test]
fn eval_on_committed_weights_gives_a_well_formed_report() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let cfg = EvalConfig {
        scenes_per_split: 1,
        width: 48,
        height: 32,
        fps: 8,
        duration_s: 1.5,
        steps: Some(2),
        ..EvalConfig::new(dir)
    };
    let mut seen = 0;
    let report = run(cfg.clone(), &mut |p| {
        seen += 1;
        assert_eq!(p.done, seen);
        assert_eq!(p.total, 2);
    })
    .expect("eval runs on the committed weights");
    assert_eq!(seen, 2);
    assert_eq!(report.clips.len(), 2);
    assert_eq!(report.steps, 2);
    assert_eq!(report.splits.len(), 3);
    for split in [Split::InDistribution, Split::HeldOut] {
        let s = report.split(split).expect("split present");
        assert_eq!(s.clips, 1);
        for pct in [s.color_pct, s.shape_pct, s.motion_pct, s.adherence_pct] {
            assert!((0.0..=100.0).contains(&pct), "{pct}");
        }
        if let (Some(m), Some(p)) = (s.sync_median_ms, s.sync_p90_ms) {
            assert!(0.0 <= m && m <= p);
        }
    }
    assert!(report.clips.iter().all(|c| !c.caption.is_empty()));

    let json = report.to_json().expect("serialises");
    let back: EvalReport = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back.clips.len(), 2);
    let table = report.to_string();
    assert!(table.contains("in-distribution") && table.contains("held-out"));
    assert!(table.contains("adherence"));

    // Deterministic in the seed.
    let again = run(cfg, &mut |_| {}).expect("second run");
    assert_eq!(
        again.clips.iter().map(|c| &c.caption).collect::<Vec<_>>(),
        report.clips.iter().map(|c| &c.caption).collect::<Vec<_>>()
    );
    assert_eq!(again.splits, report.splits);
}
