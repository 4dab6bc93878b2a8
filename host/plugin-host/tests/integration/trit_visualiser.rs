//! Contract tests of the bundled `trit-visualiser` through the real host.

use crate::common;

use std::sync::Arc;

use common::{host_with, random_trits, trits};
use tritlab_plugin_host::{
    Image, InMemoryTensors, Plot, PlotStyle, Rgba, Series, Trit, TritCounts, TritTensor, Visual,
    VisualInput,
};

const NEGATIVE: Rgba = Rgba {
    r: 0x3B,
    g: 0x6E,
    b: 0xE6,
    a: 0xFF,
};
const ZERO: Rgba = Rgba {
    r: 0x24,
    g: 0x24,
    b: 0x28,
    a: 0xFF,
};
const POSITIVE: Rgba = Rgba {
    r: 0xE6,
    g: 0x7E,
    b: 0x22,
    a: 0xFF,
};

fn split(visuals: Vec<Visual>) -> (Image, Plot) {
    match <[Visual; 2]>::try_from(visuals) {
        Ok([Visual::Image(image), Visual::Plot(plot)]) => (image, plot),
        Ok(other) => panic!("expected an image and a plot, got {other:?}"),
        Err(visuals) => panic!("expected two visuals, got {}", visuals.len()),
    }
}

fn histogram_counts(plot: &Plot) -> TritCounts {
    assert_eq!(plot.style, PlotStyle::Bars);
    let points = &plot.series[0].points;
    let xs: Vec<f32> = points.iter().map(|p| p.x).collect();
    assert_eq!(xs, [-1.0, 0.0, 1.0]);
    TritCounts {
        neg: points[0].y as u64,
        zero: points[1].y as u64,
        pos: points[2].y as u64,
    }
}

#[test]
fn small_matrix_is_drawn_one_pixel_per_trit() {
    let mut host = host_with(&["trit-visualiser"]);
    let values = [1, 0, -1, -1, 1, 1];
    let tensor = TritTensor {
        name: "w".into(),
        shape: vec![2, 3],
        trits: trits(&values),
    };
    let (image, plot) = split(
        host.render("trit-visualiser", &VisualInput::Tensor(tensor))
            .expect("renders"),
    );
    assert_eq!((image.width, image.height), (3, 2));
    for (i, &value) in values.iter().enumerate() {
        let expected = match value {
            -1 => NEGATIVE,
            0 => ZERO,
            _ => POSITIVE,
        };
        assert_eq!(
            image.pixel(i as u32 % 3, i as u32 / 3),
            Some(expected),
            "trit {i}"
        );
    }
    assert_eq!(
        histogram_counts(&plot),
        TritCounts {
            neg: 2,
            zero: 1,
            pos: 3
        }
    );
}

#[test]
fn large_matrix_is_downsampled_to_block_balance() {
    let mut host = host_with(&["trit-visualiser"]);
    let (rows, columns) = (1024usize, 1536usize);
    // Left third all -1, middle third balanced (alternating), right third all +1.
    let data: Vec<Trit> = (0..rows * columns)
        .map(|i| {
            let (row, column) = (i / columns, i % columns);
            match column * 3 / columns {
                0 => Trit::Negative,
                1 if (row + column) % 2 == 0 => Trit::Negative,
                1 => Trit::Positive,
                _ => Trit::Positive,
            }
        })
        .collect();
    let counts = TritCounts::of(&data);
    let tensor = TritTensor {
        name: "big".into(),
        shape: vec![rows as u32, columns as u32],
        trits: data,
    };
    let (image, plot) = split(
        host.render("trit-visualiser", &VisualInput::Tensor(tensor))
            .expect("renders"),
    );
    assert!(
        image.width <= 512 && image.height <= 512,
        "{}×{}",
        image.width,
        image.height
    );
    assert_eq!((image.width, image.height), (512, 512));
    assert!(image.title.contains("blocks"), "{}", image.title);
    assert_eq!(image.pixel(10, 10), Some(NEGATIVE));
    assert_eq!(
        image.pixel(256, 300),
        Some(ZERO),
        "balanced blocks are drawn in the zero colour"
    );
    assert_eq!(image.pixel(500, 500), Some(POSITIVE));
    assert_eq!(histogram_counts(&plot), counts);
}

#[test]
fn stored_tensor_is_read_through_the_host() {
    let mut host = host_with(&["trit-visualiser"]);
    let data = random_trits(200 * 300, 11);
    let counts = TritCounts::of(&data);
    let mut tensors = InMemoryTensors::new();
    tensors
        .insert("blk.0.ffn_down", vec![200, 300], data)
        .expect("valid tensor");
    host.set_tensor_source(Arc::new(tensors));
    let (image, plot) = split(
        host.render(
            "trit-visualiser",
            &VisualInput::StoredTensor("blk.0.ffn_down".into()),
        )
        .expect("renders"),
    );
    assert_eq!((image.width, image.height), (300, 200));
    assert_eq!(histogram_counts(&plot), counts);
}

#[test]
fn series_becomes_a_line_plot() {
    let mut host = host_with(&["trit-visualiser"]);
    let series = Series {
        name: "loss".into(),
        values: vec![3.0, 2.5, f32::NAN, 1.75],
    };
    let visuals = host
        .render("trit-visualiser", &VisualInput::Series(series))
        .expect("renders");
    let [Visual::Plot(plot)] = visuals.as_slice() else {
        panic!("expected one plot, got {visuals:?}")
    };
    assert_eq!(plot.style, PlotStyle::Line);
    let points: Vec<(f32, f32)> = plot.series[0].points.iter().map(|p| (p.x, p.y)).collect();
    assert_eq!(
        points,
        [(0.0, 3.0), (1.0, 2.5), (3.0, 1.75)],
        "non-finite values are skipped"
    );
}

#[test]
fn inconsistent_shape_is_refused_in_an_orderly_way() {
    let mut host = host_with(&["trit-visualiser"]);
    let tensor = TritTensor {
        name: "w".into(),
        shape: vec![4, 4],
        trits: trits(&[1, 0]),
    };
    let err = host
        .render("trit-visualiser", &VisualInput::Tensor(tensor))
        .expect_err("refused");
    assert!(!err.is_fault(), "{err}");
    assert!(
        err.to_string().contains("trit-visualiser")
            && err.to_string().contains("visualiser.render"),
        "{err}"
    );
}
