//! The FDT reader: every structural error, and the lookup API.

use bootcfg::fdt::*;
use bootcfg::fdt_writer::FdtWriter;

const BEGIN: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// A version-17 blob from raw blocks (header, empty reservation map,
/// struct, strings).
fn raw(structs: &[u8], strings: &[u8]) -> Vec<u8> {
    let off_struct = 40 + 16;
    let off_strings = off_struct + structs.len();
    let total = off_strings + strings.len();
    let mut v = Vec::new();
    for x in [
        0xd00d_feed,
        total,
        off_struct,
        off_strings,
        40,
        17,
        16,
        0,
        strings.len(),
        structs.len(),
    ] {
        v.extend_from_slice(&(x as u32).to_be_bytes());
    }
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(structs);
    v.extend_from_slice(strings);
    v
}

/// Struct block builder: tokens and names.
#[derive(Default)]
struct S(Vec<u8>);

impl S {
    fn t(mut self, t: u32) -> Self {
        self.0.extend_from_slice(&t.to_be_bytes());
        self
    }
    fn node(self, name: &str) -> Self {
        let mut s = self.t(BEGIN);
        s.0.extend_from_slice(name.as_bytes());
        s.0.push(0);
        while !s.0.len().is_multiple_of(4) {
            s.0.push(0);
        }
        s
    }
    fn prop(self, nameoff: u32, value: &[u8]) -> Self {
        let mut s = self.t(PROP).t(value.len() as u32).t(nameoff);
        s.0.extend_from_slice(value);
        while !s.0.len().is_multiple_of(4) {
            s.0.push(0);
        }
        s
    }
    fn blob(self) -> Vec<u8> {
        raw(&self.0, b"reg\0compatible\0")
    }
}

fn e(b: &[u8]) -> FdtError {
    Fdt::new(b).expect_err("should be rejected")
}

fn set(b: &mut [u8], field: usize, v: u32) {
    b[field * 4..field * 4 + 4].copy_from_slice(&v.to_be_bytes());
}

fn good() -> Vec<u8> {
    S::default()
        .node("")
        .prop(0, &[0, 0, 0, 1])
        .node("a@1")
        .t(END_NODE)
        .t(END_NODE)
        .t(END)
        .blob()
}

#[test]
fn accepts_minimal() {
    let g = good();
    let f = Fdt::new(&g).unwrap();
    assert_eq!(f.root().name(), "");
    assert_eq!(f.root().child("a").unwrap().name(), "a@1");
    assert_eq!(total_size(&good()).unwrap(), good().len());
    // NOPs anywhere between tokens.
    let b = S::default()
        .t(NOP)
        .node("")
        .t(NOP)
        .prop(0, &[1])
        .t(NOP)
        .t(END_NODE)
        .t(NOP)
        .t(END)
        .blob();
    let f = Fdt::new(&b).unwrap();
    assert_eq!(f.root().prop("reg").unwrap().value, [1]);
}

#[test]
fn header_errors() {
    let g = good();
    assert_eq!(e(&[]), FdtError::Truncated { need: 36, have: 0 });
    assert_eq!(e(&g[..20]), FdtError::Truncated { need: 36, have: 20 });
    assert_eq!(
        e(&g[..g.len() - 1]),
        FdtError::Truncated {
            need: g.len(),
            have: g.len() - 1
        }
    );
    assert_eq!(
        total_size(&g[..3]),
        Err(FdtError::Truncated { need: 8, have: 3 })
    );

    let mut b = g.clone();
    b[3] = 0xee;
    assert_eq!(e(&b), FdtError::BadMagic(0xd00d_feee));
    assert_eq!(total_size(&b), Err(FdtError::BadMagic(0xd00d_feee)));

    let mut b = g.clone();
    set(&mut b, 5, 15);
    assert_eq!(
        e(&b),
        FdtError::BadVersion {
            version: 15,
            last_comp: 16
        }
    );
    let mut b = g.clone();
    set(&mut b, 6, 18);
    assert_eq!(
        e(&b),
        FdtError::BadVersion {
            version: 17,
            last_comp: 18
        }
    );

    let mut b = g.clone();
    set(&mut b, 1, 20);
    assert_eq!(e(&b), FdtError::BadTotalSize(20));

    let total = g.len() as u32;
    let mut b = g.clone();
    set(&mut b, 9, 0x1000);
    assert_eq!(
        e(&b),
        FdtError::BlockOutOfBounds {
            block: "struct",
            offset: 56,
            size: 0x1000,
            totalsize: total
        }
    );
    let mut b = g.clone();
    set(&mut b, 2, 8);
    assert_eq!(
        e(&b),
        FdtError::BlockOutOfBounds {
            block: "struct",
            offset: 8,
            size: total - 56 - 15,
            totalsize: total
        }
    );
    let mut b = g.clone();
    set(&mut b, 2, 58);
    set(&mut b, 9, 4);
    assert_eq!(
        e(&b),
        FdtError::Misaligned {
            block: "struct",
            offset: 58
        }
    );
    let mut b = g.clone();
    set(&mut b, 8, 100);
    assert!(matches!(
        e(&b),
        FdtError::BlockOutOfBounds {
            block: "strings",
            ..
        }
    ));
    let mut b = g.clone();
    set(&mut b, 4, 44);
    assert_eq!(
        e(&b),
        FdtError::Misaligned {
            block: "memory reservation",
            offset: 44
        }
    );
    // A map with no (0, 0) entry before the end of the blob: a 56-byte
    // blob whose map (at 40) holds one nonzero entry and nothing else.
    let mut b = g[..56].to_vec();
    b[40..56].fill(0xff);
    for (field, v) in [(1, 56), (2, 56), (3, 56), (8, 0), (9, 0)] {
        set(&mut b, field, v);
    }
    assert_eq!(e(&b), FdtError::RsvmapUnterminated);
}

