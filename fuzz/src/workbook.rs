//! Workbook helpers: an image asset for parsing, and the exporters' HTML allow-list.

use tritlab_workbook::{Image, MemoryAssets, Rendered};

/// The asset folder inputs and renders use.
pub const FOLDER: &str = "book.assets";

/// A 2×2 image, the one asset every workbook input can refer to.
pub fn sample_image() -> Image {
    Image::new(
        2,
        2,
        vec![0, 0, 0, 255, 255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 128],
    )
    .unwrap()
}

/// Assets holding [`sample_image`] at `book.assets/HASH.png`.
pub fn assets_with_sample() -> MemoryAssets {
    let image = sample_image();
    let mut assets = MemoryAssets::new();
    assets.insert(
        format!("{FOLDER}/{}.png", image.content_hash()),
        image.to_png().unwrap(),
    );
    assets
}

/// Assets holding every image of a rendered workbook, where its text says they are.
pub fn assets_of(rendered: &Rendered<'_>) -> MemoryAssets {
    let mut assets = MemoryAssets::new();
    for asset in &rendered.images {
        assets.insert(asset.path.clone(), asset.image.to_png().unwrap());
    }
    assets
}

/// The most bytes an export of `text` may take: linear in the input. Every input byte may turn
/// into an escaped entity inside an HTML fragment that the notebook then escapes again as JSON,
/// a trace token into a coloured span, a plot point into SVG; 64 bytes covers each of those.
pub fn size_bound(text: &str) -> usize {
    64 * text.len() + (64 << 10)
}

const TAGS: &[&str] = &[
    // The page and the cell frame.
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "main",
    "section",
    "div",
    "span",
    "pre",
    "code",
    "figure",
    "figcaption",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "br",
    "b",
    "img",
    // Markdown prose (pulldown-cmark).
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "em",
    "strong",
    "del",
    "ul",
    "ol",
    "li",
    "blockquote",
    "hr",
    "input",
    "sup",
    "s",
    // Inline SVG plots.
    "svg",
    "g",
    "text",
    "tspan",
    "line",
    "polyline",
    "rect",
    "circle",
    "path",
];

const ATTRIBUTES: &[&str] = &[
    "class",
    "id",
    "style",
    "lang",
    "charset",
    "name",
    "content",
    "href",
    "src",
    "alt",
    "title",
    "width",
    "height",
    "align",
    "start",
    "type",
    "disabled",
    "checked",
    "role",
    "aria-label",
    "xmlns",
    "viewbox",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "points",
    "d",
    "fill",
    "stroke",
    "stroke-width",
    "stroke-dasharray",
    "font-size",
    "font-family",
    "text-anchor",
    "dominant-baseline",
    "font-weight",
    "transform",
    "opacity",
    "fill-opacity",
    "stroke-linejoin",
    "stroke-linecap",
    "preserveaspectratio",
];

/// Whether a link or image target uses a scheme that runs nothing.
fn safe_url(attribute: &str, value: &str) -> bool {
    let cleaned: String = decode_entities(value)
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    let Some((scheme, _)) = cleaned.split_once(':') else {
        return true;
    };
    if scheme.contains(['/', '?', '#']) {
        return true;
    }
    match scheme {
        "http" | "https" | "mailto" => true,
        "data" => attribute == "src" && cleaned.starts_with("data:image/"),
        _ => false,
    }
}

/// The few entities that matter for reading a scheme: what a browser would see.
fn decode_entities(value: &str) -> String {
    value
        .replace("&colon;", ":")
        .replace("&#58;", ":")
        .replace("&#x3a;", ":")
        .replace("&#X3A;", ":")
        .replace("&amp;", "&")
}

/// Checks an exported page: every tag and attribute on the allow-list, no event handler, no
/// `url(`/`expression(` in a style attribute, safe URLs only. Text is escaped, so every `<` in
/// the page starts a tag; the only raw text element is the page's own `<style>`.
pub fn check_html(html: &str) -> Result<(), String> {
    let bytes = html.as_bytes();
    let mut at = 0;
    while let Some(found) = html[at..].find('<') {
        let start = at + found;
        let rest = &html[start + 1..];
        if rest.starts_with("!DOCTYPE html>") {
            at = start + 1;
            continue;
        }
        let closing = rest.starts_with('/');
        let name_start = start + 1 + usize::from(closing);
        let name_len = html[name_start..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let name = html[name_start..name_start + name_len].to_ascii_lowercase();
        if !TAGS.contains(&name.as_str()) {
            let end = (start + 40).min(html.len());
            let end = (end..=html.len())
                .find(|&i| html.is_char_boundary(i))
                .unwrap();
            return Err(format!(
                "tag <{name}> is not allowed at byte {start}: {:?}",
                &html[start..end]
            ));
        }
        // Attributes, up to the closing `>`.
        let mut i = name_start + name_len;
        loop {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= bytes.len() {
                return Err(format!("tag <{name}> at byte {start} is not closed"));
            }
            if bytes[i] == b'>' || html[i..].starts_with("/>") {
                break;
            }
            let attr_len = html[i..]
                .bytes()
                .take_while(|&b| !b.is_ascii_whitespace() && !b"=>/\"'<".contains(&b))
                .count();
            if attr_len == 0 {
                return Err(format!(
                    "stray {:?} in tag <{name}> at byte {i}",
                    bytes[i] as char
                ));
            }
            let attr = html[i..i + attr_len].to_ascii_lowercase();
            i += attr_len;
            let mut value = "";
            if bytes.get(i) == Some(&b'=') {
                if bytes.get(i + 1) != Some(&b'"') {
                    return Err(format!("unquoted value of {attr} in <{name}> at byte {i}"));
                }
                let value_start = i + 2;
                let Some(len) = html[value_start..].find('"') else {
                    return Err(format!("unterminated value of {attr} in <{name}>"));
                };
                value = &html[value_start..value_start + len];
                i = value_start + len + 1;
            }
            if !ATTRIBUTES.contains(&attr.as_str()) || attr.starts_with("on") {
                return Err(format!(
                    "attribute {attr}=\"{value}\" in <{name}> is not allowed"
                ));
            }
            if value.contains('<') {
                return Err(format!("raw `<` inside {attr} of <{name}>"));
            }
            if (attr == "href" || attr == "src") && !safe_url(&attr, value) {
                return Err(format!("unsafe URL {attr}=\"{value}\" in <{name}>"));
            }
            let lower = value.to_ascii_lowercase();
            if attr == "style" && (lower.contains("url(") || lower.contains("expression(")) {
                return Err(format!(
                    "style with a URL or expression in <{name}>: {value}"
                ));
            }
        }
        if name == "style" && !closing {
            // The page's stylesheet: constant CSS, no `<` inside, up to its end tag.
            let Some(end) = html[i..].find("</style>") else {
                return Err("unterminated <style>".into());
            };
            if html[i..i + end].contains('<') {
                return Err("`<` inside <style>".into());
            }
        }
        at = i;
    }
    Ok(())
}
