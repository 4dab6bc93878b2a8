//! `trit-visualiser`: draws weight matrices and series.
//!
//! A tensor becomes an image (one pixel per trit: -1 blue, 0 dark grey,
//! +1 orange) and a trit histogram. Matrices larger than the image budget are
//! downsampled into blocks; each block's pixel shows the block's balance, the
//! mean of its trits, blending from blue (all -1) through grey (balanced) to
//! orange (all +1). A series (loss, flips per step) becomes a line plot.

wit_bindgen::generate!({
    path: "../../wit",
    world: "visualiser-plugin",
});

use exports::tritlab::plugin::plugin::Guest as PluginGuest;
use exports::tritlab::plugin::visualiser::Guest as VisualiserGuest;
use tritlab::plugin::host::{list_tensors, read_trits};
use tritlab::plugin::types::{
    Image, OptionValue, Plot, PlotSeries, PlotStyle, PluginInfo, PluginKind, Point, RenderRequest,
    Series, Visual, VisualInput,
};

/// Longest image side drawn, whatever the host allows: beyond this a
/// weight image stops being readable and only costs memory.
const MAX_SIDE: u32 = 512;
/// Trits requested per `read-trits` call.
const READ_CHUNK: u32 = 1 << 16;
/// Largest stored tensor read, in trits (64 Mi), to bound plugin memory.
const MAX_STORED_TRITS: u64 = 1 << 26;

const NEGATIVE: [f32; 3] = [0x3B as f32, 0x6E as f32, 0xE6 as f32];
const ZERO: [f32; 3] = [0x24 as f32, 0x24 as f32, 0x28 as f32];
const POSITIVE: [f32; 3] = [0xE6 as f32, 0x7E as f32, 0x22 as f32];

struct TritVisualiser;

/// Colour for a balance in [-1, 1]: linear blend through the zero colour.
fn balance_colour(balance: f32) -> [u8; 4] {
    let (from, to, t) = if balance < 0.0 {
        (ZERO, NEGATIVE, -balance)
    } else {
        (ZERO, POSITIVE, balance)
    };
    let t = t.clamp(0.0, 1.0);
    let mix = |i: usize| (from[i] + (to[i] - from[i]) * t).round() as u8;
    [mix(0), mix(1), mix(2), 0xFF]
}

/// Rows and columns of a shape, treating the first axis as rows (a vector is one row).
fn rows_and_columns(shape: &[u32]) -> Result<(u32, u32), String> {
    match shape {
        [] => Err("tensor has an empty shape".into()),
        [columns] => Ok((1, *columns)),
        [rows, rest @ ..] => {
            let columns = rest
                .iter()
                .try_fold(1u32, |acc, &d| acc.checked_mul(d))
                .ok_or("tensor's columns overflow u32")?;
            Ok((*rows, columns))
        }
    }
}

fn tensor_visuals(
    name: &str,
    shape: &[u32],
    trits: &[i8],
    request: &RenderRequest,
) -> Result<Vec<Visual>, String> {
    let (rows, columns) = rows_and_columns(shape)?;
    let expected = u64::from(rows) * u64::from(columns);
    if expected != trits.len() as u64 {
        return Err(format!(
            "tensor `{name}`: shape holds {expected} trits but {} were given",
            trits.len()
        ));
    }
    if let Some(bad) = trits.iter().find(|t| !(-1..=1).contains(*t)) {
        return Err(format!("tensor `{name}` holds {bad}, which is not a trit"));
    }
    if rows == 0 || columns == 0 {
        return Err(format!("tensor `{name}` is empty"));
    }
    let max_width = request.max_width.min(MAX_SIDE).max(1);
    let max_height = request.max_height.min(MAX_SIDE).max(1);
    let block_w = columns.div_ceil(max_width);
    let block_h = rows.div_ceil(max_height);
    let width = columns.div_ceil(block_w);
    let height = rows.div_ceil(block_h);

    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for by in 0..height {
        for bx in 0..width {
            let (mut sum, mut count) = (0i64, 0i64);
            for y in by * block_h..((by + 1) * block_h).min(rows) {
                let start = (y as usize) * (columns as usize);
                let row = &trits[start..start + columns as usize];
                for &t in
                    &row[(bx * block_w) as usize..(((bx + 1) * block_w).min(columns)) as usize]
                {
                    sum += i64::from(t);
                    count += 1;
                }
            }
            rgba.extend_from_slice(&balance_colour(sum as f32 / count.max(1) as f32));
        }
    }
    let title = if block_w == 1 && block_h == 1 {
        format!("{name} ({rows}×{columns})")
    } else {
        format!("{name} ({rows}×{columns}, {block_h}×{block_w} blocks, colour = block balance)")
    };
    let image = Visual::Image(Image {
        title,
        width,
        height,
        rgba,
    });
    Ok(vec![image, histogram(name, trits)])
}

