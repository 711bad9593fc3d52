//! HappyHorse Nano: the small model of the MagiHuman family the project trains and ships.
//!
//! [`world`] is the procedural audio-visual world Nano is trained on (scenes, renderers,
//! captions, held-out split); [`analyze`] measures decoded clips (object colour, shape, motion,
//! audio onsets, AV sync) and is validated on the world itself; [`eval`] measures generated
//! clips with them (`happyhorse eval nano`); [`train`] is the recipe that
//! produces the committed weights.

pub mod analyze;
pub mod eval;
pub mod train;
pub mod world;
