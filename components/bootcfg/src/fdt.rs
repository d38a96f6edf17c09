//! A small, strict, bounds-checked flattened device tree (DTB) reader.
//!
//! [`Fdt::new`] checks the header and walks the whole structure block once,
//! so a blob it accepts is well formed: tokens known and 4-byte aligned,
//! names NUL-terminated UTF-8, properties inside the block and before child
//! nodes, string offsets inside the strings block, nodes balanced, one root,
//! an `FDT_END`. After that, lookups cannot fail on structure; they still
//! use only checked reads, so nothing here can panic.

use core::fmt;

/// The magic number at offset 0, big-endian.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Deepest node nesting accepted (the root is depth 1).
pub const MAX_DEPTH: usize = 16;

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// Header sizes: version 16 lacks `size_dt_struct`.
const HEADER_V16: usize = 36;
const HEADER_V17: usize = 40;

/// What is wrong with a blob. Offsets are from the start of the structure
/// block unless said otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdtError {
    /// The buffer is shorter than the header (or than `totalsize`).
    Truncated {
        need: usize,
        have: usize,
    },
    BadMagic(u32),
    /// Version below 16, or not backwards compatible with 17.
    BadVersion {
        version: u32,
        last_comp: u32,
    },
    /// `totalsize` is smaller than the header.
    BadTotalSize(u32),
    /// A block lies outside `totalsize`.
    BlockOutOfBounds {
        block: &'static str,
        offset: u32,
        size: u32,
        totalsize: u32,
    },
    Misaligned {
        block: &'static str,
        offset: u32,
    },
    /// The memory reservation map has no terminating entry.
    RsvmapUnterminated,
    BadToken {
        offset: usize,
        token: u32,
    },
    /// A node or property name is unterminated or not UTF-8.
    BadName {
        offset: usize,
    },
    /// The root node has a name, or there is a second root.
    BadRoot {
        offset: usize,
    },
    /// A property value runs past the structure block.
    PropOutOfBounds {
        offset: usize,
        len: u32,
    },
    /// A property name offset is outside the strings block.
    BadNameOffset {
        offset: usize,
        nameoff: u32,
    },
    /// A property outside any node, or after a child node.
    MisplacedProp {
        offset: usize,
    },
    /// END_NODE without a node, or END inside a node.
    Unbalanced {
        offset: usize,
    },
    TooDeep {
        offset: usize,
    },
    /// The structure block ends without an FDT_END token.
    NoEnd,
}

impl fmt::Display for FdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FdtError::*;
        f.write_str("dtb: ")?;
        match *self {
            Truncated { need, have } => write!(f, "truncated: need {need} bytes, have {have}"),
            BadTotalSize(t) => write!(f, "totalsize {t} is smaller than the header"),
            BadMagic(m) => write!(f, "bad magic {m:#010x} (expected 0xd00dfeed): not a device tree"),
            BadVersion { version, last_comp } => write!(
                f,
                "unsupported version {version} (last compatible {last_comp}; allowed: version >= 16, last compatible <= 17)"
            ),
            BlockOutOfBounds { block, offset, size, totalsize } => write!(
                f,
                "{block} block at {offset:#x} size {size:#x} is outside totalsize {totalsize:#x}"
            ),
            Misaligned { block, offset } => write!(f, "{block} block at {offset:#x} is misaligned"),
            RsvmapUnterminated => f.write_str("memory reservation map has no terminating entry"),
            BadToken { offset, token } => write!(f, "unknown token {token:#x} at struct offset {offset:#x}"),
            BadName { offset } => {
                write!(f, "unterminated or non-UTF-8 name at struct offset {offset:#x}")
            }
            BadRoot { offset } => write!(f, "bad root node at struct offset {offset:#x} (must be one, unnamed)"),
            PropOutOfBounds { offset, len } => write!(
                f,
                "property at struct offset {offset:#x} with length {len} runs past the struct block"
            ),
            BadNameOffset { offset, nameoff } => write!(
                f,
                "property at struct offset {offset:#x} has bad name offset {nameoff:#x} in the strings block"
            ),
            MisplacedProp { offset } => write!(
                f,
                "property at struct offset {offset:#x} is outside a node or after a child node"
            ),
            Unbalanced { offset } => write!(f, "unbalanced nodes at struct offset {offset:#x}"),
            TooDeep { offset } => write!(f, "nodes nested deeper than {MAX_DEPTH} at struct offset {offset:#x}"),
            NoEnd => f.write_str("struct block has no FDT_END token"),
        }
    }
}

