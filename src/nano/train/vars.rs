//! The run's variables: deterministic initial values, which stage trains which of them, and
//! setting them from a checkpoint or an earlier run's model folder, by name.

use super::*;

pub(super) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Deterministic initial values: fan-in scaled normals for matrices and kernels, zeros for
/// biases, zero-centred norm weights and the output heads (the DiT starts by predicting 0),
/// rope bands `1/100^(k/B)` (base 100 rather than 10000: Nano's grids are a dozen tokens wide).
pub(super) fn init_vars(varmap: &VarMap, seed: u64, qk_norm_gain: f32) -> candle::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("nano train: the variable map lock is poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let dims = t.dims().to_vec();
        let n = t.elem_count();
        let values: Vec<f32> = if name.ends_with("chunk_gain.bias") {
            // Open gates at the start: a gain that starts closed everywhere gets no gradient.
            vec![1.0; n]
        } else if name.starts_with("dit.")
            && (name.ends_with("q_norm.weight") || name.ends_with("k_norm.weight"))
        {
            vec![qk_norm_gain - 1.0; n]
        } else if name.ends_with("rope.bands") {
            (0..n)
                .map(|k| 1.0 / 100f32.powf(k as f32 / n as f32))
                .collect()
        } else if dims.len() < 2
            || name.contains("final_linear")
            || is_temporal_mix_var(name)
            || (is_decoder_stage_var(name) && name.contains(".out."))
            || (is_audio_cue_var(name) && name.contains(".context."))
        {
            vec![0.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let std = if name.ends_with(".pos") {
                0.02
            } else {
                1.0 / (fan_in as f32).sqrt()
            };
            let mut rng = SeededNoise::new(seed ^ fnv1a(name));
            rng.sample(n).into_iter().map(|x| x * std).collect()
        };
        var.set(&Tensor::from_vec(values, dims, t.device())?)?;
    }
    Ok(())
}

pub(super) fn all_vars(varmap: &VarMap) -> candle::Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("nano train: the variable map lock is poisoned".into()))?;
    Ok(data.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

pub(super) fn vars_with_prefix(
    varmap: &VarMap,
    prefixes: &[&str],
) -> candle::Result<Vec<(String, Var)>> {
    Ok(all_vars(varmap)?
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)) && !n.ends_with("rope.bands"))
        .collect())
}

/// Sets each of `vars` from the tensor of the same name in the safetensors file `path`,
/// refusing by name one that is missing or shaped unlike this run's (`fix` says what to do).
pub(super) fn set_vars(vars: Vec<(String, Var)>, path: &Path, fix: &str) -> Result<(), TrainError> {
    set_vars_or_keep(vars, path, &|_| false, fix)
}

