//! The HTML exporter: one self-contained page (inline CSS, images as data URLs, plots as inline
//! SVG, no scripts), and the per-output fragments the Jupyter exporter reuses.
//!
//! Everything from the workbook is escaped, prose included: raw HTML in prose is shown as text and
//! links with schemes other than http, https and mailto are dropped, so a workbook from anyone
//! exports to a page that runs nothing.

use base64::Engine as _;
use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::book::{Block, Cell, Workbook};
use crate::export::escape::html as esc;
use crate::export::svg::plot_svg;
use crate::export::{BoundedString, Budget, ExportError, ExportFormat};
use crate::image::Image;
use crate::output::{Output, Table, Trace, TraceToken};

/// Images narrower than this are shown enlarged by a whole factor, pixelated: trit maps are often
/// a few dozen pixels wide.
const MIN_IMAGE_DISPLAY_WIDTH: u32 = 256;

const STYLE: &str = "\
:root{--ink:#1f2328;--muted:#5b6570;--paper:#fcfcfa;--panel:#f3f4f6;--rule:#dadde2;\
--error:#b42318;--error-bg:#fef3f2}\
*{box-sizing:border-box}\
body{margin:0;background:var(--paper);color:var(--ink);\
font:16px/1.65 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",sans-serif}\
main{max-width:52rem;margin:0 auto;padding:2.5rem 1.25rem 5rem}\
h1,h2,h3,h4{line-height:1.25;margin:2rem 0 .75rem}\
h1{font-size:2rem;margin-top:0}\
a{color:#0b57d0}\
img{max-width:100%}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875rem}\
:not(pre)>code{background:var(--panel);padding:.1em .35em;border-radius:4px}\
pre{margin:0;padding:.75rem 1rem;overflow-x:auto;line-height:1.5}\
.prose pre{background:var(--panel);border-radius:6px}\
blockquote{margin:1rem 0;padding:0 1rem;color:var(--muted);border-left:3px solid var(--rule)}\
.cell{margin:1.5rem 0;border:1px solid var(--rule);border-radius:8px;background:#fff;overflow:hidden}\
.cell-head{display:flex;justify-content:space-between;padding:.2rem 1rem;font-size:.75rem;\
color:var(--muted);background:var(--panel);border-bottom:1px solid var(--rule)}\
.cell-source{background:var(--panel)}\
.cell-outputs{border-top:1px solid var(--rule);padding:.5rem 0}\
.output{margin:.5rem 1rem;overflow-x:auto}\
pre.output{padding:0}\
figcaption{font-size:.8rem;color:var(--muted);margin:0 0 .25rem}\
.output-error{color:var(--error);background:var(--error-bg);border-left:3px solid var(--error);\
padding:.5rem .75rem;border-radius:0 4px 4px 0}\
table{border-collapse:collapse;font-size:.875rem;font-variant-numeric:tabular-nums}\
th,td{border:1px solid var(--rule);padding:.3rem .6rem;text-align:left;vertical-align:top}\
th{background:var(--panel)}\
.output-image img{border:1px solid var(--rule)}\
.output-plot svg{max-width:100%;height:auto}";

/// The whole workbook as one self-contained HTML page.
///
/// A workbook whose page would pass the export bound (see [`crate::ExportError`]) gets a short
/// page that says so instead; [`try_to_html`] returns the error.
pub fn to_html(book: &Workbook) -> String {
    try_to_html(book).unwrap_or_else(|error| {
        page_start("tritlab workbook: not exported")
            + &format!(
                "<pre class=\"output output-error\">{}</pre>\n</main>\n</body>\n</html>\n",
                esc(&error.to_string())
            )
    })
}

/// The whole workbook as one self-contained HTML page, or [`ExportError::TooLarge`] as soon as
/// the page would pass the export bound.
pub fn try_to_html(book: &Workbook) -> Result<String, ExportError> {
    let budget = Budget::new(book, ExportFormat::Html);
    let title = book_title(book).unwrap_or_else(|| "tritlab workbook".to_owned());
    let mut page = page_start(&title);
    let mut number = 0;
    for block in &book.blocks {
        match block {
            Block::Prose(markdown) => {
                page.push_str("<div class=\"prose\">\n");
                push_prose_html(&mut page, markdown, budget.left(0))
                    .map_err(|_| budget.exceeded())?;
                page.push_str("</div>\n");
            }
            Block::Cell(cell) => {
                number += 1;
                page.push_str(&cell_html(cell, number));
            }
        }
        // Every block renders to a constant multiple of its size except prose, which is bounded
        // as it renders, so checking between blocks keeps the page within the bound plus one
        // block.
        budget.check(page.len())?;
    }
    page.push_str("</main>\n</body>\n</html>\n");
    budget.check(page.len())?;
    Ok(page)
}

fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"tritlab\">\n<title>{}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n",
        esc(title)
    )
}

