//! Nano's configuration: the MagiHuman DiT at a tiny size plus the three small stages the
//! project designs itself (video codec, audio codec, text encoder). Stored as `config.json`
//! next to the weights; the training recipe writes it.

use candle_core as candle;
use serde::{Deserialize, Serialize};

use super::conditioning;
use crate::engine::models::magihuman::{CoordsStyle, DataProxyConfig, ModelConfig};

/// Video codec: groups of `temporal_stride` frames stacked in channels, 3 stride-2 convs
/// (spatial stride 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoCodecConfig {
    pub latent_channels: usize,
    /// Widths at full, 1/2, 1/4 and 1/8 resolution.
    pub channels: [usize; 4],
    /// The decoder also reads the latent frames before and after each one
    /// ([`super::video_codec::VideoDecoder`]'s `mix_in`, `mix_out`), so a group of 4 frames
    /// continues the group before it. Off in configs written before it existed.
    #[serde(default)]
    pub temporal_mix: bool,
    /// Pixel frames per latent frame: `s(T-1)+1` frames for T latent frames. 4 as in
    /// MagiHuman (Wan 2.2 VAE) and in configs written before it was a setting; 2 halves the
    /// time a latent frame spans (0.25 s at 8 fps) for twice the video tokens.
    #[serde(default = "VideoCodecConfig::default_temporal_stride")]
    pub temporal_stride: usize,
}

impl VideoCodecConfig {
    pub const SPATIAL_STRIDE: usize = 8;

    fn default_temporal_stride() -> usize {
        4
    }

    /// How this codec groups pixel frames into latent frames.
    pub fn frames(&self) -> FrameLayout {
        FrameLayout {
            stride: self.temporal_stride,
        }
    }
}

/// How pixel frames group into latent frames: `s(T-1)+1` pixel frames for T latent frames,
/// the first frame a latent frame of its own (Wan's causal first frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub stride: usize,
}

impl FrameLayout {
    /// Latent frames for `n` pixel frames: the smallest T with `s(T-1)+1 >= n`.
    pub fn latent_frames(&self, n_frames: usize) -> usize {
        n_frames
            .max(1)
            .saturating_sub(1)
            .div_ceil(self.stride.max(1))
            + 1
    }

    /// Pixel frames the codec produces for T latent frames.
    pub fn pixel_frames(&self, latent_frames: usize) -> usize {
        self.stride * latent_frames.saturating_sub(1) + 1
    }

    /// The latent frame that pixel frame `f` belongs to.
    pub fn latent_frame_of(&self, f: usize) -> usize {
        if f == 0 {
            0
        } else {
            (f - 1) / self.stride.max(1) + 1
        }
    }
}

/// Audio codec: one latent per pixel frame; each latent covers `2 * hop` samples, overlap-added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioCodecConfig {
    pub latent_channels: usize,
    /// Samples per latent frame: `sample_rate / native_fps`.
    pub hop: usize,
    /// Window chunks share one small linear (a strided conv without the im2col).
    pub chunk: usize,
    pub chunk_features: usize,
    pub hidden: usize,
    /// The decoder scales each chunk's waveform by a non-negative gain of its own
    /// ([`super::audio_codec`]): silence is exactly zero and an attack can start on any
    /// chunk. Off in configs written before the gain existed.
    #[serde(default)]
    pub chunk_gain: bool,
    /// The decoder also sees the decoded frames ([`super::audio_codec::VideoCue`]): each
    /// audio frame is decoded knowing what the picture shows around it, so a hit can sound
    /// where the picture's contact is. Off in configs written before it existed.
    #[serde(default)]
    pub video_cue: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextEncoderConfig {
    pub vocab_size: usize,
    pub hidden: usize,
    pub heads: usize,
    pub layers: usize,
    pub max_len: usize,
}

/// Per-channel statistics of the codec latents: the DiT sees `(z - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentStats {
    pub video_mean: Vec<f32>,
    pub video_std: Vec<f32>,
    pub audio_mean: Vec<f32>,
    pub audio_std: Vec<f32>,
}

