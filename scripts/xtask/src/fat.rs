//! A disk image with an MBR and one FAT32 partition, written and read
//! entirely in user space (no root, no loop mounts): the MBR is 512 bytes
//! written here, the file system is the `fatfs` crate's.

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const SECTOR: u64 = 512;
/// The partition starts 1 MiB into the disk (LBA 2048), as fdisk and the
/// Raspberry Pi images do: aligned to any SD card's erase block.
pub const PART_START_LBA: u64 = 2048;
/// The least partition size: FAT32 needs at least 65525 clusters, and with
/// the 512-byte clusters `fatfs` picks for FAT32 below 260 MB, 64 MiB gives
/// 131072.
pub const MIN_PART_BYTES: u64 = 64 << 20;
/// MBR partition type: FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0c;
/// MBR partition type: a Linux file system.
pub const TYPE_LINUX: u8 = 0x83;

/// The one partition entry this project writes, as read back from an MBR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub bootable: bool,
    pub kind: u8,
    pub start_lba: u64,
    pub sectors: u64,
}

/// An MBR as read back: the disk signature and the first used entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mbr {
    pub signature: u32,
    pub partition: Partition,
}

/// CHS (255 heads, 63 sectors per track) of an LBA, as the three bytes an
/// MBR entry holds; beyond cylinder 1023 the conventional "too far" value.
fn chs(lba: u64) -> [u8; 3] {
    let (spt, heads) = (63u64, 255u64);
    let c = lba / (spt * heads);
    if c > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let h = (lba / spt) % heads;
    let s = lba % spt + 1;
    [h as u8, (s as u8) | (((c >> 2) & 0xc0) as u8), (c & 0xff) as u8]
}

/// A 512-byte MBR with one bootable FAT32 (LBA) partition.
pub fn mbr(signature: u32, part: Partition) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    set_partition(&mut m, 0, part);
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// Write MBR entry `index` (0..4).
pub fn set_partition(m: &mut [u8; 512], index: usize, part: Partition) {
    let e = &mut m[446 + 16 * index..462 + 16 * index];
    e[0] = if part.bootable { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs(part.start_lba));
    e[4] = part.kind;
    e[5..8].copy_from_slice(&chs(part.start_lba + part.sectors - 1));
    e[8..12].copy_from_slice(&(part.start_lba as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(part.sectors as u32).to_le_bytes());
}

/// Every entry of an MBR (checked as [`parse_mbr`] does): `None` for an
/// unused one.
pub fn partitions(m: &[u8]) -> Result<[Option<Partition>; 4], String> {
    parse_mbr(m)?;
    let u32at = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
    Ok(std::array::from_fn(|i| {
        let o = 446 + 16 * i;
        (m[o + 4] != 0).then(|| Partition { bootable: m[o] == 0x80, kind: m[o + 4], start_lba: u32at(o + 8) as u64, sectors: u32at(o + 12) as u64 })
    }))
}

/// Read an MBR: its boot signature, disk signature and first used entry.
pub fn parse_mbr(m: &[u8]) -> Result<Mbr, String> {
    if m.len() < 512 || m[510..512] != [0x55, 0xaa] {
        return Err("no MBR (boot signature 55 aa missing)".into());
    }
    let u32at = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
    for i in 0..4 {
        let o = 446 + 16 * i;
        if m[o + 4] == 0 {
            continue;
        }
        if m[o] != 0 && m[o] != 0x80 {
            return Err(format!("MBR partition {}: bad status byte {:#x}", i + 1, m[o]));
        }
        return Ok(Mbr {
            signature: u32at(440),
            partition: Partition { bootable: m[o] == 0x80, kind: m[o + 4], start_lba: u32at(o + 8) as u64, sectors: u32at(o + 12) as u64 },
        });
    }
    Err("the MBR has no partition".into())
}

/// A window `[start, start + len)` of a stream, seen as a stream of its own
/// (a partition of a disk image).
pub struct Slice<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Slice<T> {
    pub fn new(mut inner: T, start: u64, len: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(start))?;
        Ok(Slice { inner, start, len, pos: 0 })
    }
}

impl<T: Read + Seek> Read for Slice<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos.min(self.len)) as usize);
        let n = self.inner.read(&mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<T: Write + Seek> Write for Slice<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min((self.len - self.pos.min(self.len)) as usize);
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write beyond the end of the partition"));
        }
        let n = self.inner.write(&buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Seek> Seek for Slice<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .filter(|&p| p <= self.len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek outside the partition"))?;
        self.inner.seek(SeekFrom::Start(self.start + new))?;
        self.pos = new;
        Ok(new)
    }
}

