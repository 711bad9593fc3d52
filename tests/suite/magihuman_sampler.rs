//! The MagiHuman sampling loop: golden parity (base, TI2V, distill) and behaviour with an
//! analytic denoiser.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use candle_core as candle;

use candle::{DType, Device, Tensor};
use happyhorse::engine::pipelines::run_sampler_case_with;
use happyhorse::engine::pipelines::{
    sample, Denoiser, NoiseSource, QueuedNoise, SampleError, SamplerConfig, SamplerInputs,
    SeededNoise, StepEvent, TextCondition,
};
use happyhorse::engine::samplers::FlowUniPcScheduler;

use crate::common::{assert_close, case_tolerance, fixture, load_tensors};

const CASES: [&str; 3] = [
    "magihuman_sampler_base",
    "magihuman_sampler_ti2v",
    "magihuman_sampler_distill",
];

fn load(dir: &Path, file: &str) -> HashMap<String, Tensor> {
    load_tensors(&dir.join(file))
}

fn check_against(dir: &Path, got: &HashMap<String, Tensor>, file: &str) {
    let (atol, rtol) = case_tolerance(dir);
    for (name, exp) in load(dir, file) {
        let t = got
            .get(&name)
            .unwrap_or_else(|| panic!("{}: {name} not produced", dir.display()));
        if exp.dtype() == DType::I64 {
            assert_eq!(t.dtype(), DType::I64, "{name}");
            assert_eq!(
                t.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                exp.flatten_all().unwrap().to_vec1::<i64>().unwrap(),
                "{name}"
            );
            continue;
        }
        let err = assert_close(&name, t, &exp, atol, rtol);
        eprintln!("{}/{name}: max abs err {err:.3e}", dir.display());
    }
}

/// Plays back the reference's recorded velocities (cond, then uncond, per step), checking
/// that the loop feeds the model the same latents the reference did.
struct Replay {
    calls: Cell<usize>,
    cfg: usize,
    debug: HashMap<String, Tensor>,
    tol: (f64, f64),
    max_in_err: RefCell<f64>,
}

impl Denoiser for Replay {
    fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        _txt_feat: &Tensor,
        _txt_len: usize,
        _sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        let call = self.calls.get();
        self.calls.set(call + 1);
        let (step, pass) = (
            call / self.cfg,
            if call % self.cfg == 0 {
                "cond"
            } else {
                "uncond"
            },
        );
        let (atol, rtol) = self.tol;
        for (name, got) in [
            ("step_latent_video_in", latent_video),
            ("step_latent_audio_in", latent_audio),
        ] {
            let exp = self.debug[name].get(step)?;
            let err = assert_close(&format!("{name}[{step}]"), got, &exp, atol, rtol);
            let mut m = self.max_in_err.borrow_mut();
            *m = m.max(err);
        }
        Ok((
            self.debug[&format!("step_v_{pass}_video")].get(step)?,
            self.debug[&format!("step_v_{pass}_audio")].get(step)?,
        ))
    }
}

/// The loop alone, against every golden case, with the reference's own model outputs.
#[test]
fn sampler_loop_replays_reference_velocities() {
    for case in CASES {
        let dir = fixture(case);
        let debug = load(&dir, "debug.safetensors");
        let cfg = if debug.contains_key("step_v_uncond_video") {
            2
        } else {
            1
        };
        let replay = Replay {
            calls: Cell::new(0),
            cfg,
            debug,
            tol: case_tolerance(&dir),
            max_in_err: RefCell::new(0.0),
        };
        let got = run_sampler_case_with(&dir, &replay).unwrap();
        check_against(&dir, &got, "expected.safetensors");
        check_against(&dir, &got, "debug.safetensors");
        eprintln!(
            "{case}: model inputs max abs err {:.3e}",
            *replay.max_in_err.borrow()
        );
    }
}

/// `v = a*x` with `a` set by the text length, so cond and uncond differ.
struct Linear;

impl Denoiser for Linear {
    fn velocity(
        &self,
        v: &Tensor,
        a: &Tensor,
        _txt: &Tensor,
        len: usize,
        _sigma: f64,
    ) -> candle::Result<(Tensor, Tensor)> {
        let s = 0.1 * len as f64;
        Ok((v.affine(s, 0.1)?, a.affine(-s, 0.2)?))
    }
}

struct Setup {
    video: Tensor,
    audio: Tensor,
    txt: Tensor,
    null: Tensor,
    image: Tensor,
}

