//! HappyHorse Nano generation: prompt → tokens → text features → joint video + audio latents
//! through the MagiHuman sampling loop → codec decoders → RGB frames and mono samples.
//!
//! The loop is [`super::magihuman::sample`] with the Nano DiT as its [`Denoiser`], so Nano
//! exercises the same packing, rope, experts and FlowUniPC path as the full model.

use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_core as candle;

use super::magihuman::{
    sample, Denoiser, NoiseSource, SampleError, SamplerConfig, SamplerInputs, SeededNoise,
    TextCondition,
};
use crate::engine::models::nano::{
    self, Nano, NanoConfig, NanoSamplerDefaults, NanoTokenizer, SampleOrder, VideoCodecConfig,
};
use crate::engine::weights::{load_var_builder, LoadOptions, WeightsError};

#[derive(Debug, thiserror::Error)]
pub enum NanoError {
    #[error(
        "nano model directory {dir}: missing {file} (`happyhorse train nano --out RUN` writes \
         config.json, tokenizer.json and model.safetensors to RUN/model)"
    )]
    Missing { dir: PathBuf, file: &'static str },
    #[error("{path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("nano generates sizes that are multiples of {stride}, got {width}x{height}")]
    BadSize {
        width: u32,
        height: u32,
        stride: usize,
    },
    #[error(
        "fps must be positive and duration in (0, 60] s, got fps {fps}, duration {duration_s}"
    )]
    BadTiming { fps: u32, duration_s: f32 },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error(transparent)]
    Candle(#[from] candle::Error),
}

/// A generated clip: `frames_rgb` is `[n, height, width, 3]` row-major; `audio` holds
/// `channels`-interleaved samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct NanoClip {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames_rgb: Vec<u8>,
    pub sample_rate: u32,
    pub channels: u16,
    pub audio: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct NanoPipeline {
    model: Nano,
    tokenizer: NanoTokenizer,
    /// Steps, shift and guidance; the model's trained defaults unless changed.
    pub sampler: NanoSamplerDefaults,
    device: Device,
}

