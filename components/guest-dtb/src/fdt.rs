//! A small flattened device tree writer into a caller's buffer, no alloc.
//!
//! Layout of what [`FdtWriter::finish`] leaves in the buffer:
//!
//! ```text
//! 0x00  header (40 bytes, version 17, last compatible 16)
//! 0x28  memory reservation block: one (0, 0) terminator
//! 0x38  structure block
//!       strings block (each property name once)
//! ```
//!
//! Writes past the end of the buffer are counted but not stored, so a too
//! small buffer is reported once, at the end, with the exact size needed.

use crate::Error;

pub const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_SIZE: usize = 40;
const RSVMAP_SIZE: usize = 16;
/// Where the structure block starts.
pub const STRUCT_OFFSET: usize = HEADER_SIZE + RSVMAP_SIZE;
/// Room for the strings block (property names, NUL-terminated).
pub const STRINGS_MAX: usize = 512;

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const END: u32 = 9;

/// Writes one device tree. Start with the root (`begin_node("")`), add
/// properties before child nodes, close every node, then [`Self::finish`].
pub struct FdtWriter<'b> {
    buf: &'b mut [u8],
    /// Next structure byte, as an offset into `buf` (may pass its end).
    pos: usize,
    strings: [u8; STRINGS_MAX],
    strings_len: usize,
    depth: usize,
    /// The current node already has a child: no more properties.
    has_child: bool,
    error: Option<Error>,
}

