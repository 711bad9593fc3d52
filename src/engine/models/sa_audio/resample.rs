//! Final audio resampling, 51 200 Hz VAE output to 44 100 Hz.
//!
//! Port of `resample_audio_sinc` in `inference/pipeline/video_process.py`
//! (GAIR-NLP/daVinci-MagiHuman @ 209209b). Despite its name it calls `scipy.signal.resample`:
//! Fourier resampling of a periodic signal, no window. The transforms here run in float64
//! (scipy uses float32 for float32 input; the difference is ~2e-7) with a self-contained FFT:
//! radix-2 for powers of two, Bluestein's chirp-z for every other length, since VAE outputs
//! are `2048 * frames` samples and `frames` is arbitrary.

use std::f64::consts::PI;

use candle::{DType, Result, Tensor};
use candle_core as candle;

/// 51 200 Hz (25 latents/s x 2048) to 44 100 Hz.
pub const TIME_STRETCHING: f64 = 441.0 / 512.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Complex {
    re: f64,
    im: f64,
}

impl Complex {
    fn new(re: f64, im: f64) -> Self {
        Self { re, im }
    }
    /// `exp(i * angle)`
    fn cis(angle: f64) -> Self {
        Self::new(angle.cos(), angle.sin())
    }
    fn mul(self, o: Self) -> Self {
        Self::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    fn conj(self) -> Self {
        Self::new(self.re, -self.im)
    }
    fn scale(self, s: f64) -> Self {
        Self::new(self.re * s, self.im * s)
    }
}

/// In-place unnormalised radix-2 FFT; `sign` is -1 for the forward transform, +1 for the
/// inverse. `buf.len()` must be a power of two.
fn fft_pow2(buf: &mut [Complex], sign: f64) {
    let n = buf.len();
    if n <= 1 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            buf.swap(i, j);
        }
    }
    // Twiddles from cos/sin of each angle directly: repeated multiplication would drift.
    let twiddles: Vec<Complex> = (0..n / 2)
        .map(|k| Complex::cis(sign * 2.0 * PI * k as f64 / n as f64))
        .collect();
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let w = twiddles[k * step];
                let a = buf[start + k];
                let b = buf[start + k + half].mul(w);
                buf[start + k] = Complex::new(a.re + b.re, a.im + b.im);
                buf[start + k + half] = Complex::new(a.re - b.re, a.im - b.im);
            }
        }
        len *= 2;
    }
}

/// Unnormalised DFT of any length: `X_k = sum_n x_n exp(sign * 2 pi i n k / N)`.
fn dft(input: &[Complex], sign: f64) -> Vec<Complex> {
    let n = input.len();
    if n.is_power_of_two() || n <= 1 {
        let mut buf = input.to_vec();
        fft_pow2(&mut buf, sign);
        return buf;
    }
    // Bluestein: nk = (n^2 + k^2 - (k-n)^2) / 2 turns the DFT into a convolution with the
    // chirp exp(-sign * pi i m^2 / N), done with power-of-two FFTs of size >= 2N - 1.
    // m^2 is reduced mod 2N before the float conversion to keep the angle exact.
    let chirp: Vec<Complex> = (0..n as u64)
        .map(|m| {
            let m2 = (m * m) % (2 * n as u64);
            Complex::cis(sign * PI * m2 as f64 / n as f64)
        })
        .collect();
    let size = (2 * n - 1).next_power_of_two();
    let mut a = vec![Complex::default(); size];
    for (i, (x, c)) in input.iter().zip(&chirp).enumerate() {
        a[i] = x.mul(*c);
    }
    let mut b = vec![Complex::default(); size];
    b[0] = chirp[0].conj();
    for m in 1..n {
        b[m] = chirp[m].conj();
        b[size - m] = chirp[m].conj();
    }
    fft_pow2(&mut a, -1.0);
    fft_pow2(&mut b, -1.0);
    for (x, y) in a.iter_mut().zip(&b) {
        *x = x.mul(*y);
    }
    fft_pow2(&mut a, 1.0);
    let norm = 1.0 / size as f64;
    (0..n).map(|k| a[k].mul(chirp[k]).scale(norm)).collect()
}

