//! Weight loading: single, sharded, zstd-compressed safetensors and PyTorch pickles.

use std::collections::HashMap;
use std::path::Path;

use candle_core as candle;

use candle::{DType, Device, Tensor};
use happyhorse::engine::weights::{load_var_builder, LoadOptions, Weights, WeightsError};

fn tensors() -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut m = HashMap::new();
    m.insert(
        "blocks.0.weight".to_string(),
        Tensor::arange(0f32, 6., &dev)
            .unwrap()
            .reshape((2, 3))
            .unwrap(),
    );
    m.insert(
        "blocks.0.bias".to_string(),
        Tensor::new(&[0.5f32, -1.5], &dev).unwrap(),
    );
    m.insert(
        "head.weight".to_string(),
        Tensor::new(&[[1i64, 2], [3, 4]], &dev).unwrap(),
    );
    m
}

fn write_shards(dir: &Path, compress: &[bool]) {
    let all = tensors();
    let split: [&[&str]; 2] = [&["blocks.0.weight", "blocks.0.bias"], &["head.weight"]];
    let mut weight_map = serde_json::Map::new();
    for (i, names) in split.iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let part: HashMap<String, Tensor> = names
            .iter()
            .map(|n| (n.to_string(), all[*n].clone()))
            .collect();
        let path = dir.join(&file);
        candle::safetensors::save(&part, &path).unwrap();
        if compress[i] {
            let bytes = std::fs::read(&path).unwrap();
            let z = zstd::stream::encode_all(bytes.as_slice(), 3).unwrap();
            std::fs::write(dir.join(format!("{file}.zst")), z).unwrap();
            std::fs::remove_file(&path).unwrap();
        }
        for n in *names {
            weight_map.insert(n.to_string(), serde_json::Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
}

fn check_values(w: &Weights) {
    let dev = Device::Cpu;
    let exp = tensors();
    assert_eq!(w.len(), exp.len());
    for (name, e) in &exp {
        let t = w.load(name, &dev).unwrap();
        assert_eq!(t.dtype(), e.dtype(), "{name}");
        let diff = (t.to_dtype(DType::F64).unwrap() - e.to_dtype(DType::F64).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name}");
    }
}

#[test]
fn single_safetensors_file_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    candle::safetensors::save(&tensors(), &path).unwrap();
    check_values(&Weights::open(&path, &LoadOptions::default()).unwrap());
    check_values(&Weights::open(dir.path(), &LoadOptions::default()).unwrap());

    // The VarBuilder converts to the caller's dtype and checks shapes.
    let vb = load_var_builder(
        dir.path(),
        &LoadOptions::default(),
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let w = vb.pp("blocks").pp(0).get((2, 3), "weight").unwrap();
    assert_eq!(w.dtype(), DType::F64);
    assert_eq!(
        w.to_vec2::<f64>().unwrap(),
        vec![vec![0., 1., 2.], vec![3., 4., 5.]]
    );
    let err = vb.get((3, 2), "blocks.0.weight").unwrap_err().to_string();
    assert!(
        err.contains("blocks.0.weight") && err.contains("[3, 2]"),
        "{err}"
    );
    let err = vb.get(2, "blocks.1.bias").unwrap_err().to_string();
    assert!(
        err.contains("blocks.1.bias") && err.contains("model.safetensors"),
        "{err}"
    );
}

#[test]
fn sharded_plain_and_zstd() {
    for compress in [[false, false], [true, false], [true, true]] {
        let dir = tempfile::tempdir().unwrap();
        write_shards(dir.path(), &compress);
        check_values(&Weights::open(dir.path(), &LoadOptions::default()).unwrap());
        let index = dir.path().join("model.safetensors.index.json");
        check_values(&Weights::open(&index, &LoadOptions::default()).unwrap());
    }
}

#[test]
fn single_zstd_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    candle::safetensors::save(&tensors(), &path).unwrap();
    let z = zstd::stream::encode_all(std::fs::read(&path).unwrap().as_slice(), 3).unwrap();
    std::fs::remove_file(&path).unwrap();
    let zst = dir.path().join("model.safetensors.zst");
    std::fs::write(&zst, z).unwrap();
    check_values(&Weights::open(&zst, &LoadOptions::default()).unwrap());
    // Asking for the plain name finds the compressed file, as the reference does.
    check_values(&Weights::open(&path, &LoadOptions::default()).unwrap());
    check_values(&Weights::open(dir.path(), &LoadOptions::default()).unwrap());
}

#[test]
fn missing_files_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let err = Weights::open(
        &dir.path().join("nope.safetensors"),
        &LoadOptions::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, WeightsError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("nope.safetensors"));

    let err = Weights::open(dir.path(), &LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::NotFound { .. }), "{err}");

    write_shards(dir.path(), &[false, true]);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors.zst")).unwrap();
    let err = Weights::open(dir.path(), &LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::MissingShard { .. }), "{err}");
    assert!(
        err.to_string().contains("model-00002-of-00002.safetensors"),
        "{err}"
    );

    std::fs::write(dir.path().join("model.safetensors.index.json"), "{}").unwrap();
    let err = Weights::open(dir.path(), &LoadOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, WeightsError::BadIndex { .. }), "{err}");

    let bad = dir.path().join("bad.safetensors.zst");
    std::fs::write(&bad, b"not zstd").unwrap();
    let err = Weights::open(&bad, &LoadOptions::default()).err().unwrap();
    assert!(matches!(err, WeightsError::Decompress { .. }), "{err}");

    let txt = dir.path().join("weights.txt");
    std::fs::write(&txt, b"hello").unwrap();
    let err = Weights::open(&txt, &LoadOptions::default()).err().unwrap();
    assert!(
        matches!(err, WeightsError::UnsupportedFormat { .. }),
        "{err}"
    );
}

#[test]
fn missing_tensor_names_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    candle::safetensors::save(&tensors(), &path).unwrap();
    let w = Weights::open(&path, &LoadOptions::default()).unwrap();
    let err = w.load("blocks.9.weight", &Device::Cpu).err().unwrap();
    assert!(matches!(err, WeightsError::MissingTensor { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

/// `tiny_ema.pth` is torch.save's zip layout, written by `make_pth.py` without torch:
/// `{"ema_state_dict": {"module.layer.weight": [[0,1,2],[3,4,5]], "module.layer.bias": [0.5,-1.5,2.25]}, "step": 7}`.
#[test]
fn pickle_with_key_and_prefix() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/weights/tiny_ema.pth");
    let opts = LoadOptions::default()
        .pickle_key("ema_state_dict")
        .strip_prefix("module.");
    let vb = load_var_builder(&path, &opts, DType::F32, &Device::Cpu).unwrap();
    let w = vb.pp("layer").get((2, 3), "weight").unwrap();
    assert_eq!(
        w.to_vec2::<f32>().unwrap(),
        vec![vec![0., 1., 2.], vec![3., 4., 5.]]
    );
    let b = vb.pp("layer").get(3, "bias").unwrap();
    assert_eq!(b.to_vec1::<f32>().unwrap(), vec![0.5, -1.5, 2.25]);

    // Without the key the top-level dict has no tensors: the error says to set it.
    let err = Weights::open(&path, &LoadOptions::default()).err().unwrap();
    assert!(matches!(err, WeightsError::Empty { .. }), "{err}");
    assert!(err.to_string().contains("ema_state_dict"), "{err}");

    // Without the prefix stripped, the error points at the stored name.
    let w = Weights::open(&path, &LoadOptions::default().pickle_key("ema_state_dict")).unwrap();
    let err = w.load("layer.weight", &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("module.layer.weight"), "{err}");
}
