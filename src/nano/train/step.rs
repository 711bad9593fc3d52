//! One optimizer step: each stage's loss on a clip, and the step's gradients over its clips
//! (rendered and differentiated on the run's worker threads).

use super::*;

impl Run<'_> {
    /// The codec stage's losses `[video, audio]` on one clip at step `step`; a codec past
    /// its step count contributes a constant 0.
    pub(super) fn codec_loss(
        &self,
        clip: &Clip,
        step: usize,
        mut noise: SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<[Tensor; 2]> {
        let zero = || Tensor::zeros((), DType::F32, &self.dev);
        let lv = if step < self.cfg.codec_steps {
            self.video_codec_loss(clip, &mut noise)?
        } else {
            zero()?
        };
        let la = if step < self.cfg.audio_codec_steps {
            self.audio_codec_loss(clip, &mut noise, basis)?
        } else {
            zero()?
        };
        Ok([lv, la])
    }

    /// Per-pixel loss weights of a decoded clip: its objects' pixels weighted up by
    /// `codec_object_weight`, broadcast over the colour channels.
    fn pixel_weights(&self, clip: &Clip) -> candle::Result<Tensor> {
        weights(
            &clip.object_mask,
            (clip.n_frames, 1, clip.height, clip.width),
            self.cfg.codec_object_weight,
            &self.dev,
        )
    }

    /// The video codec's loss on a clip: the weighted reconstruction, a small pull on the
    /// latent and the shape code.
    pub(super) fn video_codec_loss(
        &self,
        clip: &Clip,
        noise: &mut SeededNoise,
    ) -> candle::Result<Tensor> {
        let m = &self.model;
        let x = frames_tensor(clip, &self.dev)?;
        let z = m.video_encoder.encode(&x)?;
        let zn = (&z + (noise_like(noise, &z)? * 0.05)?)?;
        let y = m.video_decoder.decode(&zn)?;
        let wv = self.pixel_weights(clip)?;
        let rec = weighted_mse(&y, &x, &wv)?;
        let loss = (rec + (z.sqr()?.mean_all()? * 1e-3)?)?;
        if self.cfg.codec_shape_weight <= 0.0 {
            return Ok(loss);
        }
        loss + (shape_code_miss(&z, clip)? * self.cfg.codec_shape_weight as f64)?
    }

    pub(super) fn audio_codec_loss(
        &self,
        clip: &Clip,
        noise: &mut SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<Tensor> {
        let a = Tensor::from_slice(&clip.audio, clip.audio.len(), &self.dev)?;
        let za = self.model.audio_encoder.encode(&a)?;
        let zan = (&za + (noise_like(noise, &za)? * 0.05)?)?;
        self.audio_reconstruction_loss(clip, &a, &zan, None, basis)?
            + (za.sqr()?.mean_all()? * 1e-3)?
    }

    /// The audio-decoder stage's loss on one clip: the frozen encoder's latent, plus noise of
    /// a level drawn from `[0, audio_decoder_noise]` latent stds, decoded to the clip's sound.
    /// With the video cue, the decoder also sees the clip's frames as the video decoder
    /// draws them from its latent noised the same way (at a level of its own), a share
    /// `audio_decoder_cue_shift` of the clips has its audio latent rolled in time by 1 to
    /// `Na - 1` frames (right sounds, wrong times), and the cue probe's loss (which frames a
    /// hit sounds in, read from the cue's features) comes second. With
    /// [`TrainConfig::audio_decoder_dit_sigma`] the sound latent and the frames are the DiT's
    /// own: its walk from the clip's latents noised to a level drawn up to it. With
    /// [`TrainConfig::audio_decoder_picture_hits`] the target's hits sound where the decoded
    /// picture shows its contacts.
    pub(super) fn audio_decoder_loss(
        &self,
        clip: &Clip,
        mut noise: SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<(Tensor, Option<Tensor>)> {
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: audio-decoder stage without latent statistics".into())
        })?;
        let m = &self.model;
        let a = Tensor::from_slice(&clip.audio, clip.audio.len(), &self.dev)?;
        let za = m.audio_encoder.encode(&a)?.detach();
        let level = uniform(noise.sample(1)[0]) * self.cfg.audio_decoder_noise as f64;
        let std = Tensor::from_slice(&lat.audio_std, (1, 1, lat.audio_std.len()), &self.dev)?;
        let e = noise_like(&mut noise, &za)?.broadcast_mul(&std)?;
        let za = (za + (e * level)?)?;
        let (Some(cue), Some(probe)) = (m.audio_decoder.cue(), &self.cue_probe) else {
            return Ok((
                self.audio_reconstruction_loss(clip, &a, &za, None, basis)?,
                None,
            ));
        };
        // The sound latent and the video latent whose frames the cue sees.
        let (za, zv) = if self.cfg.audio_decoder_dit_sigma > 0.0 {
            let sigma = uniform(noise.sample(1)[0]) * self.cfg.audio_decoder_dit_sigma as f64;
            let (zv, za) = self.dit_estimate(clip, lat, sigma, true, &mut noise)?;
            (za, zv)
        } else {
            let zv = m.video_encoder.encode(&frames_tensor(clip, &self.dev)?)?;
            let u = noise.sample(3);
            let level_v = uniform(u[0]) * self.cfg.audio_decoder_noise as f64;
            let std_v =
                Tensor::from_slice(&lat.video_std, (1, lat.video_std.len(), 1, 1, 1), &self.dev)?;
            let zv = (&zv + (noise_like(&mut noise, &zv)?.broadcast_mul(&std_v)? * level_v)?)?;
            let na = za.dim(1)?;
            let za = if na > 1 && uniform(u[1]) < self.cfg.audio_decoder_cue_shift as f64 {
                let by = 1 + ((uniform(u[2]) * (na - 1) as f64) as usize).min(na - 2);
                roll_frames(&za, by)?
            } else {
                za
            };
            (za, zv)
        };
        let frames = m.video_decoder.decode(&zv)?.clamp(-1.0, 1.0)?.detach();
        // The sound the world makes for this picture, where it shows contacts.
        let seen = match self.cfg.audio_decoder_picture_hits {
            true => picture_contacts(&frames, clip.scene.background, self.model_cfg.native_fps)?,
            false => None,
        };
        let (clip, a) = match seen {
            Some(contacts) => {
                let fps = self.model_cfg.native_fps;
                let heard = clip.with_contacts(&contacts, fps, self.model_cfg.sample_rate);
                let a = Tensor::from_slice(&heard.audio, heard.audio.len(), &self.dev)?;
                (std::borrow::Cow::Owned(heard), a)
            }
            None => (std::borrow::Cow::Borrowed(clip), a),
        };
        let hits = probe.loss(&cue.features(&frames)?, &clip.impact_frames)?;
        let sound = self.audio_reconstruction_loss(&clip, &a, &za, Some(&frames), basis)?;
        Ok((sound, Some(hits)))
    }

    /// The video-decoder stage's loss on a clip: the frozen encoder's latent plus noise of a
    /// level drawn from `[0, video_decoder_noise]` latent stds, or the DiT's estimate
    /// ([`TrainConfig::video_decoder_dit_sigma`]), decoded to the clip's frames.
    pub(super) fn video_decoder_loss(
        &self,
        clip: &Clip,
        mut noise: SeededNoise,
    ) -> candle::Result<Tensor> {
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: video-decoder stage without latent statistics".into())
        })?;
        let m = &self.model;
        let x = frames_tensor(clip, &self.dev)?;
        let dit_sigma = (self.cfg.video_decoder_dit_sigma > 0.0)
            .then(|| uniform(noise.sample(1)[0]) * self.cfg.video_decoder_dit_sigma as f64);
        let z = if let Some(sigma) = dit_sigma {
            let walk = self.cfg.video_decoder_dit_walk;
            self.dit_estimate(clip, lat, sigma, walk, &mut noise)?.0
        } else {
            let z = m.video_encoder.encode(&x)?.detach();
            let level = uniform(noise.sample(1)[0]) * self.cfg.video_decoder_noise as f64;
            let std = decoder_noise_std(&lat.video_std, self.cfg.shape_code_channels());
            let std = Tensor::from_slice(&std, (1, std.len(), 1, 1, 1), &self.dev)?;
            let e = noise_like(&mut noise, &z)?.broadcast_mul(&std)?;
            (z + (e * level)?)?
        };
        let y = m.video_decoder.decode(&z)?;
        weighted_mse(&y, &x, &self.pixel_weights(clip)?)
    }

    /// The DiT's estimate of `clip`'s video and audio latents from its latents noised to
    /// `sigma0`, at the encoders' scales and detached ([`TrainConfig::video_decoder_dit_sigma`],
    /// [`TrainConfig::audio_decoder_dit_sigma`]): its one-step guess `x - sigma0 v` with the
    /// caption, or with `walk` its walk down the sampler's schedule from there (Euler,
    /// classifier-free guidance on the sampler's first steps at its scales). The guess is the
    /// walk's first step alone, unguided.
    pub(super) fn dit_estimate(
        &self,
        clip: &Clip,
        lat: &LatentStats,
        sigma0: f64,
        walk: bool,
        noise: &mut SeededNoise,
    ) -> candle::Result<(Tensor, Tensor)> {
        let m = self.exported.as_ref().unwrap_or(&self.model);
        let s = &self.model_cfg.sampler;
        let (zv, za) = clip_latents(m, lat, clip, &self.dev)?;
        let (mut xv, _) = noised(&zv, sigma0, noise)?;
        let (mut xa, _) = noised(&za, sigma0, noise)?;
        let max_len = self.model_cfg.text.max_len;
        let ids = self.tokenizer.encode(&clip.caption, max_len)?;
        let txt = m.text_encoder.forward(&ids)?;
        let unguided = s.guidance_video == 1.0 && s.guidance_audio == 1.0;
        // The levels walked, and how many of the sampler's first steps are guided.
        let (levels, guided_steps) = match walk {
            true if unguided => (levels_below(sigma0 as f32, s.steps, s.shift), 0),
            true => (
                levels_below(sigma0 as f32, s.steps, s.shift),
                s.cfg_steps.unwrap_or(usize::MAX),
            ),
            false => (vec![sigma0 as f32, 0.0], 0),
        };
        // The empty caption, CFG's negative, only where a step is guided.
        let null = if guided_steps > 0 {
            let ids = self.tokenizer.encode("", max_len)?;
            Some((m.text_encoder.forward(&ids)?, ids.len()))
        } else {
            None
        };
        for (j, pair) in levels.windows(2).enumerate() {
            let (sigma, next) = (pair[0], pair[1]);
            let (mut v, mut a) = m.velocity(&xv, &xa, &txt, ids.len(), sigma)?;
            // The sampler's step index of this level: the walk is the schedule's tail.
            let index = (s.steps + j).saturating_sub(levels.len() - 1);
            if let Some((null, null_len)) = null.as_ref().filter(|_| index < guided_steps) {
                let (nv, na) = m.velocity(&xv, &xa, null, *null_len, sigma)?;
                v = (&nv + ((&v - &nv)? * s.guidance_video)?)?;
                a = (&na + ((&a - &na)? * s.guidance_audio)?)?;
            }
            xv = (&xv + (&v * (next - sigma) as f64)?)?.detach();
            xa = (&xa + (&a * (next - sigma) as f64)?)?.detach();
        }
        Ok((
            nano::denormalize(&xv, &lat.video_mean, &lat.video_std, 1)?,
            nano::denormalize(&xa, &lat.audio_mean, &lat.audio_std, 2)?,
        ))
    }

    /// How far the decoded `za` (beside the decoded `frames`, for a decoder with the cue)
    /// is from the clip's sound: waveform, spectrum and loudness envelope, weighed up on the
    /// hits.
    pub(super) fn audio_reconstruction_loss(
        &self,
        clip: &Clip,
        a: &Tensor,
        za: &Tensor,
        frames: Option<&Tensor>,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<Tensor> {
        let ya = self
            .model
            .audio_decoder
            .decode(za, frames)?
            .narrow(0, 0, clip.audio.len())?;
        // Per audio latent frame (one hop): weighed up where a hit sounds.
        let hop = self.model_cfg.audio.hop;
        let n_hops = clip.audio.len() / hop;
        let wa = weights(
            &clip.impact_frames[..n_hops],
            (n_hops, 1),
            self.cfg.impact_weight,
            &self.dev,
        )?;
        let (ya, a) = (ya.reshape((n_hops, hop))?, a.reshape((n_hops, hop))?);
        let mse = weighted_mse(&ya, &a, &wa)?;
        let (env, rise) = envelope_l1(&ya, &a, ENVELOPE_FRAME, &wa)?;
        let spec = spectral_l1(&ya.flatten_all()?, &a.flatten_all()?, basis)?;
        let c = self.cfg;
        (mse * c.codec_waveform_weight as f64)?
            + (spec * c.codec_spectral_weight as f64)?
            + (env * c.codec_envelope_weight as f64)?
            + (rise * c.codec_onset_weight as f64)?
    }

    /// The DiT stage's flow-matching losses `[video, audio]` on one clip, and the probes'
    /// weighted losses `[text, sync]`: the text probe's if the run has it and the caption
    /// was not dropped, the sync probe's if the run has it at `step`.
    pub(super) fn dit_loss(
        &self,
        clip: &Clip,
        step: usize,
        mut noise: SeededNoise,
        twin: &dyn Fn() -> Clip,
    ) -> candle::Result<([Tensor; 2], [Option<Tensor>; 2])> {
        let m = &self.model;
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: DiT stage without latent statistics".into())
        })?;
        let (zv, za) = clip_latents(m, lat, clip, &self.dev)?;
        let u = noise.sample(2);
        let sigma = self.cfg.shifted_sigma(step, uniform(u[0]));
        let drop = uniform(u[1]) < self.cfg.caption_dropout_at(step);
        let sigma_audio = if self.cfg.dit_decoupled_noise > 0.0 {
            // Drawn only when asked, so the recipe's noise stream is unchanged.
            let d = noise.sample(2);
            if uniform(d[0]) < self.cfg.dit_decoupled_noise as f64 {
                self.cfg.shifted_sigma(step, uniform(d[1]))
            } else {
                sigma
            }
        } else {
            sigma
        };
        let dub = self.cfg.dub_share_at(step);
        let sigma = if dub > 0.0 {
            // Drawn only when asked, so the recipe's noise stream is unchanged.
            let d = noise.sample(2);
            if uniform(d[0]) < dub {
                sigma_audio * uniform(d[1])
            } else {
                sigma
            }
        } else {
            sigma
        };
        // A shape-correcting clip ([`TrainConfig::dit_restart_shape_swap`]), drawn only when
        // asked so that the recipe's noise stream is unchanged; it keeps its caption.
        let swap = self.cfg.dit_restart_shape_swap;
        let corrected = if step >= self.cfg.dit_steps && swap > 0.0 {
            let d = noise.sample(2);
            let (lo, hi) = SHAPE_SWAP_SIGMA;
            (uniform(d[0]) < swap as f64).then(|| lo + (hi - lo) * uniform(d[1]))
        } else {
            None
        };
        let (sigma, sigma_audio, drop) = match corrected {
            Some(s) => (s, s, false),
            None => (sigma, sigma_audio, drop),
        };
        let prompt = if drop { "" } else { clip.caption.as_str() };
        let ids = self.tokenizer.encode(prompt, self.model_cfg.text.max_len)?;
        let txt = m.text_encoder.forward(&ids)?;
        let probe = match &self.probe {
            Some(p) if !drop => {
                let pooled = nano::conditioning::pooled_text(&txt, ids.len())?;
                Some((p.loss(&pooled, &clip.scene)? * self.cfg.text_probe_weight as f64)?)
            }
            _ => None,
        };

        let (xv, target_v) = match corrected {
            Some(_) => {
                let zt = clip_latents(m, lat, &twin(), &self.dev)?.0;
                let code = self.cfg.shape_code_channels();
                shape_correction(&zv, &zt, code, sigma, &mut noise)?
            }
            None => {
                let (xv, ev) = noised(&zv, sigma, &mut noise)?;
                (xv, (ev - &zv)?)
            }
        };
        let (xa, ea) = noised(&za, sigma_audio, &mut noise)?;
        let n_audio = za.dim(1)?;
        let mut impacts = clip.impact_frames.clone();
        impacts.resize(n_audio, 0.0);
        let sync_weight = self.cfg.sync_probe_weight_at(step);
        let sigmas = [sigma as f32, sigma_audio as f32];
        let (pv, pa, sync) = match &self.sync_probe {
            Some(p) if sync_weight > 0.0 => {
                let layer = SyncProbe::layer(self.model_cfg.dit.num_layers);
                let (pv, pa, hidden) = m.velocity_and_audio_hidden(
                    &xv,
                    &xa,
                    &txt,
                    ids.len(),
                    sigmas,
                    Some(clip.span),
                    layer,
                )?;
                let loss = (p.loss(&hidden, &impacts)? * sync_weight as f64)?;
                (pv, pa, Some(loss))
            }
            _ => {
                let (pv, pa) = m.velocity_in(&xv, &xa, &txt, ids.len(), sigmas, Some(clip.span))?;
                (pv, pa, None)
            }
        };
        let (mask, [t, h, w]) = clip.latent_object_mask();
        let wv = weights(
            &mask,
            (1, 1, t, h, w),
            self.cfg.dit_object_weight_at(step),
            &self.dev,
        )?;
        let wa = weights(
            &impacts,
            (1, n_audio, 1),
            self.cfg.dit_impact_weight_at(step),
            &self.dev,
        )?;
        Ok((
            [
                weighted_mse(&pv, &target_v, &wv)?,
                weighted_mse(&pa, &(ea - za)?, &wa)?,
            ],
            [probe, sync],
        ))
    }

    /// Gradients of one optimizer step, one store per clip (in clip order), and the step's
    /// mean losses `[video, audio, text probe, sync probe]`. Clips are
    /// rendered and differentiated on `cfg.workers` threads; each clip's share of the loss is
    /// `1 / batch`.
    pub(super) fn step_grads(
        &self,
        stage: Stage,
        step: usize,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<(Vec<GradStore>, [f32; 4])> {
        let batch = self.cfg.batch;
        let one = |k: usize| -> candle::Result<ClipGrads> {
            let clip = self.clip(stage, step, k);
            let ([lv, la], probes) = match stage {
                Stage::Codec => (
                    self.codec_loss(&clip, step, self.noise(0xC0DE_C000, step, k), basis)?,
                    [None, None],
                ),
                Stage::Dit => {
                    self.dit_loss(&clip, step, self.noise(0xD17D_17D0, step, k), &|| {
                        self.twin(stage, step, k, &clip)
                    })?
                }
                Stage::AudioDecoder => {
                    let (sound, hits) =
                        self.audio_decoder_loss(&clip, self.noise(0xA0D1_0DEC, step, k), basis)?;
                    // The cue probe reports as the sync probe: both find the hits.
                    (
                        [Tensor::zeros((), DType::F32, &self.dev)?, sound],
                        [None, hits],
                    )
                }
                Stage::VideoDecoder => (
                    [
                        self.video_decoder_loss(&clip, self.noise(0x71DE_0DEC, step, k))?,
                        Tensor::zeros((), DType::F32, &self.dev)?,
                    ],
                    [None, None],
                ),
            };
            let mut total = (&lv + &la)?;
            let mut lp = [0f32; 2];
            for (l, p) in lp.iter_mut().zip(probes) {
                if let Some(p) = p {
                    *l = p.to_scalar::<f32>()?;
                    total = (total + p)?;
                }
            }
            let grads = (total / batch as f64)?.backward()?;
            let n = batch as f32;
            Ok((
                grads,
                [
                    lv.to_scalar::<f32>()? / n,
                    la.to_scalar::<f32>()? / n,
                    lp[0] / n,
                    lp[1] / n,
                ],
            ))
        };
        let workers = self.cfg.workers.clamp(1, batch);
        let results: Vec<(usize, candle::Result<ClipGrads>)> = std::thread::scope(|scope| {
            let one = &one;
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        (w..batch)
                            .step_by(workers)
                            .map(|k| (k, one(k)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(batch);
            for h in handles {
                match h.join() {
                    Ok(done) => out.extend(done),
                    Err(_) => out.push((
                        usize::MAX,
                        Err(candle::Error::Msg("nano train: a worker panicked".into())),
                    )),
                }
            }
            out.sort_by_key(|(k, _)| *k);
            out
        });
        let mut grads = Vec::with_capacity(batch);
        let mut loss = [0f32; 4];
        for (_, r) in results {
            let (g, clip_loss) = r?;
            grads.push(g);
            for (sum, l) in loss.iter_mut().zip(clip_loss) {
                *sum += l;
            }
        }
        Ok((grads, loss))
    }
}