fn setup() -> Setup {
    let mut rng = SeededNoise::new(7);
    let dev = Device::Cpu;
    let mk = |rng: &mut SeededNoise, shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::from_vec(rng.sample(n), shape, &dev).unwrap()
    };
    Setup {
        video: mk(&mut rng, &[1, 2, 3, 2, 2]),
        audio: mk(&mut rng, &[1, 5, 3]),
        txt: mk(&mut rng, &[1, 6, 4]),
        null: mk(&mut rng, &[1, 6, 4]),
        image: mk(&mut rng, &[1, 2, 1, 2, 2]),
    }
}

fn inputs(s: &Setup) -> SamplerInputs<'_> {
    SamplerInputs {
        latent_video: s.video.clone(),
        latent_audio: s.audio.clone(),
        text: TextCondition {
            feat: &s.txt,
            len: 4,
        },
        negative: Some(TextCondition {
            feat: &s.null,
            len: 6,
        }),
        latent_image: None,
        audio_given: false,
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn cfg_loop_matches_hand_rolled_loop() {
    let s = setup();
    let cfg = SamplerConfig {
        num_inference_steps: 6,
        ..SamplerConfig::base()
    };
    let mut scales = vec![];
    let out = sample(
        &Linear,
        &cfg,
        inputs(&s),
        &mut QueuedNoise::default(),
        &mut |ev: &StepEvent| {
            let u = ev.v_uncond_video.unwrap();
            let ratio = (ev.v_cfg_video - u)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                / (ev.v_cond_video - u)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
            scales.push((ev.timestep, ratio));
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    // The video scale drops to 2.0 at the last step of 6 (t = 499 <= 500).
    for (t, r) in &scales {
        let want = if *t > 500 { 5.0 } else { 2.0 };
        assert!((r - want).abs() < 1e-3, "t {t}: scale {r}");
    }
    assert_eq!(scales.last().unwrap().0, 499);

    let (mut sv, mut sa) = (
        FlowUniPcScheduler::new(6, 5.0).unwrap(),
        FlowUniPcScheduler::new(6, 5.0).unwrap(),
    );
    let (mut v, mut a) = (s.video.clone(), s.audio.clone());
    for &t in sv.timesteps().to_vec().iter() {
        let (cv, ca) = Linear.velocity(&v, &a, &s.txt, 4, 1.0).unwrap();
        let (uv, ua) = Linear.velocity(&v, &a, &s.null, 6, 1.0).unwrap();
        let sc = if t > 500 { 5.0 } else { 2.0 };
        let gv = (&uv + (&cv - &uv).unwrap().affine(sc, 0.).unwrap()).unwrap();
        let ga = (&ua + (&ca - &ua).unwrap().affine(5.0, 0.).unwrap()).unwrap();
        v = sv.step(&gv, t, &v).unwrap();
        a = sa.step(&ga, t, &a).unwrap();
    }
    assert!(max_diff(&out.latent_video, &v) < 1e-6);
    assert!(max_diff(&out.latent_audio, &a) < 1e-6);
    assert_eq!(out.timesteps.len(), 6);
    assert_eq!(out.sigmas.len(), 7);
}

#[test]
fn ti2v_holds_first_frame_and_a2v_holds_audio() {
    let s = setup();
    let cfg = SamplerConfig {
        num_inference_steps: 4,
        ..SamplerConfig::base()
    };
    let mut inp = inputs(&s);
    inp.latent_image = Some(&s.image);
    inp.audio_given = true;
    let mut seen = 0;
    let out = sample(
        &Linear,
        &cfg,
        inp,
        &mut QueuedNoise::default(),
        &mut |ev: &StepEvent| {
            let frame0 = ev.latent_video_in.narrow(2, 0, 1).unwrap();
            assert_eq!(
                max_diff(&frame0, &s.image),
                0.0,
                "model input holds the image"
            );
            assert_eq!(
                max_diff(ev.latent_audio_out, &s.audio),
                0.0,
                "audio untouched"
            );
            seen += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(seen, 4);
    assert_eq!(
        max_diff(&out.latent_video.narrow(2, 0, 1).unwrap(), &s.image),
        0.0
    );
    assert!(
        max_diff(
            &out.latent_video.narrow(2, 1, 2).unwrap(),
            &s.video.narrow(2, 1, 2).unwrap()
        ) > 0.1
    );
    assert_eq!(max_diff(&out.latent_audio, &s.audio), 0.0);
}

#[test]
fn distill_uses_noise_source_and_single_pass() {
    let s = setup();
    let cfg = SamplerConfig {
        num_inference_steps: 3,
        ..SamplerConfig::distill()
    };
    let mut calls = 0;
    /// Counts the calls and records the noise level each one is told.
    struct Counting<'a>(&'a Cell<usize>, &'a RefCell<Vec<f64>>);
    impl Denoiser for Counting<'_> {
        fn velocity(
            &self,
            v: &Tensor,
            a: &Tensor,
            t: &Tensor,
            l: usize,
            sigma: f64,
        ) -> candle::Result<(Tensor, Tensor)> {
            self.0.set(self.0.get() + 1);
            self.1.borrow_mut().push(sigma);
            Linear.velocity(v, a, t, l, sigma)
        }
    }
    let count = Cell::new(0);
    let sigmas = RefCell::new(Vec::new());
    let mut inp = inputs(&s);
    inp.negative = None;
    let a = sample(
        &Counting(&count, &sigmas),
        &cfg,
        inp.clone(),
        &mut SeededNoise::new(1),
        &mut |_: &StepEvent| {
            calls += 1;
            ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(count.get(), 3, "one model call per step");
    let schedule = FlowUniPcScheduler::new(3, cfg.shift).unwrap();
    assert_eq!(
        *sigmas.borrow(),
        schedule.sigmas()[..3],
        "each call is told its step's noise level"
    );
    assert_eq!(calls, 3);
    let b = sample(
        &Linear,
        &cfg,
        inp.clone(),
        &mut SeededNoise::new(1),
        &mut |_: &StepEvent| ControlFlow::Continue(()),
    )
    .unwrap();
    let c = sample(
        &Linear,
        &cfg,
        inp,
        &mut SeededNoise::new(2),
        &mut |_: &StepEvent| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(
        max_diff(&a.latent_video, &b.latent_video),
        0.0,
        "same seed, same clip"
    );
    assert!(
        max_diff(&a.latent_video, &c.latent_video) > 1e-3,
        "another seed, another clip"
    );
}

#[test]
fn cancellation_and_bad_settings() {
    let s = setup();
    let cfg = SamplerConfig {
        num_inference_steps: 4,
        ..SamplerConfig::base()
    };
    let err = sample(
        &Linear,
        &cfg,
        inputs(&s),
        &mut QueuedNoise::default(),
        &mut |ev: &StepEvent| {
            if ev.step == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SampleError::Cancelled {
                step: 2,
                num_steps: 4
            }
        ),
        "{err}"
    );

    let mut inp = inputs(&s);
    inp.negative = None;
    let err = sample(
        &Linear,
        &cfg,
        inp,
        &mut QueuedNoise::default(),
        &mut |_: &StepEvent| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(matches!(err, SampleError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("negative"), "{err}");
}

#[test]
fn seeded_noise_is_standard_normal() {
    let mut n = SeededNoise::new(42);
    let like = Tensor::zeros((100, 1000), DType::F32, &Device::Cpu).unwrap();
    let x = n.gaussian_like(&like).unwrap();
    let mean = x.mean_all().unwrap().to_scalar::<f32>().unwrap();
    let var = x
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
        "mean {mean} var {var}"
    );
}

/// The whole thing: the tiny DiT of the case weights inside the loop.
#[test]
fn sampler_golden_cases_with_dit() {
    use happyhorse::engine::pipelines::{run_sampler_golden_case, run_sampler_golden_case_debug};
    for case in CASES {
        let dir = fixture(case);
        let expected = run_sampler_golden_case(&dir).unwrap();
        assert_eq!(expected.len(), load(&dir, "expected.safetensors").len());
        check_against(
            &dir,
            &expected.into_iter().collect(),
            "expected.safetensors",
        );
        let debug = run_sampler_golden_case_debug(&dir).unwrap();
        assert_eq!(debug.len(), load(&dir, "debug.safetensors").len());
        check_against(&dir, &debug.into_iter().collect(), "debug.safetensors");
    }
}

#[test]
fn text_pad_or_trim() {
    use happyhorse::engine::pipelines::pad_or_trim_text;
    let dev = Device::Cpu;
    let emb = Tensor::ones((1, 7, 3), DType::F32, &dev).unwrap();
    let (p, len) = pad_or_trim_text(&emb, 12).unwrap();
    assert_eq!((p.dims(), len), (&[1, 12, 3][..], 7));
    assert_eq!(
        p.sum_all().unwrap().to_scalar::<f32>().unwrap(),
        21.0,
        "zero padding"
    );
    let (p, len) = pad_or_trim_text(&emb, 7).unwrap();
    assert_eq!((p.dims(), len), (&[1, 7, 3][..], 7));
    let (p, len) = pad_or_trim_text(&emb, 5).unwrap();
    assert_eq!((p.dims(), len), (&[1, 5, 3][..], 5));
}
