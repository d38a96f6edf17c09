//! # vflash: an emulated CFI NOR flash for a firmware guest's variables
//!
//! UEFI firmware for QEMU `virt` (EDK2's ArmVirtQemu) keeps its variables
//! in a second CFI flash, driven with the Intel command set (every command
//! a 32-bit store, repeated in both halves: `0x00XX00XX`). Without a store
//! it does not boot. This is that flash's command state machine.
//!
//! As QEMU's pflash does, the flash is plain memory while it is in
//! read-array mode: the kernel maps its frames read-only, reads never trap,
//! and a write (a command) is a permission fault it hands to
//! [`Flash::mmio`]. In any other mode (status, identification, a write or
//! an erase under way) the kernel unmaps it, so reads trap too and read
//! what this machine says.
//!
//! **Responsible for:** the command sequences EDK2's `VirtNorFlashDxe`
//! issues: read array (0xff), read status (0x70), clear status (0x50),
//! read identifier (0x90: block lock status reads 0, unlocked), block erase
//! (0x20, 0xd0), buffered program (0xe8, count, data, 0xd0), word program
//! (0x40 or 0x10, data), block unlock or lock (0x60, 0xd0 or 0x01). The
//! status register always reads ready (0x0080 in each half).
//!
//! **Not responsible for:** the bytes. It says what to do with them
//! ([`Effect`]) and the kernel does it to the store's frames. No CFI query
//! table (0x98 reads zeros; EDK2 never asks), no timing, no errors in the
//! status register, no suspend, no persistence past the hypervisor's own
//! life (a guest's reboot keeps the store; a power cycle of the board does
//! not).
//!
//! **Invariants:**
//! - Every [`Effect`] lies inside the store: `offset + len <= size`, and
//!   a [`Effect::Program`] is at most 4 bytes wide (a wider store is
//!   refused).
//! - Any command it does not know puts it back in read-array mode (as
//!   QEMU's pflash does), so a guest cannot wedge it.
//! - [`Flash::array`] is true exactly when reads may go to memory.
#![no_std]
#![forbid(unsafe_code)]

/// The erase block: EDK2's `QEMU_NOR_BLOCK_SIZE`.
pub const BLOCK: u64 = 256 << 10;
/// The status register: ready, no error, in both 16-bit halves.
pub const STATUS_READY: u32 = 0x0080_0080;

/// What the kernel must do to the store's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Store `value` (`width` bytes, little-endian) at `offset`.
    Program { offset: u64, value: u32, width: u8 },
    /// Fill `[offset, offset + len)` with 0xff.
    Erase { offset: u64, len: u64 },
}

/// What a read reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// The store's bytes at that offset (read-array mode).
    Array,
    /// This value.
    Value(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Array,
    Status,
    Ident,
    /// 0x20 seen at this block: 0xd0 erases it.
    EraseSetup(u64),
    /// 0xe8 seen: the next write is the word count minus one.
    BufferCount,
    /// Words still to come.
    BufferData(u32),
    /// All words in: 0xd0 commits.
    BufferConfirm,
    /// 0x40 or 0x10 seen: the next write is the data.
    WordProgram,
    /// 0x60 seen: 0xd0 unlocks, 0x01 locks (both accepted, nothing kept).
    LockSetup,
}

/// One flash device of `size` bytes (a multiple of [`BLOCK`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flash {
    size: u64,
    mode: Mode,
}

impl Flash {
    pub const fn new(size: u64) -> Self {
        Flash { size, mode: Mode::Array }
    }

    /// Reads may go straight to the store (it may be mapped).
    pub fn array(&self) -> bool {
        self.mode == Mode::Array
    }

    /// A read of `width` bytes at `offset`.
    pub fn read(&self, offset: u64, width: u8) -> Read {
        let word = match self.mode {
            Mode::Array => return Read::Array,
            // Identifier codes: only the block lock status (offset 2 in
            // 16-bit words of each device, byte 8) is read; it is 0.
            Mode::Ident => 0,
            _ => STATUS_READY,
        };
        let shift = 8 * (offset & 3) as u32;
        let bits = match width {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        Read::Value((word >> shift) & bits)
    }

    /// A write of `value` (`width` bytes) at `offset`: the new mode, and
    /// what to do to the bytes, if anything.
    pub fn write(&mut self, offset: u64, value: u32, width: u8) -> Option<Effect> {
        // The device is 32 bits wide: a 64-bit store is no command.
        if width > 4 || offset >= self.size || offset + u64::from(width) > self.size {
            self.mode = Mode::Array;
            return None;
        }
        let cmd = value & 0xff;
        let (mode, effect) = match self.mode {
            Mode::Array | Mode::Status | Mode::Ident => (
                match cmd {
                    0x70 => Mode::Status,
                    0x90 => Mode::Ident,
                    0x98 => Mode::Ident,
                    0x20 => Mode::EraseSetup(offset & !(BLOCK - 1)),
                    0xe8 => Mode::BufferCount,
                    0x40 | 0x10 => Mode::WordProgram,
                    0x60 => Mode::LockSetup,
                    // 0xff, 0x50 (clear status) and anything unknown.
                    _ => Mode::Array,
                },
                None,
            ),
            Mode::EraseSetup(block) if cmd == 0xd0 => (Mode::Status, Some(Effect::Erase { offset: block, len: BLOCK.min(self.size - block) })),
            Mode::BufferCount => (Mode::BufferData(cmd + 1), None),
            Mode::BufferData(left) => {
                let next = if left > 1 { Mode::BufferData(left - 1) } else { Mode::BufferConfirm };
                (next, Some(Effect::Program { offset, value, width }))
            }
            Mode::BufferConfirm if cmd == 0xd0 => (Mode::Status, None),
            Mode::WordProgram => (Mode::Status, Some(Effect::Program { offset, value, width })),
            Mode::LockSetup => (Mode::Status, None),
            // A broken sequence: back to reading the array.
            Mode::EraseSetup(_) | Mode::BufferConfirm => (Mode::Array, None),
        };
        self.mode = mode;
        effect
    }
}
