//! End-to-end daVinci-MagiHuman: prompt (+ optional reference image) → RGB frames + stereo sound.
//!
//! Follows the base-resolution path of `MagiEvaluator.evaluate` / `post_process` in
//! `inference/pipeline/video_generate.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b
//! (Apache-2.0): T5Gemma prompt embedding padded to 640 rows, latent shapes from
//! (seconds, width, height), seeded noise, the joint sampler ([`super::magihuman::sample`]),
//! then TurboVAED (or the Wan2.2 VAE) for the picture and the Stable Audio VAE for the sound,
//! resampled to 44.1 kHz. No super-resolution stage, no given soundtrack (A2V).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use candle_core as candle;

use candle::{DType, Device, Tensor};

use super::magihuman::{
    sample, SampleError, SamplerConfig, SamplerInputs, SeededNoise, TextCondition,
};
use crate::engine::models::magihuman::{DataProxyConfig, MagiHuman, ModelConfig};
use crate::engine::models::sa_audio::{self, AudioAutoencoder};
use crate::engine::models::t5gemma::{self, PromptTokenizer, T5GemmaTextEncoder, TARGET_LENGTH};
use crate::engine::models::turbo_vae::{self, TurboVaed};
use crate::engine::models::wan22_vae::{self, Wan22VaeDecoder, Wan22VaeEncoder};
use crate::engine::weights::{load_var_builder, LoadOptions};

/// Frame rate the model was trained at (`EvaluationConfig.fps`).
pub const NATIVE_FPS: u32 = 25;
/// Rate of the sound handed out: the audio VAE's `sample_rate`, reached by the reference's
/// 441/512 resampling of the 51.2 kHz decode.
pub const OUTPUT_SAMPLE_RATE: u32 = 44_100;
/// `vae_stride` (t, h, w) of the Wan2.2 latent space.
pub const VAE_STRIDE: (usize, usize, usize) = (4, 16, 16);
/// The DiT's `patch_size` (t, h, w).
pub const PATCH_SIZE: (usize, usize, usize) = (1, 2, 2);

/// `MagiEvaluator.__init__`'s negative prompt (video, then audio, then voice defects), used when
/// a request under guidance brings none.
pub const DEFAULT_NEGATIVE_PROMPT: &str = concat!(
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still picture, messy background, three legs, many people in the background, walking backwards",
    ", low quality, worst quality, poor quality, noise, background noise, hiss, hum, buzz, crackle, static, compression artifacts, MP3 artifacts, digital clipping, distortion, muffled, muddy, unclear, echo, reverb, room echo, over-reverberated, hollow sound, distant, washed out, harsh, shrill, piercing, grating, tinny, thin sound, boomy, bass-heavy, flat EQ, over-compressed, abrupt cut, jarring transition, sudden silence, looping artifact, music, instrumental, sirens, alarms, crowd noise, unrelated sound effects, chaotic, disorganized, messy, cheap sound",
    ", emotionless, flat delivery, deadpan, lifeless, apathetic, robotic, mechanical, monotone, flat intonation, undynamic, boring, reading from a script, AI voice, synthetic, text-to-speech, TTS, insincere, fake emotion, exaggerated, overly dramatic, melodramatic, cheesy, cringey, hesitant, unconfident, tired, weak voice, stuttering, stammering, mumbling, slurred speech, mispronounced, bad articulation, lisp, vocal fry, creaky voice, mouth clicks, lip smacks, wet mouth sounds, heavy breathing, audible inhales, plosives, p-pops, coughing, clearing throat, sneezing, speaking too fast, rushed, speaking too slow, dragged out, unnatural pauses, awkward silence, choppy, disjointed, multiple speakers, two voices, background talking, out of tune, off-key, autotune artifacts",
);

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the model has no `{role}` file; {fix}")]
    MissingFile {
        role: &'static str,
        fix: &'static str,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("loading the {stage} from {path}: {source}; check the file is the released checkpoint (or re-download it)")]
    Load {
        stage: &'static str,
        path: PathBuf,
        source: candle::Error,
    },
    #[error("the {a} and the {b} do not fit together: {message}")]
    Mismatch {
        a: &'static str,
        b: &'static str,
        message: String,
    },
    #[error("request: {0}")]
    Request(String),
    #[error("{stage} failed: {source}")]
    Stage {
        stage: &'static str,
        source: candle::Error,
    },
    #[error("generation cancelled after step {step} of {total}")]
    Cancelled { step: usize, total: usize },
}

