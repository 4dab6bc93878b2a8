//! Lifting a plugin's results out of its memory with a byte budget that is
//! charged *before* anything is copied.
//!
//! The canonical ABI lets a plugin return lists and strings that all point
//! at the same region of its memory: 100 000 labels that each alias one
//! 1 MiB buffer cost the plugin 1 MiB but would cost the host 100 GB to
//! copy. Checking sizes after wasmtime has lifted (copied) a result is too
//! late, so the host calls plugin exports through typed functions whose
//! result types use [`OutText`] and [`OutList`] instead of `String` and
//! `Vec`. Each reads the length from the guest's (pointer, length) pair,
//! charges it to the call's [`OutputBudget`], and only then copies; once
//! the budget is spent the lift fails and nothing more is copied.
//!
//! Wasmtime's lazy views ([`wasmtime::component::WasmStr`],
//! [`wasmtime::component::WasmList`]) cannot do this on their own: a typed
//! call runs the guest's post-return function (which frees the returned
//! buffers) before returning them, so their contents are no longer the
//! plugin's answer by the time the host could read them. The charge has to
//! happen during the lift, which is what these wrappers do: they implement
//! wasmtime's lifting traits by delegating to `String`/`Vec<T>` after
//! charging, through the same (hidden, version-pinned) trait items that
//! `#[derive(Lift)]` expands to.

use std::cell::Cell;

use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift, WasmList};

use crate::bindings::wit;

thread_local! {
    /// The budget of the call running on this thread: (bytes left, whether
    /// it was exceeded). `None` outside calls.
    static BUDGET: Cell<Option<(usize, bool)>> = const { Cell::new(None) };
}

/// The output budget of one guest call. Lifting happens on the calling
/// thread, inside the call, so the budget lives in a thread-local for
/// exactly as long as this guard.
pub(crate) struct OutputBudget {
    limit: usize,
    previous: Option<(usize, bool)>,
}

impl OutputBudget {
    /// Starts a budget of `limit` bytes for the results of the next call.
    pub(crate) fn arm(limit: usize) -> Self {
        let previous = BUDGET.with(|b| b.replace(Some((limit, false))));
        Self { limit, previous }
    }

    /// Whether the results were refused for exceeding the budget.
    pub(crate) fn exceeded(&self) -> bool {
        BUDGET.with(|b| b.get().is_some_and(|(_, exceeded)| exceeded))
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

impl Drop for OutputBudget {
    fn drop(&mut self) {
        BUDGET.with(|b| b.set(self.previous));
    }
}

/// Takes `bytes` from the current call's budget, failing once it is spent.
fn charge(bytes: usize) -> wasmtime::Result<()> {
    BUDGET.with(|b| match b.get() {
        None => Ok(()),
        Some((left, _)) if bytes <= left => {
            b.set(Some((left - bytes, false)));
            Ok(())
        }
        Some(_) => {
            b.set(Some((0, true)));
            Err(wasmtime::format_err!(
                "the plugin's output exceeds the host's output budget"
            ))
        }
    })
}

/// The (pointer, length) pair of a string or list in its flat form.
fn flat_len(src: &[wasmtime::ValRaw; 2]) -> usize {
    src[1].get_u32() as usize
}

/// The length of a string or list stored in memory as (pointer, length).
fn memory_len(bytes: &[u8]) -> usize {
    bytes
        .get(4..8)
        .and_then(|len| <[u8; 4]>::try_from(len).ok())
        .map_or(usize::MAX, |len| u32::from_le_bytes(len) as usize)
}

/// Code units in a string's length field: UTF-16 strings in the compact
/// encoding carry a tag bit, which is not part of the length.
fn string_units(len: usize) -> usize {
    len & !(1 << 31)
}

/// A string a plugin returned, charged to the output budget before copying.
pub(crate) struct OutText(pub(crate) String);

// SAFETY: every item forwards to `String`'s implementation, so the layout,
// ABI and type checks are exactly those of `String`.
unsafe impl ComponentType for OutText {
    type Lower = <String as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <String as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <String as ComponentType>::typecheck(ty, types)
    }
}

impl OutText {
    /// Charges what copying a string of `units` code units takes, lifts it
    /// with `lift`, then charges any bytes transcoding added.
    fn lift_charged(
        units: usize,
        lift: impl FnOnce() -> wasmtime::Result<String>,
    ) -> wasmtime::Result<Self> {
        let units = string_units(units);
        charge(units)?;
        let text = lift()?;
        charge(text.len().saturating_sub(units))?;
        Ok(Self(text))
    }
}

// SAFETY: lifting forwards to `String`'s implementation after charging the
// budget; it neither reads nor writes anything `String`'s lift would not.
unsafe impl Lift for OutText {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        Self::lift_charged(flat_len(src), || {
            <String as Lift>::linear_lift_from_flat(cx, ty, src)
        })
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        Self::lift_charged(memory_len(bytes), || {
            <String as Lift>::linear_lift_from_memory(cx, ty, bytes)
        })
    }
}

/// A list a plugin returned: its elements' fixed size is charged to the
/// output budget before any is lifted (strings and lists inside elements
/// charge themselves as they are lifted).
pub(crate) struct OutList<T>(pub(crate) Vec<T>);

