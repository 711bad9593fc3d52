//! The MagiHuman sampling loop: joint video + audio denoising with two-pass CFG.
//!
//! Port of `MagiEvaluator.evaluate_with_latent` and `schedule_latent_step` in
//! `inference/pipeline/video_generate.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b,
//! base-resolution path (no SR model, no SDE). The model is behind [`Denoiser`], so the loop
//! runs with any velocity predictor.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;

use candle_core as candle;

use candle::{DType, Device, Tensor};

use crate::engine::models::magihuman::{DataProxyConfig, MagiHuman, ModelConfig};
use crate::engine::samplers::FlowUniPcScheduler;

/// A velocity predictor for the joint latents: one conditional forward of the DiT.
pub trait Denoiser {
    /// `latent_video` `[1, z, T, H, W]`, `latent_audio` `[1, Na, Ca]`, `txt_feat` `[1, Lt, Ct]`
    /// of which the first `txt_len` rows are used. Returns `(v_video, v_audio)` shaped like the
    /// latents.
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
    ) -> candle::Result<(Tensor, Tensor)>;
}

impl<D: Denoiser + ?Sized> Denoiser for &D {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
    ) -> candle::Result<(Tensor, Tensor)> {
        (**self).velocity(latent_video, latent_audio, txt_feat, txt_len)
    }
}

impl Denoiser for MagiHuman {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
    ) -> candle::Result<(Tensor, Tensor)> {
        MagiHuman::velocity(self, latent_video, latent_audio, txt_feat, txt_len)
    }
}

/// The loop's settings; defaults are the reference's `EvaluationConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    pub num_inference_steps: usize,
    /// Timestep shift of the flow schedule.
    pub shift: f64,
    /// 2: conditional + negative-prompt pass, CFG, UniPC. 1 (distilled model): conditional pass
    /// only, `step_ddim` with fresh noise.
    pub cfg_number: usize,
    pub video_txt_guidance_scale: f64,
    pub audio_txt_guidance_scale: f64,
    /// The video scale once `t <= guidance_switch_timestep`: the reference drops to 2.0 for the
    /// last, low-noise steps.
    pub low_noise_video_guidance_scale: f64,
    pub guidance_switch_timestep: i64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl SamplerConfig {
    /// `example/base/config.json`: 32 steps, CFG 5.0 / 5.0.
    pub fn base() -> Self {
        Self {
            num_inference_steps: 32,
            shift: 5.0,
            cfg_number: 2,
            video_txt_guidance_scale: 5.0,
            audio_txt_guidance_scale: 5.0,
            low_noise_video_guidance_scale: 2.0,
            guidance_switch_timestep: 500,
        }
    }

    /// `example/distill/config.json`: 8 steps, no CFG.
    pub fn distill() -> Self {
        Self {
            num_inference_steps: 8,
            cfg_number: 1,
            ..Self::base()
        }
    }

    /// The video guidance scale at timestep `t` (strict `>`, as the reference).
    pub fn video_scale_at(&self, t: i64) -> f64 {
        if t > self.guidance_switch_timestep {
            self.video_txt_guidance_scale
        } else {
            self.low_noise_video_guidance_scale
        }
    }
}

/// A text embedding and how many of its rows are real.
#[derive(Debug, Clone, Copy)]
pub struct TextCondition<'a> {
    pub feat: &'a Tensor,
    pub len: usize,
}

#[derive(Debug, Clone)]
pub struct SamplerInputs<'a> {
    /// Initial noise `[1, z, T, H, W]`.
    pub latent_video: Tensor,
    /// Initial noise `[1, Na, Ca]`, or the encoded audio when `audio_given`.
    pub latent_audio: Tensor,
    pub text: TextCondition<'a>,
    /// The negative prompt; required when `cfg_number == 2`.
    pub negative: Option<TextCondition<'a>>,
    /// TI2V: `[1, z, 1, H, W]`, held as the first latent frame.
    pub latent_image: Option<&'a Tensor>,
    /// A2V: the audio latent is given. The UniPC path leaves it untouched; the distilled path
    /// still re-noises it, as the reference does.
    pub audio_given: bool,
}

/// `pad_or_trim(emb, target, dim=1)` of `inference/pipeline/prompt_process.py`: a shorter
/// embedding `[1, L, C]` is zero-padded to `target` rows and keeps its own length; a longer or
/// equal one is cut to `target` rows and its length is `target`. Returns the embedding in f32.
pub fn pad_or_trim_text(feat: &Tensor, target: usize) -> candle::Result<(Tensor, usize)> {
    if feat.rank() != 3 {
        candle::bail!("text embedding must be [1, L, C], got {:?}", feat.dims())
    }
    let rows = feat.dim(1)?;
    let feat = feat.to_dtype(DType::F32)?;
    if rows < target {
        Ok((feat.pad_with_zeros(1, 0, target - rows)?, rows))
    } else {
        Ok((feat.narrow(1, 0, target)?, target))
    }
}

