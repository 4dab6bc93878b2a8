//! run_book with a scripted runner: order, replacement of outputs, stopping and keeping going.

use tritlab_workbook::{
    run_book, Block, Cell, CellResult, CellRunner, Output, RunEvent, RunOptions, Workbook,
    VERSION_LINE,
};

/// Runs cells by their source: `ok X` prints X, `fail X` fails with message X, `fail-loud X`
/// fails and reports its own error output. Records which cells it was asked to run.
#[derive(Default)]
struct Scripted {
    ran: Vec<(usize, String)>,
}

impl CellRunner for Scripted {
    fn run_cell(&mut self, cell: &Cell, index: usize) -> CellResult {
        self.ran.push((index, cell.source.clone()));
        let (verb, rest) = cell.source.split_once(' ').unwrap_or((&cell.source, ""));
        match verb {
            "ok" => CellResult::ok(vec![Output::Text(rest.to_owned())]),
            "fail" => CellResult::failed(vec![Output::Text("partial".into())], rest),
            "fail-loud" => CellResult::failed(vec![Output::Error(format!("E: {rest}"))], rest),
            _ => CellResult::ok(vec![]),
        }
    }
}

fn book() -> Workbook {
    let text = format!(
        "{VERSION_LINE}\n\n# Run me\n\n```tritlab\nok one\n```\n\n```output text\nstale\n```\n\n\
         Prose is not run.\n\n```rust id=second\nfail two\n```\n\n```tritlab\nok three\n```\n\n\
         ```output text\nold three\n```\n\n```tritlab\nfail-loud four\n```\n"
    );
    Workbook::parse(&text).unwrap()
}

fn outputs(book: &Workbook) -> Vec<Vec<Output>> {
    book.cells().map(|cell| cell.outputs.clone()).collect()
}

#[test]
fn stops_at_the_first_failure_and_reports_where_it_is() {
    let mut book = book();
    let mut runner = Scripted::default();
    let mut events = Vec::new();
    let report = run_book(&mut book, &mut runner, &RunOptions::default(), |event| {
        events.push(event)
    });

    assert_eq!(runner.ran, [(0, "ok one".into()), (1, "fail two".into())]);
    assert_eq!((report.total, report.ran), (4, 2));
    assert!(!report.is_ok() && report.stopped_early());
    assert_eq!(report.failures.len(), 1);
    let failure = &report.failures[0];
    assert_eq!((failure.number, failure.line), (2, Some(15)));
    assert_eq!(failure.to_string(), "cell 2 (second, line 15): two");

    assert_eq!(
        outputs(&book),
        [
            vec![Output::Text("one".into())],
            vec![Output::Text("partial".into()), Output::Error("two".into())],
            vec![Output::Text("old three".into())],
            vec![],
        ],
        "ran cells replaced, later cells untouched"
    );
    assert_eq!(
        events,
        [
            RunEvent::CellStarted {
                number: 1,
                total: 4,
                line: Some(5)
            },
            RunEvent::CellFinished {
                number: 1,
                ok: true
            },
            RunEvent::CellStarted {
                number: 2,
                total: 4,
                line: Some(15)
            },
            RunEvent::CellFinished {
                number: 2,
                ok: false
            },
        ]
    );
    // Prose is untouched.
    assert!(matches!(&book.blocks[2], Block::Prose(p) if p == "Prose is not run."));
}

#[test]
fn keep_going_runs_everything_and_lists_every_failure() {
    let mut book = book();
    let mut runner = Scripted::default();
    let report = run_book(
        &mut book,
        &mut runner,
        &RunOptions { keep_going: true },
        |_| {},
    );
    assert_eq!(runner.ran.len(), 4);
    assert_eq!((report.ran, report.stopped_early()), (4, false));
    let numbers: Vec<usize> = report.failures.iter().map(|f| f.number).collect();
    assert_eq!(numbers, [2, 4]);
    assert_eq!(
        outputs(&book)[2..],
        [
            vec![Output::Text("three".into())],
            // The cell reported its own error output, so no second one is added.
            vec![Output::Error("E: four".into())],
        ]
    );
}

#[test]
fn a_clean_run_replaces_every_output() {
    let mut book = Workbook::new();
    book.push_cell(Cell::command("ok a").with_outputs(vec![Output::Error("old failure".into())]));
    book.push_cell(Cell::rust("quiet").with_outputs(vec![Output::Text("old".into())]));
    let report = run_book(
        &mut book,
        &mut Scripted::default(),
        &RunOptions::default(),
        |_| {},
    );
    assert!(report.is_ok());
    assert_eq!(outputs(&book), [vec![Output::Text("a".into())], vec![]]);
    // Cells built in memory have no line; the report says so rather than inventing one.
    assert_eq!(book.cells().next().unwrap().source_line(), None);
}

#[test]
fn an_empty_book_runs_nothing() {
    let mut book = Workbook::new();
    book.push_prose("Only prose.");
    let report = run_book(
        &mut book,
        &mut Scripted::default(),
        &RunOptions::default(),
        |_| panic!("no events for prose"),
    );
    assert_eq!((report.total, report.ran, report.is_ok()), (0, 0, true));
}
