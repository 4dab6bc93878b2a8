//! Contract tests of the bundled `triad-checker` through the real host.

use crate::common;

use std::sync::Arc;

use common::{host_with, random_trits, token, trits};
use tritlab_plugin_host::{
    AnnotatedStep, CheckSubject, InMemoryTensors, LayerCounts, Party, PluginKind, Triad, Trit,
    TritCounts, TritRow, TritTensor, Verdict, VerdictStatus,
};

fn only(verdicts: Vec<Verdict>) -> Verdict {
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    verdicts.into_iter().next().expect("one verdict")
}

fn find<'a>(verdicts: &'a [Verdict], check: &str, location: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.check == check && v.location == location)
        .unwrap_or_else(|| panic!("no `{check}` verdict at `{location}` in {verdicts:?}"))
}

#[test]
fn describes_itself_as_a_checker() {
    let host = host_with(&["triad-checker"]);
    assert_eq!(
        host.status("triad-checker").expect("loaded").info.kind,
        PluginKind::Checker
    );
}

#[test]
fn layer_counts_balance_mod_3() {
    let mut host = host_with(&["triad-checker"]);
    let layer = |positive, negative| {
        CheckSubject::Layer(LayerCounts {
            layer: "blk.0.attn_q".into(),
            counts: TritCounts {
                neg: negative,
                zero: 17,
                pos: positive,
            },
        })
    };
    let balanced = only(host.check("triad-checker", &layer(10, 4)).expect("checks"));
    assert_eq!(balanced.status, VerdictStatus::Ok, "{balanced:?}");
    assert_eq!(balanced.check, "gf3-balance");
    assert_eq!(balanced.location, "blk.0.attn_q");

    let unbalanced = only(host.check("triad-checker", &layer(10, 5)).expect("checks"));
    assert_eq!(unbalanced.status, VerdictStatus::Violated);
    assert!(unbalanced.message.contains("≡ 2"), "{}", unbalanced.message);
}

#[test]
fn rows_balance_mod_3() {
    let mut host = host_with(&["triad-checker"]);
    let row = |values: &[i8]| {
        CheckSubject::Row(TritRow {
            tensor: "w".into(),
            row: 5,
            trits: trits(values),
        })
    };
    let ok = only(
        host.check("triad-checker", &row(&[1, 1, 1, 0, -1, -1, -1]))
            .expect("checks"),
    );
    assert_eq!(
        (ok.status, ok.location.as_str()),
        (VerdictStatus::Ok, "w[5]")
    );
    let bad = only(
        host.check("triad-checker", &row(&[1, 0, 0, -1, -1]))
            .expect("checks"),
    );
    assert_eq!(bad.status, VerdictStatus::Violated);
}

#[test]
fn tensors_are_checked_as_a_whole_and_row_by_row() {
    let mut host = host_with(&["triad-checker"]);
    // Row 0 sums to 3 (balanced), row 1 to 1, row 2 to -1: total 3, balanced.
    let tensor = TritTensor {
        name: "m".into(),
        shape: vec![3, 4],
        trits: trits(&[1, 1, 1, 0, 1, 0, 0, 0, -1, 0, 0, 0]),
    };
    let verdicts = host
        .check("triad-checker", &CheckSubject::Tensor(tensor))
        .expect("checks");
    assert_eq!(
        find(&verdicts, "gf3-balance", "m").status,
        VerdictStatus::Ok
    );
    assert_eq!(
        find(&verdicts, "gf3-row-balance", "m[1]").status,
        VerdictStatus::Violated
    );
    assert_eq!(
        find(&verdicts, "gf3-row-balance", "m[2]").status,
        VerdictStatus::Violated
    );
    assert!(
        !verdicts.iter().any(|v| v.location == "m[0]"),
        "balanced rows get no verdict"
    );
    let summary = find(&verdicts, "gf3-row-balance", "m");
    assert_eq!(summary.status, VerdictStatus::Violated);
    assert!(
        summary.message.starts_with("2 of 3 rows"),
        "{}",
        summary.message
    );

    let wrong_shape = TritTensor {
        name: "bad".into(),
        shape: vec![2, 2],
        trits: trits(&[1, 0, 0]),
    };
    let verdict = only(
        host.check("triad-checker", &CheckSubject::Tensor(wrong_shape))
            .expect("checks"),
    );
    assert_eq!(
        (verdict.check.as_str(), verdict.status),
        ("shape", VerdictStatus::Violated)
    );
}