fn be32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(data: &[u8], off: usize) -> Option<u64> {
    let hi = be32(data, off)?;
    let lo = be32(data, off.checked_add(4)?)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// The NUL-terminated UTF-8 string at `off`, and the offset past its NUL.
fn cstr(data: &[u8], off: usize) -> Option<(&str, usize)> {
    let rest = data.get(off..)?;
    let n = rest.iter().position(|&b| b == 0)?;
    let s = core::str::from_utf8(rest.get(..n)?).ok()?;
    Some((s, off + n + 1))
}

/// The total size a DTB header declares, read from its first 8 bytes. Lets
/// the kernel build a slice of the right length from a bare pointer.
pub fn total_size(header: &[u8]) -> Result<usize, FdtError> {
    let magic = be32(header, 0).ok_or(FdtError::Truncated {
        need: 8,
        have: header.len(),
    })?;
    if magic != FDT_MAGIC {
        return Err(FdtError::BadMagic(magic));
    }
    let total = be32(header, 4).ok_or(FdtError::Truncated {
        need: 8,
        have: header.len(),
    })?;
    Ok(total as usize)
}

/// A checked device tree blob.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    structs: &'a [u8],
    strings: &'a [u8],
    rsvmap: &'a [u8],
    boot_cpuid: u32,
}

impl<'a> Fdt<'a> {
    /// Check `data` (which may be longer than the blob) and wrap it.
    pub fn new(data: &'a [u8]) -> Result<Fdt<'a>, FdtError> {
        let have = data.len();
        let hdr = |i: usize| {
            be32(data, i * 4).ok_or(FdtError::Truncated {
                need: HEADER_V16,
                have,
            })
        };
        let magic = be32(data, 0).ok_or(FdtError::Truncated {
            need: HEADER_V16,
            have,
        })?;
        if magic != FDT_MAGIC {
            return Err(FdtError::BadMagic(magic));
        }
        let totalsize = hdr(1)?;
        let off_struct = hdr(2)?;
        let off_strings = hdr(3)?;
        let off_rsvmap = hdr(4)?;
        let version = hdr(5)?;
        let last_comp = hdr(6)?;
        let boot_cpuid = hdr(7)?;
        let size_strings = hdr(8)?;
        if version < 16 || last_comp > 17 {
            return Err(FdtError::BadVersion { version, last_comp });
        }
        let header_len = if version >= 17 {
            HEADER_V17
        } else {
            HEADER_V16
        };
        let total = totalsize as usize;
        if total < header_len {
            return Err(FdtError::BadTotalSize(totalsize));
        }
        if total > have {
            return Err(FdtError::Truncated { need: total, have });
        }
        let data = &data[..total];
        let size_struct = if version >= 17 {
            hdr(9)?
        } else {
            totalsize.saturating_sub(off_struct)
        };

        let block = |name: &'static str, off: u32, size: u32, align: u32| {
            let end = u64::from(off) + u64::from(size);
            if (off as usize) < header_len || end > u64::from(totalsize) {
                return Err(FdtError::BlockOutOfBounds {
                    block: name,
                    offset: off,
                    size,
                    totalsize,
                });
            }
            if !off.is_multiple_of(align) {
                return Err(FdtError::Misaligned {
                    block: name,
                    offset: off,
                });
            }
            Ok(&data[off as usize..end as usize])
        };
        let structs = block("struct", off_struct, size_struct, 4)?;
        let strings = block("strings", off_strings, size_strings, 1)?;
        let rsv_all = block(
            "memory reservation",
            off_rsvmap,
            totalsize - off_rsvmap.min(totalsize),
            8,
        )?;
        // The map runs to its (0, 0) entry.
        let mut n = 0;
        let rsvmap = loop {
            let (Some(a), Some(s)) = (be64(rsv_all, n), be64(rsv_all, n + 8)) else {
                return Err(FdtError::RsvmapUnterminated);
            };
            if a == 0 && s == 0 {
                break &rsv_all[..n];
            }
            n += 16;
        };

        let fdt = Fdt {
            structs,
            strings,
            rsvmap,
            boot_cpuid,
        };
        fdt.check_structure()?;
        Ok(fdt)
    }

