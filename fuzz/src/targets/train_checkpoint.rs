//! Training checkpoints (`host/train/src/checkpoint.rs`).
//!
//! Input: a first byte choosing the case, then
//! * even: a checkpoint file, loaded against a tiny model's parameter list;
//! * odd: a seed, a damage offset and byte: a world is saved, one byte of the file is replaced,
//!   and the file is loaded again.
//!
//! Properties: loading never panics; a checkpoint that loads saves and loads back to the same
//! world; a damaged checkpoint either fails to load or loads the exact world that was saved.

use crate::{scratch_path, train::tiny_specs};
use tritlab_train::checkpoint;
use tritlab_train::model::World;

pub fn run(data: &[u8]) {
    let Some((&case, rest)) = data.split_first() else {
        return;
    };
    let specs = tiny_specs();
    let path = scratch_path("checkpoint.safetensors");
    let want_twin = case & 2 != 0;
    if case % 2 == 0 {
        std::fs::write(&path, rest).unwrap();
        let Ok(loaded) = checkpoint::load(&path, specs, want_twin) else {
            return;
        };
        assert_eq!(loaded.twin.is_some(), want_twin);
        let copy = scratch_path("copy.safetensors");
        checkpoint::save(&copy, &loaded.world, loaded.twin.as_ref()).expect("save a loaded world");
        let again = checkpoint::load(&copy, specs, want_twin).expect("load a saved world");
        assert_eq!(again.world.hash(), loaded.world.hash());
        assert_eq!(again.world.step, loaded.world.step);
        return;
    }
    if rest.len() < 12 {
        return;
    }
    let seed = u64::from_le_bytes(rest[..8].try_into().unwrap());
    let offset = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
    let mut world = World::init(specs, seed);
    world.step = seed % 1000;
    // Give the moments values too, from the remaining bytes.
    for (i, b) in rest[12..].iter().enumerate() {
        let p = &mut world.params[i % specs.len()];
        let n = p.m.len();
        p.m[i % n] = f32::from(*b) / 7.0;
    }
    let twin = want_twin.then(|| World::init(specs, seed ^ 1));
    checkpoint::save(&path, &world, twin.as_ref()).expect("save");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = offset % bytes.len();
    let damage = rest.get(12).copied().unwrap_or(0xff);
    bytes[at] = damage;
    std::fs::write(&path, &bytes).unwrap();
    if let Ok(loaded) = checkpoint::load(&path, specs, want_twin) {
        assert_eq!(
            loaded.world.hash(),
            world.hash(),
            "damage at byte {at} loaded another world"
        );
        assert_eq!(loaded.world.step, world.step);
        if let (Some(a), Some(b)) = (&loaded.twin, &twin) {
            assert_eq!(
                a.hash(),
                b.hash(),
                "damage at byte {at} loaded another twin"
            );
        }
    }
}