/// A partition size that holds `files` with room to spare: their bytes in
/// whole 4 KiB units, plus 1/16 and 4 MiB for the FATs, directories and
/// slack, rounded up to 1 MiB, and never below [`MIN_PART_BYTES`]. Never
/// full to the last cluster: Pi 4 bootloaders before 2024-01-18 could not
/// read a file that uses it (raspberrypi/rpi-eeprom#521).
pub fn partition_bytes(files: &[(&str, &[u8])]) -> u64 {
    let data: u64 = files.iter().map(|(_, d)| (d.len() as u64).next_multiple_of(4096)).sum();
    (data + data / 16 + (4 << 20)).next_multiple_of(1 << 20).max(MIN_PART_BYTES)
}

/// FNV-1a over the files' names and bytes: a disk signature and volume ID
/// that differ between images but are the same for the same contents (the
/// image is reproducible; see [`Epoch`]).
pub fn content_id(files: &[(&str, &[u8])]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (name, data) in files {
        for b in name.bytes().chain([0]).chain(data.iter().copied()) {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
    }
    // 0 reads as "no signature" to some tools.
    h.max(1)
}

/// Every file's timestamps: 1980-01-01 00:00, the least a FAT can say, so
/// that the same contents give the same image. (fatfs's own default
/// without `chrono` writes a zero date, month 0 and day 0, which is invalid.)
#[derive(Debug)]
struct Epoch;

impl fatfs::TimeProvider for Epoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date { year: 1980, month: 1, day: 1 }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime { date: self.get_current_date(), time: fatfs::Time { hour: 0, min: 0, sec: 0, millis: 0 } }
    }
}

static EPOCH: Epoch = Epoch;

/// A whole disk image: the MBR, zeros up to 1 MiB, and a FAT32 partition
/// labelled `label` holding `files` in its root directory. Its size is the
/// partition's end.
pub fn disk_image(files: &[(&str, &[u8])], label: &str) -> Result<Vec<u8>, String> {
    let part_bytes = partition_bytes(files);
    let id = content_id(files);
    let mut lab = [b' '; 11];
    for (d, s) in lab.iter_mut().zip(label.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    let mut part = Cursor::new(vec![0u8; part_bytes as usize]);
    let opts = fatfs::FormatVolumeOptions::new().fat_type(fatfs::FatType::Fat32).volume_id(id).volume_label(lab);
    fatfs::format_volume(&mut part, opts).map_err(|e| format!("formatting FAT32: {e}"))?;
    part.set_position(0);
    {
        let opts = fatfs::FsOptions::new().time_provider(&EPOCH);
        let fs = fatfs::FileSystem::new(&mut part, opts).map_err(|e| format!("mounting the new FAT32: {e}"))?;
        for (name, data) in files {
            let mut f = fs.root_dir().create_file(name).map_err(|e| format!("FAT: creating {name}: {e}"))?;
            f.truncate().map_err(|e| format!("FAT: {name}: {e}"))?;
            f.write_all(data).map_err(|e| format!("FAT: writing {name}: {e}"))?;
            f.flush().map_err(|e| format!("FAT: writing {name}: {e}"))?;
        }
        // Count the free clusters, so that unmount records them in FSInfo
        // (left "unknown" otherwise, which fsck.fat remarks on).
        fs.stats().map_err(|e| format!("FAT: {e}"))?;
        fs.unmount().map_err(|e| format!("FAT: unmount: {e}"))?;
    }
    let part = part.into_inner();
    let start = PART_START_LBA * SECTOR;
    let mut disk = Vec::with_capacity(start as usize + part.len());
    let p = Partition { bootable: true, kind: TYPE_FAT32_LBA, start_lba: PART_START_LBA, sectors: part_bytes / SECTOR };
    disk.extend_from_slice(&mbr(id, p));
    disk.resize(start as usize, 0);
    disk.extend_from_slice(&part);
    Ok(disk)
}

/// A file in the partition's root directory: its name and length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub len: u64,
}

/// A disk image's FAT partition, opened for reading.
pub struct Volume {
    pub mbr: Mbr,
    fs: fatfs::FileSystem<Slice<std::fs::File>>,
}