    fn check_structure(&self) -> Result<(), FdtError> {
        let s = self.structs;
        let mut off = 0usize;
        let mut depth = 0usize;
        let mut seen_root = false;
        // Bit d set: the node at depth d already has a child.
        let mut has_child: u32 = 0;
        loop {
            let token = be32(s, off).ok_or(FdtError::NoEnd)?;
            match token {
                BEGIN_NODE => {
                    let (name, next) = cstr(s, off + 4).ok_or(FdtError::BadName { offset: off })?;
                    if depth == 0 && (seen_root || !name.is_empty()) {
                        return Err(FdtError::BadRoot { offset: off });
                    }
                    if depth > 0 && name.is_empty() {
                        return Err(FdtError::BadName { offset: off });
                    }
                    seen_root = true;
                    has_child |= 1 << depth;
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(FdtError::TooDeep { offset: off });
                    }
                    has_child &= !(1 << depth);
                    off = align4(next).ok_or(FdtError::NoEnd)?;
                }
                END_NODE => {
                    if depth == 0 {
                        return Err(FdtError::Unbalanced { offset: off });
                    }
                    depth -= 1;
                    off += 4;
                }
                PROP => {
                    if depth == 0 || has_child & (1 << depth) != 0 {
                        return Err(FdtError::MisplacedProp { offset: off });
                    }
                    let (len, nameoff) = match (be32(s, off + 4), be32(s, off + 8)) {
                        (Some(l), Some(n)) => (l, n),
                        _ => {
                            return Err(FdtError::PropOutOfBounds {
                                offset: off,
                                len: 0,
                            })
                        }
                    };
                    let end = (off + 12)
                        .checked_add(len as usize)
                        .filter(|&e| e <= s.len())
                        .ok_or(FdtError::PropOutOfBounds { offset: off, len })?;
                    if cstr(self.strings, nameoff as usize).is_none() {
                        return Err(FdtError::BadNameOffset {
                            offset: off,
                            nameoff,
                        });
                    }
                    off = align4(end).ok_or(FdtError::NoEnd)?;
                }
                NOP => off += 4,
                END => {
                    if depth != 0 || !seen_root {
                        return Err(FdtError::Unbalanced { offset: off });
                    }
                    return Ok(());
                }
                _ => return Err(FdtError::BadToken { offset: off, token }),
            }
        }
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        // check_structure guarantees BEGIN_NODE "" (after NOPs) comes first.
        let mut off = 0;
        while be32(self.structs, off) == Some(NOP) {
            off += 4;
        }
        Node {
            fdt: *self,
            name: "",
            content: off + 8,
        }
    }

    /// The node at an absolute path such as `/chosen` or `/cpus/cpu@0`. A
    /// component without `@` also matches a name with a unit address.
    pub fn find(&self, path: &str) -> Option<Node<'a>> {
        let mut node = self.root();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node.child(part)?;
        }
        Some(node)
    }

    /// The boot CPU's physical id from the header.
    pub fn boot_cpuid(&self) -> u32 {
        self.boot_cpuid
    }

    /// The memory reservation map: `(address, size)` entries.
    pub fn reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let map = self.rsvmap;
        (0..map.len() / 16).filter_map(move |i| Some((be64(map, i * 16)?, be64(map, i * 16 + 8)?)))
    }

    /// Every node, depth first, with its ancestors.
    pub fn walk(&self) -> Walk<'a> {
        let root = self.root();
        let mut stack = [None; MAX_DEPTH];
        stack[0] = Some(root.children());
        Walk {
            path: Path {
                nodes: [root; MAX_DEPTH],
                len: 1,
            },
            stack,
            depth: 1,
            started: false,
        }
    }

    fn token(&self, off: usize) -> Option<u32> {
        be32(self.structs, off)
    }
}