impl LatentStats {
    pub fn identity(video: usize, audio: usize) -> Self {
        Self {
            video_mean: vec![0.0; video],
            video_std: vec![1.0; video],
            audio_mean: vec![0.0; audio],
            audio_std: vec![1.0; audio],
        }
    }
}

/// Sampler defaults the model was trained for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NanoSamplerDefaults {
    pub steps: usize,
    pub shift: f64,
    /// 2: classifier-free guidance against the empty prompt; 1: conditional pass only.
    pub cfg_number: usize,
    pub guidance_video: f64,
    pub guidance_audio: f64,
    /// Guide only the first this many steps (the high-noise ones, where layout, colour and
    /// motion are decided) and run the conditional pass alone after that: each unguided step
    /// costs half. `None` guides every step (configs written before this field).
    #[serde(default)]
    pub cfg_steps: Option<usize>,
    /// Whether picture and sound are denoised together or the sound after the picture.
    /// Absent in configs written before the choice existed (joint).
    #[serde(default, skip_serializing_if = "SampleOrder::is_joint")]
    pub order: SampleOrder,
}

/// The order in which the sampler denoises the two modalities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleOrder {
    /// Both at one noise level, step for step (MagiHuman's loop): one run of `steps`.
    #[default]
    Joint,
    /// The picture first, with the sound held at pure noise; then the sound, with the
    /// finished picture given clean. Two runs of `steps`: the sound reads a clean picture,
    /// which needs a DiT trained with the modalities at unequal noise levels
    /// (`train nano --dit-decoupled-noise`).
    VideoFirst,
    /// The sound first, with the picture held at pure noise; then the picture, with the
    /// finished sound given clean (MagiHuman's audio-driven mode). Two runs of `steps`.
    AudioFirst,
}

