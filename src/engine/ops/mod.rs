//! Operations candle lacks that several model ports share.

mod rms_norm;
mod softmax;
mod tap_conv;

pub use rms_norm::rms_norm;
pub use softmax::softmax_last_dim;
pub use tap_conv::TapConv;

/// The largest absolute difference between two tensors of one shape (the unit tests' check).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("same shapes")
}
