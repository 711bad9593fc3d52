//! The MagiHuman sampling loop: joint video + audio denoising with two-pass CFG.
//!
//! Port of `MagiEvaluator.evaluate_with_latent` and `schedule_latent_step` in
//! `inference/pipeline/video_generate.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b,
//! base-resolution path (no SR model, no SDE). The model is behind [`Denoiser`], so the loop
//! runs with any velocity predictor.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use candle_core as candle;

use candle::{DType, Device, Tensor};

use crate::engine::models::magihuman::MagiHuman;
use crate::engine::samplers::FlowUniPcScheduler;

/// A velocity predictor for the joint latents: one conditional forward of the DiT.
pub trait Denoiser {
    /// `latent_video` `[1, z, T, H, W]`, `latent_audio` `[1, Na, Ca]`, `txt_feat` `[1, Lt, Ct]`
    /// of which the first `txt_len` rows are used; `sigma` is the step's noise level in [0, 1].
    /// Returns `(v_video, v_audio)` shaped like the latents. MagiHuman reads the noise level
    /// from the latents and ignores `sigma`; Nano is told it.
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)>;
}

impl<D: Denoiser + ?Sized> Denoiser for &D {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        (**self).velocity(latent_video, latent_audio, txt_feat, txt_len, sigma)
    }
}

impl Denoiser for MagiHuman {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        _sigma: f64,
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

    let sigmas = video_sched.sigmas().to_vec();
    for (k, &t) in timesteps.iter().enumerate() {
        // Written before the model call: the model, the scheduler sample and the corrector
        // history all see the image frame.
        if let Some(img) = latent_image {
            latent_video = hold_first_frame(&latent_video, img)?;
        }
        let (c_video, c_audio) =
            denoiser.velocity(&latent_video, &latent_audio, text.feat, text.len, sigmas[k])?;

        let (uncond, v_video, v_audio, next_video, next_audio) = match negative {
            Some(neg) if cfg.cfg_number == 2 => {
                let (u_video, u_audio) = denoiser.velocity(
                    &latent_video,
                    &latent_audio,
                    neg.feat,
                    neg.len,
                    sigmas[k],
                )?;
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
