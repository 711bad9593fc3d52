//! End-to-end MagiHuman on a tiny random-weight model directory: the files use the released
//! checkpoint names and formats (safetensors, HF/Stable-Audio/TurboVAED JSON configs, a
//! `tokenizer.json`), so this drives the same loading and generation code as the real model,
//! only with sizes that run in seconds.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;

use happyhorse::engine::models::magihuman::{DataProxyConfig, MagiHuman, ModelConfig};
use happyhorse::engine::models::sa_audio::{self, AudioAutoencoder};
use happyhorse::engine::models::t5gemma::{self, T5GemmaTextEncoder};
use happyhorse::engine::models::turbo_vae::{self, TurboVaed};
use happyhorse::engine::models::wan22_vae::{self, Wan22VaeDecoder, Wan22VaeEncoder};
use happyhorse::engine::pipelines::magihuman_t2v::{
    GuidanceMode, MagiHumanPipeline, MagiRequest, PipelineError, RgbImage,
};
use happyhorse::media::StreamKind;

const WIDTH: u32 = 64;
const HEIGHT: u32 = 32;
const WORDS: &[&str] = &[
    "a", "red", "ball", "bouncing", "on", "the", "floor", "blue", "sky", "low", "quality",
];

/// Builds a model with a `VarMap` behind its `VarBuilder` (so every tensor it asks for is
/// created under the name it asks for), fills every tensor with gaussian values and saves it.
fn random_weights(
    path: &Path,
    std: f64,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<()>,
) {
    let vm = VarMap::new();
    build(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
    for var in vm.all_vars() {
        let t = Tensor::randn(0f32, std as f32, var.shape(), &Device::Cpu).unwrap();
        var.set(&t).unwrap();
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    vm.save(path).unwrap();
}

fn write_json(path: &Path, v: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// A WordLevel `tokenizer.json` that puts `<bos>` (id 2) first, as Gemma's does.
fn tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, w) in ["<pad>", "<eos>", "<bos>", "<unk>"]
        .iter()
        .chain(WORDS)
        .enumerate()
    {
        vocab.insert(w.to_string(), json!(i));
    }
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

const MANIFEST: &str = r#"
name = "tiny-magihuman"
architecture = "magihuman"
description = "random-weight MagiHuman for tests"
native_fps = 25
audio_sample_rate = 44100
min_duration_s = 1.0
max_duration_s = 4.0
supports = ["negative_prompt", "guidance", "seed", "audio_seed", "variants"]

[defaults]
steps = 2
guidance_video = 5.0
guidance_audio = 5.0
duration_s = 1.0
aspect = "16:9"
resolution = "tiny"

[[resolutions]]
name = "tiny"
sizes = { "16:9" = [64, 32], "9:16" = [32, 64], "1:1" = [32, 32] }

[[components]]
role = "transformer"
path = "transformer/model.safetensors"
local = "transformer/model.safetensors"

[[components]]
role = "text-encoder"
path = "t5gemma/model.safetensors"
local = "t5gemma/model.safetensors"

[[components]]
role = "tokenizer"
path = "t5gemma/tokenizer.json"
local = "t5gemma/tokenizer.json"

[[components]]
role = "turbo-vae-config"
path = "turbo_vae/config.json"
local = "turbo_vae/config.json"

[[components]]
role = "turbo-vae"
path = "turbo_vae/turbo_vaed.safetensors"
local = "turbo_vae/turbo_vaed.safetensors"

[[components]]
role = "audio-vae"
path = "audio/model.safetensors"
local = "audio/model.safetensors"

[[components]]
role = "audio-vae-config"
path = "audio/model_config.json"
local = "audio/model_config.json"
"#;

/// Writes the tiny model into `dir` and returns its files by role, as `locate_all` would.
fn tiny_model(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::write(dir.join("happyhorse.toml"), MANIFEST).unwrap();

    // T5Gemma: the HF encoder-decoder config layout, with the encoder block used.
    let t5 = json!({
        "encoder": {
            "vocab_size": 4 + WORDS.len(), "hidden_size": 32, "intermediate_size": 48,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": 16, "hidden_activation": "gelu_pytorch_tanh", "rms_norm_eps": 1e-6,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "query_pre_attn_scalar": 16, "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention"],
            "attn_logit_softcapping": 50.0
        },
        "is_encoder_decoder": true
    });
    write_json(&dir.join("t5gemma/config.json"), &t5);
    write_json(&dir.join("t5gemma/tokenizer.json"), &tokenizer_json());
    let t5_cfg = t5gemma::Config::from_hf_json(&t5).unwrap();
    random_weights(&dir.join("t5gemma/model.safetensors"), 0.1, |vb| {
        T5GemmaTextEncoder::new(&t5_cfg, vb).map(|_| ())
    });

    // DiT: z_dim 48 (the Wan2.2 latent), 64 audio channels, text width = T5Gemma's hidden.
    let dit = json!({
        "model": {
            "num_layers": 2, "hidden_size": 32, "head_dim": 16, "num_query_groups": 1,
            "video_in_channels": 48 * 4, "audio_in_channels": 64, "text_in_channels": 32,
            "mm_layers": [0], "gelu7_layers": [0], "local_attn_layers": [],
            "post_norm_layers": [], "enable_attn_gating": true
        },
        "z_dim": 48
    });
    write_json(&dir.join("transformer/config.json"), &dit);
    let model_cfg: ModelConfig = serde_json::from_value(dit["model"].clone()).unwrap();
    random_weights(&dir.join("transformer/model.safetensors"), 0.05, |vb| {
        MagiHuman::new(&model_cfg, &DataProxyConfig::base(), vb).map(|_| ())
    });

    // TurboVAED: the golden case's tiny decoder, saved with the `.ckpt`'s `module.` prefix.
    let turbo = json!({
        "in_channels": 3, "out_channels": 3, "latent_channels": 48,
        "decoder_block_out_channels": [4, 8, 12, 16], "decoder_layers_per_block": [1, 1, 1, 2, 2],
        "decoder_spatio_temporal_scaling": [false, true, true, true],
        "decoder_spatio_only": [false, true, false, false],
        "decoder_is_dw_conv": [false, false, false, false, false], "decoder_dw_kernel_size": 5,
        "patch_size": 2, "patch_size_t": 1, "resnet_norm_eps": 1e-6, "scaling_factor": 1.0,
        "decoder_causal": false, "first_chunk_size": 3, "step_size": 5,
        "spatial_compression_ratio": 16, "temporal_compression_ratio": 4, "use_unpatchify": true
    });
    write_json(&dir.join("turbo_vae/config.json"), &turbo);
    let turbo_cfg = turbo_vae::Config::from_json_str(&turbo.to_string()).unwrap();
    random_weights(&dir.join("turbo_vae/turbo_vaed.safetensors"), 0.1, |vb| {
        TurboVaed::new(&turbo_cfg, vb.pp("module")).map(|_| ())
    });

    // Stable Audio VAE: strides multiplying to 2048 like the released one, so 25 latents make
    // one second of sound, but only a few channels.
    let enc = json!({"in_channels": 2, "channels": 4, "c_mults": [1, 2, 4], "strides": [8, 16, 16], "latent_dim": 128, "use_snake": true});
    let dec = json!({"out_channels": 2, "channels": 4, "c_mults": [1, 2, 4], "strides": [8, 16, 16], "latent_dim": 64, "use_snake": true, "final_tanh": false});
    let audio = json!({
        "model_type": "diffusion_cond", "sample_rate": 44100,
        "model": {"pretransform": {"type": "autoencoder", "config": {
            "encoder": {"type": "oobleck", "config": enc},
            "decoder": {"type": "oobleck", "config": dec},
            "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048,
            "io_channels": 2
        }}}
    });
    write_json(&dir.join("audio/model_config.json"), &audio);
    let audio_cfg = sa_audio::Config::from_model_config_value(&audio).unwrap();
    random_weights(&dir.join("audio/model.safetensors"), 0.1, |vb| {
        AudioAutoencoder::new(&audio_cfg, vb.pp(sa_audio::CHECKPOINT_PREFIX)).map(|_| ())
    });

    [
        ("transformer", "transformer/model.safetensors"),
        ("text-encoder", "t5gemma/model.safetensors"),
        ("tokenizer", "t5gemma/tokenizer.json"),
        ("turbo-vae-config", "turbo_vae/config.json"),
        ("turbo-vae", "turbo_vae/turbo_vaed.safetensors"),
        ("audio-vae", "audio/model.safetensors"),
        ("audio-vae-config", "audio/model_config.json"),
    ]
    .iter()
    .map(|(role, rel)| (role.to_string(), dir.join(rel)))
    .collect()
}

#[test]
fn library_shapes_for_one_and_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let files = tiny_model(dir.path());
    let pipe = MagiHumanPipeline::load(&files, &Device::Cpu, DType::F32).unwrap();

    // (seconds, video frames, samples per channel): 25 s + 1 audio latents, (25 s) // 4 + 1
    // video latents decoding to 4T - 3 frames, sound cut to the picture.
    for (secs, frames, samples, mode) in [
        (1.0, 25, 44_100, GuidanceMode::Cfg),
        (2.0, 49, 86_436, GuidanceMode::Distill),
    ] {
        let mut req = MagiRequest::new("a red ball", WIDTH, HEIGHT, secs);
        req.steps = 2;
        req.mode = mode;
        let mut seen = Vec::new();
        let clip = pipe
            .generate(&req, &mut |done, total| {
                seen.push((done, total));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(seen, vec![(1, 2), (2, 2)]);
        assert_eq!((clip.width, clip.height, clip.fps), (WIDTH, HEIGHT, 25));
        assert_eq!(clip.num_frames, frames);
        assert_eq!(clip.frames.len(), frames * (WIDTH * HEIGHT * 3) as usize);
        assert_eq!((clip.sample_rate, clip.channels), (44_100, 2));
        assert_eq!(clip.audio.len(), samples * 2);
        let duration = secs as f64;
        assert!((samples as f64 / 44_100.0 - duration).abs() <= 0.04 + 1e-9);
        assert!(clip.audio.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
        // Random weights still give a picture that is not one flat colour.
        let first = clip.frames[0];
        assert!(clip.frames.iter().any(|&v| v != first));
    }

    // Same seeds, same clip; cancelling stops the run.
    let mut req = MagiRequest::new("a red ball", WIDTH, HEIGHT, 1.0);
    req.steps = 1;
    req.mode = GuidanceMode::Distill;
    let a = pipe
        .generate(&req, &mut |_, _| ControlFlow::Continue(()))
        .unwrap();
    let b = pipe
        .generate(&req, &mut |_, _| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(a, b);
    let err = pipe
        .generate(&req, &mut |_, _| ControlFlow::Break(()))
        .unwrap_err();
    assert!(matches!(err, PipelineError::Cancelled { .. }), "{err}");
}

/// The same model with the Wan2.2 VAE instead of TurboVAED: it decodes, and its encoder makes
/// the reference image's latent (TI2V).
#[test]
fn wan22_decoder_and_reference_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = tiny_model(dir.path());
    files.retain(|(role, _)| !role.starts_with("turbo-vae"));
    // Real widths are 160/256; the layer structure (dim_mult, blocks, time flags) is the
    // released one.
    let cfg = json!({"z_dim": 48, "c_dim": 8, "dec_dim": 8, "dim_mult": [1, 2, 4, 4],
        "num_res_blocks": 2, "temperal_downsample": [false, true, true]});
    let wan = dir.path().join("wan/Wan2.2_VAE.safetensors");
    write_json(&dir.path().join("wan/config.json"), &cfg);
    let wan_cfg: wan22_vae::Config = serde_json::from_value(cfg).unwrap();
    random_weights(&wan, 0.1, |vb| {
        Wan22VaeDecoder::new(&wan_cfg, vb.clone())?;
        Wan22VaeEncoder::new(&wan_cfg, vb).map(|_| ())
    });
    files.push(("video-vae".into(), wan));
    let pipe = MagiHumanPipeline::load(&files, &Device::Cpu, DType::F32).unwrap();
    assert!(pipe.supports_image());

    let (w, h) = (90u32, 40u32);
    let data = (0..w * h)
        .flat_map(|i| [(i % w * 2) as u8, (i / w * 5) as u8, 128])
        .collect();
    let mut req = MagiRequest::new("a red ball", WIDTH, HEIGHT, 1.0);
    req.steps = 1;
    req.mode = GuidanceMode::Distill;
    req.image = Some(RgbImage {
        width: w,
        height: h,
        data,
    });
    let clip = pipe
        .generate(&req, &mut |_, _| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(
        (clip.width, clip.height, clip.num_frames),
        (WIDTH, HEIGHT, 25)
    );
    assert_eq!(clip.audio.len(), 44_100 * 2);

    // Without the Wan2.2 file there is no image encoder: a clear error, not a silent T2V.
    files.retain(|(role, _)| role != "video-vae");
    let err = MagiHumanPipeline::load(&files, &Device::Cpu, DType::F32)
        .err()
        .unwrap();
    assert!(err.to_string().contains("video-vae"), "{err}");
}

#[test]
fn binary_generates_mp4_and_wav_from_a_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model(&model);
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_happyhorse"))
        .args(["generate", "-m"])
        .arg(&model)
        .args([
            "a red ball",
            "--duration",
            "1",
            "--seed",
            "7",
            "--json",
            "-o",
        ])
        .arg(&out_dir)
        .current_dir(dir.path())
        .env("HF_HOME", dir.path().join("hf"))
        .env_remove("HAPPYHORSE_MODEL_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );

    // Exactly one JSON object on stdout.
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stdout: {stdout}\nstderr: {stderr}");
    let result: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(result.is_object());
    let outputs: BTreeMap<String, Vec<PathBuf>> =
        serde_json::from_value(result["outputs"].clone()).unwrap();
    for p in outputs.values().flatten() {
        assert!(p.exists(), "{} missing", p.display());
    }

    let mp4 = &outputs["mp4"][0];
    let info = happyhorse::media::probe(mp4).unwrap();
    let v = info.stream(StreamKind::Video).expect("video stream");
    let a = info.stream(StreamKind::Audio).expect("audio stream");
    assert_eq!(v.codec, "h264");
    assert_eq!(a.codec, "aac");
    assert_eq!((v.width, v.height), (Some(WIDTH), Some(HEIGHT)));
    assert_eq!(v.decoded, 25);
    assert!((v.duration_s - 1.0).abs() <= 1.0 / 25.0 + 1e-6, "{info:?}");
    assert!(
        (info.duration_s - 1.0).abs() <= 1.0 / 25.0 + 0.03,
        "{info:?}"
    );

    if let Some(wavs) = outputs.get("wav") {
        let wav = happyhorse::media::read_wav(&wavs[0]).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (44_100, 2));
        assert!((wav.duration_s() - 1.0).abs() <= 1.0 / 25.0);
    }
}

/// A control the manifest lists but the pipeline cannot do yet (a given soundtrack) is refused
/// as bad input (exit 2) with the field named, never ignored.
#[test]
fn binary_refuses_a_given_soundtrack() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    std::fs::create_dir_all(&model).unwrap();
    tiny_model(&model);
    let manifest = MANIFEST.replace("supports = [", "supports = [\"audio\", ");
    std::fs::write(model.join("happyhorse.toml"), manifest).unwrap();
    let wav = dir.path().join("voice.wav");
    let audio = happyhorse::media::Audio {
        sample_rate: 44_100,
        channels: 2,
        samples: vec![0.0; 44_100 * 2],
    };
    happyhorse::media::write_wav(&wav, &audio).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_happyhorse"))
        .args(["generate", "-m"])
        .arg(&model)
        .arg("a red ball")
        .arg("--audio")
        .arg(&wav)
        .arg("-o")
        .arg(dir.path().join("out"))
        .current_dir(dir.path())
        .env("HF_HOME", dir.path().join("hf"))
        .env_remove("HAPPYHORSE_MODEL_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("`audio`") && stderr.contains("A2V"),
        "{stderr}"
    );
}