fn cell_html(cell: &Cell, number: usize) -> String {
    let anchor = cell
        .id
        .as_ref()
        .map(|id| format!(" id=\"{}\"", esc(id.as_str())))
        .unwrap_or_default();
    let language = cell.kind.info_word();
    let mut html = format!(
        "<section class=\"cell\"{anchor}>\n<div class=\"cell-head\"><span>{language}</span>\
         <span>[{number}]</span></div>\n<pre class=\"cell-source\"><code class=\"language-{language}\">{}</code></pre>\n",
        esc(&cell.source)
    );
    if !cell.outputs.is_empty() {
        html.push_str("<div class=\"cell-outputs\">\n");
        for output in &cell.outputs {
            html.push_str(&output_html(output));
            html.push('\n');
        }
        html.push_str("</div>\n");
    }
    html.push_str("</section>\n");
    html
}

/// One output as an HTML fragment, styled inline where the look matters (token colours, image
/// scaling) so it reads the same outside the exported page, e.g. in Jupyter.
pub fn output_html(output: &Output) -> String {
    match output {
        Output::Text(text) => format!("<pre class=\"output output-text\">{}</pre>", esc(text)),
        Output::Error(message) => {
            format!("<pre class=\"output output-error\">{}</pre>", esc(message))
        }
        Output::Trace(trace) => format!(
            "<figure class=\"output output-trace\">{}{}</figure>",
            caption(trace.title.as_deref()),
            trace_html(trace)
        ),
        Output::Table(table) => format!(
            "<figure class=\"output output-table\">{}{}</figure>",
            caption(table.title.as_deref()),
            table_html(table)
        ),
        Output::Plot(plot) => format!(
            "<figure class=\"output output-plot\">{}</figure>",
            plot_svg(plot)
        ),
        Output::Image(image) => image_html(image),
    }
}

fn caption(title: Option<&str>) -> String {
    title
        .map(|title| format!("<figcaption>{}</figcaption>", esc(title)))
        .unwrap_or_default()
}

/// A trace's tokens on one line of HTML (newlines in tokens become `<br>`), so the fragment can
/// also stand as a single HTML block inside Markdown.
pub(crate) fn trace_html(trace: &Trace) -> String {
    let mut html = String::from(
        "<div class=\"trace\" style=\"white-space:pre-wrap;font-family:ui-monospace,Menlo,Consolas,monospace;line-height:1.9\">",
    );
    for token in &trace.tokens {
        html.push_str(&token_html(token));
    }
    html.push_str("</div>");
    html
}

fn token_html(token: &TraceToken) -> String {
    let text = esc(&token.text).replace('\n', "<br>");
    let mut tooltip = Vec::new();
    if let Some(trit) = token.trit {
        tooltip.push(format!("trit {trit}"));
    }
    if let Some(note) = &token.note {
        tooltip.push(note.clone());
    }
    if token.rgb.is_none() && tooltip.is_empty() {
        return text;
    }
    let mut span = String::from("<span");
    if let Some(rgb) = token.rgb {
        span.push_str(&format!(
            " style=\"background:{rgb};color:{};border-radius:2px\"",
            rgb.contrasting_text()
        ));
    }
    if !tooltip.is_empty() {
        span.push_str(&format!(" title=\"{}\"", esc(&tooltip.join(" · "))));
    }
    span.push('>');
    span.push_str(&text);
    span.push_str("</span>");
    span
}

/// Short rows lacking at most this many cells are padded cell by cell; longer gaps get one
/// spanning cell.
const MAX_PADDED_CELLS: usize = 16;

