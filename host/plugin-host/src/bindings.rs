//! Host-side bindings generated from `wit/tritlab-plugin.wit`.
//!
//! One module per world. The checker and visualiser bindings reuse the
//! tracer module's `types` and `host` interfaces, so the three worlds share
//! one set of Rust types and one implementation of the host imports.

pub(crate) mod tracer {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tracer-plugin",
    });
}

pub(crate) mod checker {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "checker-plugin",
        with: {
            "tritlab:plugin/types": crate::bindings::tracer::tritlab::plugin::types,
            "tritlab:plugin/host": crate::bindings::tracer::tritlab::plugin::host,
        },
    });
}

pub(crate) mod visualiser {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "visualiser-plugin",
        with: {
            "tritlab:plugin/types": crate::bindings::tracer::tritlab::plugin::types,
            "tritlab:plugin/host": crate::bindings::tracer::tritlab::plugin::host,
        },
    });
}

/// The WIT types, shared by all three worlds.
pub(crate) use tracer::tritlab::plugin::types as wit;
