//! A minimal flattened device tree writer (feature `alloc`), for tests and
//! for the xtask that generates the DTB passed to QEMU.
//!
//! ```
//! use bootcfg::fdt_writer::FdtWriter;
//! let mut w = FdtWriter::new();
//! w.begin_node("");
//! w.prop_u32("#address-cells", 2);
//! w.begin_node("chosen");
//! w.prop_str("bootargs", "sched=pinned");
//! w.end_node();
//! w.end_node();
//! let dtb = w.finish();
//! assert!(bootcfg::fdt::Fdt::new(&dtb).is_ok());
//! ```
//!
//! To add guests to a DTB that QEMU dumped (`-M virt,dumpdtb=x.dtb`):
//!
//! ```
//! # use bootcfg::fdt_writer::FdtWriter;
//! # use bootcfg::fdt::Fdt;
//! # let mut w = FdtWriter::new();
//! # w.begin_node(""); w.begin_node("chosen"); w.end_node(); w.end_node();
//! # let qemu_dtb = w.finish();
//! let fdt = Fdt::new(&qemu_dtb).unwrap();
//! let mut w = FdtWriter::from_fdt_root(&fdt);
//! for child in fdt.root().children().filter(|c| c.name() != "chosen") {
//!     w.copy_node(&child);
//! }
//! w.begin_node("chosen");
//! if let Some(c) = fdt.find("/chosen") {
//!     w.copy_props(&c);
//! }
//! w.prop_u32("#address-cells", 2);
//! w.prop_u32("#size-cells", 2);
//! w.begin_node("module@50000000");
//! w.prop_strs("compatible", &["multiboot,kernel", "multiboot,module"]);
//! w.prop_reg("reg", 2, 2, &[(0x5000_0000, 0x10_0000)]);
//! w.end_node();
//! w.end_node(); // chosen
//! w.end_node(); // root
//! let dtb = w.finish();
//! # assert!(Fdt::new(&dtb).unwrap().find("/chosen/module@50000000").is_some());
//! ```

use alloc::vec::Vec;

use crate::fdt::{Fdt, Node};

/// Builds a version-17 DTB. Property names are shared in the strings block.
#[derive(Clone, Debug, Default)]
pub struct FdtWriter {
    structs: Vec<u8>,
    strings: Vec<u8>,
    rsv: Vec<(u64, u64)>,
    depth: usize,
    boot_cpuid: u32,
}

impl FdtWriter {
    pub fn new() -> FdtWriter {
        FdtWriter::default()
    }

    /// Add a memory reservation map entry.
    pub fn reserve(&mut self, addr: u64, size: u64) {
        self.rsv.push((addr, size));
    }

    pub fn set_boot_cpuid(&mut self, id: u32) {
        self.boot_cpuid = id;
    }

    fn token(&mut self, t: u32) {
        self.structs.extend_from_slice(&t.to_be_bytes());
    }

    fn pad(&mut self) {
        while !self.structs.len().is_multiple_of(4) {
            self.structs.push(0);
        }
    }

    /// Open a node. The first node must be the root, named `""`.
    pub fn begin_node(&mut self, name: &str) {
        self.token(1);
        self.structs.extend_from_slice(name.as_bytes());
        self.structs.push(0);
        self.pad();
        self.depth += 1;
    }

    /// Close the innermost open node.
    ///
    /// # Panics
    /// If no node is open.
    pub fn end_node(&mut self) {
        assert!(self.depth > 0, "FdtWriter::end_node: no open node");
        self.token(2);
        self.depth -= 1;
    }

    /// Emit an FDT_NOP token.
    pub fn nop(&mut self) {
        self.token(4);
    }

