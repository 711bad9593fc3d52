//! Flow-matching UniPC multistep scheduler (UniPC-bh2, order 2, predict-x0).
//!
//! Port of `FlowUniPCMultistepScheduler` in `inference/pipeline/scheduler_unipc.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b (itself adapted from diffusers 0.31 UniPC).
//! Only the configuration the pipeline uses is ported: 1000 training steps, solver order 2,
//! `flow_prediction`, predict-x0, `bh2`, `lower_order_final`, corrector always on, final sigma 0.
//!
//! Scalars are computed in f64 from the f32 sigmas the reference stores; tensors keep the dtype
//! of the sample.

use candle_core as candle;

use candle::{bail, Result, Tensor};

const NUM_TRAIN_TIMESTEPS: f64 = 1000.0;
const SOLVER_ORDER: usize = 2;

/// One scheduler per modality: `step` keeps the multistep history of the modality it serves.
#[derive(Debug, Clone)]
pub struct FlowUniPcScheduler {
    timesteps: Vec<i64>,
    /// The f32 sigmas of the reference, widened; `n + 1` entries, the last one 0.
    sigmas: Vec<f64>,
    step_index: Option<usize>,
    /// x0 predictions of the two previous steps: `[m_{i-2}, m_{i-1}]` before step i.
    model_outputs: [Option<Tensor>; SOLVER_ORDER],
    /// The corrected sample the last predictor started from.
    last_sample: Option<Tensor>,
    this_order: usize,
    lower_order_nums: usize,
}

/// `ln(alpha) - ln(sigma)` with `alpha = 1 - sigma`; +inf at sigma = 0, as torch gives.
fn lambda(sigma: f64) -> f64 {
    (1.0 - sigma).ln() - sigma.ln()
}

/// `sum_k c_k * t_k`, in the dtype of the tensors.
fn lincomb(terms: &[(&Tensor, f64)]) -> Result<Tensor> {
    let mut acc: Option<Tensor> = None;
    for (t, c) in terms {
        let term = t.affine(*c, 0.0)?;
        acc = Some(match acc {
            None => term,
            Some(a) => (a + term)?,
        });
    }
    match acc {
        Some(a) => Ok(a),
        None => bail!("lincomb of no terms"),
    }
}

impl FlowUniPcScheduler {
    /// `set_timesteps(n, shift)` of the reference on a fresh scheduler.
    pub fn new(num_inference_steps: usize, shift: f64) -> Result<Self> {
        if num_inference_steps == 0 {
            bail!("num_inference_steps must be at least 1")
        }
        if shift.is_nan() || shift <= 0.0 {
            bail!("shift must be positive, got {shift}")
        }
        let (timesteps, sigmas) = Self::schedule(num_inference_steps, shift);
        Ok(Self {
            timesteps,
            sigmas,
            step_index: None,
            model_outputs: [None, None],
            last_sample: None,
            this_order: 1,
            lower_order_nums: 0,
        })
    }

    /// Resets the scheduler to a new schedule, dropping the multistep history.
    pub fn set_timesteps(&mut self, num_inference_steps: usize, shift: f64) -> Result<()> {
        *self = Self::new(num_inference_steps, shift)?;
        Ok(())
    }

    /// The schedule in f64 exactly as numpy computes it: the truncation to int64 makes the
    /// rounding of `linspace` and of the f32 sigma_max visible in the timesteps.
    fn schedule(n: usize, shift: f64) -> (Vec<i64>, Vec<f64>) {
        // First of the constructor's f32 training sigmas `1 - linspace(1, 1/1000, 1000)[::-1]`.
        let sigma_max = (1.0 - 1.0 / NUM_TRAIN_TIMESTEPS) as f32 as f64;
        let sigma_min = 0.0f64;
        let step = (sigma_min - sigma_max) / n as f64;
        let mut timesteps = Vec::with_capacity(n);
        let mut sigmas = Vec::with_capacity(n + 1);
        for k in 0..n {
            let s = k as f64 * step + sigma_max;
            let s = shift * s / (1.0 + (shift - 1.0) * s);
            timesteps.push((s * NUM_TRAIN_TIMESTEPS).trunc() as i64);
            sigmas.push(s as f32 as f64);
        }
        sigmas.push(0.0);
        (timesteps, sigmas)
    }

    pub fn timesteps(&self) -> &[i64] {
        &self.timesteps
    }

    /// The `n + 1` sigmas (f32 values), the last one 0.
    pub fn sigmas(&self) -> &[f64] {
        &self.sigmas
    }