impl<'b> FdtWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> FdtWriter<'b> {
        FdtWriter {
            buf,
            pos: STRUCT_OFFSET,
            strings: [0; STRINGS_MAX],
            strings_len: 0,
            depth: 0,
            has_child: false,
            error: None,
        }
    }

    /// Store bytes at `pos` if they fit; always advance.
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    fn pad4(&mut self) {
        while !self.pos.is_multiple_of(4) {
            self.put(&[0]);
        }
    }

    fn fail(&mut self, e: Error) {
        self.error.get_or_insert(e);
    }

    /// Open a node. The root is `""`; other names are non-empty, without
    /// `/` or NUL (a unit address goes after `@`).
    pub fn begin_node(&mut self, name: &str) {
        let root = self.depth == 0;
        if root != name.is_empty()
            || name.contains(['/', '\0'])
            || (root && self.pos != STRUCT_OFFSET)
        {
            return self.fail(Error::BadName);
        }
        self.put_u32(BEGIN_NODE);
        self.put(name.as_bytes());
        self.put(&[0]);
        self.pad4();
        self.depth += 1;
        self.has_child = false;
    }

    /// Open a node called `base@<addr in hex>`.
    pub fn begin_node_at(&mut self, base: &str, addr: u64) {
        let mut name = crate::Text::<48>::new();
        if core::fmt::write(&mut name, format_args!("{base}@{addr:x}")).is_err() {
            return self.fail(Error::BadName);
        }
        self.begin_node(name.as_str());
    }

    pub fn end_node(&mut self) {
        if self.depth == 0 {
            return self.fail(Error::Unbalanced);
        }
        self.put_u32(END_NODE);
        self.depth -= 1;
        // The parent now has a child.
        self.has_child = true;
    }

    /// The offset of `name` in the strings block, added if new.
    fn name_offset(&mut self, name: &str) -> Option<u32> {
        let used = &self.strings[..self.strings_len];
        let mut start = 0;
        for (i, &b) in used.iter().enumerate() {
            if b == 0 {
                if &used[start..i] == name.as_bytes() {
                    return Some(start as u32);
                }
                start = i + 1;
            }
        }
        let off = self.strings_len;
        let end = off + name.len() + 1;
        if end > STRINGS_MAX {
            self.fail(Error::StringsFull);
            return None;
        }
        self.strings[off..end - 1].copy_from_slice(name.as_bytes());
        self.strings[end - 1] = 0;
        self.strings_len = end;
        Some(off as u32)
    }

    /// A property with raw (big-endian) bytes.
    pub fn prop(&mut self, name: &str, value: &[u8]) {
        self.prop_parts(name, &[value]);
    }

    /// A property whose value is the concatenation of `parts`.
    fn prop_parts(&mut self, name: &str, parts: &[&[u8]]) {
        if self.depth == 0 || self.has_child {
            return self.fail(Error::Unbalanced);
        }
        if name.is_empty() || name.contains('\0') {
            return self.fail(Error::BadName);
        }
        let Some(nameoff) = self.name_offset(name) else {
            return;
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.put_u32(PROP);
        self.put_u32(len as u32);
        self.put_u32(nameoff);
        for p in parts {
            self.put(p);
        }
        self.pad4();
    }

    /// A property with no value (a flag such as `interrupt-controller`).
    pub fn prop_empty(&mut self, name: &str) {
        self.prop(name, &[]);
    }

    pub fn prop_u32(&mut self, name: &str, v: u32) {
        self.prop(name, &v.to_be_bytes());
    }

    /// A 64-bit value as two cells.
    pub fn prop_u64(&mut self, name: &str, v: u64) {
        self.prop(name, &v.to_be_bytes());
    }

    /// Up to 16 cells.
    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) {
        let mut bytes = [0u8; 64];
        if cells.len() > 16 {
            return self.fail(Error::TooManyCells);
        }
        for (chunk, c) in bytes.chunks_exact_mut(4).zip(cells) {
            chunk.copy_from_slice(&c.to_be_bytes());
        }
        self.prop(name, &bytes[..cells.len() * 4]);
    }

    /// `reg` style `(address, size)` pairs with two cells each, up to 4.
    pub fn prop_reg(&mut self, name: &str, ranges: &[(u64, u64)]) {
        let mut bytes = [0u8; 64];
        if ranges.len() > 4 {
            return self.fail(Error::TooManyCells);
        }
        for (chunk, (a, s)) in bytes.chunks_exact_mut(16).zip(ranges) {
            chunk[..8].copy_from_slice(&a.to_be_bytes());
            chunk[8..].copy_from_slice(&s.to_be_bytes());
        }
        self.prop(name, &bytes[..ranges.len() * 16]);
    }

    /// One NUL-terminated string (which must not contain NUL).
    pub fn prop_str(&mut self, name: &str, s: &str) {
        self.prop_strs(name, &[s]);
    }

    /// A string list such as `compatible`.
    pub fn prop_strs(&mut self, name: &str, list: &[&str]) {
        if list.iter().any(|s| s.contains('\0')) {
            return self.fail(Error::BadString);
        }
        // Up to 8 strings, each followed by its NUL.
        let mut parts: [&[u8]; 16] = [&[]; 16];
        if list.len() > 8 {
            return self.fail(Error::TooManyCells);
        }
        for (i, s) in list.iter().enumerate() {
            parts[2 * i] = s.as_bytes();
            parts[2 * i + 1] = &[0];
        }
        self.prop_parts(name, &parts[..2 * list.len()]);
    }

    /// Close the blob: `FDT_END`, the strings, the reservation map and the
    /// header. Returns the blob's size.
    pub fn finish(mut self) -> Result<usize, Error> {
        if self.depth != 0 || self.pos == STRUCT_OFFSET {
            self.fail(Error::Unbalanced);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        self.put_u32(END);
        let struct_size = self.pos - STRUCT_OFFSET;
        let strings_off = self.pos;
        let strings = self.strings;
        self.put(&strings[..self.strings_len]);
        let total = self.pos;
        if total > self.buf.len() {
            return Err(Error::BufferTooSmall {
                need: total,
                have: self.buf.len(),
            });
        }
        let header = [
            FDT_MAGIC,
            total as u32,
            STRUCT_OFFSET as u32,
            strings_off as u32,
            HEADER_SIZE as u32,
            17, // version
            16, // last compatible version
            0,  // boot CPU
            self.strings_len as u32,
            struct_size as u32,
        ];
        for (i, v) in header.iter().enumerate() {
            self.buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        self.buf[HEADER_SIZE..STRUCT_OFFSET].fill(0);
        Ok(total)
    }
}
