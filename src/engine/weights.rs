//! Weight loading: safetensors (single, sharded, zstd-compressed) and PyTorch pickles.
//!
//! Finds files the way `inference/infra/checkpoint/load_model_checkpoint.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b does: a checkpoint folder holds either
//! `model.safetensors.index.json` (its `weight_map` names the shard of every tensor) or a single
//! `model.safetensors`; a shard `X` may be shipped as `X.zst`. The reference decompresses a
//! `.zst` shard into memory even when `X` exists; here the plain file wins when both exist, since
//! it can be memory-mapped and holds the same bytes.
//!
//! Pickles (`.pth`, `.pt`, `.ckpt`, `.bin`) go through candle's pickle reader, which rebuilds
//! tensors from the archive and never executes code. Training checkpoints often keep the state
//! dict under a key (`ema_state_dict`) and prefix every name (`module.`): see [`LoadOptions`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core as candle;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use candle::safetensors::{BufferedSafetensors, MmapedSafetensors};
use candle::{DType, Device, Shape, Tensor};

pub const SHARD_INDEX: &str = "model.safetensors.index.json";
pub const SINGLE_FILE: &str = "model.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("weights not found: {path} does not exist{hint}")]
    NotFound { path: PathBuf, hint: String },

    #[error("cannot read {path}: {source}; check the file's permissions, or re-download it")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path} is not a usable shard index ({reason}); it must be JSON with a `weight_map` \
         object mapping tensor names to shard files: re-download the checkpoint"
    )]
    BadIndex { path: PathBuf, reason: String },

    #[error(
        "shard {shard} named in {index} is missing (looked for it and for {shard}.zst); \
         the download is incomplete: fetch the missing shard"
    )]
    MissingShard { index: PathBuf, shard: PathBuf },

    #[error(
        "cannot decompress {path}: {source}; the file is truncated or not zstd: re-download it"
    )]
    Decompress {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot parse {path}: {source}; the file is damaged or not in the format its name says: re-download it")]
    Parse {
        path: PathBuf,
        source: candle::Error,
    },

    #[error(
        "cannot load {path}: expected a `.safetensors`, `.safetensors.zst`, `{SHARD_INDEX}`, \
         `.pth`/`.pt`/`.ckpt`/`.bin` file, or a folder holding `{SHARD_INDEX}` or `{SINGLE_FILE}`"
    )]
    UnsupportedFormat { path: PathBuf },

    #[error("{path} holds no tensors{hint}")]
    Empty { path: PathBuf, hint: String },

    #[error(
        "tensor `{name}` is not in {origin}; the checkpoint does not match this model: check that \
         it is the right model variant{hint}"
    )]
    MissingTensor {
        name: String,
        origin: String,
        hint: String,
    },

    #[error(
        "tensor `{name}` in {path} has shape {got:?} but the model expects {expected:?}; the \
         checkpoint belongs to a different model configuration"
    )]
    ShapeMismatch {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
}

/// How to read names out of a checkpoint.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Pickles only: the top-level key that holds the state dict, e.g. `ema_state_dict`.
    pub pickle_key: Option<String>,
    /// Stripped from every stored name that starts with it, e.g. `module.`.
    pub strip_prefix: Option<String>,
}

impl LoadOptions {
    pub fn pickle_key(mut self, key: impl Into<String>) -> Self {
        self.pickle_key = Some(key.into());
        self
    }

    pub fn strip_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.strip_prefix = Some(prefix.into());
        self
    }
}

enum Store {
    Mmap(MmapedSafetensors),
    Buffered(BufferedSafetensors),
    Pickle(candle::pickle::PthTensors),
}

struct File {
    path: PathBuf,
    store: Store,
}

impl File {
    fn names(&self) -> Vec<String> {
        match &self.store {
            Store::Mmap(st) => st.tensors().into_iter().map(|(n, _)| n).collect(),
            Store::Buffered(st) => st.tensors().into_iter().map(|(n, _)| n).collect(),
            Store::Pickle(p) => p.tensor_infos().keys().cloned().collect(),
        }
    }

    fn load(&self, name: &str, dev: &Device) -> candle::Result<Option<Tensor>> {
        match &self.store {
            Store::Mmap(st) => st.get(name).ok().map(|_| st.load(name, dev)).transpose(),
            Store::Buffered(st) => st.get(name).ok().map(|_| st.load(name, dev)).transpose(),
            Store::Pickle(p) => p.get(name)?.map(|t| t.to_device(dev)).transpose(),
        }
    }
}

/// An opened checkpoint: every tensor name mapped to the file that holds it. Tensors are read
/// when asked for (memory-mapped safetensors; decompressed `.zst` shards stay in memory).
pub struct Weights {
    files: Vec<File>,
    /// Name the model asks for → (file, name stored in the file).
    routing: HashMap<String, (usize, String)>,
    origin: PathBuf,
    strip_prefix: Option<String>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WeightsError + '_ {
    move |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn zst_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".zst");
    PathBuf::from(s)
}