impl SampleOrder {
    pub fn is_joint(&self) -> bool {
        *self == Self::Joint
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NanoConfig {
    pub dit: ModelConfig,
    pub data_proxy: DataProxyConfig,
    pub video: VideoCodecConfig,
    pub audio: AudioCodecConfig,
    pub text: TextEncoderConfig,
    pub latent: LatentStats,
    pub sampler: NanoSamplerDefaults,
    pub native_fps: u32,
    pub sample_rate: u32,
    /// The DiT reads position, clip time and noise level as extra input channels
    /// ([`super::conditioning`]); its input widths include them. Off in configs written
    /// before these channels existed.
    #[serde(default)]
    pub conditioning: bool,
    /// Every video and audio token also reads the caption's mean text feature
    /// ([`super::conditioning::pooled_text`]) as `text.hidden` extra input channels. Off in
    /// configs written before these channels existed.
    #[serde(default)]
    pub pooled_text: bool,
    /// Every video and audio token also reads how far through the clip it is
    /// ([`super::conditioning`]'s progress channel). Off in configs written before it existed.
    #[serde(default)]
    pub progress: bool,
    /// Every video and audio token also reads its time as sines and cosines
    /// ([`super::conditioning`]'s clock). Off in configs written before it existed.
    #[serde(default)]
    pub clock: bool,
    /// The clock's periods, seconds: 0.5, 1 and 2 ([`super::conditioning::CLOCK_PERIODS_S`])
    /// in configs written before the periods were a setting.
    #[serde(default = "NanoConfig::default_clock_periods")]
    pub clock_periods_s: Vec<f32>,
}

impl NanoConfig {
    /// The shipped size. The DiT keeps MagiHuman's layer layout (experts in the first and last
    /// layers, gelu7 in the first, gated GQA) at hidden 192; patch size 1 because the codec
    /// already strides 8x8x4, so a 4 s 96x56 clip at 8 fps is 9x7x12 = 756 video tokens.
    pub fn nano(vocab_size: usize) -> Self {
        let (zv, za, ct) = (16, 16, 64);
        const VIDEO_EXTRA: usize = conditioning::VIDEO_CHANNELS + conditioning::PROGRESS_CHANNELS;
        const AUDIO_EXTRA: usize = conditioning::AUDIO_CHANNELS + conditioning::PROGRESS_CHANNELS;
        let dit = ModelConfig {
            num_layers: 6,
            hidden_size: 192,
            head_dim: 32,
            num_query_groups: 2,
            video_in_channels: zv + VIDEO_EXTRA + ct,
            audio_in_channels: za + AUDIO_EXTRA + ct,
            text_in_channels: ct,
            checkpoint_qk_layernorm_rope: false,
            params_dtype: "torch.float32".into(),
            tread_config: None,
            mm_layers: vec![0, 5],
            local_attn_layers: vec![],
            enable_attn_gating: true,
            activation_type: "swiglu7".into(),
            gelu7_layers: vec![0],
            num_heads_q: 6,
            num_heads_kv: 2,
            post_norm_layers: vec![],
        };
        let data_proxy = DataProxyConfig {
            t_patch_size: 1,
            patch_size: 1,
            frame_receptive_field: -1,
            coords_style: CoordsStyle::V2,
            ..DataProxyConfig::base()
        };
        let (fps, sample_rate) = (8, 16_000);
        Self {
            dit,
            data_proxy,
            video: VideoCodecConfig {
                latent_channels: zv,
                channels: [32, 64, 96, 96],
                temporal_mix: false,
                temporal_stride: 4,
            },
            audio: AudioCodecConfig {
                latent_channels: za,
                hop: (sample_rate / fps) as usize,
                chunk: 100,
                chunk_features: 32,
                hidden: 256,
                chunk_gain: true,
                video_cue: false,
            },
            text: TextEncoderConfig {
                vocab_size,
                hidden: ct,
                heads: 4,
                layers: 1,
                max_len: 48,
            },
            latent: LatentStats::identity(zv, za),
            sampler: NanoSamplerDefaults {
                steps: 8,
                shift: 3.0,
                cfg_number: 2,
                // Guided on the first 5 of 8 steps: with the pooled caption channels the
                // guided velocity carries the motion (`eval nano`, 20 + 20 scenes, of early
                // weights: adherence 46.7 / 56.7% at 5 on the first 5 against 40.0 / 46.7%
                // at 3 on 2). Guiding all 8 scores the same but takes a 4 s clip past 4 s on
                // two cores. 7 rather than 5 on the progress-channel weights (60 + 60 scenes,
                // two seeds): adherence within the noise, sync p90 lower on both seeds
                // (288 / 253 and 255 / 297 ms against 310 / 308 and 288 / 378).
                guidance_video: 7.0,
                guidance_audio: 2.0,
                cfg_steps: Some(5),
                order: SampleOrder::Joint,
            },
            native_fps: fps,
            sample_rate,
            conditioning: true,
            pooled_text: true,
            progress: true,
            clock: false,
            clock_periods_s: Self::default_clock_periods(),
        }
    }

    fn default_clock_periods() -> Vec<f32> {
        conditioning::CLOCK_PERIODS_S.to_vec()
    }

    /// A very small variant for tests: same code paths, a fraction of the compute.
    pub fn tiny_for_tests(vocab_size: usize) -> Self {
        let mut c = Self::nano(vocab_size);
        c.dit.num_layers = 2;
        c.dit.hidden_size = 64;
        c.dit.num_heads_q = 2;
        c.dit.num_query_groups = 1;
        c.dit.num_heads_kv = 1;
        c.dit.mm_layers = vec![0, 1];
        c.video.channels = [8, 16, 16, 16];
        c.audio.hidden = 64;
        c.audio.chunk_features = 8;
        c.text.hidden = 32;
        c.dit.text_in_channels = 32;
        c.text.heads = 2;
        let (extra_v, extra_a) = c.extra_channels();
        c.dit.video_in_channels = c.video.latent_channels + extra_v;
        c.dit.audio_in_channels = c.audio.latent_channels + extra_a;
        c
    }

    /// The DiT's input channels beyond the latent's, by source: `(name, video, audio)`.
    /// `extra_channels` sums them and the mismatch message names them, from this one list.
    fn channel_sources(&self) -> Vec<(&'static str, usize, usize)> {
        let mut sources = Vec::new();
        if self.conditioning {
            sources.push((
                "position and time",
                conditioning::VIDEO_CHANNELS,
                conditioning::AUDIO_CHANNELS,
            ));
        }
        if self.progress {
            let n = conditioning::PROGRESS_CHANNELS;
            sources.push(("progress", n, n));
        }
        if self.clock {
            let n = 2 * self.clock_periods_s.len();
            sources.push(("clock", n, n));
        }
        if self.pooled_text {
            sources.push(("pooled text", self.text.hidden, self.text.hidden));
        }
        sources
    }

    /// Input channels the DiT reads beyond the latent's: `(video, audio)`.
    pub fn extra_channels(&self) -> (usize, usize) {
        self.channel_sources()
            .iter()
            .fold((0, 0), |(v, a), &(_, sv, sa)| (v + sv, a + sa))
    }

    /// The DiT's input channels by source, for messages: `latent 16 + position and time 8/2 + …`.
    fn channel_breakdown(&self) -> String {
        let latent = (
            "latent",
            self.video.latent_channels,
            self.audio.latent_channels,
        );
        std::iter::once(latent)
            .chain(self.channel_sources())
            .map(|(name, v, a)| {
                if v == a {
                    format!("{name} {v}")
                } else {
                    format!("{name} {v}/{a}")
                }
            })
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// This config with a video codec of temporal stride `s`, and the DiT's rope aligning
    /// `s` audio latents (one per pixel frame) with each latent frame.
    pub fn with_temporal_stride(mut self, s: usize) -> Self {
        self.video.temporal_stride = s;
        self.data_proxy.audio_per_latent_frame = s;
        self
    }

    /// This config with `c` video latent channels, the DiT's video input grown to read them
    /// and the latent statistics reset for them.
    pub fn with_video_latent_channels(mut self, c: usize) -> Self {
        self.video.latent_channels = c;
        self.dit.video_in_channels = c + self.extra_channels().0;
        self.latent = LatentStats::identity(c, self.audio.latent_channels);
        self
    }

    /// This config with a DiT of `n` layers: the expert layers stay the first and the last,
    /// gelu7 the first, as in the shipped 6.
    pub fn with_dit_layers(mut self, n: usize) -> Self {
        self.dit.num_layers = n;
        self.dit.mm_layers = vec![0, n.saturating_sub(1)];
        self.dit.gelu7_layers = vec![0];
        self
    }

    /// This config with local attention in the DiT's inner layers (every layer but the
    /// expert layers at either end): a video token reads its latent frame and `field` frames
    /// on each side, plus all audio and text; audio and text read everything. MagiHuman's
    /// `sr_1080p` does the same in most of its layers; for Nano it bounds the attention cost
    /// of a long clip by the field rather than the clip's length.
    pub fn with_local_attention(mut self, field: usize) -> Self {
        let experts = self.dit.mm_layers.clone();
        self.dit.local_attn_layers = (0..self.dit.num_layers)
            .filter(|l| !experts.contains(l))
            .collect();
        self.data_proxy.frame_receptive_field = field as i64;
        self
    }

    /// Seconds a video latent frame spans: `temporal_stride / native_fps`.
    pub fn latent_frame_s(&self) -> f32 {
        self.video.temporal_stride as f32 / self.native_fps.max(1) as f32
    }

    /// This config with the `clock` channels of `periods_s` (seconds), the DiT's input widths
    /// grown to read them.
    pub fn with_clock(mut self, periods_s: &[f32]) -> Self {
        self.clock = true;
        self.clock_periods_s = periods_s.to_vec();
        let (v, a) = self.extra_channels();
        self.dit.video_in_channels = self.video.latent_channels + v;
        self.dit.audio_in_channels = self.audio.latent_channels + a;
        self
    }

    /// Video-decoder layers this version no longer builds (see models/nano/README.md,
    /// "Retired settings"), as `config.json` keys of `video`, each with the day it was
    /// retired and the happyhorse commit that last built it.
    pub const RETIRED_VIDEO_LAYERS: [(&str, &str, &str); 3] = [
        ("refine", "2026-12-05", "cd4d394"),
        ("shape_token", "2026-12-05", "cd4d394"),
        ("sound_cue", "2026-12-06", "54a51b0"),
    ];

    /// Reads a `config.json`. A model written while a retired layer existed loads when the
    /// layer is off, and is refused, by name, when its decoder has it: loaded without it,
    /// it would draw something else.
    pub fn from_json(text: &str) -> candle::Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| candle::Error::Msg(e.to_string()))?;
        for (key, retired, commit) in Self::RETIRED_VIDEO_LAYERS {
            if value["video"][key].as_bool().unwrap_or(false) {
                candle::bail!(
                    "video.{key} is on: its video decoder has a layer this happyhorse no longer \
                     builds (retired {retired}); use happyhorse at commit {commit} for it"
                )
            }
        }
        serde_json::from_value(value).map_err(|e| candle::Error::Msg(e.to_string()))
    }

    pub fn validate(&self) -> candle::Result<()> {
        self.dit.validate()?;
        let p = &self.data_proxy;
        if p.patch_size != 1 || p.t_patch_size != 1 {
            candle::bail!("nano: the DiT must run at patch size 1 (the codecs do the striding)")
        }
        if self.clock
            && (self.clock_periods_s.is_empty()
                || !self
                    .clock_periods_s
                    .iter()
                    .all(|p| p.is_finite() && *p > 0.0))
        {
            candle::bail!(
                "nano: clock_periods_s is {:?}; the clock needs one or more periods, each a \
                 positive number of seconds",
                self.clock_periods_s
            )
        }
        if (self.pooled_text || self.progress || self.clock) && !self.conditioning {
            candle::bail!(
                "nano: pooled_text, progress and clock need conditioning (they ride on the same \
                 channels)"
            )
        }
        let (extra_v, extra_a) = self.extra_channels();
        if self.dit.video_in_channels != self.video.latent_channels + extra_v
            || self.dit.audio_in_channels != self.audio.latent_channels + extra_a
            || self.dit.text_in_channels != self.text.hidden
        {
            candle::bail!(
                "nano: the DiT reads {}/{}/{} video/audio/text channels but this happyhorse feeds \
                 it {}/{}/{} ({}); the weights were trained by a version with other input \
                 channels (before 2026-12-04 the clock had 12; a config without clock_periods_s \
                 now reads {} clock channels): retrain them with \
                 `happyhorse train nano` or use the happyhorse that trained them",
                self.dit.video_in_channels,
                self.dit.audio_in_channels,
                self.dit.text_in_channels,
                self.video.latent_channels + extra_v,
                self.audio.latent_channels + extra_a,
                self.text.hidden,
                self.channel_breakdown(),
                conditioning::CLOCK_CHANNELS,
            )
        }
        if !self.dit.local_attn_layers.is_empty() && p.frame_receptive_field < 0 {
            candle::bail!(
                "nano: dit.local_attn_layers {:?} need data_proxy.frame_receptive_field (the \
                 latent frames a video token reads on each side), but it is {}",
                self.dit.local_attn_layers,
                p.frame_receptive_field
            )
        }
        let stride = self.video.temporal_stride;
        if !matches!(stride, 1 | 2 | 4) {
            candle::bail!("nano: video.temporal_stride is {stride}; it must be 1, 2 or 4")
        }
        if p.audio_per_latent_frame != stride {
            candle::bail!(
                "nano: data_proxy.audio_per_latent_frame is {} but video.temporal_stride is \
                 {stride}: audio has one latent per pixel frame, so they must agree",
                p.audio_per_latent_frame
            )
        }
        if self.audio.hop * self.native_fps as usize != self.sample_rate as usize
            || (2 * self.audio.hop) % self.audio.chunk != 0
        {
            candle::bail!(
                "nano: audio hop {} must be sample_rate {} / fps {} and 2*hop a multiple of chunk {}",
                self.audio.hop,
                self.sample_rate,
                self.native_fps,
                self.audio.chunk
            )
        }
        let l = &self.latent;
        if l.video_mean.len() != self.video.latent_channels
            || l.video_std.len() != self.video.latent_channels
            || l.audio_mean.len() != self.audio.latent_channels
            || l.audio_std.len() != self.audio.latent_channels
        {
            candle::bail!("nano: latent statistics do not match the latent channels")
        }
        if self.text.hidden % self.text.heads != 0 {
            candle::bail!(
                "nano: text hidden {} is not divisible by {} heads",
                self.text.hidden,
                self.text.heads
            )
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_periods_set_the_clocks_channels_and_old_clocked_configs_read_the_default() {
        let long = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
        let cfg = NanoConfig::nano(127).with_clock(&long);
        cfg.validate().unwrap();
        let (v, a) = NanoConfig::nano(127).extra_channels();
        assert_eq!(cfg.extra_channels(), (v + 12, a + 12));
        let back = NanoConfig::from_json(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back.clock_periods_s, long);
        back.validate().unwrap();
        // A clocked config.json from before the setting: the 0.5, 1, 2 s clock.
        let short = NanoConfig::nano(127).with_clock(&conditioning::CLOCK_PERIODS_S);
        let mut json = serde_json::to_value(&short).unwrap();
        json.as_object_mut().unwrap().remove("clock_periods_s");
        let old = NanoConfig::from_json(&json.to_string()).unwrap();
        assert_eq!(old.clock_periods_s, conditioning::CLOCK_PERIODS_S);
        old.validate().unwrap();
        // No periods, or a period that is not a positive time: refused by name.
        for bad in [vec![], vec![0.5, 0.0], vec![f32::NAN]] {
            let mut c = cfg.clone().with_clock(&bad);
            c.clock_periods_s = bad.clone();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("clock_periods_s"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_preset_reads_progress_and_configs_from_before_it_and_the_decoder_layers_still_load() {
        let cfg = NanoConfig::nano(127);
        cfg.validate().unwrap();
        assert!(cfg.progress);
        assert_eq!(cfg.extra_channels(), (8 + 1 + 64, 2 + 1 + 64));
        assert_eq!(cfg.dit.video_in_channels, 16 + 8 + 1 + 64);

        // A config.json written before the progress channel: no key, one channel fewer.
        let mut json = serde_json::to_value(&cfg).unwrap();
        let map = json.as_object_mut().unwrap();
        map.remove("progress");
        map.remove("clock");
        map["video"].as_object_mut().unwrap().remove("temporal_mix");
        map["video"]
            .as_object_mut()
            .unwrap()
            .remove("temporal_stride");
        map["dit"]["video_in_channels"] = (16 + 8 + 64).into();
        map["dit"]["audio_in_channels"] = (16 + 2 + 64).into();
        let old: NanoConfig = serde_json::from_value(json).unwrap();
        assert!(!old.progress);
        assert!(!old.video.temporal_mix);
        assert_eq!(old.video.temporal_stride, 4);

        // A retired layer loads when it is off and is refused by name when it is on.
        let mut json = serde_json::to_value(&cfg).unwrap();
        for (key, _, commit) in NanoConfig::RETIRED_VIDEO_LAYERS {
            json["video"][key] = false.into();
            assert_eq!(NanoConfig::from_json(&json.to_string()).unwrap(), cfg);
            json["video"][key] = true.into();
            let err = NanoConfig::from_json(&json.to_string()).unwrap_err();
            assert!(
                err.to_string().contains(&format!("video.{key} is on")),
                "{err}"
            );
            assert!(err.to_string().contains(commit), "{err}");
            json["video"][key] = false.into();
        }
        old.validate().unwrap();

        // The flag and the DiT's input widths must agree.
        let mut wrong = old.clone();
        wrong.progress = true;
        let err = wrong.validate().unwrap_err().to_string();
        assert!(err.contains("retrain"), "{err}");
        assert!(err.contains("progress 1"), "{err}");
        assert!(!old.clock);

        // The clock adds its channels to both inputs, once.
        let clocked = cfg
            .clone()
            .with_clock(&conditioning::CLOCK_PERIODS_S)
            .with_clock(&conditioning::CLOCK_PERIODS_S);
        clocked.validate().unwrap();
        let (v, a) = cfg.extra_channels();
        assert_eq!(
            clocked.extra_channels(),
            (
                v + conditioning::CLOCK_CHANNELS,
                a + conditioning::CLOCK_CHANNELS
            )
        );

        // A folder trained with the 12-channel clock names the clock and the fix.
        let mut twelve = clocked.clone();
        twelve.dit.video_in_channels += 12 - conditioning::CLOCK_CHANNELS;
        twelve.dit.audio_in_channels += 12 - conditioning::CLOCK_CHANNELS;
        let err = twelve.validate().unwrap_err().to_string();
        assert!(
            err.contains("clock 6") && err.contains("train nano"),
            "{err}"
        );
        assert!(
            err.contains(
                "(latent 16 + position and time 8/2 + progress 1 + clock 6 + pooled text 64)"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_temporal_stride_sets_the_frame_layout_and_the_audio_rope_alignment() {
        let mut cfg = NanoConfig::nano(127);
        let four = cfg.video.frames();
        // MagiHuman's layout: a 4 s clip at 8 fps is 33 frames in 9 latent frames.
        assert_eq!((four.latent_frames(32), four.pixel_frames(9)), (9, 33));
        assert_eq!(
            (0..10).map(|f| four.latent_frame_of(f)).collect::<Vec<_>>(),
            [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
        );
        assert_eq!(cfg.latent_frame_s(), 0.5);

        cfg.video.temporal_stride = 2;
        let two = cfg.video.frames();
        assert_eq!((two.latent_frames(32), two.pixel_frames(17)), (17, 33));
        assert_eq!(
            (0..6).map(|f| two.latent_frame_of(f)).collect::<Vec<_>>(),
            [0, 1, 1, 2, 2, 3]
        );
        assert_eq!(cfg.latent_frame_s(), 0.25);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("audio_per_latent_frame is 4"), "{err}");
        let cfg = cfg.with_temporal_stride(2);
        cfg.validate().unwrap();
        assert_eq!(cfg.data_proxy.audio_per_latent_frame, 2);

        let cfg = cfg.with_temporal_stride(3);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("video.temporal_stride is 3"), "{err}");
    }

    #[test]
    fn local_attention_covers_the_inner_layers_and_needs_a_field() {
        let cfg = NanoConfig::nano(127).with_local_attention(2);
        cfg.validate().unwrap();
        assert_eq!(cfg.dit.local_attn_layers, [1, 2, 3, 4]);
        assert_eq!(cfg.data_proxy.frame_receptive_field, 2);
        let mut no_field = cfg;
        no_field.data_proxy.frame_receptive_field = -1;
        let err = no_field.validate().unwrap_err().to_string();
        assert!(err.contains("frame_receptive_field"), "{err}");
    }

    #[test]
    fn a_deeper_dit_keeps_its_experts_at_either_end() {
        let cfg = NanoConfig::nano(127).with_dit_layers(8);
        cfg.validate().unwrap();
        assert_eq!(cfg.dit.num_layers, 8);
        assert_eq!(cfg.dit.mm_layers, [0, 7]);
        assert_eq!(cfg.dit.gelu7_layers, [0]);
        // Local attention then covers the six layers between them.
        let local = cfg.with_local_attention(1);
        assert_eq!(local.dit.local_attn_layers, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn wider_video_latents_widen_the_dits_input_and_their_statistics() {
        let cfg = NanoConfig::nano(127).with_video_latent_channels(32);
        cfg.validate().unwrap();
        assert_eq!(cfg.dit.video_in_channels, 32 + 8 + 1 + 64);
        assert_eq!(cfg.latent.video_std.len(), 32);
        assert_eq!(
            cfg.dit.audio_in_channels,
            NanoConfig::nano(127).dit.audio_in_channels
        );
    }
}
