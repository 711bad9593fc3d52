//! Parity of the TurboVAED port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor, window outputs included, within the case tolerance.
//! The decode's timing at the released widths is `happyhorse bench codec --stage turbo-decode`.

use happyhorse::engine::models::turbo_vae::{run_golden_case, Config, WindowPlan};

use crate::common::{assert_all_close, case_json, fixture, load_tensors, tolerance};

#[test]
fn turbo_vae_decode_golden() {
    let dir = fixture("turbo_vae_decode");
    let case = case_json(&dir);
    let exp = load_tensors(&dir.join("expected.safetensors"));
    let results = run_golden_case(&dir).unwrap();
    assert_all_close("turbo_vae_decode", &results, &exp, |n| tolerance(&case, n));
}

#[test]
fn window_plan_matches_the_case() {
    let dir = fixture("turbo_vae_decode");
    let case = case_json(&dir);
    let cfg: Config = serde_json::from_value(case["config"].clone()).unwrap();
    let p = &case["params"];
    let t = p["latent_frames"].as_u64().unwrap() as usize;
    let plan = WindowPlan::new(
        t,
        cfg.first_chunk_size,
        cfg.step_size,
        cfg.temporal_compression_ratio,
    )
    .unwrap();
    assert_eq!(
        plan.pad as u64,
        p["padding_latent_frames"].as_u64().unwrap()
    );
    let windows = p["windows"].as_array().unwrap();
    assert_eq!(plan.windows.len(), windows.len());
    for (w, e) in plan.windows.iter().zip(windows) {
        let u = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        assert_eq!(w.start, u(&e["z_slice"][0]));
        assert_eq!(w.end, u(&e["z_slice"][1]));
        assert_eq!(w.is_first_chunk, e["is_first_chunk"].as_bool().unwrap());
        assert_eq!(w.trim_front, u(&e["trim_front_pixel_frames"]));
        assert_eq!(w.trim_back, u(&e["trim_back_pixel_frames"]));
    }
}
