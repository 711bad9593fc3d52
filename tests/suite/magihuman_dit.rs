//! Parity of the MagiHuman DiT port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor within the case tolerance, plus the debug
//! intermediates to localise a divergence.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Tensor};
use candle_core as candle;
use happyhorse::engine::models::magihuman::{
    run_golden_case, run_golden_case_debug, DataProxyConfig, ModelConfig,
};

use crate::common::{assert_all_close, case_tolerance, fixture, load_tensors};

fn check(results: Vec<(String, Tensor)>, reference: &Path, atol: f64, rtol: f64, what: &str) {
    assert_all_close(what, &results, &load_tensors(reference), |_| (atol, rtol));
}

fn run_case(name: &str) {
    let dir = fixture(name);
    let (atol, rtol) = case_tolerance(&dir);
    let debug = run_golden_case_debug(&dir).unwrap();
    // Intermediates share the case tolerance; checked first so a failure names the stage.
    check(
        debug,
        &dir.join("debug.safetensors"),
        atol,
        rtol,
        &format!("{name} debug"),
    );
    let results = run_golden_case(&dir).unwrap();
    check(results, &dir.join("expected.safetensors"), atol, rtol, name);
}

#[test]
fn magihuman_dit_golden() {
    run_case("magihuman_dit");
}

#[test]
fn magihuman_dit_local_golden() {
    run_case("magihuman_dit_local");
}

#[test]
fn presets_and_case_configs() {
    for name in ["base", "distill", "sr_540p", "sr_1080p"] {
        let cfg = ModelConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), cfg);
    }
    let base = ModelConfig::base();
    assert_eq!((base.heads_q(), base.heads_kv()), (40, 8));
    assert_eq!(base.num_experts(0), 3);
    assert_eq!(base.num_experts(4), 1);
    assert_eq!(base.num_experts(39), 3);
    // int(5120*4*2/3)//4*4 and 4*5120.
    assert_eq!(base.intermediate_size(10), 13652);
    assert_eq!(base.up_gate_size(10), 2 * 13652);
    assert_eq!(base.intermediate_size(2), 20480);
    assert_eq!(base.up_gate_size(2), 20480);
    assert!(ModelConfig::sr_1080p().is_local_attn(35));
    assert!(!ModelConfig::sr_1080p().is_local_attn(3));
    assert_eq!(
        DataProxyConfig::sr().coords_style,
        happyhorse::engine::models::magihuman::CoordsStyle::V1
    );

    // An empty object is the released base; unknown fields are tolerated.
    let cfg: ModelConfig = serde_json::from_str(r#"{"something_new": 1}"#).unwrap();
    assert_eq!(cfg, ModelConfig::base());

    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("magihuman_dit_local").join("case.json")).unwrap(),
    )
    .unwrap();
    let cfg: ModelConfig = serde_json::from_value(case["config"]["model"].clone()).unwrap();
    let proxy: DataProxyConfig =
        serde_json::from_value(case["config"]["data_proxy"].clone()).unwrap();
    assert_eq!((cfg.hidden_size, cfg.heads_q(), cfg.heads_kv()), (48, 3, 3));
    assert_eq!(cfg.intermediate_size(2), 128);
    assert_eq!(cfg.intermediate_size(0), 192);
    assert!(cfg.has_post_norm(4) && cfg.is_local_attn(2));
    assert_eq!(proxy.frame_receptive_field, 2);
}

