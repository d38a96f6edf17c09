//! The FDT writer on its own: structure rules and limits.

use bootcfg::fdt::Fdt;
use guest_dtb::fdt::{FdtWriter, STRINGS_MAX};
use guest_dtb::Error;

fn finish(f: impl FnOnce(&mut FdtWriter)) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 8192];
    let mut w = FdtWriter::new(&mut buf);
    f(&mut w);
    let n = w.finish()?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn a_minimal_tree_reads_back() {
    let dtb = finish(|w| {
        w.begin_node("");
        w.prop_u32("a", 7);
        w.begin_node("child@1f");
        w.prop_u64("b", 0x1_0000_0002);
        w.prop_strs("c", &["x", "", "yz"]);
        w.prop_empty("d");
        w.end_node();
        w.begin_node_at("n", 0xabc);
        w.prop_reg("reg", &[(1, 2), (3, 4)]);
        w.prop_cells("cells", &[5, 6, 7]);
        w.end_node();
        w.end_node();
    })
    .unwrap();
    let fdt = Fdt::new(&dtb).unwrap();
    assert_eq!(fdt.root().u32("a"), Some(7));
    let c = fdt.find("/child@1f").unwrap();
    assert_eq!(c.prop("b").unwrap().as_u64(), Some(0x1_0000_0002));
    assert_eq!(
        c.prop("c").unwrap().strs().collect::<Vec<_>>(),
        ["x", "", "yz"]
    );
    assert!(c.prop("d").unwrap().value.is_empty());
    let n = fdt.find("/n@abc").unwrap();
    assert_eq!(
        n.prop("reg").unwrap().cells().collect::<Vec<_>>(),
        [0, 1, 0, 2, 0, 3, 0, 4]
    );
    assert_eq!(
        n.prop("cells").unwrap().cells().collect::<Vec<_>>(),
        [5, 6, 7]
    );
}

#[test]
fn structure_errors() {
    // Property after a child node.
    let r = finish(|w| {
        w.begin_node("");
        w.begin_node("a");
        w.end_node();
        w.prop_u32("late", 1);
        w.end_node();
    });
    assert_eq!(r, Err(Error::Unbalanced));
    // Property outside any node.
    assert_eq!(finish(|w| w.prop_u32("x", 1)), Err(Error::Unbalanced));
    // Unclosed node.
    assert_eq!(finish(|w| w.begin_node("")), Err(Error::Unbalanced));
    // Too many closes.
    let r = finish(|w| {
        w.begin_node("");
        w.end_node();
        w.end_node();
    });
    assert_eq!(r, Err(Error::Unbalanced));
    // Nothing at all.
    assert_eq!(finish(|_| {}), Err(Error::Unbalanced));
    // Second root.
    let r = finish(|w| {
        w.begin_node("");
        w.end_node();
        w.begin_node("");
        w.end_node();
    });
    assert_eq!(r, Err(Error::BadName));
}

#[test]
fn name_errors() {
    for name in ["", "a/b", "a\0"] {
        let r = finish(|w| {
            w.begin_node("");
            w.begin_node(name);
            w.end_node();
            w.end_node();
        });
        assert_eq!(r, Err(Error::BadName), "node {name:?}");
    }
    let r = finish(|w| {
        w.begin_node("named-root");
        w.end_node();
    });
    assert_eq!(r, Err(Error::BadName));
    for name in ["", "p\0"] {
        let r = finish(|w| {
            w.begin_node("");
            w.prop_u32(name, 1);
            w.end_node();
        });
        assert_eq!(r, Err(Error::BadName), "prop {name:?}");
    }
    let r = finish(|w| {
        w.begin_node("");
        w.prop_str("s", "a\0b");
        w.end_node();
    });
    assert_eq!(r, Err(Error::BadString));
}

#[test]
fn limits() {
    // The strings block fills up after STRINGS_MAX bytes of distinct names.
    let names: Vec<String> = (0..STRINGS_MAX / 4).map(|i| format!("p{i:02}")).collect();
    let r = finish(|w| {
        w.begin_node("");
        for n in &names {
            w.prop_empty(n);
        }
        w.end_node();
    });
    assert_eq!(r, Err(Error::StringsFull));
    // The same name many times takes one entry.
    let r = finish(|w| {
        w.begin_node("");
        for i in 0..200 {
            w.begin_node_at("n", i);
            w.prop_u32("same-name", 1);
            w.end_node();
        }
        w.end_node();
    });
    let dtb = r.unwrap();
    assert_eq!(
        u32::from_be_bytes(dtb[32..36].try_into().unwrap()),
        10,
        "one \"same-name\\0\""
    );
    let too_many = [0u32; 17];
    let r = finish(|w| {
        w.begin_node("");
        w.prop_cells("c", &too_many);
        w.end_node();
    });
    assert_eq!(r, Err(Error::TooManyCells));
}