    fn name_offset(&mut self, name: &str) -> u32 {
        let mut i = 0;
        while i < self.strings.len() {
            let end = self.strings[i..]
                .iter()
                .position(|&b| b == 0)
                .map_or(self.strings.len(), |n| i + n);
            if &self.strings[i..end] == name.as_bytes() {
                return i as u32;
            }
            i = end + 1;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        off
    }

    /// A property with raw bytes.
    pub fn prop_bytes(&mut self, name: &str, value: &[u8]) {
        let nameoff = self.name_offset(name);
        self.token(3);
        self.token(value.len() as u32);
        self.token(nameoff);
        self.structs.extend_from_slice(value);
        self.pad();
    }

    /// A property with no value (a flag such as `ranges;`).
    pub fn prop_empty(&mut self, name: &str) {
        self.prop_bytes(name, &[]);
    }

    pub fn prop_u32(&mut self, name: &str, v: u32) {
        self.prop_bytes(name, &v.to_be_bytes());
    }

    /// A u64 as two cells.
    pub fn prop_u64(&mut self, name: &str, v: u64) {
        self.prop_bytes(name, &v.to_be_bytes());
    }

    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) {
        let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop_bytes(name, &v);
    }

    /// One NUL-terminated string.
    pub fn prop_str(&mut self, name: &str, s: &str) {
        self.prop_strs(name, &[s]);
    }

    /// A string list, as `compatible`.
    pub fn prop_strs(&mut self, name: &str, list: &[&str]) {
        let mut v = Vec::new();
        for s in list {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        self.prop_bytes(name, &v);
    }

    /// `(address, size)` pairs with the given cell counts (1 or 2 each; a
    /// size count of 0 writes addresses only), as `reg`.
    pub fn prop_reg(
        &mut self,
        name: &str,
        address_cells: u32,
        size_cells: u32,
        pairs: &[(u64, u64)],
    ) {
        let mut cells = Vec::new();
        let mut put = |v: u64, n: u32| {
            if n == 2 {
                cells.push((v >> 32) as u32);
            }
            if n >= 1 {
                cells.push(v as u32);
            }
        };
        for &(a, s) in pairs {
            put(a, address_cells);
            put(s, size_cells);
        }
        self.prop_cells(name, &cells);
    }

    /// Copy `node`'s properties into the open node.
    pub fn copy_props(&mut self, node: &Node<'_>) {
        for p in node.props() {
            self.prop_bytes(p.name, p.value);
        }
    }

    /// Copy `node` with its properties and all its descendants.
    pub fn copy_node(&mut self, node: &Node<'_>) {
        self.begin_node(node.name());
        self.copy_props(node);
        for child in node.children() {
            self.copy_node(&child);
        }
        self.end_node();
    }

    /// A writer holding a copy of `fdt`'s header fields and reservations,
    /// with its root node open and its root properties copied, ready for
    /// the caller to copy or replace children (e.g. everything but
    /// `/chosen`, then a new `/chosen`) and close the root.
    pub fn from_fdt_root(fdt: &Fdt<'_>) -> FdtWriter {
        let mut w = FdtWriter::new();
        for (a, s) in fdt.reservations() {
            w.reserve(a, s);
        }
        w.set_boot_cpuid(fdt.boot_cpuid());
        w.begin_node("");
        w.copy_props(&fdt.root());
        w
    }

    /// The finished blob.
    ///
    /// # Panics
    /// If a node is still open.
    pub fn finish(mut self) -> Vec<u8> {
        assert!(
            self.depth == 0,
            "FdtWriter::finish: {} node(s) still open",
            self.depth
        );
        self.token(9);
        let header = 40usize;
        let off_rsv = header;
        let rsv_len = (self.rsv.len() + 1) * 16;
        let off_struct = off_rsv + rsv_len;
        let off_strings = off_struct + self.structs.len();
        let total = off_strings + self.strings.len();

        let mut out = Vec::with_capacity(total);
        for v in [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17,
            16,
            self.boot_cpuid,
            self.strings.len() as u32,
            self.structs.len() as u32,
        ] {
            out.extend_from_slice(&u32::to_be_bytes(v));
        }
        for &(a, s) in self.rsv.iter().chain(core::iter::once(&(0, 0))) {
            out.extend_from_slice(&a.to_be_bytes());
            out.extend_from_slice(&s.to_be_bytes());
        }
        out.extend_from_slice(&self.structs);
        out.extend_from_slice(&self.strings);
        out
    }
}