/// Random weights under the checkpoint names and the shapes of the README weight table.
fn random_weights(cfg: &ModelConfig) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let (hq, hkv) = (cfg.heads_q(), cfg.heads_kv());
    let g = if cfg.enable_attn_gating { hq } else { 0 };
    let mut shapes: Vec<(String, Vec<usize>, f64)> = vec![
        (
            "adapter.video_embedder.weight".into(),
            vec![h, cfg.video_in_channels],
            0.15,
        ),
        ("adapter.video_embedder.bias".into(), vec![h], 0.1),
        (
            "adapter.audio_embedder.weight".into(),
            vec![h, cfg.audio_in_channels],
            0.15,
        ),
        ("adapter.audio_embedder.bias".into(), vec![h], 0.1),
        (
            "adapter.text_embedder.weight".into(),
            vec![h, cfg.text_in_channels],
            0.15,
        ),
        ("adapter.text_embedder.bias".into(), vec![h], 0.1),
        ("final_norm_video.weight".into(), vec![h], 0.15),
        ("final_norm_audio.weight".into(), vec![h], 0.15),
        (
            "final_linear_video.weight".into(),
            vec![cfg.video_in_channels, h],
            0.1,
        ),
        (
            "final_linear_audio.weight".into(),
            vec![cfg.audio_in_channels, h],
            0.1,
        ),
    ];
    for i in 0..cfg.num_layers {
        let e = cfg.num_experts(i);
        let gelu = cfg.gelu7_layers.contains(&i);
        let inter = if gelu { 4 * h } else { (h * 8 / 3) / 4 * 4 };
        let up = if gelu { inter } else { 2 * inter };
        let p = format!("block.layers.{i}");
        shapes.extend([
            (format!("{p}.attention.pre_norm.weight"), vec![e * h], 0.15),
            (
                format!("{p}.attention.linear_qkv.weight"),
                vec![e * (hq * d + 2 * hkv * d + g), h],
                0.12,
            ),
            (format!("{p}.attention.q_norm.weight"), vec![e * d], 0.15),
            (format!("{p}.attention.k_norm.weight"), vec![e * d], 0.15),
            (
                format!("{p}.attention.linear_proj.weight"),
                vec![e * h, hq * d],
                0.08,
            ),
            (format!("{p}.mlp.pre_norm.weight"), vec![e * h], 0.15),
            (format!("{p}.mlp.up_gate_proj.weight"), vec![e * up, h], 0.6),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![e * h, inter],
                0.04,
            ),
        ]);
        if cfg.post_norm_layers.contains(&i) {
            shapes.push((format!("{p}.attn_post_norm.weight"), vec![e * h], 0.15));
            shapes.push((format!("{p}.mlp_post_norm.weight"), vec![e * h], 0.15));
        }
    }
    let mut map: HashMap<String, Tensor> = shapes
        .into_iter()
        .map(|(n, s, std)| (n, Tensor::randn(0f32, std as f32, s, &dev).unwrap()))
        .collect();
    let b = d / 8;
    let bands: Vec<f32> = (0..b)
        .map(|k| 1.0 / 10000f32.powf(k as f32 / b as f32))
        .collect();
    map.insert(
        "adapter.rope.bands".into(),
        Tensor::new(bands, &dev).unwrap(),
    );
    map
}

/// Options no public golden switches on: no gating, GQA 4:1, head_dim 32, pT 2 with p 1, v1
/// coords, post-norms, an expert layer in the middle, empty text. A receptive field covering
/// every frame must make the local layers equal to global ones.
#[test]
fn synthetic_variants_run_and_local_window_covering_all_frames_is_global() {
    use candle_nn::VarBuilder;
    use happyhorse::engine::models::magihuman::{CoordsStyle, MagiHuman};
    let dev = Device::Cpu;
    let global = ModelConfig {
        num_layers: 3,
        hidden_size: 128,
        head_dim: 32,
        num_query_groups: 1,
        num_heads_q: 0,
        num_heads_kv: 0,
        video_in_channels: 6,
        audio_in_channels: 4,
        text_in_channels: 5,
        mm_layers: vec![1],
        local_attn_layers: vec![],
        gelu7_layers: vec![2],
        post_norm_layers: vec![0],
        enable_attn_gating: false,
        ..ModelConfig::base()
    };
    let local = ModelConfig {
        local_attn_layers: vec![0, 2],
        ..global.clone()
    };
    let proxy = DataProxyConfig {
        t_patch_size: 2,
        patch_size: 1,
        frame_receptive_field: 100,
        coords_style: CoordsStyle::V1,
        text_offset: 3,
        ..DataProxyConfig::base()
    };
    let weights = random_weights(&global);
    let video = Tensor::randn(0f32, 1., (1, 3, 4, 2, 3), &dev).unwrap();
    let audio = Tensor::randn(0f32, 1., (1, 5, 4), &dev).unwrap();
    let text = Tensor::randn(0f32, 1., (1, 3, 5), &dev).unwrap();
    for txt_len in [0, 2] {
        let run = |cfg: &ModelConfig| {
            let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &dev);
            let m = MagiHuman::new(cfg, &proxy, vb).unwrap();
            m.velocity(&video, &audio, &text, txt_len).unwrap()
        };
        let (gv, ga) = run(&global);
        let (lv, la) = run(&local);
        assert_eq!(gv.dims(), video.dims());
        assert_eq!(ga.dims(), audio.dims());
        let d = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(
            d(&gv, &lv) < 1e-5 && d(&ga, &la) < 1e-5,
            "txt_len {txt_len}"
        );
        let s = gv
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .sum(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(s.is_finite() && s > 0.0);
    }

    // A one-frame window must actually restrict the video queries.
    let narrow_proxy = DataProxyConfig {
        frame_receptive_field: 0,
        ..proxy.clone()
    };
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &dev);
    let m = MagiHuman::new(&local, &narrow_proxy, vb).unwrap();
    let (nv, _) = m.velocity(&video, &audio, &text, 2).unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let g = MagiHuman::new(&global, &narrow_proxy, vb).unwrap();
    let (gv, _) = g.velocity(&video, &audio, &text, 2).unwrap();
    let diff = (nv - gv)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() > 1e-4);
}