/// What one denoising step saw and produced.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// 0-based.
    pub step: usize,
    pub num_steps: usize,
    pub timestep: i64,
    /// The model inputs, after the image frame was written.
    pub latent_video_in: &'a Tensor,
    pub latent_audio_in: &'a Tensor,
    pub v_cond_video: &'a Tensor,
    pub v_cond_audio: &'a Tensor,
    /// `None` without CFG.
    pub v_uncond_video: Option<&'a Tensor>,
    pub v_uncond_audio: Option<&'a Tensor>,
    pub v_cfg_video: &'a Tensor,
    pub v_cfg_audio: &'a Tensor,
    /// After the scheduler update.
    pub latent_video_out: &'a Tensor,
    pub latent_audio_out: &'a Tensor,
}

#[derive(Debug, Clone)]
pub struct SampleOutput {
    pub latent_video: Tensor,
    pub latent_audio: Tensor,
    pub timesteps: Vec<i64>,
    /// `n + 1` sigmas (f32 values), the last one 0.
    pub sigmas: Vec<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("generation cancelled after step {step} of {num_steps}")]
    Cancelled { step: usize, num_steps: usize },
    #[error("sampler settings: {0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle::Error),
}

/// Standard gaussian noise shaped like a given tensor.
pub trait NoiseSource {
    fn gaussian_like(&mut self, like: &Tensor) -> candle::Result<Tensor>;
}

/// Seeded gaussian noise (splitmix64 + Box-Muller), drawn on the CPU so a seed gives the same
/// clip on every device.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    state: u64,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: 53 random bits, never 0 so the log below stays finite.
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub fn sample(&mut self, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(n + 1);
        while out.len() < n {
            let r = (-2.0 * self.next_unit().ln()).sqrt();
            let theta = std::f64::consts::TAU * self.next_unit();
            out.push((r * theta.cos()) as f32);
            out.push((r * theta.sin()) as f32);
        }
        out.truncate(n);
        out
    }
}

impl NoiseSource for SeededNoise {
    fn gaussian_like(&mut self, like: &Tensor) -> candle::Result<Tensor> {
        let values = self.sample(like.elem_count());
        Tensor::from_vec(values, like.shape(), &Device::Cpu)?
            .to_dtype(like.dtype())?
            .to_device(like.device())
    }
}

/// Pre-drawn noise, handed out in order (golden cases inject the reference's draws).
#[derive(Debug, Clone, Default)]
pub struct QueuedNoise {
    queue: VecDeque<Tensor>,
}

impl QueuedNoise {
    pub fn new(draws: impl IntoIterator<Item = Tensor>) -> Self {
        Self {
            queue: draws.into_iter().collect(),
        }
    }
}

impl NoiseSource for QueuedNoise {
    fn gaussian_like(&mut self, like: &Tensor) -> candle::Result<Tensor> {
        let Some(t) = self.queue.pop_front() else {
            candle::bail!("queued noise exhausted: provide one draw per modality per step")
        };
        if t.dims() != like.dims() {
            candle::bail!(
                "queued noise has shape {:?}, the latent {:?}",
                t.dims(),
                like.dims()
            )
        }
        t.to_dtype(like.dtype())?.to_device(like.device())
    }
}

/// `latent_video[:, :, :1] = latent_image[:, :, :1]`.
fn hold_first_frame(video: &Tensor, image: &Tensor) -> candle::Result<Tensor> {
    let frame = image.narrow(2, 0, 1)?.to_dtype(video.dtype())?;
    let t = video.dim(2)?;
    if t == 1 {
        return Ok(frame);
    }
    Tensor::cat(&[&frame, &video.narrow(2, 1, t - 1)?], 2)
}

/// `u + s * (c - u)`.
fn guide(cond: &Tensor, uncond: &Tensor, scale: f64) -> candle::Result<Tensor> {
    uncond + (cond - uncond)?.affine(scale, 0.0)?
}

