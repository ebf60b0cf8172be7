//! A writer for the `newc` cpio format, the format Linux unpacks as an
//! initramfs (see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (magic `070701` and thirteen 8-digit
//! hex fields), the NUL-terminated name padded to 4 bytes, then the data
//! padded to 4 bytes. The archive ends with an entry named `TRAILER!!!`.

/// File-type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Builds a cpio archive in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            bytes: Vec::new(),
            next_ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so archives are reproducible
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            namesize as u32,
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for f in fields {
            self.bytes.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Adds a directory (`name` without a leading slash, e.g. `"bin"`).
    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// Adds a regular file with permission bits `perm` (e.g. `0o755`).
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), (0, 0), data);
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// Appends the trailer and returns the archive bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // Pad to 512 bytes like the cpio tool does; the kernel ignores it.
        while !self.bytes.len().is_multiple_of(512) {
            self.bytes.push(0);
        }
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back (name, mode, data) triples; a minimal newc reader for tests.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + i * 8..14 + i * 8]).unwrap(), 16)
                .unwrap()
        };
        let mut out = Vec::new();
        let total = b.len();
        loop {
            assert_eq!(&b[..6], b"070701");
            let mode = field(b, 1);
            let size = field(b, 6) as usize;
            let namesize = field(b, 11) as usize;
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            let mut off = 110 + namesize;
            off = (off + (total - b.len())).next_multiple_of(4) - (total - b.len());
            let data = b[off..off + size].to_vec();
            off = (off + size + (total - b.len())).next_multiple_of(4) - (total - b.len());
            if name == "TRAILER!!!" {
                return out;
            }
            out.push((name, mode, data));
            b = &b[off..];
        }
    }

    #[test]
    fn round_trips_entries_with_alignment() {
        let mut a = Archive::new();
        a.dir("bin");
        a.file("bin/x", 0o755, b"hello");
        a.char_dev("dev/console", 5, 1);
        a.file("init", 0o700, b"");
        let bytes = a.finish();
        assert_eq!(bytes.len() % 512, 0);
        let entries = parse(&bytes);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].0, "bin");
        assert_eq!(entries[0].1 & 0o170000, S_IFDIR);
        assert_eq!(
            entries[1],
            ("bin/x".into(), S_IFREG | 0o755, b"hello".to_vec())
        );
        assert_eq!(entries[2].1, S_IFCHR | 0o600);
        assert_eq!(entries[3].1, S_IFREG | 0o700);
    }
}
