use super::Frames;

/// Resamples frames from their fps to `fps` by nearest frame in time, keeping the duration.
/// Generated motion is smooth at these rates (12–25 fps), so repeating or dropping frames is
/// preferred over blending, which would ghost moving edges.
pub fn retime_frames(frames: &Frames, fps: u32) -> Frames {
    if frames.fps == fps || frames.count() == 0 {
        return frames.clone();
    }
    let n_in = frames.count();
    let n_out = ((n_in as f64) * fps as f64 / frames.fps as f64)
        .round()
        .max(1.0) as usize;
    let mut data = Vec::with_capacity(n_out * frames.frame_len());
    for j in 0..n_out {
        // Centre of output frame j, in input frames.
        let t = (j as f64 + 0.5) * frames.fps as f64 / fps as f64 - 0.5;
        let i = (t.round().max(0.0) as usize).min(n_in - 1);
        data.extend_from_slice(frames.frame(i));
    }
    Frames {
        width: frames.width,
        height: frames.height,
        fps,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(n: usize, fps: u32) -> Frames {
        Frames {
            width: 1,
            height: 1,
            fps,
            data: (0..n).flat_map(|i| [i as u8; 3]).collect(),
        }
    }

    #[test]
    fn keeps_duration_and_order() {
        let out = retime_frames(&numbered(100, 25), 24);
        assert_eq!(out.count(), 96);
        let idx: Vec<u8> = (0..out.count()).map(|i| out.frame(i)[0]).collect();
        assert!(idx.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(idx[0], 0);
        assert_eq!(*idx.last().unwrap(), 99);
        let up = retime_frames(&numbered(12, 12), 24);
        assert_eq!(up.count(), 24);
        assert_eq!(up.frame(0)[0], 0);
        assert_eq!(up.frame(23)[0], 11);
    }
}
