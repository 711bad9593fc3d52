//! Runs the Nano eval until `happyhorse eval nano` is wired:
//! `cargo run --release --example nano_eval -- [MODEL_DIR] [--n N] [--seed S] [--steps N]
//! [--json PATH]`. Prints the table; writes the full report as JSON when asked.

use std::path::PathBuf;

use happyhorse::nano::eval::{run, EvalConfig};

fn main() -> anyhow::Result<()> {
    let mut cfg = EvalConfig::new(PathBuf::from("models/nano"));
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match a.as_str() {
            "--n" => cfg.scenes_per_split = value("--n")?.parse()?,
            "--seed" => cfg.seed = value("--seed")?.parse()?,
            "--steps" => cfg.steps = Some(value("--steps")?.parse()?),
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            _ => cfg.model_dir = PathBuf::from(a),
        }
    }
    let report = run(cfg, &mut |p| {
        let c = p.clip;
        eprintln!(
            "[{}/{}] {:?} {:?}: colour {:?} shape {:?} motion {:?} silent {} ({:.1}s)",
            p.done,
            p.total,
            c.split,
            c.caption,
            c.got_color,
            c.got_shape,
            c.got_motion,
            c.got_silent,
            c.generate_s
        );
    })?;
    println!("{report}");
    if let Some(path) = json {
        report.write_json(&path)?;
        println!("report written to {}", path.display());
    }
    Ok(())
}
