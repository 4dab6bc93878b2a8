//! Resuming and replaying a run recompute float sums whose order depends on the thread count,
//! so the session refuses a count other than the run's, whichever face asked.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use tritlab_session::{Context, ErrorKind, Execution, Session, SessionConfig};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workbooks/data/sonnets.txt")
}

fn session(threads: Option<usize>) -> Session {
    Session::new(SessionConfig {
        threads,
        ..SessionConfig::default()
    })
}

fn run(session: &mut Session, source: &str) -> Execution {
    let cancel = AtomicBool::new(false);
    let mut ignore = |_| {};
    let mut ctx = Context {
        cancel: &cancel,
        events: &mut ignore,
    };
    session.execute(source, &mut ctx)
}

#[test]
fn resume_and_replay_refuse_another_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let current = rayon::current_num_threads();
    let mut s = session(None);
    let exec = run(
        &mut s,
        &format!(
            "train --data {} --train-tokenizer 300 --steps 2 --seq 16 --batch 2 --checkpoint-every 1 --out {}",
            data().display(),
            out.display()
        ),
    );
    assert!(exec.error.is_none(), "{:?}", exec.error_message());

    // The same count, asked for explicitly, is fine.
    let mut same = session(Some(current));
    let exec = run(
        &mut same,
        &format!("replay open {}\nreplay verify", out.display()),
    );
    assert!(exec.error.is_none(), "{:?}", exec.error_message());

    let mut other = session(Some(current + 1));
    let want = format!("--threads {current}");
    for source in [
        format!("train --resume {} --steps 2", out.display()),
        format!("replay open {}\nreplay verify", out.display()),
        format!(
            "replay open {}\nreplay export 1 {}",
            out.display(),
            tmp.path().join("x").display()
        ),
    ] {
        let exec = run(&mut other, &source);
        let error = exec.error.expect("refused");
        assert_eq!(error.kind(), ErrorKind::Usage, "{source}");
        let message = error.to_string();
        assert!(
            message.contains(&want) && message.contains(&format!("{} threads", current)),
            "{source}: {message}"
        );
    }
}