/// Half-precision compute (norms, rope, heads in f32; linears and attention in bf16/f16) stays
/// close to the f32 golden.
#[test]
fn half_precision_tracks_golden() {
    use candle_nn::VarBuilder;
    use happyhorse::engine::models::magihuman::MagiHuman;
    let dir = fixture("magihuman_dit");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let cfg: ModelConfig = serde_json::from_value(case["config"]["model"].clone()).unwrap();
    let proxy: DataProxyConfig =
        serde_json::from_value(case["config"]["data_proxy"].clone()).unwrap();
    let dev = Device::Cpu;
    let weights = candle::safetensors::load(dir.join("weights.safetensors"), &dev).unwrap();
    let inputs = candle::safetensors::load(dir.join("inputs.safetensors"), &dev).unwrap();
    let exp = candle::safetensors::load(dir.join("expected.safetensors"), &dev).unwrap();
    let txt_len = inputs["txt_len"].to_vec1::<i64>().unwrap()[0] as usize;
    for dtype in [DType::BF16, DType::F16] {
        let vb = VarBuilder::from_tensors(weights.clone(), dtype, &dev);
        let m = MagiHuman::new(&cfg, &proxy, vb).unwrap();
        let (v, a) = m
            .velocity(
                &inputs["latent_video"],
                &inputs["latent_audio"],
                &inputs["txt_feat"],
                txt_len,
            )
            .unwrap();
        for (name, got) in [("v_video", v), ("v_audio", a)] {
            assert_eq!(got.dtype(), DType::F32);
            let e = &exp[name];
            let err = (&got - e)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap();
            let scale = e.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            let rel = err.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap();
            eprintln!("{dtype:?} {name}: max err / max |exp| = {rel:.3e}");
            assert!(rel < 0.1, "{dtype:?} {name}: {rel}");
        }
    }
}

/// One transformer layer on CPU at a width from the environment (defaults: hidden 1024,
/// head_dim 128, 8 q heads, 2 kv groups, 3860 tokens, expert layer). The released width is
/// `HH_BENCH_HIDDEN=5120 HH_BENCH_KV=8`. Run with `cargo test --test suite magihuman_dit -- --ignored`.
#[test]
#[ignore]
fn bench_transformer_layer() {
    use candle_nn::VarBuilder;
    use happyhorse::engine::models::magihuman::{
        ElementWiseFourierEmbed, ModalityRanges, TransformerLayer,
    };
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let dtype = match std::env::var("HH_BENCH_DTYPE").as_deref() {
        Ok("bf16") => DType::BF16,
        Ok("f16") => DType::F16,
        _ => DType::F32,
    };
    let cfg = ModelConfig {
        num_layers: 1,
        hidden_size: env("HH_BENCH_HIDDEN", 1024),
        head_dim: 128,
        num_query_groups: env("HH_BENCH_KV", 2),
        num_heads_q: 0,
        num_heads_kv: 0,
        mm_layers: vec![0],
        gelu7_layers: vec![],
        ..ModelConfig::base()
    };
    let l = env("HH_BENCH_TOKENS", 3860);
    let dev = Device::Cpu;
    let weights: HashMap<String, Tensor> = random_weights(&cfg)
        .into_iter()
        .filter_map(|(n, t)| {
            n.strip_prefix("block.layers.0.")
                .map(|n| (n.to_string(), t))
        })
        .collect();
    let vb = VarBuilder::from_tensors(weights, dtype, &dev);
    let layer = TransformerLayer::new(&cfg, 0, vb).unwrap();
    let ranges = ModalityRanges {
        video: l - 700,
        audio: 100,
        text: 600,
    };
    let coords: Vec<[f32; 9]> = (0..l)
        .map(|i| [i as f32, 0., 0., l as f32, 1., 1., l as f32, 1., 1.])
        .collect();
    let b = cfg.head_dim / 8;
    let rope = ElementWiseFourierEmbed::from_bands(
        (0..b).map(|k| 1e-4f32.powf(k as f32 / b as f32)).collect(),
    )
    .forward(&coords, &dev)
    .unwrap();
    let h = Tensor::randn(0f32, 1., (l, cfg.hidden_size), &dev).unwrap();
    let t = std::time::Instant::now();
    let out = layer.forward(&h, &rope, &ranges, None).unwrap();
    eprintln!("layer {:?} {dtype:?} x{l}: {:.2?}", out.dims(), t.elapsed());
}