    pub fn num_inference_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The reference finds the first step from the timestep and takes the *second* match when
    /// a timestep repeats (only at n >= 251 with shift 5).
    fn index_for_timestep(&self, timestep: i64) -> Result<usize> {
        let matches: Vec<usize> = self
            .timesteps
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == timestep)
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [] => bail!(
                "timestep {timestep} is not in the schedule {:?}; pass the scheduler's own timesteps",
                self.timesteps
            ),
            [only] => Ok(*only),
            [_, second, ..] => Ok(*second),
        }
    }

    /// One UniPC step: corrects `sample` with the new model output (from the second step on),
    /// then predicts the sample at the next sigma.
    pub fn step(
        &mut self,
        model_output: &Tensor,
        timestep: i64,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let i = match self.step_index {
            Some(i) => i,
            None => self.index_for_timestep(timestep)?,
        };
        let n = self.timesteps.len();
        if i >= n {
            bail!("scheduler stepped past its {n} steps; call set_timesteps for a new run")
        }
        let sigma = self.sigmas[i];
        let m = (sample - model_output.affine(sigma, 0.0)?)?;

        let sample = match (&self.last_sample, i > 0) {
            (Some(last), true) => self.corrector(i, last, &m)?,
            _ => sample.clone(),
        };

        self.model_outputs.swap(0, 1);
        self.model_outputs[SOLVER_ORDER - 1] = Some(m);

        let order = SOLVER_ORDER.min(n - i);
        self.this_order = order.min(self.lower_order_nums + 1);
        let prev = self.predictor(i, &sample)?;
        self.last_sample = Some(sample);
        if self.lower_order_nums < SOLVER_ORDER {
            self.lower_order_nums += 1;
        }
        self.step_index = Some(i + 1);
        Ok(prev)
    }

    /// UniP-bh2 from sigma_i to sigma_{i+1}.
    fn predictor(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let (Some(m0), s_t, s_s0) = (&self.model_outputs[1], self.sigmas[i + 1], self.sigmas[i])
        else {
            bail!("UniPC predictor without a model output")
        };
        let alpha_t = 1.0 - s_t;
        let h = lambda(s_t) - lambda(s_s0);
        // expm1(-inf) = -1 at the last step, so x_n = m_{n-1} exactly.
        let h_phi_1 = (-h).exp_m1();
        let b_h = h_phi_1;
        let base = [(x, s_t / s_s0), (m0, -alpha_t * h_phi_1)];
        if self.this_order == 2 {
            let Some(m1) = &self.model_outputs[0] else {
                bail!("UniPC order-2 predictor without history")
            };
            let rk = (lambda(self.sigmas[i - 1]) - lambda(s_s0)) / h;
            let d1 = (m1 - m0)?;
            let c = -alpha_t * b_h * 0.5 / rk;
            lincomb(&[base[0], base[1], (&d1, c)])
        } else {
            lincomb(&base)
        }
    }

    /// UniC-bh2 at step i, with the order the previous predictor used.
    fn corrector(&self, i: usize, last_sample: &Tensor, model_t: &Tensor) -> Result<Tensor> {
        let Some(m0) = &self.model_outputs[1] else {
            bail!("UniPC corrector without a previous model output")
        };
        let (s_t, s_s0) = (self.sigmas[i], self.sigmas[i - 1]);
        let alpha_t = 1.0 - s_t;
        let lambda_s0 = lambda(s_s0);
        let h = lambda(s_t) - lambda_s0;
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let b_h = h_phi_1;
        let d1_t = (model_t - m0)?;
        let x_coef = s_t / s_s0;
        let m0_coef = -alpha_t * h_phi_1;
        if self.this_order == 2 {
            let Some(m1) = &self.model_outputs[0] else {
                bail!("UniPC order-2 corrector without history")
            };
            let rk = (lambda(self.sigmas[i - 2]) - lambda_s0) / h;
            let k1 = h_phi_1 / hh - 1.0;
            let b1 = k1 / b_h;
            let b2 = (k1 / hh - 0.5) * 2.0 / b_h;
            // [[1, 1], [rk, 1]] . (rho1, rho2) = (b1, b2)
            let rho1 = (b1 - b2) / (1.0 - rk);
            let rho2 = b1 - rho1;
            let d1 = (m1 - m0)?;
            lincomb(&[
                (last_sample, x_coef),
                (m0, m0_coef),
                (&d1, -alpha_t * b_h * rho1 / rk),
                (&d1_t, -alpha_t * b_h * rho2),
            ])
        } else {
            lincomb(&[
                (last_sample, x_coef),
                (m0, m0_coef),
                (&d1_t, -alpha_t * b_h * 0.5),
            ])
        }
    }

    /// The distilled model's update: re-noise the x0 prediction to sigma_{k+1}.
    /// `noise` is the standard gaussian the reference draws on every call.
    pub fn step_ddim(
        &self,
        velocity: &Tensor,
        step: usize,
        sample: &Tensor,
        noise: &Tensor,
    ) -> Result<Tensor> {
        if step + 1 >= self.sigmas.len() {
            bail!(
                "step_ddim step {step} is outside the schedule of {} steps",
                self.timesteps.len()
            )
        }
        let (curr, prev) = (self.sigmas[step], self.sigmas[step + 1]);
        let clean = (sample - velocity.affine(curr, 0.0)?)?;
        lincomb(&[(noise, prev), (&clean, 1.0 - prev)])
    }
}