impl NanoPipeline {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, NanoError> {
        let need = |file: &'static str| {
            let p = dir.join(file);
            if p.is_file() {
                Ok(p)
            } else {
                Err(NanoError::Missing {
                    dir: dir.to_path_buf(),
                    file,
                })
            }
        };
        let cfg_path = need(nano::CONFIG_FILE)?;
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| NanoError::BadConfig {
            path: cfg_path.clone(),
            message: e.to_string(),
        })?;
        let cfg = NanoConfig::from_json(&text).map_err(|e| NanoError::BadConfig {
            path: cfg_path.clone(),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(|e| NanoError::BadConfig {
            path: cfg_path.clone(),
            message: e.to_string(),
        })?;
        let tokenizer = NanoTokenizer::from_file(&need(nano::TOKENIZER_FILE)?)?;
        let vb = load_var_builder(
            &need(nano::WEIGHTS_FILE)?,
            &LoadOptions::default(),
            DType::F32,
            device,
        )?;
        let model = Nano::new(&cfg, vb)?;
        Ok(Self::from_parts(model, tokenizer))
    }

    /// A pipeline over an already built model (tests, the training recipe's previews).
    /// Builds the pipeline from in-memory files: the model embedded in the binary, so the default
    /// model works with nothing downloaded and from any folder.
    pub fn from_bytes(
        config_json: &str,
        tokenizer_json: &[u8],
        weights: &'static [u8],
        device: &Device,
    ) -> Result<Self, NanoError> {
        let cfg: NanoConfig =
            serde_json::from_str(config_json).map_err(|e| NanoError::BadConfig {
                path: PathBuf::from("<embedded>/config.json"),
                message: e.to_string(),
            })?;
        let tokenizer = NanoTokenizer::from_bytes(tokenizer_json)?;
        let vb = candle_nn::VarBuilder::from_slice_safetensors(weights, DType::F32, device)?;
        let model = Nano::new(&cfg, vb)?;
        Ok(Self::from_parts(model, tokenizer))
    }

    /// The Nano weights built into this binary.
    pub fn embedded(device: &Device) -> Result<Self, NanoError> {
        use crate::engine::models::nano::embedded;
        Self::from_bytes(
            embedded::CONFIG,
            embedded::TOKENIZER,
            embedded::WEIGHTS,
            device,
        )
    }

    pub fn from_parts(model: Nano, tokenizer: NanoTokenizer) -> Self {
        let device = model.dit.device().clone();
        Self {
            sampler: model.cfg.sampler.clone(),
            model,
            tokenizer,
            device,
        }
    }

    pub fn config(&self) -> &NanoConfig {
        &self.model.cfg
    }

    /// Text features `[1, L, C]` and L for `prompt`.
    pub fn encode_prompt(&self, prompt: &str) -> candle::Result<(Tensor, usize)> {
        let ids = self.tokenizer.encode(prompt, self.model.cfg.text.max_len)?;
        Ok((self.model.text_encoder.forward(&ids)?, ids.len()))
    }

    /// Generates `duration_s` of `width x height` video at `fps` with its sound. The model
    /// runs at its native frame rate; other rates pick the nearest generated frame.
    /// `audio_seed` drives the audio noise, `audio_weight` scales the audio guidance (1.0 is
    /// the trained default). `on_step(step, total)` is called after each denoising step
    /// (1-based) and cancels the run on `Break`.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &self,
        prompt: &str,
        width: u32,
        height: u32,
        fps: u32,
        duration_s: f32,
        seed: u64,
        audio_seed: u64,
        audio_weight: f32,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<NanoClip, NanoError> {
        let request = Request {
            prompt,
            width,
            height,
            fps,
            duration_s,
            seed,
            audio_seed,
            audio_weight,
        };
        check_request(width, height, fps, duration_s)?;
        self.sample_clip(&request, None, on_step)
    }

    /// The DiT's sound for a given picture: `frames_rgb` (`[n, height, width, 3]` at the
    /// model's native rate, cut or padded like [`Self::reconstruct`]'s) is encoded, and the
    /// sound is denoised beside it, given clean, as the second pass of
    /// [`SampleOrder::VideoFirst`]. The clip's picture is the codecs' reconstruction.
    /// `happyhorse eval nano --source dub` judges whether the sound follows the picture.
    #[allow(clippy::too_many_arguments)]
    pub fn dub(
        &self,
        frames_rgb: &[u8],
        prompt: &str,
        width: u32,
        height: u32,
        fps: u32,
        duration_s: f32,
        audio_seed: u64,
        audio_weight: f32,
    ) -> Result<NanoClip, NanoError> {
        let request = Request {
            prompt,
            width,
            height,
            fps,
            duration_s,
            seed: 0,
            audio_seed,
            audio_weight,
        };
        check_request(width, height, fps, duration_s)?;
        let zv = self.encode_frames(frames_rgb, width, height, duration_s)?;
        let lat = &self.model.cfg.latent;
        let given = nano::normalize(&zv, &lat.video_mean, &lat.video_std, 1)?;
        self.sample_clip(&request, Some(given), &mut |_, _| ControlFlow::Continue(()))
    }

    /// Denoises a clip's latents in the sampler's order and decodes them; with
    /// `given_video` (normalised) only the sound is denoised, beside it. The caller has
    /// checked the request.
    fn sample_clip(
        &self,
        request: &Request,
        given_video: Option<Tensor>,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<NanoClip, NanoError> {
        let &Request {
            prompt,
            width,
            height,
            fps,
            duration_s,
            seed,
            audio_seed,
            audio_weight,
        } = request;
        let stride = VideoCodecConfig::SPATIAL_STRIDE;
        let cfg = &self.model.cfg;
        let native = cfg.native_fps;
        let n_native = ((duration_s * native as f32).round() as usize).max(1);
        let layout = cfg.video.frames();
        let t = layout.latent_frames(n_native);
        let na = layout.pixel_frames(t);
        let (h, w) = (height as usize / stride, width as usize / stride);

        let noise_video = SeededNoise::new(seed).gaussian_like(&Tensor::zeros(
            (1, cfg.video.latent_channels, t, h, w),
            DType::F32,
            &self.device,
        )?)?;
        let noise_audio = SeededNoise::new(audio_seed).gaussian_like(&Tensor::zeros(
            (1, na, cfg.audio.latent_channels),
            DType::F32,
            &self.device,
        )?)?;
        let (txt, txt_len) = self.encode_prompt(prompt)?;
        let (null, null_len) = self.encode_prompt("")?;
        let s = &self.sampler;
        let sampler_cfg = SamplerConfig {
            num_inference_steps: s.steps,
            shift: s.shift,
            cfg_number: s.cfg_number,
            video_txt_guidance_scale: s.guidance_video,
            audio_txt_guidance_scale: s.guidance_audio * audio_weight as f64,
            // Nano trains without a guidance schedule: one scale throughout.
            low_noise_video_guidance_scale: s.guidance_video,
            guidance_switch_timestep: 0,
        };
        let text = TextCondition {
            feat: &txt,
            len: txt_len,
        };
        let negative = TextCondition {
            feat: &null,
            len: null_len,
        };
        let mut renoise = SeededNoise::new(seed ^ 0x6E61_6E6F_5245_4E4F);
        let cfg_steps = s.cfg_steps.unwrap_or(usize::MAX);
        let mut run = |denoiser: &dyn Denoiser,
                       latent_video: Tensor,
                       latent_audio: Tensor,
                       pass: (usize, usize)|
         -> Result<(Tensor, Tensor), NanoError> {
            let inputs = SamplerInputs {
                latent_video,
                latent_audio,
                text,
                negative: Some(negative),
                latent_image: None,
                audio_given: false,
            };
            let guided = CfgSchedule {
                dit: denoiser,
                cfg_steps,
                calls: Cell::new(0),
                last_cond: RefCell::new(None),
            };
            let (pass, passes) = pass;
            let out = sample(&guided, &sampler_cfg, inputs, &mut renoise, &mut |ev| {
                on_step(pass * ev.num_steps + ev.step + 1, passes * ev.num_steps)
            })?;
            Ok((out.latent_video, out.latent_audio))
        };
        let hold = |video: Option<(Tensor, f32)>, audio: Option<(Tensor, f32)>| Hold {
            model: &self.model,
            video,
            audio,
        };
        let (latent_video, latent_audio) = match (given_video, s.order) {
            (Some(video), _) => {
                let sound = hold(Some((video.clone(), 0.0)), None);
                let (_, audio) = run(&sound, video.clone(), noise_audio, (0, 1))?;
                (video, audio)
            }
            (None, SampleOrder::Joint) => run(&self.model, noise_video, noise_audio, (0, 1))?,
            (None, SampleOrder::VideoFirst) => {
                let first = hold(None, Some((noise_audio.clone(), 1.0)));
                let (video, _) = run(&first, noise_video, noise_audio.clone(), (0, 2))?;
                let second = hold(Some((video.clone(), 0.0)), None);
                let (_, audio) = run(&second, video.clone(), noise_audio, (1, 2))?;
                (video, audio)
            }
            (None, SampleOrder::AudioFirst) => {
                let first = hold(Some((noise_video.clone(), 1.0)), None);
                let (_, audio) = run(&first, noise_video.clone(), noise_audio, (0, 2))?;
                let second = hold(None, Some((audio.clone(), 0.0)));
                let (video, _) = run(&second, noise_video, audio.clone(), (1, 2))?;
                (video, audio)
            }
        };

        let lat = &cfg.latent;
        let zv = nano::denormalize(&latent_video, &lat.video_mean, &lat.video_std, 1)?;
        let za = nano::denormalize(&latent_audio, &lat.audio_mean, &lat.audio_std, 2)?;
        self.decode(&zv, &za, width, height, fps, duration_s)
    }

    /// Passes a clip through the codecs alone, encoder then decoder, with no DiT: the best
    /// picture and sound the decoders can give (`happyhorse eval nano --source codec`).
    /// `frames_rgb` is `[n, height, width, 3]` at the model's native rate, `audio` mono at its
    /// sample rate; both are cut or padded (last frame held, silence) to whole latent frames.
    pub fn reconstruct(
        &self,
        frames_rgb: &[u8],
        width: u32,
        height: u32,
        audio: &[f32],
        fps: u32,
        duration_s: f32,
    ) -> Result<NanoClip, NanoError> {
        check_request(width, height, fps, duration_s)?;
        let cfg = &self.model.cfg;
        let zv = self.encode_frames(frames_rgb, width, height, duration_s)?;
        let n = cfg.video.frames().pixel_frames(zv.dim(2)?);
        let hop = (cfg.sample_rate / cfg.native_fps.max(1)) as usize;
        let mut samples = audio.to_vec();
        samples.resize(n * hop, 0.0);
        let a = Tensor::from_vec(samples, n * hop, &self.device)?;
        let za = self.model.audio_encoder.encode(&a)?;
        self.decode(&zv, &za, width, height, fps, duration_s)
    }

    /// The video encoder's latent (not normalised) of `frames_rgb`, cut or padded (last
    /// frame held) to whole latent frames for `duration_s` at the native rate.
    fn encode_frames(
        &self,
        frames_rgb: &[u8],
        width: u32,
        height: u32,
        duration_s: f32,
    ) -> Result<Tensor, NanoError> {
        let cfg = &self.model.cfg;
        let (w, h) = (width as usize, height as usize);
        let frame_len = w * h * 3;
        if frames_rgb.len() < frame_len {
            return Err(NanoError::Candle(candle::Error::Msg(format!(
                "nano: {} bytes hold no {width}x{height} RGB frame",
                frames_rgb.len()
            ))));
        }
        let n_native = ((duration_s * cfg.native_fps as f32).round() as usize).max(1);
        let layout = cfg.video.frames();
        let n = layout.pixel_frames(layout.latent_frames(n_native));
        let have = frames_rgb.len() / frame_len;
        let mut rgb = Vec::with_capacity(n * frame_len);
        for i in 0..n {
            let j = i.min(have - 1);
            rgb.extend_from_slice(&frames_rgb[j * frame_len..(j + 1) * frame_len]);
        }
        let x = Tensor::from_vec(rgb, (n, h, w, 3), &self.device)?
            .permute((0, 3, 1, 2))?
            .to_dtype(DType::F32)?
            .affine(1.0 / 127.5, -1.0)?;
        Ok(self.model.video_encoder.encode(&x)?)
    }

    /// Codec latents (not normalised) → frames at `fps` and samples, cut to `duration_s`.
    fn decode(
        &self,
        zv: &Tensor,
        za: &Tensor,
        width: u32,
        height: u32,
        fps: u32,
        duration_s: f32,
    ) -> Result<NanoClip, NanoError> {
        let cfg = &self.model.cfg;
        let native = cfg.native_fps;
        let n_native = ((duration_s * native as f32).round() as usize).max(1);
        // [4(T-1)+1, 3, H, W], as they are shown; an audio decoder with the video cue sees them.
        let shown = self.model.video_decoder.decode(zv)?.clamp(-1.0, 1.0)?;
        let frames = ((&shown + 1.0)? * 127.5)?
            .round()?
            .permute((0, 2, 3, 1))?
            .to_dtype(DType::U8)?;
        let n_out = ((duration_s * fps as f32).round() as usize).max(1);
        let idx: Vec<u32> = (0..n_out)
            .map(|i| {
                let j = (i as f64 * native as f64 / fps as f64).round() as usize;
                j.min(n_native - 1) as u32
            })
            .collect();
        let idx = Tensor::from_vec(idx, n_out, frames.device())?;
        let frames_rgb = frames
            .index_select(&idx, 0)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1::<u8>()?;

        let n_samples = (duration_s * cfg.sample_rate as f32).round() as usize;
        let audio = self
            .model
            .audio_decoder
            .decode(za, Some(&shown))?
            .clamp(-1.0, 1.0)?;
        let audio = audio
            .narrow(0, 0, n_samples.min(audio.dim(0)?))?
            .to_device(&Device::Cpu)?
            .to_vec1::<f32>()?;
        Ok(NanoClip {
            width,
            height,
            fps,
            frames_rgb,
            sample_rate: cfg.sample_rate,
            channels: 1,
            audio,
        })
    }
}

/// What one clip is asked for.
struct Request<'a> {
    prompt: &'a str,
    width: u32,
    height: u32,
    fps: u32,
    duration_s: f32,
    seed: u64,
    audio_seed: u64,
    audio_weight: f32,
}