fn stage(stage: &'static str) -> impl FnOnce(candle::Error) -> PipelineError {
    move |source| PipelineError::Stage { stage, source }
}

fn load_err(stage: &'static str, path: &Path) -> impl FnOnce(candle::Error) -> PipelineError {
    let path = path.to_path_buf();
    move |source| PipelineError::Load {
        stage,
        path,
        source,
    }
}

/// How the sampler guides: the base model's two-pass CFG with UniPC, or the distilled model's
/// single conditional pass with `step_ddim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuidanceMode {
    Cfg,
    Distill,
}

/// A reference image, RGB 8-bit, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// One clip to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct MagiRequest {
    pub prompt: String,
    /// Under [`GuidanceMode::Cfg`]; `None` uses [`DEFAULT_NEGATIVE_PROMPT`].
    pub negative_prompt: Option<String>,
    pub width: u32,
    pub height: u32,
    pub duration_s: f32,
    /// Generation rate: the model's native 25 fps (the latent audio rate is tied to it).
    pub fps: u32,
    pub steps: usize,
    pub guidance_video: f64,
    pub guidance_audio: f64,
    pub mode: GuidanceMode,
    pub seed_video: u64,
    pub seed_audio: u64,
    /// TI2V: held as the first latent frame. Needs the Wan2.2 VAE (`video-vae`) for its encoder.
    pub image: Option<RgbImage>,
}

impl MagiRequest {
    /// The base model's settings (`example/base/config.json`): 32 steps, CFG 5 / 5.
    pub fn new(prompt: impl Into<String>, width: u32, height: u32, duration_s: f32) -> Self {
        let s = SamplerConfig::base();
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            width,
            height,
            duration_s,
            fps: NATIVE_FPS,
            steps: s.num_inference_steps,
            guidance_video: s.video_txt_guidance_scale,
            guidance_audio: s.audio_txt_guidance_scale,
            mode: GuidanceMode::Cfg,
            seed_video: 0,
            seed_audio: 1,
            image: None,
        }
    }
}

/// The generated clip at the native rate.
#[derive(Debug, Clone, PartialEq)]
pub struct MagiClip {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// RGB u8, `[frames, height, width, 3]`.
    pub frames: Vec<u8>,
    pub num_frames: usize,
    pub sample_rate: u32,
    pub channels: u16,
    /// f32, interleaved by channel.
    pub audio: Vec<f32>,
}

/// The latent geometry `MagiEvaluator.evaluate` derives from (seconds, width, height).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatentShape {
    /// `seconds * fps + 1`: the audio latent length (one per video frame).
    pub audio_len: usize,
    /// `(audio_len - 1) // 4 + 1`.
    pub latent_frames: usize,
    pub latent_height: usize,
    pub latent_width: usize,
    /// Pixel size actually generated: the latent size times the VAE stride.
    pub width: usize,
    pub height: usize,
    /// Frames the video decoders return: `4 * latent_frames - 3`.
    pub video_frames: usize,
}

impl LatentShape {
    pub fn new(duration_s: f32, fps: u32, width: u32, height: u32) -> Result<Self, PipelineError> {
        if !(duration_s.is_finite() && duration_s > 0.0) || fps == 0 {
            return Err(PipelineError::Request(format!(
                "duration {duration_s} s at {fps} fps: both must be positive"
            )));
        }
        // The reference takes whole seconds; a fractional duration rounds to the nearest frame.
        let audio_len = (duration_s as f64 * fps as f64).round() as usize + 1;
        let latent_frames = (audio_len - 1) / VAE_STRIDE.0 + 1;
        // Rounded down to whole patches, as `br_latent_height` is.
        let lat = |px: u32, stride: usize, patch: usize| px as usize / stride / patch * patch;
        let latent_height = lat(height, VAE_STRIDE.1, PATCH_SIZE.1);
        let latent_width = lat(width, VAE_STRIDE.2, PATCH_SIZE.2);
        if latent_height == 0 || latent_width == 0 {
            return Err(PipelineError::Request(format!(
                "{width}x{height} is too small: width and height must be at least {}",
                VAE_STRIDE.1 * PATCH_SIZE.1
            )));
        }
        Ok(Self {
            audio_len,
            latent_frames,
            latent_height,
            latent_width,
            width: latent_width * VAE_STRIDE.2,
            height: latent_height * VAE_STRIDE.1,
            video_frames: VAE_STRIDE.0 * latent_frames - (VAE_STRIDE.0 - 1),
        })
    }

