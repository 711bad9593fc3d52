//! Golden parity runner for the `magihuman_sampler` cases: `MagiEvaluator.evaluate_with_latent`
//! of GAIR-NLP/daVinci-MagiHuman at 209209b, with the reference's recorded noise injected.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core as candle;

use candle::{Device, Tensor};

use super::magihuman::{
    sample, Denoiser, QueuedNoise, SampleError, SamplerConfig, SamplerInputs, StepEvent,
    TextCondition,
};
use crate::engine::golden::GoldenCase;
use crate::engine::models::magihuman::{DataProxyConfig, MagiHuman, ModelConfig};

pub const COMPONENT: &str = "magihuman_sampler";

/// Every tensor a `magihuman_sampler` golden case can ask for: the expected ones
/// (`latent_video`, `latent_audio`, `timesteps` i64, `sigmas`) and the per-step debug ones
/// (`step_latent_*_in`, `step_v_cond_*`, `step_v_uncond_*`, `step_v_cfg_*`, `step_latent_*_out`).
pub fn run_sampler_case_with<D: Denoiser + ?Sized>(
    dir: &Path,
    denoiser: &D,
) -> candle::Result<HashMap<String, Tensor>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    let case_path = dir.join("case.json");
    let eval = &case.json["config"]["evaluation"];
    let params = &case.json["params"];
    let missing = |field: &str| {
        candle::Error::Msg(format!(
            "{}: `{field}` is missing or not a number",
            case_path.display()
        ))
    };
    let num = |v: &serde_json::Value, field: &str| v[field].as_f64().ok_or_else(|| missing(field));
    let cfg = SamplerConfig {
        num_inference_steps: params["num_inference_steps"]
            .as_u64()
            .ok_or_else(|| missing("params.num_inference_steps"))?
            as usize,
        shift: num(params, "shift")?,
        cfg_number: eval["cfg_number"]
            .as_u64()
            .ok_or_else(|| missing("config.evaluation.cfg_number"))? as usize,
        video_txt_guidance_scale: num(eval, "video_txt_guidance_scale")?,
        audio_txt_guidance_scale: num(eval, "audio_txt_guidance_scale")?,
        ..SamplerConfig::base()
    };
    let audio_given = params["is_a2v"].as_bool().unwrap_or(false);

    let inputs = case.tensors("inputs.safetensors")?;
    let get = |name: &str| inputs.get(name);
    let len_of = |name: &str| inputs.usize(name);
    let txt_feat = get("txt_feat")?;
    let text = TextCondition {
        feat: txt_feat,
        len: len_of("txt_len")?,
    };
    let negative = if cfg.cfg_number == 2 {
        Some(TextCondition {
            feat: get("null_feat")?,
            len: len_of("null_len")?,
        })
    } else {
        None
    };
    // The distilled path re-noises with fresh draws; the case recorded them, video then audio.
    let mut draws = Vec::new();
    if cfg.cfg_number == 1 {
        let (nv, na) = (get("ddim_noise_video")?, get("ddim_noise_audio")?);
        for k in 0..cfg.num_inference_steps {
            draws.push(nv.get(k)?);
            draws.push(na.get(k)?);
        }
    }
    let mut noise = QueuedNoise::new(draws);
    let inputs = SamplerInputs {
        latent_video: get("latent_video")?.clone(),
        latent_audio: get("latent_audio")?.clone(),
        text,
        negative,
        latent_image: inputs.maybe("latent_image"),
        audio_given,
    };

    let mut steps: HashMap<&'static str, Vec<Tensor>> = HashMap::new();
    let mut record = |ev: &StepEvent| {
        let mut named = vec![
            ("step_latent_video_in", ev.latent_video_in),
            ("step_latent_audio_in", ev.latent_audio_in),
            ("step_v_cond_video", ev.v_cond_video),
            ("step_v_cond_audio", ev.v_cond_audio),
            ("step_v_cfg_video", ev.v_cfg_video),
            ("step_v_cfg_audio", ev.v_cfg_audio),
            ("step_latent_video_out", ev.latent_video_out),
            ("step_latent_audio_out", ev.latent_audio_out),
        ];
        if let (Some(v), Some(a)) = (ev.v_uncond_video, ev.v_uncond_audio) {
            named.push(("step_v_uncond_video", v));
            named.push(("step_v_uncond_audio", a));
        }
        for (name, t) in named {
            steps.entry(name).or_default().push(t.clone());
        }
        ControlFlow::Continue(())
    };
    let out = sample(denoiser, &cfg, inputs, &mut noise, &mut record).map_err(|e| match e {
        SampleError::Candle(e) => e,
        other => candle::Error::Msg(other.to_string()),
    })?;

    let mut all = HashMap::new();
    for (name, ts) in steps {
        all.insert(name.to_string(), Tensor::stack(&ts, 0)?);
    }
    all.insert("latent_video".to_string(), out.latent_video);
    all.insert("latent_audio".to_string(), out.latent_audio);
    all.insert(
        "timesteps".to_string(),
        Tensor::new(out.timesteps.as_slice(), &Device::Cpu)?,
    );
    let sigmas: Vec<f32> = out.sigmas.iter().map(|s| *s as f32).collect();
    all.insert(
        "sigmas".to_string(),
        Tensor::new(sigmas.as_slice(), &Device::Cpu)?,
    );
    Ok(all)
}

/// The DiT of a `magihuman_sampler` case: `config.model` and `config.data_proxy` of case.json
/// with `weights.safetensors`, on the CPU in f32.
fn case_model(case: &GoldenCase) -> candle::Result<MagiHuman> {
    let model: ModelConfig = case.config("/config/model")?;
    let proxy: DataProxyConfig = case.config("/config/data_proxy")?;
    MagiHuman::new(&model, &proxy, case.var_builder()?)
}

/// Runs a `magihuman_sampler` golden case folder (the tiny DiT of its weights, the loop, on the
/// CPU in f32) and returns every tensor `expected.safetensors` names, with its dtype
/// (`timesteps` i64), sorted by name.
pub fn run_sampler_golden_case(dir: &Path) -> candle::Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    let model = case_model(&case)?;
    case.select(run_sampler_case_with(dir, &model)?, "expected.safetensors")
}

/// Same run, returning the per-step tensors `debug.safetensors` names.
pub fn run_sampler_golden_case_debug(dir: &Path) -> candle::Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    let model = case_model(&case)?;
    case.select(run_sampler_case_with(dir, &model)?, "debug.safetensors")
}
