//! Operations candle lacks that several model ports share.

mod tap_conv;

pub use tap_conv::TapConv;