#[test]
fn stored_tensors_are_streamed_through_the_host() {
    let mut host = host_with(&["triad-checker"]);
    let (rows, columns) = (300usize, 1000usize);
    let data = random_trits(rows * columns, 7);
    let unbalanced_rows = data
        .chunks(columns)
        .filter(|row| Trit::gf3_sum(row.iter().copied()) != 0)
        .count();
    let mut tensors = InMemoryTensors::new();
    tensors
        .insert(
            "blk.3.ffn_up",
            vec![rows as u32, columns as u32],
            data.clone(),
        )
        .expect("valid tensor");
    host.set_tensor_source(Arc::new(tensors));

    let verdicts = host
        .check(
            "triad-checker",
            &CheckSubject::StoredTensor("blk.3.ffn_up".into()),
        )
        .expect("checks");
    let whole = find(&verdicts, "gf3-balance", "blk.3.ffn_up");
    let expected = if Trit::gf3_sum(data.iter().copied()) == 0 {
        VerdictStatus::Ok
    } else {
        VerdictStatus::Violated
    };
    assert_eq!(whole.status, expected);
    let summary = find(&verdicts, "gf3-row-balance", "blk.3.ffn_up");
    assert!(
        summary
            .message
            .starts_with(&format!("{unbalanced_rows} of {rows} rows")),
        "{} (expected {unbalanced_rows})",
        summary.message
    );
    let listed = verdicts
        .iter()
        .filter(|v| v.location.starts_with("blk.3.ffn_up["))
        .count();
    assert_eq!(
        listed,
        unbalanced_rows.min(32),
        "the first unbalanced rows are listed, the rest summarised"
    );

    let missing = host
        .check("triad-checker", &CheckSubject::StoredTensor("nope".into()))
        .expect_err("no such tensor");
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn gay_tracer_traces_have_a_checkable_gf3_sum() {
    let mut host = host_with(&["gay-tracer", "triad-checker"]);
    let steps: Vec<AnnotatedStep> = (0..12)
        .map(|step| AnnotatedStep {
            step,
            annotation: host
                .trace_generation("gay-tracer", &token(step, "t"))
                .expect("traces"),
        })
        .collect();
    // Gay.jl seed 1069, indices 1..=12: trits sum to -4 ≡ 2 (mod 3).
    let verdict = only(
        host.check("triad-checker", &CheckSubject::Trace(steps.clone()))
            .expect("checks"),
    );
    assert_eq!(verdict.check, "gf3-trace");
    assert_eq!(verdict.status, VerdictStatus::Violated);
    assert_eq!(verdict.location, "steps 0..=11");
    assert!(verdict.message.contains("-4"), "{}", verdict.message);

    // Dropping the first step (trit -1) leaves -3 ≡ 0: balanced.
    let verdict = only(
        host.check("triad-checker", &CheckSubject::Trace(steps[1..].to_vec()))
            .expect("checks"),
    );
    assert_eq!(verdict.status, VerdictStatus::Ok, "{verdict:?}");
}

#[test]
fn triads_of_three_parties() {
    let mut host = host_with(&["triad-checker"]);
    let triad = |a: i8, b: i8, c: i8| {
        let party = |name: &str, value| Party {
            name: name.into(),
            trit: Trit::from_i8(value).expect("trit"),
        };
        CheckSubject::Triad(Triad {
            label: "agents".into(),
            parties: [party("minus", a), party("ergodic", b), party("plus", c)],
        })
    };
    for (a, b, c, balanced) in [
        (-1, 0, 1, true),
        (1, 1, 1, true),
        (0, 0, 0, true),
        (1, 1, 0, false),
        (-1, -1, 0, false),
    ] {
        let verdict = only(
            host.check("triad-checker", &triad(a, b, c))
                .expect("checks"),
        );
        assert_eq!(verdict.check, "balanced-triad");
        assert_eq!(
            verdict.status == VerdictStatus::Ok,
            balanced,
            "({a}, {b}, {c}): {verdict:?}"
        );
        assert_eq!(verdict.location, "agents");
    }
}

#[test]
fn check_all_asks_every_enabled_checker() {
    let mut host = host_with(&["gay-tracer", "triad-checker"]);
    let subject = CheckSubject::Layer(LayerCounts {
        layer: "l".into(),
        counts: TritCounts::default(),
    });
    let results = host.check_all(&subject);
    assert_eq!(results.len(), 1, "tracers are not asked");
    assert_eq!(results[0].0, "triad-checker");
    assert!(results[0].1.is_ok());
    host.set_enabled("triad-checker", false)
        .expect("known plugin");
    assert!(host.check_all(&subject).is_empty());
}