/// A table as HTML. A row shorter than the widest is padded with empty cells, or, when many are
/// missing, closed with one empty cell spanning them: padding cell by cell would make one wide
/// row and many short ones quadratic (a 1 MB table of 100 000 empty rows under one
/// 100 000-column row would need 90 GB).
fn table_html(table: &Table) -> String {
    let width = table.width();
    let row = |cells: &[String], tag: &str| {
        let mut html = String::from("<tr>");
        for cell in cells {
            html.push_str(&format!("<{tag}>{}</{tag}>", esc(cell)));
        }
        match width.saturating_sub(cells.len()) {
            missing if missing <= MAX_PADDED_CELLS => {
                for _ in 0..missing {
                    html.push_str(&format!("<{tag}></{tag}>"));
                }
            }
            missing => html.push_str(&format!("<{tag} colspan=\"{missing}\"></{tag}>")),
        }
        html.push_str("</tr>");
        html
    };
    let mut html = String::from("<table>");
    if !table.columns.is_empty() {
        html.push_str(&format!("<thead>{}</thead>", row(&table.columns, "th")));
    }
    html.push_str("<tbody>");
    for cells in &table.rows {
        html.push_str(&row(cells, "td"));
    }
    html.push_str("</tbody></table>");
    html
}

fn image_html(image: &Image) -> String {
    let png = match image.to_png() {
        Ok(png) => png,
        Err(error) => {
            return format!(
                "<pre class=\"output output-error\">cannot encode image: {}</pre>",
                esc(&error.to_string())
            )
        }
    };
    let scale = (MIN_IMAGE_DISPLAY_WIDTH / image.width()).max(1);
    let alt = image.title().unwrap_or("image");
    format!(
        "<figure class=\"output output-image\">{}<img src=\"data:image/png;base64,{}\" \
         width=\"{}\" height=\"{}\" alt=\"{}\" style=\"image-rendering:pixelated;max-width:100%;height:auto\"></figure>",
        caption(image.title()),
        base64::engine::general_purpose::STANDARD.encode(png),
        u64::from(image.width()) * u64::from(scale),
        u64::from(image.height()) * u64::from(scale),
        esc(alt)
    )
}

fn markdown_options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
}

/// Appends Markdown prose as HTML to `html`, with raw HTML shown as text and unsafe link targets
/// removed. Fails, leaving `html` at most `limit` bytes long, once it would grow past `limit`.
/// Prose does expand in places (each `>` of a nested quote is a `<blockquote>` pair, a reference
/// link repeats its target; pulldown-cmark caps the latter at about the text's length), and the
/// limit keeps whatever else expands from going further.
pub(crate) fn push_prose_html(html: &mut String, markdown: &str, limit: usize) -> Result<(), ()> {
    let events = Parser::new_ext(markdown, markdown_options()).map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Link {
            link_type,
            dest_url: safe_url(dest_url, false),
            title,
            id,
        }),
        Event::Start(Tag::Image {
            link_type,
            dest_url,
            title,
            id,
        }) => Event::Start(Tag::Image {
            link_type,
            dest_url: safe_url(dest_url, true),
            title,
            id,
        }),
        other => other,
    });
    let mut out = BoundedString {
        text: html,
        limit,
        overflowed: false,
    };
    let written = pulldown_cmark::html::write_html_fmt(&mut out, events);
    if out.overflowed || written.is_err() {
        Err(())
    } else {
        Ok(())
    }
}