/// [`set_vars`], except that a variable the file lacks keeps its value where `may_lack` says
/// the file may lack it.
pub(super) fn set_vars_or_keep(
    vars: Vec<(String, Var)>,
    path: &Path,
    may_lack: &dyn Fn(&str) -> bool,
    fix: &str,
) -> Result<(), TrainError> {
    let tensors = candle::safetensors::load(path, &Device::Cpu)?;
    for (name, var) in vars {
        let bad = |what: String| TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            message: format!("{what}; {fix}"),
        };
        let Some(t) = tensors.get(&name) else {
            if may_lack(&name) {
                continue;
            }
            return Err(bad(format!("no tensor {name}")));
        };
        if t.dims() != var.dims() {
            return Err(bad(format!(
                "{name} is {:?}, this run's model needs {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_device(var.device())?)?;
    }
    Ok(())
}

/// The audio codec's variables: clipped and scheduled apart from the video codec's.
pub(super) fn is_audio_codec_var(name: &str) -> bool {
    name.starts_with("audio_encoder.") || name.starts_with("audio_decoder.")
}

pub(super) const DIT_PREFIXES: [&str; 2] = ["dit.", "text_encoder."];

/// The video decoder's temporal mixing layers: zero (the identity) until the video-decoder
/// stage, the only one that trains them.
pub(super) fn is_temporal_mix_var(name: &str) -> bool {
    name.starts_with("video_decoder.mix_")
}

/// What only the decoder stages train: the video decoder's temporal mix (from the
/// identity: zero) and the audio decoder's video cue (its `out` and `context` from zero).
pub(super) fn is_decoder_stage_var(name: &str) -> bool {
    is_temporal_mix_var(name) || is_audio_cue_var(name)
}

/// The audio decoder's video cue ([`super::TrainConfig::audio_decoder_video_cue`]).
pub(super) fn is_audio_cue_var(name: &str) -> bool {
    name.starts_with("audio_decoder.cue.")
}

/// The codecs' variables, without the video-decoder stage's own layers.
pub(super) fn codec_vars(varmap: &VarMap) -> candle::Result<Vec<(String, Var)>> {
    Ok(vars_with_prefix(varmap, &CODEC_PREFIXES)?
        .into_iter()
        .filter(|(n, _)| !is_decoder_stage_var(n))
        .collect())
}

/// What the DiT stage trains: the exported DiT and text encoder, and the text probe.
pub(super) const DIT_STAGE_PREFIXES: [&str; 4] = [
    DIT_PREFIXES[0],
    DIT_PREFIXES[1],
    probe::PREFIX,
    sync_probe::PREFIX,
];

/// A training-only read-out (the text or the sync probe): never exported.
pub(super) fn is_probe_var(name: &str) -> bool {
    name.starts_with(probe::PREFIX)
        || name.starts_with(sync_probe::PREFIX)
        || name.starts_with(sync_probe::CUE_PREFIX)
}

pub(super) const CODEC_PREFIXES: [&str; 4] = [
    "video_encoder.",
    "video_decoder.",
    "audio_encoder.",
    "audio_decoder.",
];

/// The model folder `dir`'s `config.json`, and its path.
pub(super) fn read_model_config(dir: &Path) -> Result<(PathBuf, NanoConfig), TrainError> {
    let path = dir.join(nano::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    match NanoConfig::from_json(&text) {
        Ok(cfg) => Ok((path, cfg)),
        Err(e) => Err(TrainError::BadCheckpoint {
            path,
            message: e.to_string(),
        }),
    }
}

/// Sets the codec variables from the model folder `dir` and returns its latent statistics.
/// The folder's codec configuration must be the one this run builds.
pub(super) fn load_codecs(
    varmap: &VarMap,
    cfg: &NanoConfig,
    dir: &Path,
) -> Result<LatentStats, TrainError> {
    let bad = |path: PathBuf, message: String| TrainError::BadCheckpoint { path, message };
    let (cfg_path, theirs) = read_model_config(dir)?;
    let their_video = VideoCodecConfig {
        temporal_mix: cfg.video.temporal_mix,
        ..theirs.video.clone()
    };
    let their_audio = AudioCodecConfig {
        video_cue: cfg.audio.video_cue,
        ..theirs.audio.clone()
    };
    if their_video.temporal_stride != cfg.video.temporal_stride {
        return Err(bad(
            cfg_path,
            format!(
                "its video codec groups {} pixel frames per latent frame, this run {}; pass \
                 --video-temporal-stride {}",
                their_video.temporal_stride, cfg.video.temporal_stride, their_video.temporal_stride
            ),
        ));
    }
    if their_video != cfg.video || their_audio != cfg.audio {
        return Err(bad(
            cfg_path,
            "its codecs are configured unlike this run's (video/audio sections differ); \
             train the codecs too (drop --codecs-from)"
                .into(),
        ));
    }
    set_vars(
        codec_vars(varmap)?,
        &dir.join(nano::WEIGHTS_FILE),
        "train the codecs too (drop --codecs-from)",
    )?;
    Ok(theirs.latent)
}

/// Sets every exported variable from the model folder `dir` (the probes and the
/// video-decoder stage's own layers may be missing: they keep their init) and returns its
/// latent statistics.
pub(super) fn load_model(
    varmap: &VarMap,
    cfg: &NanoConfig,
    dir: &Path,
) -> Result<LatentStats, TrainError> {
    let bad = |path: PathBuf, message: String| TrainError::BadCheckpoint { path, message };
    let (cfg_path, theirs) = read_model_config(dir)?;
    let (v, ours) = (&theirs.video, &cfg.video);
    if v.temporal_mix && !ours.temporal_mix {
        return Err(bad(
            cfg_path,
            "its video decoder has layers this run would drop; pass \
             --video-decoder-temporal-mix true"
                .into(),
        ));
    }
    if v.temporal_stride != ours.temporal_stride {
        return Err(bad(
            cfg_path,
            format!(
                "its video codec groups {} pixel frames per latent frame, this run {}; pass \
                 --video-temporal-stride {}",
                v.temporal_stride, ours.temporal_stride, v.temporal_stride
            ),
        ));
    }
    if theirs.audio.video_cue && !cfg.audio.video_cue {
        return Err(bad(
            cfg_path,
            "its audio decoder sees the picture (a video cue), which this run would drop; pass \
             --audio-decoder-video-cue true"
                .into(),
        ));
    }
    set_vars_or_keep(
        all_vars(varmap)?,
        &dir.join(nano::WEIGHTS_FILE),
        &|name| is_probe_var(name) || is_decoder_stage_var(name),
        "--video-decoder-from and --audio-decoder-from need a model this version trains \
         with the same settings \
         (--tiny, --vocab-scenes, --dit-clock as it was made)",
    )?;
    Ok(theirs.latent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dits_query_and_key_norms_start_at_the_asked_gain_and_nothing_else_moves() {
        let names_and_values = |gain: f32| {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            Nano::new(&NanoConfig::tiny_for_tests(40), vb).unwrap();
            init_vars(&varmap, 5, gain).unwrap();
            let data = varmap.data().lock().unwrap();
            let mut all: Vec<(String, Vec<f32>)> = data
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                    )
                })
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        let (plain, sharp) = (names_and_values(1.0), names_and_values(2.0));
        let mut qk = 0;
        for ((name, a), (_, b)) in plain.iter().zip(&sharp) {
            if name.ends_with("attention.q_norm.weight")
                || name.ends_with("attention.k_norm.weight")
            {
                qk += 1;
                assert!(
                    a.iter().all(|&x| x == 0.0) && b.iter().all(|&x| x == 1.0),
                    "{name}"
                );
            } else {
                assert_eq!(a, b, "{name}");
            }
        }
        assert!(qk >= 4, "{qk} query / key norms");
    }

    #[test]
    fn checkpoint_tensors_are_set_by_name_and_a_misshapen_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vars.safetensors");
        let dev = &Device::Cpu;
        let saved = HashMap::from([
            (
                "dit.w".to_string(),
                Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], dev).unwrap(),
            ),
            (
                "dit.b".to_string(),
                Tensor::new(&[5f32, 6.0, 7.0], dev).unwrap(),
            ),
        ]);
        candle::safetensors::save(&saved, &path).unwrap();
        let var = |shape: &[usize]| Var::zeros(shape, DType::F32, dev).unwrap();

        let (w, b) = (var(&[2, 2]), var(&[3]));
        let vars = vec![
            ("dit.w".to_string(), w.clone()),
            ("dit.b".to_string(), b.clone()),
        ];
        set_vars(vars, &path, "fix").unwrap();
        assert_eq!(w.to_vec2::<f32>().unwrap(), [[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(b.to_vec1::<f32>().unwrap(), [5.0, 6.0, 7.0]);

        let wider = vec![("dit.b".to_string(), var(&[4]))];
        let err = set_vars(wider, &path, "start a new folder")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dit.b is [3], this run's model needs [4]"),
            "{err}"
        );
        assert!(
            err.contains("start a new folder") && err.contains("vars.safetensors"),
            "{err}"
        );

        let missing = vec![("dit.c".to_string(), var(&[1]))];
        let err = set_vars(missing, &path, "fix").unwrap_err().to_string();
        assert!(err.contains("no tensor dit.c"), "{err}");
    }
}