fn validate(cfg: &SamplerConfig, inputs: &SamplerInputs) -> Result<(), SampleError> {
    let invalid = |m: String| Err(SampleError::Invalid(m));
    if cfg.num_inference_steps == 0 {
        return invalid("num_inference_steps must be at least 1".into());
    }
    match (cfg.cfg_number, &inputs.negative) {
        (1, _) | (2, Some(_)) => {}
        (2, None) => {
            return invalid(
                "cfg_number 2 needs the negative-prompt embedding: pass `negative`, or use \
                 cfg_number 1 with a distilled model"
                    .into(),
            )
        }
        (n, _) => return invalid(format!("cfg_number must be 1 or 2, got {n}")),
    }
    let v = inputs.latent_video.dims();
    if v.len() != 5 {
        return invalid(format!("latent_video must be [1, z, T, H, W], got {v:?}"));
    }
    if inputs.latent_audio.rank() != 3 {
        return invalid(format!(
            "latent_audio must be [1, Na, Ca], got {:?}",
            inputs.latent_audio.dims()
        ));
    }
    if let Some(img) = inputs.latent_image {
        let i = img.dims();
        if i.len() != 5 || i[2] == 0 || i[0] != v[0] || i[1] != v[1] || i[3..] != v[3..] {
            return invalid(format!(
                "latent_image {i:?} must be [1, z, 1, H, W] matching latent_video {v:?}"
            ));
        }
    }
    for text in std::iter::once(&inputs.text).chain(inputs.negative.as_ref()) {
        let rows = text.feat.dim(1)?;
        if text.len == 0 || text.len > rows {
            return invalid(format!(
                "text length {} must be in 1..={rows} (rows of its embedding {:?})",
                text.len,
                text.feat.dims()
            ));
        }
    }
    Ok(())
}

/// `evaluate_with_latent`: denoises the joint latents. `noise` feeds the distilled path's
/// re-noising; `on_step` sees every step and can stop the run with `ControlFlow::Break`.
pub fn sample<D: Denoiser + ?Sized>(
    denoiser: &D,
    cfg: &SamplerConfig,
    inputs: SamplerInputs,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(&StepEvent) -> ControlFlow<()>,
) -> Result<SampleOutput, SampleError> {
    validate(cfg, &inputs)?;
    let SamplerInputs {
        mut latent_video,
        mut latent_audio,
        text,
        negative,
        latent_image,
        audio_given,
    } = inputs;
    let n = cfg.num_inference_steps;
    let mut video_sched = FlowUniPcScheduler::new(n, cfg.shift)?;
    let mut audio_sched = FlowUniPcScheduler::new(n, cfg.shift)?;
    let timesteps = video_sched.timesteps().to_vec();

    for (k, &t) in timesteps.iter().enumerate() {
        // Written before the model call: the model, the scheduler sample and the corrector
        // history all see the image frame.
        if let Some(img) = latent_image {
            latent_video = hold_first_frame(&latent_video, img)?;
        }
        let (c_video, c_audio) =
            denoiser.velocity(&latent_video, &latent_audio, text.feat, text.len)?;

        let (uncond, v_video, v_audio, next_video, next_audio) = match negative {
            Some(neg) if cfg.cfg_number == 2 => {
                let (u_video, u_audio) =
                    denoiser.velocity(&latent_video, &latent_audio, neg.feat, neg.len)?;
                let v_video = guide(&c_video, &u_video, cfg.video_scale_at(t))?;
                let v_audio = guide(&c_audio, &u_audio, cfg.audio_txt_guidance_scale)?;
                let next_video = video_sched.step(&v_video, t, &latent_video)?;
                let next_audio = if audio_given {
                    latent_audio.clone()
                } else {
                    audio_sched.step(&v_audio, t, &latent_audio)?
                };
                (
                    Some((u_video, u_audio)),
                    v_video,
                    v_audio,
                    next_video,
                    next_audio,
                )
            }
            _ => {
                // The reference draws video noise, then audio noise, at every step.
                let eps_video = noise.gaussian_like(&latent_video)?;
                let next_video = video_sched.step_ddim(&c_video, k, &latent_video, &eps_video)?;
                let eps_audio = noise.gaussian_like(&latent_audio)?;
                let next_audio = audio_sched.step_ddim(&c_audio, k, &latent_audio, &eps_audio)?;
                (
                    None,
                    c_video.clone(),
                    c_audio.clone(),
                    next_video,
                    next_audio,
                )
            }
        };

        let event = StepEvent {
            step: k,
            num_steps: n,
            timestep: t,
            latent_video_in: &latent_video,
            latent_audio_in: &latent_audio,
            v_cond_video: &c_video,
            v_cond_audio: &c_audio,
            v_uncond_video: uncond.as_ref().map(|u| &u.0),
            v_uncond_audio: uncond.as_ref().map(|u| &u.1),
            v_cfg_video: &v_video,
            v_cfg_audio: &v_audio,
            latent_video_out: &next_video,
            latent_audio_out: &next_audio,
        };
        let flow = on_step(&event);
        latent_video = next_video;
        latent_audio = next_audio;
        if flow.is_break() {
            return Err(SampleError::Cancelled {
                step: k + 1,
                num_steps: n,
            });
        }
    }
    if let Some(img) = latent_image {
        latent_video = hold_first_frame(&latent_video, img)?;
    }
    Ok(SampleOutput {
        latent_video,
        latent_audio,
        timesteps,
        sigmas: video_sched.sigmas().to_vec(),
    })
}

