//! Reading a written tree back in tests, with bootcfg's strict reader.
#![allow(dead_code)]

use bootcfg::fdt::Node;

/// A property's cells; panics naming the node when it has none.
pub fn cells(n: &Node, name: &str) -> Vec<u32> {
    n.prop(name)
        .unwrap_or_else(|| panic!("{} has no {name}", n.name()))
        .cells()
        .collect()
}

/// A string-list property (empty when absent).
pub fn strs<'a>(n: &Node<'a>, name: &str) -> Vec<&'a str> {
    n.prop(name).map(|p| p.strs().collect()).unwrap_or_default()
}

/// `/chosen` holds `bootargs` and the initrd `[start, end)`.
pub fn assert_chosen(chosen: &Node, bootargs: &str, initrd: (u64, u64)) {
    assert_eq!(chosen.str("bootargs"), Some(bootargs));
    assert_eq!(chosen.prop("linux,initrd-start").unwrap().as_u64(), Some(initrd.0));
    assert_eq!(chosen.prop("linux,initrd-end").unwrap().as_u64(), Some(initrd.1));
}