/// One node of a checked blob.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    name: &'a str,
    /// Offset of the first token after the node's name.
    content: usize,
}

impl<'a> Node<'a> {
    /// The full name, with unit address (`""` for the root).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The name before `@`.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or("")
    }

    pub fn props(&self) -> Props<'a> {
        Props {
            fdt: self.fdt,
            off: self.content,
        }
    }

    pub fn prop(&self, name: &str) -> Option<Prop<'a>> {
        self.props().find(|p| p.name == name)
    }

    pub fn children(&self) -> Children<'a> {
        Children {
            fdt: self.fdt,
            off: self.content,
            done: false,
        }
    }

    /// The child called `name` (or `name@...` when `name` has no `@`).
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        self.children()
            .find(|c| c.name == name || (!name.contains('@') && c.base_name() == name))
    }

    /// A u32 property, or `None` if missing or not 4 bytes.
    pub fn u32(&self, name: &str) -> Option<u32> {
        self.prop(name)?.as_u32()
    }

    /// A string property, or `None` if missing or not one string.
    pub fn str(&self, name: &str) -> Option<&'a str> {
        self.prop(name)?.as_str()
    }

    /// Whether `compatible` lists `compat`.
    pub fn is_compatible(&self, compat: &str) -> bool {
        self.prop("compatible")
            .is_some_and(|p| p.strs().any(|s| s == compat))
    }

    /// `status` is missing, `"okay"` or `"ok"`.
    pub fn is_enabled(&self) -> bool {
        match self.prop("status") {
            None => true,
            Some(p) => matches!(p.as_str(), Some("okay" | "ok")),
        }
    }
}

/// A property: a name and raw big-endian bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prop<'a> {
    pub name: &'a str,
    pub value: &'a [u8],
}

impl<'a> Prop<'a> {
    pub fn as_u32(&self) -> Option<u32> {
        if self.value.len() == 4 {
            be32(self.value, 0)
        } else {
            None
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        if self.value.len() == 8 {
            be64(self.value, 0)
        } else {
            None
        }
    }

    /// Exactly one NUL-terminated UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        let (last, body) = self.value.split_last()?;
        if *last != 0 || body.contains(&0) {
            return None;
        }
        core::str::from_utf8(body).ok()
    }

    /// A string list (as `compatible`). Yields nothing if the value is not a
    /// well-formed list.
    pub fn strs(&self) -> impl Iterator<Item = &'a str> + 'a {
        let ok = self.value.last() == Some(&0) && core::str::from_utf8(self.value).is_ok();
        let v = if ok {
            &self.value[..self.value.len() - 1]
        } else {
            &[][..]
        };
        let s = core::str::from_utf8(v).unwrap_or("");
        s.split('\0').filter(move |_| ok)
    }

    /// The value as 32-bit cells; a trailing partial cell is ignored.
    pub fn cells(&self) -> impl Iterator<Item = u32> + 'a {
        self.value
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Read a number of `cells` (1 or 2) from the front of `v`.
pub fn read_cells(v: &[u8], cells: u32) -> Option<u64> {
    match cells {
        1 => be32(v, 0).map(u64::from),
        2 => be64(v, 0),
        _ => None,
    }
}

/// The properties of a node.
#[derive(Clone, Copy, Debug)]
pub struct Props<'a> {
    fdt: Fdt<'a>,
    off: usize,
}

impl<'a> Iterator for Props<'a> {
    type Item = Prop<'a>;