#[test]
fn version_16() {
    let mut b = good();
    set(&mut b, 5, 16);
    set(&mut b, 9, 0xdead);
    let f = Fdt::new(&b).unwrap();
    assert_eq!(f.root().child("a@1").unwrap().name(), "a@1");
}

#[test]
fn structure_errors() {
    let root = || S::default().node("");
    assert_eq!(
        e(&root().t(END_NODE).t(7).blob()),
        FdtError::BadToken {
            offset: 12,
            token: 7
        }
    );
    assert_eq!(e(&root().t(END_NODE).blob()), FdtError::NoEnd);
    assert_eq!(
        e(&S::default().t(END).blob()),
        FdtError::Unbalanced { offset: 0 }
    );
    assert_eq!(e(&root().t(END).blob()), FdtError::Unbalanced { offset: 8 });
    assert_eq!(
        e(&root().t(END_NODE).t(END_NODE).t(END).blob()),
        FdtError::Unbalanced { offset: 12 }
    );
    assert_eq!(
        e(&S::default().node("x").t(END_NODE).t(END).blob()),
        FdtError::BadRoot { offset: 0 }
    );
    assert_eq!(
        e(&root().t(END_NODE).node("").t(END_NODE).t(END).blob()),
        FdtError::BadRoot { offset: 12 }
    );
    assert_eq!(
        e(&root().node("").t(END_NODE).t(END_NODE).t(END).blob()),
        FdtError::BadName { offset: 8 }
    );
    // Name without NUL up to the end of the struct block.
    let mut s = root().t(BEGIN);
    s.0.extend_from_slice(b"abcd");
    assert_eq!(e(&s.blob()), FdtError::BadName { offset: 8 });
    // Invalid UTF-8 name.
    let mut s = root().t(BEGIN);
    s.0.extend_from_slice(&[0xff, 0xfe, 0, 0]);
    assert_eq!(
        e(&s.t(END_NODE).t(END_NODE).t(END).blob()),
        FdtError::BadName { offset: 8 }
    );
    // Property value past the block.
    let s = root().t(PROP).t(100).t(0).t(END_NODE).t(END);
    assert_eq!(
        e(&s.blob()),
        FdtError::PropOutOfBounds {
            offset: 8,
            len: 100
        }
    );
    let s = root().t(PROP).t(u32::MAX).t(0);
    assert_eq!(
        e(&s.blob()),
        FdtError::PropOutOfBounds {
            offset: 8,
            len: u32::MAX
        }
    );
    let s = root().t(PROP);
    assert_eq!(
        e(&s.blob()),
        FdtError::PropOutOfBounds { offset: 8, len: 0 }
    );
    // Name offset outside strings, or in the middle of nowhere.
    let s = root().prop(1000, &[]).t(END_NODE).t(END);
    assert_eq!(
        e(&s.blob()),
        FdtError::BadNameOffset {
            offset: 8,
            nameoff: 1000
        }
    );
    let s = root().prop(15, &[]).t(END_NODE).t(END);
    assert_eq!(
        e(&s.blob()),
        FdtError::BadNameOffset {
            offset: 8,
            nameoff: 15
        }
    );
    // Property outside a node, after a child.
    assert_eq!(
        e(&S::default().prop(0, &[]).blob()),
        FdtError::MisplacedProp { offset: 0 }
    );
    let s = root().node("a").t(END_NODE).prop(0, &[]).t(END_NODE).t(END);
    assert_eq!(e(&s.blob()), FdtError::MisplacedProp { offset: 20 });
    // A property inside a child after the child's own child is misplaced,
    // but one in a sibling after a previous sibling's child is fine.
    let s = root()
        .node("a")
        .node("b")
        .t(END_NODE)
        .t(END_NODE)
        .node("c")
        .prop(0, &[])
        .t(END_NODE)
        .t(END_NODE)
        .t(END);
    assert!(Fdt::new(&s.blob()).is_ok());
    // Too deep.
    let mut s = root();
    for _ in 0..MAX_DEPTH {
        s = s.node("n");
    }
    assert!(matches!(e(&s.blob()), FdtError::TooDeep { .. }));
    let mut s = root();
    for _ in 1..MAX_DEPTH {
        s = s.node("n");
    }
    for _ in 0..MAX_DEPTH {
        s = s.t(END_NODE);
    }
    let b = s.t(END).blob();
    let f = Fdt::new(&b).unwrap();
    assert_eq!(f.walk().count(), MAX_DEPTH);
    assert_eq!(f.walk().last().unwrap().nodes().len(), MAX_DEPTH);
}