fn histogram(name: &str, trits: &[i8]) -> Visual {
    let mut counts = [0u64; 3];
    for &t in trits {
        counts[(t + 1) as usize] += 1;
    }
    let points = (-1i8..=1)
        .zip(counts)
        .map(|(trit, count)| Point {
            x: f32::from(trit),
            y: count as f32,
        })
        .collect();
    Visual::Plot(Plot {
        title: format!("trit histogram of {name}"),
        x_label: "trit".into(),
        y_label: "count".into(),
        style: PlotStyle::Bars,
        series: vec![PlotSeries {
            name: name.into(),
            points,
        }],
    })
}

fn read_stored(name: &str) -> Result<(Vec<u32>, Vec<i8>), String> {
    let info = list_tensors()
        .into_iter()
        .find(|info| info.name == name)
        .ok_or_else(|| format!("the host serves no tensor named `{name}`"))?;
    let len = info
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .unwrap_or(u64::MAX);
    if len > MAX_STORED_TRITS {
        return Err(format!(
            "tensor `{name}` has {len} trits; at most {MAX_STORED_TRITS} are drawn"
        ));
    }
    let mut trits = Vec::with_capacity(len as usize);
    while (trits.len() as u64) < len {
        let want = READ_CHUNK.min((len - trits.len() as u64) as u32);
        let chunk = read_trits(name, trits.len() as u64, want)?;
        if chunk.is_empty() {
            return Err(format!(
                "tensor `{name}` ended after {} of {len} trits",
                trits.len()
            ));
        }
        trits.extend_from_slice(&chunk);
    }
    Ok((info.shape, trits))
}

fn series_plot(series: &Series) -> Visual {
    let points = series
        .values
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, &y)| Point { x: i as f32, y })
        .collect();
    Visual::Plot(Plot {
        title: series.name.clone(),
        x_label: "step".into(),
        y_label: series.name.clone(),
        style: PlotStyle::Line,
        series: vec![PlotSeries {
            name: series.name.clone(),
            points,
        }],
    })
}

impl PluginGuest for TritVisualiser {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "trit-visualiser".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Visualiser,
            description: "Draws a weight matrix as an image (downsampled to block balance) and a trit histogram."
                .into(),
            options: Vec::new(),
        }
    }

    fn configure(options: Vec<OptionValue>) -> Result<(), String> {
        match options.first() {
            Some(option) => Err(format!(
                "trit-visualiser takes no options (got `{}`)",
                option.name
            )),
            None => Ok(()),
        }
    }
}

impl VisualiserGuest for TritVisualiser {
    fn render(request: RenderRequest) -> Result<Vec<Visual>, String> {
        match &request.input {
            VisualInput::Tensor(tensor) => {
                tensor_visuals(&tensor.name, &tensor.shape, &tensor.trits, &request)
            }
            VisualInput::StoredTensor(name) => {
                let (shape, trits) = read_stored(name)?;
                tensor_visuals(name, &shape, &trits, &request)
            }
            VisualInput::Series(series) => Ok(vec![series_plot(series)]),
        }
    }
}

export!(TritVisualiser);