    /// Samples per channel at `rate` covering the video: the reference merges with ffmpeg
    /// "keeping the shortest stream", and the sound (audio_len latents) outlasts the picture.
    pub fn audio_samples(&self, fps: u32, rate: u32) -> usize {
        (self.video_frames as u64 * rate as u64 / fps.max(1) as u64) as usize
    }
}

enum VideoDecoder {
    // Boxed: large and of different sizes; one is held per pipeline.
    Turbo(Box<TurboVaed>),
    Wan(Box<Wan22VaeDecoder>),
}

/// The loaded model: text encoder, DiT, video and audio codecs.
pub struct MagiHumanPipeline {
    device: Device,
    dtype: DType,
    tokenizer: PromptTokenizer,
    text_encoder: T5GemmaTextEncoder,
    dit: MagiHuman,
    z_dim: usize,
    audio_channels: usize,
    video_decoder: VideoDecoder,
    image_encoder: Option<Wan22VaeEncoder>,
    audio_vae: AudioAutoencoder,
}

fn find<'a>(files: &'a [(String, PathBuf)], role: &str) -> Option<&'a Path> {
    files
        .iter()
        .find(|(r, _)| r == role)
        .map(|(_, p)| p.as_path())
}

fn require<'a>(
    files: &'a [(String, PathBuf)],
    role: &'static str,
) -> Result<&'a Path, PipelineError> {
    find(files, role).ok_or(PipelineError::MissingFile {
        role,
        fix: "add it to the model's manifest (happyhorse.toml) and fetch it with `happyhorse models pull`",
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, PipelineError> {
    let bad = |message: String| PipelineError::Config {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))
}

/// A `config.json` in the same folder as `weights`, if there is one.
fn sibling_config(weights: &Path) -> Option<PathBuf> {
    let p = weights.parent()?.join("config.json");
    p.is_file().then_some(p)
}

/// The DiT's architecture: `preset`, unless a `config.json` beside the weights gives it, either
/// flat (a `ModelConfig`) or as the golden `case.json` lays it out
/// (`{"model": …, "data_proxy": …, "z_dim": …}`).
fn dit_config(
    weights: &Path,
    preset: ModelConfig,
) -> Result<(ModelConfig, DataProxyConfig, usize), PipelineError> {
    let (model, proxy, z_dim) = match sibling_config(weights) {
        None => (preset, DataProxyConfig::base(), None),
        Some(path) => {
            let v = read_json(&path)?;
            let bad = |what: &str, e: serde_json::Error| PipelineError::Config {
                path: path.clone(),
                message: format!("{what}: {e}"),
            };
            let model_v = v.get("model").cloned().unwrap_or_else(|| v.clone());
            let model: ModelConfig =
                serde_json::from_value(model_v).map_err(|e| bad("DiT config", e))?;
            let proxy = match v.get("data_proxy") {
                Some(p) => serde_json::from_value(p.clone()).map_err(|e| bad("data_proxy", e))?,
                None => DataProxyConfig::base(),
            };
            let z_dim = v.get("z_dim").and_then(|z| z.as_u64()).map(|z| z as usize);
            (model, proxy, z_dim)
        }
    };
    let per_token = proxy.t_patch_size * proxy.patch_size * proxy.patch_size;
    let z_dim = z_dim.unwrap_or(model.video_in_channels / per_token.max(1));
    if z_dim * per_token != model.video_in_channels {
        return Err(PipelineError::Mismatch {
            a: "DiT",
            b: "latent space",
            message: format!(
                "video_in_channels {} is not z_dim {z_dim} x patch {per_token}",
                model.video_in_channels
            ),
        });
    }
    if (proxy.t_patch_size, proxy.patch_size, proxy.patch_size) != PATCH_SIZE {
        return Err(PipelineError::Mismatch {
            a: "DiT",
            b: "pipeline",
            message: format!(
                "patch ({}, {}, {}) differs from the pipeline's {PATCH_SIZE:?}",
                proxy.t_patch_size, proxy.patch_size, proxy.patch_size
            ),
        });
    }
    Ok((model, proxy, z_dim))
}

impl MagiHumanPipeline {
    /// Loads every stage from `files` (role → path, as `WeightSearch::locate_all` returns them),
    /// with the base model's architecture unless a `config.json` sits beside the transformer.
    pub fn load(
        files: &[(String, PathBuf)],
        device: &Device,
        dtype: DType,
    ) -> Result<Self, PipelineError> {
        Self::load_with_preset(files, ModelConfig::base(), device, dtype)
    }

    /// [`Self::load`] with the DiT preset of the manifest (`ModelConfig::base()` /
    /// `distill()`). `dtype` is the compute dtype of the text encoder, DiT and video codecs; the
    /// audio VAE stays f32 as in the reference.
    pub fn load_with_preset(
        files: &[(String, PathBuf)],
        preset: ModelConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, PipelineError> {
        // Text encoder and tokenizer.
        let tok_path = require(files, "tokenizer")?;
        let tokenizer =
            PromptTokenizer::from_file(tok_path).map_err(load_err("tokenizer", tok_path))?;
        let te_path = require(files, "text-encoder")?;
        let te_cfg = match sibling_config(te_path) {
            Some(p) => t5gemma::Config::from_hf_file(&p).map_err(|e| PipelineError::Config {
                path: p.clone(),
                message: e.to_string(),
            })?,
            None => t5gemma::Config::t5gemma_9b_9b_ul2_encoder(),
        };
        let vb = load_var_builder(te_path, &LoadOptions::default(), dtype, device)
            .map_err(|e| load_err("text encoder", te_path)(candle::Error::wrap(e)))?;
        let text_encoder =
            T5GemmaTextEncoder::new(&te_cfg, vb).map_err(load_err("text encoder", te_path))?;

        // DiT.
        let dit_path = require(files, "transformer")?;
        let (model_cfg, proxy_cfg, z_dim) = dit_config(dit_path, preset)?;
        if model_cfg.text_in_channels != te_cfg.hidden_size {
            return Err(PipelineError::Mismatch {
                a: "DiT",
                b: "text encoder",
                message: format!(
                    "the DiT takes {} text channels, T5Gemma gives {}",
                    model_cfg.text_in_channels, te_cfg.hidden_size
                ),
            });
        }
        let vb = load_var_builder(dit_path, &LoadOptions::default(), dtype, device)
            .map_err(|e| load_err("transformer", dit_path)(candle::Error::wrap(e)))?;
        let dit = MagiHuman::new(&model_cfg, &proxy_cfg, vb)
            .map_err(load_err("transformer", dit_path))?;

        // Video codecs: TurboVAED decodes when shipped (the reference's `use_turbo_vae`); the
        // Wan2.2 VAE decodes otherwise and always encodes reference images.
        let wan_cfg = |path: &Path| -> Result<wan22_vae::Config, PipelineError> {
            match sibling_config(path) {
                None => Ok(wan22_vae::Config::wan22_ti2v_5b()),
                Some(p) => {
                    serde_json::from_value(read_json(&p)?).map_err(|e| PipelineError::Config {
                        path: p.clone(),
                        message: format!("Wan2.2 VAE config: {e}"),
                    })
                }
            }
        };
        let wan_path = find(files, "video-vae");
        let video_decoder = match (find(files, "turbo-vae"), find(files, "turbo-vae-config")) {
            (Some(ckpt), Some(cfg_path)) => {
                let text =
                    std::fs::read_to_string(cfg_path).map_err(|e| PipelineError::Config {
                        path: cfg_path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                let cfg =
                    turbo_vae::Config::from_json_str(&text).map_err(|e| PipelineError::Config {
                        path: cfg_path.to_path_buf(),
                        message: e.to_string(),
                    })?;
                cfg.validate().map_err(|e| PipelineError::Config {
                    path: cfg_path.to_path_buf(),
                    message: e.to_string(),
                })?;
                VideoDecoder::Turbo(Box::new(
                    TurboVaed::load(&cfg, ckpt, dtype, device)
                        .map_err(load_err("TurboVAED video decoder", ckpt))?,
                ))
            }
            _ => {
                let path = wan_path.ok_or(PipelineError::MissingFile {
                    role: "video-vae",
                    fix: "the manifest must list a video decoder: `video-vae` (Wan2.2_VAE.pth) or `turbo-vae` with `turbo-vae-config`",
                })?;
                VideoDecoder::Wan(Box::new(
                    Wan22VaeDecoder::load(&wan_cfg(path)?, path, dtype, device)
                        .map_err(load_err("Wan2.2 video decoder", path))?,
                ))
            }
        };
        let image_encoder = match wan_path {
            Some(path) => Some(
                Wan22VaeEncoder::load(&wan_cfg(path)?, path, dtype, device)
                    .map_err(load_err("Wan2.2 image encoder", path))?,
            ),
            None => None,
        };
        if z_dim != turbo_vae::config::LATENT_CHANNELS {
            return Err(PipelineError::Mismatch {
                a: "DiT",
                b: "video VAE",
                message: format!(
                    "the DiT works on {z_dim} latent channels, the VAE on {}",
                    turbo_vae::config::LATENT_CHANNELS
                ),
            });
        }

        // Audio VAE: f32 whatever `dtype`, as `SAAudioFeatureExtractor` keeps it.
        let a_cfg_path = require(files, "audio-vae-config")?;
        let a_text = std::fs::read_to_string(a_cfg_path).map_err(|e| PipelineError::Config {
            path: a_cfg_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let a_cfg = sa_audio::Config::from_model_config_json(&a_text).map_err(|e| {
            PipelineError::Config {
                path: a_cfg_path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let a_path = require(files, "audio-vae")?;
        let vb = load_var_builder(a_path, &LoadOptions::default(), DType::F32, device)
            .map_err(|e| load_err("audio VAE", a_path)(candle::Error::wrap(e)))?;
        let audio_vae = AudioAutoencoder::new(&a_cfg, vb.pp(sa_audio::CHECKPOINT_PREFIX))
            .map_err(load_err("audio VAE", a_path))?;
        let audio_channels = model_cfg.audio_in_channels;
        if a_cfg.latent_dim != audio_channels {
            return Err(PipelineError::Mismatch {
                a: "DiT",
                b: "audio VAE",
                message: format!(
                    "the DiT takes {audio_channels} audio channels, the audio VAE has a {}-wide latent",
                    a_cfg.latent_dim
                ),
            });
        }

        Ok(Self {
            device: device.clone(),
            dtype,
            tokenizer,
            text_encoder,
            dit,
            z_dim,
            audio_channels,
            video_decoder,
            image_encoder,
            audio_vae,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether a reference image can be used (the Wan2.2 encoder is loaded).
    pub fn supports_image(&self) -> bool {
        self.image_encoder.is_some()
    }

    /// `get_padded_t5_gemma_embedding`: `[1, 640, C]` f32 and the real length.
    fn encode_text(&self, prompt: &str) -> Result<(Tensor, usize), PipelineError> {
        let ids = self
            .tokenizer
            .encode(prompt)
            .map_err(stage("tokenizing the prompt"))?;
        if ids.is_empty() {
            return Err(PipelineError::Request(
                "the prompt gives no tokens; write some words".into(),
            ));
        }
        self.text_encoder
            .encode_padded(&ids, TARGET_LENGTH)
            .map_err(stage("text encoder"))
    }

    /// `encode_image`: centre crop to the aspect (`resizecrop`), resize, `[-1, 1]`, Wan2.2
    /// encode → `[1, z, 1, h, w]` f32.
    fn encode_image(&self, img: &RgbImage, shape: &LatentShape) -> Result<Tensor, PipelineError> {
        let Some(encoder) = &self.image_encoder else {
            return Err(PipelineError::MissingFile {
                role: "video-vae",
                fix: "a reference image needs the Wan2.2 VAE encoder (Wan2.2_VAE.pth) in the manifest",
            });
        };
        let Some(src) = image::RgbImage::from_raw(img.width, img.height, img.data.clone()) else {
            return Err(PipelineError::Request(format!(
                "reference image: {} bytes do not make a {}x{} RGB image",
                img.data.len(),
                img.width,
                img.height
            )));
        };
        let (tw, th) = (shape.width as u32, shape.height as u32);
        let resized = resize_crop(&src, tw, th);
        let data: Vec<f32> = resized
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 127.5 - 1.0)
            .collect();
        let x = Tensor::from_vec(data, (th as usize, tw as usize, 3), &Device::Cpu)
            .and_then(|t| {
                t.permute((2, 0, 1))?
                    .reshape((1, 3, 1, th as usize, tw as usize))
            })
            .and_then(|t| t.to_device(&self.device)?.to_dtype(self.dtype))
            .map_err(stage("preparing the reference image"))?;
        encoder
            .encode(&x)
            .and_then(|z| z.to_dtype(DType::F32))
            .map_err(stage("Wan2.2 image encode"))
    }

    /// Generates one clip. `on_step(done, total)` is called after every denoising step; return
    /// `ControlFlow::Break(())` to stop (→ [`PipelineError::Cancelled`]).
    pub fn generate(
        &self,
        req: &MagiRequest,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<MagiClip, PipelineError> {
        if req.steps == 0 {
            return Err(PipelineError::Request("steps must be at least 1".into()));
        }
        let shape = LatentShape::new(req.duration_s, req.fps, req.width, req.height)?;
        let dev = &self.device;

        let (text, text_len) = self.encode_text(&req.prompt)?;
        let negative = match req.mode {
            GuidanceMode::Cfg => Some(
                self.encode_text(
                    req.negative_prompt
                        .as_deref()
                        .unwrap_or(DEFAULT_NEGATIVE_PROMPT),
                )?,
            ),
            GuidanceMode::Distill => None,
        };
        let latent_image = match &req.image {
            Some(img) => Some(self.encode_image(img, &shape)?),
            None => None,
        };

        // Video and audio draw from their own seeds so either can be pinned; the distilled
        // sampler's re-noising gets a third stream derived from the video seed.
        let noise_like = |dims: &[usize], seed: u64| -> candle::Result<Tensor> {
            let values = SeededNoise::new(seed).sample(dims.iter().product());
            Tensor::from_vec(values, dims, &Device::Cpu)?.to_device(dev)
        };
        let latent_video = noise_like(
            &[
                1,
                self.z_dim,
                shape.latent_frames,
                shape.latent_height,
                shape.latent_width,
            ],
            req.seed_video,
        )
        .map_err(stage("drawing the video noise"))?;
        let latent_audio = noise_like(&[1, shape.audio_len, self.audio_channels], req.seed_audio)
            .map_err(stage("drawing the audio noise"))?;
        let mut step_noise = SeededNoise::new(req.seed_video ^ 0xD15C_0DDC_0FFE_E000);

        let cfg = match req.mode {
            GuidanceMode::Cfg => SamplerConfig {
                num_inference_steps: req.steps,
                video_txt_guidance_scale: req.guidance_video,
                audio_txt_guidance_scale: req.guidance_audio,
                ..SamplerConfig::base()
            },
            GuidanceMode::Distill => SamplerConfig {
                num_inference_steps: req.steps,
                ..SamplerConfig::distill()
            },
        };
        let inputs = SamplerInputs {
            latent_video,
            latent_audio,
            text: TextCondition {
                feat: &text,
                len: text_len,
            },
            negative: negative
                .as_ref()
                .map(|(feat, len)| TextCondition { feat, len: *len }),
            latent_image: latent_image.as_ref(),
            audio_given: false,
        };
        let out = sample(&self.dit, &cfg, inputs, &mut step_noise, &mut |ev| {
            on_step(ev.step + 1, ev.num_steps)
        })
        .map_err(|e| match e {
            SampleError::Cancelled { step, num_steps } => PipelineError::Cancelled {
                step,
                total: num_steps,
            },
            SampleError::Invalid(m) => PipelineError::Request(m),
            SampleError::Candle(source) => PipelineError::Stage {
                stage: "denoising",
                source,
            },
        })?;

        let frames = self.decode_video(&out.latent_video)?;
        let audio = self.decode_audio(&out.latent_audio, &shape, req.fps)?;
        let num_frames = frames.len() / (shape.width * shape.height * 3);
        Ok(MagiClip {
            width: shape.width as u32,
            height: shape.height as u32,
            fps: req.fps,
            frames,
            num_frames,
            sample_rate: OUTPUT_SAMPLE_RATE,
            channels: 2,
            audio,
        })
    }

    /// `decode_video`: `x*0.5+0.5`, clamp to [0, 1], `*255`, truncated to u8 (`astype(uint8)`),
    /// laid out `[T, H, W, 3]`.
    fn decode_video(&self, latent: &Tensor) -> Result<Vec<u8>, PipelineError> {
        let z = latent.to_dtype(self.dtype).map_err(stage("video decode"))?;
        let video = match &self.video_decoder {
            VideoDecoder::Turbo(vae) => vae.decode(&z).map_err(stage("TurboVAED decode"))?,
            VideoDecoder::Wan(vae) => vae.decode(&z).map_err(stage("Wan2.2 VAE decode"))?,
        };
        (|| -> candle::Result<Vec<u8>> {
            let v = video.to_dtype(DType::F32)?.squeeze(0)?;
            let v = v.affine(0.5, 0.5)?.clamp(0f32, 1f32)?.affine(255.0, 0.0)?;
            let v = v.floor()?.permute((1, 2, 3, 0))?.contiguous()?;
            v.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()
        })()
        .map_err(stage("converting the video to 8-bit"))
    }

    /// `post_process`'s audio: `audio_vae.decode(latent_audio.T)` → `[L, 2]` → Fourier
    /// resampling to 44.1 kHz → cut to the picture's length, interleaved f32 in [-1, 1].
    fn decode_audio(
        &self,
        latent: &Tensor,
        shape: &LatentShape,
        fps: u32,
    ) -> Result<Vec<f32>, PipelineError> {
        let wave = latent
            .squeeze(0)
            .and_then(|a| a.t())
            .and_then(|a| self.audio_vae.decode(&a.to_dtype(DType::F32)?))
            .map_err(stage("audio VAE decode"))?;
        // The decode runs at hop * fps samples a second (2048 * 25 = 51.2 kHz for the released
        // VAE, where this ratio is exactly the reference's 441/512).
        let decoded_rate = (self.audio_vae.hop_length() * fps as usize) as f64;
        let stretch = OUTPUT_SAMPLE_RATE as f64 / decoded_rate;
        let rows: Vec<Vec<f32>> = (|| -> candle::Result<Vec<Vec<f32>>> {
            let lc = wave.squeeze(0)?.t()?.contiguous()?;
            let lc = sa_audio::resample_audio_sinc(&lc, stretch)?;
            lc.to_vec2::<f32>()
        })()
        .map_err(stage("audio resampling"))?;
        let keep = shape.audio_samples(fps, OUTPUT_SAMPLE_RATE).min(rows.len());
        let mut out = Vec::with_capacity(keep * 2);
        for row in &rows[..keep] {
            // Mono VAEs are duplicated to stereo; the WAV/AAC writers expect [-1, 1].
            let l = row.first().copied().unwrap_or(0.0);
            let r = row.get(1).copied().unwrap_or(l);
            out.push(l.clamp(-1.0, 1.0));
            out.push(r.clamp(-1.0, 1.0));
        }
        Ok(out)
    }
}

/// `resizecrop` (centre crop to the target aspect) then a resize to exactly `tw`x`th`.
fn resize_crop(src: &image::RgbImage, tw: u32, th: u32) -> image::RgbImage {
    let (w, h) = src.dimensions();
    if (w, h) == (tw, th) {
        return src.clone();
    }
    let (cw, ch) = if h as f64 / w as f64 > th as f64 / tw as f64 {
        (w, ((w as f64 * th as f64 / tw as f64) as u32).clamp(1, h))
    } else {
        (((h as f64 * tw as f64 / th as f64) as u32).clamp(1, w), h)
    };
    let left = (w - cw) / 2;
    let top = (h - ch) / 2;
    let cropped = image::imageops::crop_imm(src, left, top, cw, ch).to_image();
    image::imageops::resize(&cropped, tw, th, image::imageops::FilterType::Lanczos3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_shapes_follow_the_reference() {
        let s = LatentShape::new(4.0, 25, 448, 256).unwrap();
        assert_eq!((s.audio_len, s.latent_frames), (101, 26));
        assert_eq!((s.latent_height, s.latent_width), (16, 28));
        assert_eq!((s.width, s.height, s.video_frames), (448, 256, 101));
        let s = LatentShape::new(1.0, 25, 64, 32).unwrap();
        assert_eq!((s.audio_len, s.latent_frames, s.video_frames), (26, 7, 25));
        assert_eq!(s.audio_samples(25, 44_100), 44_100);
        let s = LatentShape::new(2.0, 25, 100, 50).unwrap();
        // 50 // 16 // 2 * 2 = 2, 100 // 16 // 2 * 2 = 6.
        assert_eq!(
            (s.latent_height, s.latent_width, s.height, s.width),
            (2, 6, 32, 96)
        );
        assert_eq!((s.audio_len, s.latent_frames, s.video_frames), (51, 13, 49));
        assert!(LatentShape::new(1.0, 25, 16, 16).is_err());
    }
}
