//! Operations candle lacks that several model ports share.

mod clamped_act;
mod rms_norm;
mod rotate_half;
mod softmax;
mod tap_conv;

pub use clamped_act::{gelu_clamped, swiglu_clamped};
pub use rms_norm::rms_norm;
pub use rotate_half::rotate_half;
pub use softmax::softmax_last_dim;
pub use tap_conv::TapConv;

/// The contiguous f32 values of a CPU storage (the CPU kernels' input); `what` names it.
fn cpu_f32<'a>(
    op: &str,
    s: &'a candle_core::CpuStorage,
    l: &candle_core::Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    use candle_core::backend::BackendStorage;
    let candle_core::CpuStorage::F32(v) = s else {
        candle_core::bail!("{op}: {what} must be f32, got {:?}", s.dtype())
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("{op}: {what} must be contiguous")
    };
    Ok(&v[start..end])
}

/// The bit patterns of an f32 tensor's values (the unit tests' check that two ways of
/// computing give the same bits).
#[cfg(test)]
pub(crate) fn f32_bits(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .expect("an f32 tensor")
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// The largest absolute difference between two tensors of one shape (the unit tests' check).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("same shapes")
}