impl Volume {
    /// Parse the MBR of the image at `path` and mount its first partition.
    pub fn open(path: &Path) -> Result<Volume, String> {
        let at = |e: io::Error| format!("{}: {e}", path.display());
        let mut f = std::fs::File::open(path).map_err(at)?;
        let mut m = [0u8; 512];
        f.read_exact(&mut m).map_err(at)?;
        let mbr = parse_mbr(&m).map_err(|e| format!("{}: {e}", path.display()))?;
        let p = mbr.partition;
        let disk_len = f.metadata().map_err(at)?.len();
        let (start, len) = (p.start_lba * SECTOR, p.sectors * SECTOR);
        if start + len > disk_len {
            return Err(format!("{}: the partition ends at {} but the image has {disk_len} bytes", path.display(), start + len));
        }
        let slice = Slice::new(f, start, len).map_err(at)?;
        let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new()).map_err(|e| format!("{}: no FAT file system in partition 1: {e}", path.display()))?;
        Ok(Volume { mbr, fs })
    }

    pub fn fat_type(&self) -> fatfs::FatType {
        self.fs.fat_type()
    }

    /// The files (not directories) in the root directory, in directory order.
    pub fn list(&self) -> Result<Vec<Entry>, String> {
        let mut v = Vec::new();
        for e in self.fs.root_dir().iter() {
            let e = e.map_err(|e| format!("FAT: reading the root directory: {e}"))?;
            if e.is_file() {
                v.push(Entry { name: e.file_name(), len: e.len() });
            }
        }
        Ok(v)
    }

    /// The bytes of a file in the root directory (names match case-insensitively, as on FAT).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        let mut f = self.fs.root_dir().open_file(name).map_err(|e| format!("FAT: {name}: {e}"))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| format!("FAT: reading {name}: {e}"))?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_fields() {
        let p = Partition { bootable: true, kind: TYPE_FAT32_LBA, start_lba: 2048, sectors: 131072 };
        let m = mbr(0xdead_beef, p);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(&m[440..444], &0xdead_beefu32.to_le_bytes());
        assert_eq!(m[446], 0x80, "bootable");
        assert_eq!(m[450], 0x0c, "FAT32 LBA");
        assert_eq!(&m[447..450], &[0x20, 0x21, 0x00], "CHS of LBA 2048 (what fdisk writes)");
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 131072);
        assert!(m[462..510].iter().all(|&b| b == 0), "one partition only");
        assert!(m[..440].iter().all(|&b| b == 0), "no boot code");
        assert_eq!(parse_mbr(&m).unwrap(), Mbr { signature: 0xdead_beef, partition: p });
        assert_eq!(chs(100 * 255 * 63 * 1024), [0xfe, 0xff, 0xff]);
        let mut bad = m;
        bad[511] = 0;
        assert!(parse_mbr(&bad).is_err());
        assert!(parse_mbr(&[0u8; 512]).is_err());
    }

    #[test]
    fn a_second_partition() {
        let p1 = Partition { bootable: true, kind: TYPE_FAT32_LBA, start_lba: 2048, sectors: 131072 };
        let p2 = Partition { bootable: false, kind: TYPE_LINUX, start_lba: 133120, sectors: 16384 };
        let mut m = mbr(7, p1);
        set_partition(&mut m, 1, p2);
        assert_eq!(m[462 + 4], 0x83);
        assert_eq!(partitions(&m).unwrap(), [Some(p1), Some(p2), None, None]);
        assert_eq!(parse_mbr(&m).unwrap().partition, p1, "the first is still the FAT");
        assert!(partitions(&[0u8; 512]).is_err());
    }

    #[test]
    fn slice_stays_inside() {
        let mut s = Slice::new(Cursor::new(vec![0u8; 100]), 10, 20).unwrap();
        assert_eq!(s.seek(SeekFrom::End(0)).unwrap(), 20);
        assert!(s.seek(SeekFrom::End(1)).is_err());
        s.seek(SeekFrom::Start(15)).unwrap();
        assert!(s.write_all(&[1u8; 10]).is_err(), "writes stop at the partition's end");
        let inner = s.inner.into_inner();
        assert!(inner[25..30].iter().all(|&b| b == 1) && inner[30] == 0 && inner[24] == 0);
    }

    #[test]
    fn sizes_are_fat32_sized() {
        assert_eq!(partition_bytes(&[("a", &[0u8; 10])]), MIN_PART_BYTES);
        let big = vec![0u8; 300 << 20];
        let p = partition_bytes(&[("a", &big)]);
        assert!(p > 300 << 20 && p.is_multiple_of(1 << 20));
    }
}