/// Every tensor a `magihuman_sampler` golden case can ask for: the expected ones
/// (`latent_video`, `latent_audio`, `timesteps` i64, `sigmas`) and the per-step debug ones
/// (`step_latent_*_in`, `step_v_cond_*`, `step_v_uncond_*`, `step_v_cfg_*`, `step_latent_*_out`).
pub fn run_sampler_case_with<D: Denoiser + ?Sized>(
    dir: &std::path::Path,
    denoiser: &D,
) -> candle::Result<HashMap<String, Tensor>> {
    use crate::engine::samplers::{read_case_json, read_case_tensors, take};

    let case = read_case_json(dir)?;
    let case_path = dir.join("case.json");
    let eval = &case["config"]["evaluation"];
    let params = &case["params"];
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

    let inputs = read_case_tensors(dir, "inputs.safetensors")?;
    let file = "inputs.safetensors";
    let get = |name: &str| take(&inputs, name, file);
    let len_of = |name: &str| -> candle::Result<usize> {
        let v = get(name)?
            .flatten_all()?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        match v.as_slice() {
            [n] if *n >= 0 => Ok(*n as usize),
            other => candle::bail!("{file}: `{name}` must hold one length, got {other:?}"),
        }
    };
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
    let mut noise = QueuedNoise::default();
    if cfg.cfg_number == 1 {
        let (nv, na) = (get("ddim_noise_video")?, get("ddim_noise_audio")?);
        for k in 0..cfg.num_inference_steps {
            noise.queue.push_back(nv.get(k)?);
            noise.queue.push_back(na.get(k)?);
        }
    }
    let inputs = SamplerInputs {
        latent_video: get("latent_video")?.clone(),
        latent_audio: get("latent_audio")?.clone(),
        text,
        negative,
        latent_image: inputs.get("latent_image"),
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

/// Keeps the tensors `reference` (a safetensors file of the case) names, in its dtypes, sorted.
fn select_like(
    mut all: HashMap<String, Tensor>,
    dir: &std::path::Path,
    reference: &str,
) -> candle::Result<Vec<(String, Tensor)>> {
    let wanted = crate::engine::samplers::read_case_tensors(dir, reference)?;
    let mut names: Vec<_> = wanted.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| match all.remove(&name) {
            Some(t) => Ok((name.clone(), t.to_dtype(wanted[&name].dtype())?)),
            None => candle::bail!(
                "{}: {reference} asks for `{name}`, which the magihuman_sampler runner does not \
                 produce",
                dir.display()
            ),
        })
        .collect()
}

/// The DiT of a `magihuman_sampler` case: `config.model` and `config.data_proxy` of case.json
/// with `weights.safetensors`, on the CPU in f32.
fn case_model(dir: &std::path::Path) -> candle::Result<MagiHuman> {
    let case = crate::engine::samplers::read_case_json(dir)?;
    let component = case["component"].as_str().unwrap_or_default();
    if component != "magihuman_sampler" {
        candle::bail!(
            "{}: component is `{component}`, expected `magihuman_sampler`",
            dir.join("case.json").display()
        )
    }
    let parse = |field: &str| {
        candle::Error::Msg(format!(
            "{}: config.{field} does not match the DiT config",
            dir.join("case.json").display()
        ))
    };
    let model: ModelConfig = serde_json::from_value(case["config"]["model"].clone())
        .map_err(|e| candle::Error::Msg(format!("{}: {e}", parse("model"))))?;
    let proxy: DataProxyConfig = serde_json::from_value(case["config"]["data_proxy"].clone())
        .map_err(|e| candle::Error::Msg(format!("{}: {e}", parse("data_proxy"))))?;
    let weights = crate::engine::samplers::read_case_tensors(dir, "weights.safetensors")?;
    let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    MagiHuman::new(&model, &proxy, vb)
}

/// Runs a `magihuman_sampler` golden case folder (the tiny DiT of its weights, the loop, on the
/// CPU in f32) and returns every tensor `expected.safetensors` names, with its dtype
/// (`timesteps` i64), sorted by name.
pub fn run_sampler_golden_case(dir: &std::path::Path) -> candle::Result<Vec<(String, Tensor)>> {
    let model = case_model(dir)?;
    select_like(
        run_sampler_case_with(dir, &model)?,
        dir,
        "expected.safetensors",
    )
}

/// Same run, returning the per-step tensors `debug.safetensors` names.
pub fn run_sampler_golden_case_debug(
    dir: &std::path::Path,
) -> candle::Result<Vec<(String, Tensor)>> {
    let model = case_model(dir)?;
    select_like(
        run_sampler_case_with(dir, &model)?,
        dir,
        "debug.safetensors",
    )
}