/// `url` if it is relative or uses a harmless scheme, else `#`. Browsers ignore whitespace and
/// control characters inside a scheme, so they are ignored here too.
fn safe_url(url: CowStr<'_>, image: bool) -> CowStr<'_> {
    let cleaned: String = url
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let scheme = cleaned
        .split_once(':')
        .map(|(scheme, _)| scheme)
        .filter(|scheme| !scheme.contains(['/', '?', '#']));
    let safe = match scheme {
        None => true,
        Some("http" | "https" | "mailto") => true,
        Some("data") => {
            image
                && [
                    "data:image/png",
                    "data:image/jpeg",
                    "data:image/gif",
                    "data:image/webp",
                ]
                .iter()
                .any(|prefix| cleaned.starts_with(prefix))
        }
        Some(_) => false,
    };
    if safe {
        url
    } else {
        CowStr::Borrowed("#")
    }
}

/// The text of the first level-1 heading in the prose, for the page title.
pub(crate) fn book_title(book: &Workbook) -> Option<String> {
    book.blocks.iter().find_map(|block| {
        let Block::Prose(markdown) = block else {
            return None;
        };
        let mut title: Option<String> = None;
        for event in Parser::new_ext(markdown, markdown_options()) {
            match (&mut title, event) {
                (
                    None,
                    Event::Start(Tag::Heading {
                        level: HeadingLevel::H1,
                        ..
                    }),
                ) => title = Some(String::new()),
                (Some(text), Event::Text(part) | Event::Code(part)) => text.push_str(&part),
                (Some(text), Event::End(TagEnd::Heading(_))) => {
                    return Some(text.trim().to_owned()).filter(|t| !t.is_empty())
                }
                _ => {}
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Rgb, Trit};

    fn prose_html(markdown: &str) -> String {
        let mut html = String::new();
        push_prose_html(&mut html, markdown, usize::MAX).unwrap();
        html
    }

    #[test]
    fn short_rows_are_padded_or_get_one_spanning_cell() {
        let width = MAX_PADDED_CELLS + 2;
        let table = Table {
            title: None,
            columns: vec!["a".into()],
            rows: vec![vec!["1".into(); width], vec!["x".into(), "y".into()]],
        };
        let html = table_html(&table);
        assert!(html.starts_with(&format!(
            "<table><thead><tr><th>a</th><th colspan=\"{}\"></th></tr></thead>",
            width - 1
        )));
        assert!(html.ends_with(&format!(
            "<tr><td>x</td><td>y</td>{}</tr></tbody></table>",
            "<td></td>".repeat(MAX_PADDED_CELLS)
        )));
    }

    #[test]
    fn prose_stops_at_its_limit() {
        let markdown = "*word* ".repeat(10_000);
        assert!(prose_html(&markdown).len() > 100_000);
        let mut html = String::from("<div>");
        assert!(push_prose_html(&mut html, &markdown, 10_000).is_err());
        assert!(html.len() <= 10_000 && html.starts_with("<div><p><em>word</em>"));
    }

    #[test]
    fn tokens_get_contrasting_text_and_a_tooltip() {
        let token = TraceToken {
            text: "<b>".into(),
            rgb: Some(Rgb([255, 255, 0])),
            trit: Some(Trit::Negative),
            note: Some("a \"note\"".into()),
        };
        assert_eq!(
            token_html(&token),
            "<span style=\"background:#ffff00;color:#000000;border-radius:2px\" \
             title=\"trit -1 · a &quot;note&quot;\">&lt;b&gt;</span>"
        );
        assert_eq!(token_html(&TraceToken::plain("a\nb")), "a<br>b");
    }

    #[test]
    fn prose_html_shows_raw_html_as_text_and_drops_unsafe_links() {
        let html = prose_html(
            "<script>alert(1)</script>\n\nx <b>y</b> [a](javascript:alert(1)) [b](https://x.org) \
             [c](java\u{0}script:1) ![i](data:image/png;base64,AA) ![j](data:text/html,x)",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;y&lt;/b&gt;"), "{html}");
        assert!(!html.contains("javascript"), "{html}");
        assert!(html.contains("href=\"https://x.org\""), "{html}");
        assert!(html.contains("src=\"data:image/png;base64,AA\""), "{html}");
        assert!(!html.contains("data:text/html"), "{html}");
    }

    #[test]
    fn ragged_tables_are_padded() {
        let table = Table {
            title: None,
            columns: vec!["a".into()],
            rows: vec![vec!["1".into(), "<2>".into()]],
        };
        assert_eq!(
            table_html(&table),
            "<table><thead><tr><th>a</th><th></th></tr></thead><tbody><tr><td>1</td><td>&lt;2&gt;</td></tr></tbody></table>"
        );
    }

    #[test]
    fn small_images_are_enlarged_by_a_whole_factor() {
        let image = Image::new(10, 2, vec![0; 80]).unwrap();
        let html = image_html(&image);
        assert!(html.contains("width=\"250\" height=\"50\""), "{html}");
        assert!(
            html.contains("src=\"data:image/png;base64,iVBORw0KGgo"),
            "{html}"
        );
    }

    #[test]
    fn the_title_comes_from_the_first_h1() {
        let mut book = Workbook::new();
        book.push_prose("Intro\n\n## Not this\n\n# The `tour` & more");
        assert_eq!(book_title(&book).as_deref(), Some("The tour & more"));
    }
}