/// Sizes the codecs can stride (multiples of 8) and a positive rate and duration up to 60 s.
fn check_request(width: u32, height: u32, fps: u32, duration_s: f32) -> Result<(), NanoError> {
    let stride = VideoCodecConfig::SPATIAL_STRIDE;
    if width == 0 || height == 0 || width as usize % stride != 0 || height as usize % stride != 0 {
        return Err(NanoError::BadSize {
            width,
            height,
            stride,
        });
    }
    if fps == 0 || !(duration_s > 0.0 && duration_s <= 60.0) {
        return Err(NanoError::BadTiming { fps, duration_s });
    }
    Ok(())
}

impl Denoiser for Nano {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        Nano::velocity(
            self,
            latent_video,
            latent_audio,
            txt_feat,
            txt_len,
            sigma as f32,
        )
    }
}

/// The DiT with one modality held still at a fixed noise level while the sampler moves
/// the other, for the two-pass [`SampleOrder`]s: the held modality's velocity is zero and
/// the sampler's copy of it is ignored.
struct Hold<'a> {
    model: &'a Nano,
    video: Option<(Tensor, f32)>,
    audio: Option<(Tensor, f32)>,
}

impl Denoiser for Hold<'_> {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        let sigma = sigma as f32;
        let (xv, sv) = self
            .video
            .as_ref()
            .map_or((latent_video, sigma), |(x, s)| (x, *s));
        let (xa, sa) = self
            .audio
            .as_ref()
            .map_or((latent_audio, sigma), |(x, s)| (x, *s));
        let (v, a) = self.model.velocity_at(xv, xa, txt_feat, txt_len, sv, sa)?;
        let v = if self.video.is_some() {
            v.zeros_like()?
        } else {
            v
        };
        let a = if self.audio.is_some() {
            a.zeros_like()?
        } else {
            a
        };
        Ok((v, a))
    }
}

