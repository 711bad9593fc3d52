//! The text probe: linear read-outs of the scene's attributes (colour, shape, size, motion,
//! background, camera, ambience, silence) from the pooled caption feature, the one the DiT
//! reads on every token. Its cross-entropy joins the DiT stage's loss, so the text encoder
//! learns from the world's ground truth that "box", "cube" and "block" name one shape, rather
//! than from the few latent cells a shape changes. Training only: the export leaves it out.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{linear, Linear, VarBuilder};

use crate::nano::world::{Ambience, Background, Camera, Color, Motion, Scene, Shape, Size};

/// Prefix of the probe's variables in the training variable map.
pub const PREFIX: &str = "text_probe";

/// The class of a scene in one attribute.
type ClassOf = fn(&Scene) -> usize;

/// One attribute: its name (the head's variable path), its number of classes and the class
/// of a scene.
type Attribute = (&'static str, usize, ClassOf);

fn index<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

const ATTRIBUTES: [Attribute; 8] = [
    ("color", Color::ALL.len(), |s| {
        index(Color::ALL, &s.object.color)
    }),
    ("shape", Shape::ALL.len(), |s| {
        index(Shape::ALL, &s.object.shape)
    }),
    ("size", Size::ALL.len(), |s| {
        index(Size::ALL, &s.object.size)
    }),
    ("motion", Motion::ALL.len(), |s| {
        index(Motion::ALL, &s.motion)
    }),
    ("background", Background::ALL.len(), |s| {
        index(Background::ALL, &s.background)
    }),
    ("camera", Camera::ALL.len(), |s| {
        index(Camera::ALL, &s.camera)
    }),
    ("ambience", Ambience::ALL.len(), |s| {
        index(Ambience::ALL, &s.ambience)
    }),
    ("silent", 2, |s| usize::from(s.silent)),
];

pub struct TextProbe {
    heads: Vec<(Linear, ClassOf)>,
}

impl TextProbe {
    pub fn new(hidden: usize, vb: VarBuilder) -> Result<Self> {
        let heads = ATTRIBUTES
            .iter()
            .map(|&(name, classes, class)| Ok((linear(hidden, classes, vb.pp(name))?, class)))
            .collect::<Result<_>>()?;
        Ok(Self { heads })
    }

    /// Mean cross-entropy of the heads on `pooled` `[1, hidden]` against `scene`'s classes.
    pub fn loss(&self, pooled: &Tensor, scene: &Scene) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (head, class) in &self.heads {
            let target = Tensor::new(&[class(scene) as u32], pooled.device())?;
            let ce = candle_nn::loss::cross_entropy(&head.forward(pooled)?, &target)?;
            total = Some(match total {
                None => ce,
                Some(t) => (t + ce)?,
            });
        }
        match total {
            Some(t) => t / self.heads.len() as f64,
            None => candle::bail!("text probe without heads"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::{Optimizer, VarMap};

    use crate::nano::world::sample_train;

    #[test]
    fn every_attribute_class_is_in_range_and_scenes_differ() {
        let mut seen = vec![std::collections::HashSet::new(); ATTRIBUTES.len()];
        for seed in 0..200 {
            let scene = sample_train(seed);
            for (k, &(name, classes, class)) in ATTRIBUTES.iter().enumerate() {
                let c = class(&scene);
                assert!(c < classes, "{name}: class {c} of {classes}");
                seen[k].insert(c);
            }
        }
        for (k, &(name, classes, _)) in ATTRIBUTES.iter().enumerate() {
            assert_eq!(seen[k].len(), classes, "{name}: not every class drawn");
        }
    }

    #[test]
    fn the_probe_learns_a_separable_feature() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let probe = TextProbe::new(8, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        let scene = sample_train(3);
        let pooled = Tensor::ones((1, 8), DType::F32, &dev)?;
        let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.5)?;
        let first = probe.loss(&pooled, &scene)?.to_scalar::<f32>()?;
        for _ in 0..50 {
            opt.backward_step(&probe.loss(&pooled, &scene)?)?;
        }
        let last = probe.loss(&pooled, &scene)?.to_scalar::<f32>()?;
        assert!(last < 0.1 * first, "{first} -> {last}");
        Ok(())
    }
}
