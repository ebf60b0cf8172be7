//! Feeds arbitrary bytes to the host device-tree and /chosen parser.
//!
//! Property: `tessel_config::parse` never panics, and whatever it accepts is
//! internally consistent (every domain error names a node, every range has a
//! non-zero size, every module belongs to a known domain or none).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = tessel_config::parse(data) else {
        return;
    };
    assert!(!cfg.host.ram.is_empty());
    assert!(cfg.host.ram.iter().all(|r| r.size != 0));
    assert!(cfg.host.gic.gicd.size != 0);
    for d in &cfg.domains {
        match d {
            Ok(d) => {
                assert!(d.cpus >= 1);
                assert!(d.memory_kib >= 1);
                assert!(!d.direct_map || !d.static_mem.is_empty());
                assert!(d.kernel.range.size != 0);
                let _ = d.bootargs();
            }
            Err(e) => {
                assert!(!e.node.is_empty());
                let _ = e.to_string();
            }
        }
    }
    let names: Vec<&str> = cfg
        .domains
        .iter()
        .map(|d| match d {
            Ok(d) => d.name.as_str(),
            Err(e) => e.node.split('/').next().unwrap_or(""),
        })
        .collect();
    for m in &cfg.modules {
        assert!(m.range.size != 0);
        if let Some(dom) = &m.domain {
            assert!(names.contains(&dom.as_str()));
        }
    }
    for w in &cfg.warnings {
        let _ = w.to_string();
    }
});
