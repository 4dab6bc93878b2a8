//! `run.json`, a training run's description (`host/train/src/config.rs`, `RunConfig`).
//!
//! Input: the file's text.
//!
//! Properties: reading never panics; a description that reads writes back and reads to an equal
//! one; its options validate or are refused with an error (never a panic), and their
//! learning-rate schedule is finite at every step of the run.

use crate::scratch_path;
use tritlab_train::RunConfig;

pub fn run(data: &[u8]) {
    let dir = scratch_path("run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(RunConfig::FILE), data).unwrap();
    let Ok(config) = RunConfig::read(&dir) else {
        return;
    };
    let out = scratch_path("run-copy");
    std::fs::create_dir_all(&out).unwrap();
    config.write(&out).expect("write run.json");
    let again = RunConfig::read(&out).expect("read a written run.json");
    assert_eq!(
        serde_json::to_string(&again).unwrap(),
        serde_json::to_string(&config).unwrap(),
        "run.json does not survive a write and a read"
    );
    let options = &config.options;
    if options.validate().is_ok() {
        for step in [1, options.warmup_steps, options.steps / 2, options.steps] {
            let lr = options.learning_rate_at(step.max(1));
            assert!(lr.is_finite(), "learning rate at step {step} is {lr}");
        }
    }
}
