//! The standard plugin folders: bundled first, then the user's.
//!
//! In its own test binary because it sets `TRITLAB_PLUGIN_HOME`, which no
//! other test may observe.

mod common;

use common::{bundled, hostile, plugin_dir, temp_dir};
use tritlab_plugin_host::{HostConfig, LoadError, PluginHost};

#[test]
fn user_plugins_load_after_the_bundled_ones() {
    let user = temp_dir("user-plugins");
    std::fs::copy(hostile("trap"), user.join("my-own.wasm")).expect("copy");
    std::fs::copy(bundled("gay-tracer"), user.join("gay-tracer.wasm")).expect("copy");
    std::fs::write(user.join("notes.txt"), "not a plugin").expect("write");
    std::env::set_var("TRITLAB_PLUGIN_HOME", &user);
    assert_eq!(tritlab_plugin_host::user_plugin_dir(), Some(user.clone()));

    let mut host = PluginHost::new(HostConfig::default()).expect("host starts");
    let results = host.load_standard_dirs(plugin_dir());
    let bundled_count = std::fs::read_dir(plugin_dir())
        .expect("plugin dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        })
        .count();
    assert_eq!(
        results.len(),
        bundled_count + 2,
        "bundled plugins, then the user's two .wasm files"
    );

    let user_plugin = host
        .status("hostile-trap")
        .expect("the user's plugin loaded");
    assert_eq!(user_plugin.path, user.join("my-own.wasm"));
    let duplicate = results
        .iter()
        .find_map(|r| match r {
            Err(LoadError::DuplicateName {
                plugin,
                path,
                existing,
            }) => Some((plugin, path, existing)),
            _ => None,
        })
        .expect("the user's copy of gay-tracer is a duplicate");
    assert_eq!(duplicate.0, "gay-tracer");
    assert_eq!(duplicate.1, &user.join("gay-tracer.wasm"));
    assert_eq!(
        host.status("gay-tracer").expect("loaded").path,
        *duplicate.2,
        "the bundled one wins"
    );
    let _ = std::fs::remove_dir_all(&user);
}