#[test]
fn every_error_displays_one_line() {
    let errors = [
        FdtError::Truncated { need: 40, have: 3 },
        FdtError::BadMagic(1),
        FdtError::BadVersion {
            version: 1,
            last_comp: 1,
        },
        FdtError::BadTotalSize(1),
        FdtError::BlockOutOfBounds {
            block: "struct",
            offset: 1,
            size: 2,
            totalsize: 3,
        },
        FdtError::Misaligned {
            block: "struct",
            offset: 1,
        },
        FdtError::RsvmapUnterminated,
        FdtError::BadToken {
            offset: 1,
            token: 2,
        },
        FdtError::BadName { offset: 1 },
        FdtError::BadRoot { offset: 1 },
        FdtError::PropOutOfBounds { offset: 1, len: 2 },
        FdtError::BadNameOffset {
            offset: 1,
            nameoff: 2,
        },
        FdtError::MisplacedProp { offset: 1 },
        FdtError::Unbalanced { offset: 1 },
        FdtError::TooDeep { offset: 1 },
        FdtError::NoEnd,
    ];
    for e in errors {
        let s = e.to_string();
        assert!(
            s.starts_with("dtb: ") && !s.contains('\n') && s.len() > 10,
            "{s}"
        );
    }
    assert_eq!(
        FdtError::BadVersion { version: 3, last_comp: 2 }.to_string(),
        "dtb: unsupported version 3 (last compatible 2; allowed: version >= 16, last compatible <= 17)"
    );
}

fn sample() -> Vec<u8> {
    let mut w = FdtWriter::new();
    w.reserve(0x1000, 0x2000);
    w.reserve(0x8000, 0x10);
    w.set_boot_cpuid(3);
    w.nop();
    w.begin_node("");
    w.nop();
    w.prop_u32("#address-cells", 2);
    w.prop_strs("compatible", &["a,b", "c,d"]);
    w.begin_node("soc");
    w.prop_empty("ranges");
    w.prop_u64("big", 0x1122_3344_5566_7788);
    w.nop();
    w.begin_node("dev@10");
    w.prop_str("status", "disabled");
    w.prop_cells("cells", &[1, 2, 3]);
    w.end_node();
    w.nop();
    w.begin_node("dev@20");
    w.prop_str("status", "okay");
    w.end_node();
    w.end_node();
    w.begin_node("chosen");
    w.prop_bytes("raw", b"ab\0cd\0");
    w.end_node();
    w.end_node();
    w.nop();
    w.finish()
}