// SAFETY: every item forwards to `Vec<T>`'s implementation, so the layout,
// ABI and type checks are exactly those of `Vec<T>`.
unsafe impl<T: ComponentType> ComponentType for OutList<T> {
    type Lower = <Vec<T> as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Vec<T> as ComponentType>::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Vec<T> as ComponentType>::typecheck(ty, types)
    }
}

impl<T: Lift> OutList<T> {
    fn lift_charged(cx: &mut LiftContext<'_>, list: WasmList<T>) -> wasmtime::Result<Self> {
        charge(list.len().saturating_mul(T::SIZE32.max(1)))?;
        T::linear_lift_list_from_memory(cx, &list).map(Self)
    }
}

// SAFETY: the (bounds-checked, lazy) `WasmList<T>` is lifted first, as
// `Vec<T>`'s implementation does, and its elements are lifted through the
// same `linear_lift_list_from_memory` after charging the budget.
unsafe impl<T: Lift> Lift for OutList<T> {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let list = <WasmList<T> as Lift>::linear_lift_from_flat(cx, ty, src)?;
        Self::lift_charged(cx, list)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let list = <WasmList<T> as Lift>::linear_lift_from_memory(cx, ty, bytes)?;
        Self::lift_charged(cx, list)
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutOptionSpec {
    name: OutText,
    description: OutText,
    #[component(name = "default-value")]
    default_value: OutText,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutPluginInfo {
    name: OutText,
    version: OutText,
    kind: wit::PluginKind,
    description: OutText,
    options: OutList<OutOptionSpec>,
}

impl From<OutPluginInfo> for wit::PluginInfo {
    fn from(info: OutPluginInfo) -> Self {
        wit::PluginInfo {
            name: info.name.0,
            version: info.version.0,
            kind: info.kind,
            description: info.description.0,
            options: info
                .options
                .0
                .into_iter()
                .map(|o| wit::OptionSpec {
                    name: o.name.0,
                    description: o.description.0,
                    default_value: o.default_value.0,
                })
                .collect(),
        }
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutAnnotation {
    colour: wit::Rgba,
    trit: i8,
    label: OutText,
}

impl From<OutAnnotation> for wit::Annotation {
    fn from(annotation: OutAnnotation) -> Self {
        wit::Annotation {
            colour: annotation.colour,
            trit: annotation.trit,
            label: annotation.label.0,
        }
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutVerdict {
    check: OutText,
    status: wit::VerdictStatus,
    message: OutText,
    location: OutText,
}

impl From<OutVerdict> for wit::Verdict {
    fn from(verdict: OutVerdict) -> Self {
        wit::Verdict {
            check: verdict.check.0,
            status: verdict.status,
            message: verdict.message.0,
            location: verdict.location.0,
        }
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutImage {
    title: OutText,
    width: u32,
    height: u32,
    rgba: OutList<u8>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutPlotSeries {
    name: OutText,
    points: OutList<wit::Point>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct OutPlot {
    title: OutText,
    #[component(name = "x-label")]
    x_label: OutText,
    #[component(name = "y-label")]
    y_label: OutText,
    style: wit::PlotStyle,
    series: OutList<OutPlotSeries>,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum OutVisual {
    #[component(name = "image")]
    Image(OutImage),
    #[component(name = "plot")]
    Plot(OutPlot),
}

impl From<OutVisual> for wit::Visual {
    fn from(visual: OutVisual) -> Self {
        match visual {
            OutVisual::Image(image) => wit::Visual::Image(wit::Image {
                title: image.title.0,
                width: image.width,
                height: image.height,
                rgba: image.rgba.0,
            }),
            OutVisual::Plot(plot) => wit::Visual::Plot(wit::Plot {
                title: plot.title.0,
                x_label: plot.x_label.0,
                y_label: plot.y_label.0,
                style: plot.style,
                series: plot
                    .series
                    .0
                    .into_iter()
                    .map(|s| wit::PlotSeries {
                        name: s.name.0,
                        points: s.points.0,
                    })
                    .collect(),
            }),
        }
    }
}

/// A plugin's `result<T, string>`: the error string, copied within budget.
pub(crate) fn reply<O, T: From<O>>(reply: Result<O, OutText>) -> Result<T, String> {
    reply.map(T::from).map_err(|e| e.0)
}

/// A plugin's `result<list<T>, string>`.
pub(crate) fn list_reply<O, T: From<O>>(
    reply: Result<OutList<O>, OutText>,
) -> Result<Vec<T>, String> {
    reply
        .map(|list| list.0.into_iter().map(T::from).collect())
        .map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_once_spent_and_is_scoped_to_its_guard() {
        assert!(charge(usize::MAX).is_ok(), "no budget outside calls");
        let budget = OutputBudget::arm(10);
        assert!(charge(6).is_ok());
        assert!(!budget.exceeded());
        assert!(charge(5).is_err());
        assert!(budget.exceeded());
        assert!(charge(0).is_ok(), "nothing left, but nothing asked");
        assert_eq!(budget.limit(), 10);
        drop(budget);
        assert!(charge(usize::MAX).is_ok());
    }

    #[test]
    fn lengths_are_read_from_the_pointer_length_pair() {
        assert_eq!(memory_len(&[0, 0, 0, 0, 5, 0, 0, 0]), 5);
        assert_eq!(
            memory_len(&[0, 0]),
            usize::MAX,
            "short input is over any budget"
        );
        assert_eq!(string_units((1 << 31) | 7), 7);
    }
}