/// `scipy.signal.resample(x, num)` for one real channel.
pub fn resample_fourier(x: &[f32], num: usize) -> Vec<f32> {
    let len = x.len();
    if len == 0 || num == 0 {
        return vec![0.0; num];
    }
    let input: Vec<Complex> = x.iter().map(|&v| Complex::new(v as f64, 0.0)).collect();
    let spectrum = dft(&input, -1.0);

    // Keep bins 0..=m/2 of the rfft, m = min(num, len).
    let m = num.min(len);
    let mut kept: Vec<Complex> = spectrum[..m / 2 + 1].to_vec();
    if m % 2 == 0 && num != len {
        // The input's (or output's) Nyquist bin stands for both +/- m/2 frequencies.
        kept[m / 2] = kept[m / 2].scale(if num < len { 2.0 } else { 0.5 });
    }

    // irfft(kept, n = num): build the Hermitian spectrum; bins past m/2 are zero, and the
    // imaginary parts of bin 0 and (for even num) bin num/2 are dropped, as pocketfft does.
    let mut full = vec![Complex::default(); num];
    full[0] = Complex::new(kept[0].re, 0.0);
    for (k, &v) in kept.iter().enumerate().skip(1) {
        if k > num / 2 {
            break;
        }
        if num % 2 == 0 && k == num / 2 {
            full[k] = Complex::new(v.re, 0.0);
        } else {
            full[k] = v;
            full[num - k] = v.conj();
        }
    }
    // irfft divides by num, scipy then multiplies by num / len.
    let norm = 1.0 / len as f64;
    dft(&full, 1.0)
        .into_iter()
        .map(|v| (v.re * norm) as f32)
        .collect()
}

/// `resample_audio_sinc(audio, time_stretching)`: `audio` is `[L, C]`, time first; the result
/// is `[int(L * time_stretching), C]` float32 on the same device.
pub fn resample_audio_sinc(audio: &Tensor, time_stretching: f64) -> Result<Tensor> {
    let (len, channels) = audio.dims2()?;
    if !(time_stretching.is_finite() && time_stretching >= 0.0) {
        candle::bail!("resample_audio_sinc: bad time_stretching {time_stretching}")
    }
    // Python's int() of the float product: truncation.
    let num = (len as f64 * time_stretching) as usize;
    let per_channel: Vec<Vec<f32>> = audio.to_dtype(DType::F32)?.t()?.to_vec2()?;
    // Channels are independent: one thread each (stereo in practice).
    let resampled: Vec<Vec<f32>> = std::thread::scope(|scope| {
        let jobs: Vec<_> = per_channel
            .iter()
            .map(|ch| scope.spawn(move || resample_fourier(ch, num)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_default())
            .collect()
    });
    if resampled.iter().any(|ch| ch.len() != num) {
        candle::bail!("resample_audio_sinc: a channel worker failed")
    }
    let out: Vec<f32> = resampled.concat();
    Tensor::from_vec(out, (channels, num), audio.device())?
        .t()?
        .contiguous()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dft(x: &[Complex], sign: f64) -> Vec<Complex> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter()
                    .enumerate()
                    .fold(Complex::default(), |acc, (j, v)| {
                        let w = Complex::cis(sign * 2.0 * PI * ((j * k) % n) as f64 / n as f64);
                        let p = v.mul(w);
                        Complex::new(acc.re + p.re, acc.im + p.im)
                    })
            })
            .collect()
    }

    #[test]
    fn fft_matches_naive_dft() {
        for n in [1usize, 2, 3, 5, 8, 12, 17, 64, 100, 126] {
            let x: Vec<Complex> = (0..n)
                .map(|i| Complex::new((i as f64 * 0.37).sin(), (i as f64 * 1.3).cos()))
                .collect();
            for sign in [-1.0, 1.0] {
                let (got, exp) = (dft(&x, sign), naive_dft(&x, sign));
                for (g, e) in got.iter().zip(&exp) {
                    assert!(
                        (g.re - e.re).abs() < 1e-9 && (g.im - e.im).abs() < 1e-9,
                        "n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn identity_and_upsampling_keep_samples() {
        let x: Vec<f32> = (0..10).map(|i| (i as f32 * 0.7).sin()).collect();
        let same = resample_fourier(&x, 10);
        let up = resample_fourier(&x, 20);
        for i in 0..10 {
            assert!((same[i] - x[i]).abs() < 1e-6);
            assert!((up[2 * i] - x[i]).abs() < 1e-5);
        }
    }
}