#[test]
fn lookups() {
    let b = sample();
    let f = Fdt::new(&b).unwrap();
    assert_eq!(f.boot_cpuid(), 3);
    assert_eq!(
        f.reservations().collect::<Vec<_>>(),
        [(0x1000, 0x2000), (0x8000, 0x10)]
    );
    let root = f.root();
    assert_eq!(root.u32("#address-cells"), Some(2));
    assert!(root.is_compatible("c,d") && !root.is_compatible("c"));
    assert_eq!(
        root.prop("compatible").unwrap().strs().collect::<Vec<_>>(),
        ["a,b", "c,d"]
    );
    assert_eq!(root.str("compatible"), None, "a list is not one string");
    assert_eq!(
        root.children().map(|n| n.name()).collect::<Vec<_>>(),
        ["soc", "chosen"]
    );

    let soc = f.find("/soc").unwrap();
    assert_eq!(soc.prop("ranges").unwrap().value, b"");
    assert_eq!(
        soc.prop("big").unwrap().as_u64(),
        Some(0x1122_3344_5566_7788)
    );
    assert_eq!(soc.prop("big").unwrap().as_u32(), None);
    assert_eq!(soc.props().count(), 2);

    let d10 = f.find("/soc/dev@10").unwrap();
    assert!(!d10.is_enabled());
    assert_eq!(d10.base_name(), "dev");
    assert_eq!(
        d10.prop("cells").unwrap().cells().collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(f.find("/soc/dev@20").unwrap().is_enabled());
    assert!(f.find("soc/dev").unwrap().name() == "dev@10");
    assert!(f.find("/soc/dev@30").is_none());
    assert!(f.find("/nope").is_none());
    assert_eq!(f.find("/").unwrap().name(), "");

    let raw = f.find("/chosen").unwrap().prop("raw").unwrap();
    assert_eq!(raw.as_str(), None);
    assert_eq!(raw.strs().collect::<Vec<_>>(), ["ab", "cd"]);
    assert_eq!(
        read_cells(&[0, 0, 0, 5, 0, 0, 0, 6], 2),
        Some(0x5_0000_0006)
    );
    assert_eq!(read_cells(&[0, 0, 0, 5], 2), None);
    assert_eq!(read_cells(&[0, 0, 0, 5], 3), None);

    // Walk: depth first, with parents.
    let names: Vec<_> = f
        .walk()
        .map(|p| {
            p.nodes()
                .iter()
                .map(|n| n.name())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    assert_eq!(names, ["", "/soc", "/soc/dev@10", "/soc/dev@20", "/chosen"]);
    let p = f.walk().nth(2).unwrap();
    assert_eq!(p.node().name(), "dev@10");
    assert_eq!(p.parent().unwrap().name(), "soc");
    assert!(f.walk().next().unwrap().parent().is_none());
}

#[test]
fn prop_string_forms() {
    let p = |v: &'static [u8]| Prop {
        name: "x",
        value: v,
    };
    assert_eq!(p(b"abc\0").as_str(), Some("abc"));
    assert_eq!(p(b"\0").as_str(), Some(""));
    assert_eq!(p(b"").as_str(), None);
    assert_eq!(p(b"abc").as_str(), None);
    assert_eq!(p(b"a\0b\0").as_str(), None);
    assert_eq!(p(b"\xff\0").as_str(), None);
    assert_eq!(p(b"").strs().count(), 0);
    assert_eq!(p(b"abc").strs().count(), 0);
    assert_eq!(p(b"\xff\0").strs().count(), 0);
    assert_eq!(p(&[0, 0, 0, 1, 0]).cells().collect::<Vec<_>>(), [1]);
}

#[test]
fn writer_shares_names_and_checks_use() {
    let mut w = FdtWriter::new();
    w.begin_node("");
    w.prop_u32("reg", 1);
    w.begin_node("a");
    w.prop_u32("reg", 2);
    w.prop_u32("re", 3);
    w.end_node();
    w.end_node();
    let b = w.finish();
    let strings_len = u32::from_be_bytes(b[32..36].try_into().unwrap());
    assert_eq!(strings_len, 7, "\"reg\\0re\\0\"");
    let f = Fdt::new(&b).unwrap();
    assert_eq!(f.find("/a").unwrap().u32("re"), Some(3));
    assert_eq!(f.find("/a").unwrap().u32("reg"), Some(2));

    let r = std::panic::catch_unwind(|| FdtWriter::new().end_node());
    assert!(r.is_err());
    let r = std::panic::catch_unwind(|| {
        let mut w = FdtWriter::new();
        w.begin_node("");
        w.finish()
    });
    assert!(r.is_err());
}

#[test]
fn writer_copies_a_tree_exactly() {
    let b = sample();
    let f = Fdt::new(&b).unwrap();
    let mut w = FdtWriter::from_fdt_root(&f);
    for c in f.root().children() {
        w.copy_node(&c);
    }
    w.end_node();
    let copy = w.finish();
    // Same tree; NOPs are dropped, so compare walks and properties.
    let g = Fdt::new(&copy).unwrap();
    assert_eq!(g.boot_cpuid(), 3);
    assert_eq!(
        g.reservations().collect::<Vec<_>>(),
        f.reservations().collect::<Vec<_>>()
    );
    let dump = |f: &Fdt| {
        f.walk()
            .map(|p| {
                let n = p.node();
                (
                    p.nodes().len(),
                    n.name().to_string(),
                    n.props()
                        .map(|p| (p.name.to_string(), p.value.to_vec()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(dump(&f), dump(&g));
}