fn open_mmap(path: &Path) -> Result<File, WeightsError> {
    // SAFETY: the file is only read; like every mmap-based loader we rely on it not being
    // modified while the weights are in use.
    let st = unsafe { MmapedSafetensors::new(path) }.map_err(|source| WeightsError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(File {
        path: path.to_path_buf(),
        store: Store::Mmap(st),
    })
}

fn open_zst(path: &Path) -> Result<File, WeightsError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let bytes = zstd::stream::decode_all(std::io::BufReader::new(f)).map_err(|source| {
        WeightsError::Decompress {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let st = BufferedSafetensors::new(bytes).map_err(|source| WeightsError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(File {
        path: path.to_path_buf(),
        store: Store::Buffered(st),
    })
}

/// Opens `path` as plain safetensors, or `path.zst` when only the compressed file exists.
fn open_safetensors_or_zst(path: &Path) -> Option<Result<File, WeightsError>> {
    if path.is_file() {
        Some(open_mmap(path))
    } else {
        let zst = zst_path(path);
        zst.is_file().then(|| open_zst(&zst))
    }
}

fn open_pickle(path: &Path, key: Option<&str>) -> Result<File, WeightsError> {
    let p = candle::pickle::PthTensors::new(path, key).map_err(|source| WeightsError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if p.tensor_infos().is_empty() {
        let hint = match key {
            Some(k) => format!(" under key `{k}`; check the pickle key"),
            None => "; if its state dict sits under a key such as `ema_state_dict` or \
                     `state_dict`, set that key as the pickle key"
                .to_string(),
        };
        return Err(WeightsError::Empty {
            path: path.to_path_buf(),
            hint,
        });
    }
    Ok(File {
        path: path.to_path_buf(),
        store: Store::Pickle(p),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Weights {
    /// Opens a checkpoint: a folder (shard index or `model.safetensors`), an index JSON, a
    /// `.safetensors` or `.safetensors.zst` file, or a PyTorch pickle.
    pub fn open(path: &Path, opts: &LoadOptions) -> Result<Self, WeightsError> {
        let files = if path.is_dir() {
            let index = path.join(SHARD_INDEX);
            if index.is_file() {
                return Self::open_sharded(&index, opts);
            }
            match open_safetensors_or_zst(&path.join(SINGLE_FILE)) {
                Some(f) => vec![f?],
                None => {
                    return Err(WeightsError::NotFound {
                        path: path.join(SINGLE_FILE),
                        hint: format!(
                            "; the folder holds neither {SHARD_INDEX} nor {SINGLE_FILE}(.zst): \
                             point to the checkpoint folder"
                        ),
                    })
                }
            }
        } else {
            let name = file_name(path);
            if name.ends_with(".index.json") {
                if !path.is_file() {
                    return Err(WeightsError::NotFound {
                        path: path.to_path_buf(),
                        hint: String::new(),
                    });
                }
                return Self::open_sharded(path, opts);
            } else if name.ends_with(".safetensors") {
                match open_safetensors_or_zst(path) {
                    Some(f) => vec![f?],
                    None => {
                        return Err(WeightsError::NotFound {
                            path: path.to_path_buf(),
                            hint: " (nor its .zst); check the path".to_string(),
                        })
                    }
                }
            } else if name.ends_with(".safetensors.zst") {
                if !path.is_file() {
                    return Err(WeightsError::NotFound {
                        path: path.to_path_buf(),
                        hint: String::new(),
                    });
                }
                vec![open_zst(path)?]
            } else if [".pth", ".pt", ".ckpt", ".bin"]
                .iter()
                .any(|ext| name.ends_with(ext))
            {
                if !path.is_file() {
                    return Err(WeightsError::NotFound {
                        path: path.to_path_buf(),
                        hint: String::new(),
                    });
                }
                vec![open_pickle(path, opts.pickle_key.as_deref())?]
            } else if !path.exists() {
                return Err(WeightsError::NotFound {
                    path: path.to_path_buf(),
                    hint: String::new(),
                });
            } else {
                return Err(WeightsError::UnsupportedFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        let mut routing = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for stored in f.names() {
                routing.insert(Self::strip(opts, &stored), (i, stored));
            }
        }
        if routing.is_empty() {
            return Err(WeightsError::Empty {
                path: path.to_path_buf(),
                hint: String::new(),
            });
        }
        // Errors name the file itself when there is only one.
        let origin = match files.as_slice() {
            [only] => only.path.clone(),
            _ => path.to_path_buf(),
        };
        Ok(Self {
            files,
            routing,
            origin,
            strip_prefix: opts.strip_prefix.clone(),
        })
    }

    fn strip(opts: &LoadOptions, stored: &str) -> String {
        match &opts.strip_prefix {
            Some(p) => stored
                .strip_prefix(p.as_str())
                .unwrap_or(stored)
                .to_string(),
            None => stored.to_string(),
        }
    }

    fn open_sharded(index: &Path, opts: &LoadOptions) -> Result<Self, WeightsError> {
        let text = std::fs::read_to_string(index).map_err(io_err(index))?;
        let bad = |reason: String| WeightsError::BadIndex {
            path: index.to_path_buf(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        let Some(map) = json.get("weight_map").and_then(|m| m.as_object()) else {
            return Err(bad("no `weight_map` object".to_string()));
        };
        let dir = index.parent().unwrap_or(Path::new("."));

        let mut shard_names: Vec<&str> = Vec::new();
        let mut entries = Vec::with_capacity(map.len());
        for (name, shard) in map {
            let Some(shard) = shard.as_str() else {
                return Err(bad(format!("the shard of `{name}` is not a string")));
            };
            let idx = match shard_names.iter().position(|s| *s == shard) {
                Some(i) => i,
                None => {
                    shard_names.push(shard);
                    shard_names.len() - 1
                }
            };
            entries.push((name.clone(), idx));
        }
        if entries.is_empty() {
            return Err(bad("`weight_map` is empty".to_string()));
        }

        // Shards are independent; decompressing `.zst` ones in parallel is where the time goes.
        let opened: Vec<Result<File, WeightsError>> = std::thread::scope(|s| {
            let handles: Vec<_> = shard_names
                .iter()
                .map(|shard| {
                    let path = dir.join(shard);
                    s.spawn(move || match open_safetensors_or_zst(&path) {
                        Some(f) => f,
                        None => Err(WeightsError::MissingShard {
                            index: index.to_path_buf(),
                            shard: path,
                        }),
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(bad("a shard loader thread panicked".to_string())))
                })
                .collect()
        });
        let files = opened.into_iter().collect::<Result<Vec<_>, _>>()?;

        let mut routing = HashMap::with_capacity(entries.len());
        for (stored, idx) in entries {
            let f = &files[idx];
            let present = match &f.store {
                Store::Mmap(st) => st.get(&stored).is_ok(),
                Store::Buffered(st) => st.get(&stored).is_ok(),
                Store::Pickle(p) => p.tensor_infos().contains_key(&stored),
            };
            if !present {
                return Err(WeightsError::MissingTensor {
                    name: stored,
                    origin: f.path.display().to_string(),
                    hint: format!(
                        " ({} lists it there; the shard and the index disagree: re-download)",
                        index.display()
                    ),
                });
            }
            routing.insert(Self::strip(opts, &stored), (idx, stored));
        }
        Ok(Self {
            files,
            routing,
            origin: index.to_path_buf(),
            strip_prefix: opts.strip_prefix.clone(),
        })
    }

    /// The names a model can ask for (after prefix stripping), in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.routing.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.routing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routing.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.routing.contains_key(name)
    }

    /// The files this checkpoint was read from.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    fn missing(&self, name: &str) -> WeightsError {
        let hint = match &self.strip_prefix {
            Some(p) => format!(" (stored names had the prefix `{p}` stripped)"),
            None => {
                let prefixed = self.routing.keys().find(|k| k.ends_with(name));
                match prefixed {
                    Some(k) if k.len() > name.len() => {
                        format!(" or that its names need a prefix stripped (found `{k}`)")
                    }
                    _ => String::new(),
                }
            }
        };
        WeightsError::MissingTensor {
            name: name.to_string(),
            origin: self.origin.display().to_string(),
            hint,
        }
    }

    /// Loads one tensor in its stored dtype onto `dev`.
    pub fn load(&self, name: &str, dev: &Device) -> Result<Tensor, WeightsError> {
        let Some((i, stored)) = self.routing.get(name) else {
            return Err(self.missing(name));
        };
        let f = &self.files[*i];
        match f.load(stored, dev) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(self.missing(name)),
            Err(source) => Err(WeightsError::Parse {
                path: f.path.clone(),
                source,
            }),
        }
    }

    /// A `VarBuilder` over this checkpoint: every tensor is converted to `dtype` on `dev` when a
    /// layer asks for it.
    pub fn into_var_builder(self, dtype: DType, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), dtype, dev.clone())
    }
}

/// Opens `path` (see [`Weights::open`]) and returns a `VarBuilder` over it.
pub fn load_var_builder(
    path: &Path,
    opts: &LoadOptions,
    dtype: DType,
    dev: &Device,
) -> Result<VarBuilder<'static>, WeightsError> {
    Ok(Weights::open(path, opts)?.into_var_builder(dtype, dev))
}

impl SimpleBackend for Weights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let t = self.load(name, dev).map_err(candle::Error::wrap)?;
        if t.shape() != &s {
            let path = self
                .routing
                .get(name)
                .map(|(i, _)| self.files[*i].path.clone())
                .unwrap_or_else(|| self.origin.clone());
            return Err(candle::Error::wrap(WeightsError::ShapeMismatch {
                name: name.to_string(),
                path,
                expected: s.dims().to_vec(),
                got: t.dims().to_vec(),
            }));
        }
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle::Result<Tensor> {
        self.load(name, dev)
            .map_err(candle::Error::wrap)?
            .to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.contains(name)
    }
}