/// The DiT behind a CFG schedule. With `cfg_number == 2` the sampler asks for the
/// conditional velocity and then the unconditional one at every step; past `cfg_steps` this
/// answers the second call with the first's result, so `u + s (c - u)` is just `c` and the
/// step costs one DiT pass instead of two. The sampler's call order is the contract relied on.
struct CfgSchedule<'a> {
    dit: &'a dyn Denoiser,
    cfg_steps: usize,
    calls: Cell<usize>,
    last_cond: RefCell<Option<(Tensor, Tensor)>>,
}

impl Denoiser for CfgSchedule<'_> {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
        sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        let call = self.calls.get();
        self.calls.set(call + 1);
        let (step, uncond) = (call / 2, call % 2 == 1);
        if uncond && step >= self.cfg_steps {
            if let Some(c) = self.last_cond.borrow().as_ref() {
                return Ok(c.clone());
            }
        }
        let v = self
            .dit
            .velocity(latent_video, latent_audio, txt_feat, txt_len, sigma)?;
        if !uncond {
            *self.last_cond.borrow_mut() = Some(v.clone());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{VarBuilder, VarMap};

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// A Nano of `cfg` with every weight random (some output layers start at zero).
    fn random_model(cfg: &NanoConfig) -> Nano {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Nano::new(cfg, vb).unwrap();
        for var in varmap.all_vars() {
            let t = var.as_tensor();
            var.set(&(t.randn_like(0.0, 0.2).unwrap())).unwrap();
        }
        model
    }

    /// A held modality gets no velocity, and the moving one is the DiT's answer for the held
    /// tensor at the held level, whatever the sampler passes in its place.
    #[test]
    fn hold_keeps_one_modality_still_at_its_level_and_moves_the_other() {
        let cfg = NanoConfig::tiny_for_tests(16);
        let model = random_model(&cfg);
        let dev = Device::Cpu;
        let (zv, za) = (cfg.video.latent_channels, cfg.audio.latent_channels);
        let xv = Tensor::randn(0f32, 1.0, (1, zv, 2, 2, 3), &dev).unwrap();
        let xa = Tensor::randn(0f32, 1.0, (1, 5, za), &dev).unwrap();
        let clean = Tensor::randn(0f32, 1.0, (1, zv, 2, 2, 3), &dev).unwrap();
        let txt = Tensor::randn(0f32, 1.0, (1, 3, cfg.text.hidden), &dev).unwrap();

        let sound = Hold {
            model: &model,
            video: Some((clean.clone(), 0.0)),
            audio: None,
        };
        let (v, a) = sound.velocity(&xv, &xa, &txt, 3, 0.7).unwrap();
        assert!(values(&v).iter().all(|x| *x == 0.0));
        let (_, want) = model.velocity_at(&clean, &xa, &txt, 3, 0.0, 0.7).unwrap();
        assert_eq!(values(&a), values(&want));
        // The sampler's copy of the picture is ignored; the picture's level is read.
        let (_, other) = model.velocity_at(&clean, &xa, &txt, 3, 0.7, 0.7).unwrap();
        assert_ne!(values(&a), values(&other));

        let picture = Hold {
            model: &model,
            video: None,
            audio: Some((xa.clone(), 1.0)),
        };
        let (v, a) = picture
            .velocity(&xv, &xa.zeros_like().unwrap(), &txt, 3, 0.4)
            .unwrap();
        assert!(values(&a).iter().all(|x| *x == 0.0));
        let (want, _) = model.velocity_at(&xv, &xa, &txt, 3, 0.4, 1.0).unwrap();
        assert_eq!(values(&v), values(&want));
    }
    /// Training's cut clips (`train nano --dit-window-s`): a whole clip's span is the
    /// sampler's input exactly, and a cut from later in a clip is told apart.
    #[test]
    fn a_whole_span_is_what_the_sampler_feeds_and_a_later_cut_reads_otherwise() {
        use crate::engine::models::nano::conditioning::Span;
        let cfg = NanoConfig::tiny_for_tests(16).with_clock(&[0.5, 1.0, 2.0, 4.0, 8.0, 16.0]);
        let model = random_model(&cfg);
        let dev = Device::Cpu;
        let (zv, za) = (cfg.video.latent_channels, cfg.audio.latent_channels);
        // 3 latent frames: 9 pixel frames, one audio latent each.
        let xv = Tensor::randn(0f32, 1.0, (1, zv, 3, 2, 3), &dev).unwrap();
        let xa = Tensor::randn(0f32, 1.0, (1, 9, za), &dev).unwrap();
        let txt = Tensor::randn(0f32, 1.0, (1, 3, cfg.text.hidden), &dev).unwrap();
        let (v, a) = model.velocity_at(&xv, &xa, &txt, 3, 0.5, 0.5).unwrap();
        let whole = Some(Span::whole(3));
        let (wv, wa) = model
            .velocity_in(&xv, &xa, &txt, 3, [0.5, 0.5], whole)
            .unwrap();
        assert_eq!((values(&v), values(&a)), (values(&wv), values(&wa)));
        let later = Some(Span {
            start: 4,
            total: 21,
        });
        let (lv, la) = model
            .velocity_in(&xv, &xa, &txt, 3, [0.5, 0.5], later)
            .unwrap();
        assert_ne!(values(&v), values(&lv));
        assert_ne!(values(&a), values(&la));
    }
}