    fn next(&mut self) -> Option<Prop<'a>> {
        loop {
            match self.fdt.token(self.off)? {
                NOP => self.off += 4,
                PROP => {
                    let s = self.fdt.structs;
                    let len = be32(s, self.off + 4)? as usize;
                    let nameoff = be32(s, self.off + 8)? as usize;
                    let start = self.off + 12;
                    let value = s.get(start..start.checked_add(len)?)?;
                    let (name, _) = cstr(self.fdt.strings, nameoff)?;
                    self.off = align4(start + len)?;
                    return Some(Prop { name, value });
                }
                _ => return None,
            }
        }
    }
}

/// The child nodes of a node.
#[derive(Clone, Copy, Debug)]
pub struct Children<'a> {
    fdt: Fdt<'a>,
    off: usize,
    done: bool,
}

impl<'a> Children<'a> {
    /// Skip the node whose BEGIN_NODE is at `off`; return the offset after
    /// its END_NODE.
    fn skip_node(&self, mut off: usize) -> Option<usize> {
        let s = self.fdt.structs;
        let mut depth = 0usize;
        loop {
            match be32(s, off)? {
                BEGIN_NODE => {
                    depth += 1;
                    off = align4(cstr(s, off + 4)?.1)?;
                }
                END_NODE => {
                    depth = depth.checked_sub(1)?;
                    off += 4;
                    if depth == 0 {
                        return Some(off);
                    }
                }
                PROP => off = align4((off + 12).checked_add(be32(s, off + 4)? as usize)?)?,
                NOP => off += 4,
                _ => return None,
            }
        }
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        if self.done {
            return None;
        }
        let s = self.fdt.structs;
        loop {
            let Some(token) = be32(s, self.off) else {
                self.done = true;
                return None;
            };
            match token {
                NOP => self.off += 4,
                PROP => match be32(s, self.off + 4)
                    .and_then(|l| (self.off + 12).checked_add(l as usize))
                    .and_then(align4)
                {
                    Some(next) => self.off = next,
                    None => {
                        self.done = true;
                        return None;
                    }
                },
                BEGIN_NODE => {
                    let here = self.off;
                    let (Some((name, next)), Some(after)) =
                        (cstr(s, here + 4), self.skip_node(here))
                    else {
                        self.done = true;
                        return None;
                    };
                    self.off = after;
                    return Some(Node {
                        fdt: self.fdt,
                        name,
                        content: align4(next)?,
                    });
                }
                _ => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

/// A node and its ancestors, root first.
#[derive(Clone, Copy, Debug)]
pub struct Path<'a> {
    nodes: [Node<'a>; MAX_DEPTH],
    len: usize,
}

impl<'a> Path<'a> {
    /// The node itself.
    pub fn node(&self) -> Node<'a> {
        self.nodes[self.len.clamp(1, MAX_DEPTH) - 1]
    }

    /// Root first, the node itself last.
    pub fn nodes(&self) -> &[Node<'a>] {
        &self.nodes[..self.len.min(MAX_DEPTH)]
    }

    /// The parent, `None` for the root.
    pub fn parent(&self) -> Option<Node<'a>> {
        let n = self.nodes();
        n.len().checked_sub(2).map(|i| n[i])
    }
}

/// Depth-first walk over every node below the root (see [`Fdt::walk`]).
pub struct Walk<'a> {
    path: Path<'a>,
    stack: [Option<Children<'a>>; MAX_DEPTH],
    depth: usize,
    started: bool,
}

impl<'a> Iterator for Walk<'a> {
    type Item = Path<'a>;

    fn next(&mut self) -> Option<Path<'a>> {
        if !self.started {
            self.started = true;
            return Some(self.path);
        }
        loop {
            if self.depth == 0 {
                return None;
            }
            let top = self.stack.get_mut(self.depth - 1)?.as_mut()?;
            match top.next() {
                Some(child) => {
                    if self.depth >= MAX_DEPTH {
                        // check_structure rejects deeper blobs.
                        return None;
                    }
                    self.path.nodes[self.depth] = child;
                    self.path.len = self.depth + 1;
                    self.stack[self.depth] = Some(child.children());
                    self.depth += 1;
                    return Some(self.path);
                }
                None => {
                    self.depth -= 1;
                }
            }
        }
    }
}
