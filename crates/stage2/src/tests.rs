//! Behavioural tests of [`Stage2`]: block selection, splitting,
//! break-before-make ordering (checked by replaying a journal of every table
//! write and TLB call), error atomicity, and property tests against a simple
//! interval model.

extern crate std;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use tessel_addr::{
    GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE, SIZE_1G, SIZE_2M,
};

use crate::attrs::bits;
use crate::fake::{FakeMemory, FakeTlb, TlbOp};
use crate::*;

// ---------------------------------------------------------------------------
// Journal: every allocation, free, descriptor write and TLB call, in order.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Alloc(u64, usize),
    Free(u64, usize),
    Write(u64, usize, u64),
    Inv(u64, Option<u8>),
    InvAll,
    Sync,
}

type Log = Rc<RefCell<Vec<Ev>>>;

struct LogMem {
    inner: FakeMemory,
    log: Log,
}

impl TableMemory for LogMem {
    fn alloc_tables(&mut self, count: usize) -> Option<HostPhysAddr> {
        let t = self.inner.alloc_tables(count)?;
        self.log.borrow_mut().push(Ev::Alloc(t.0, count));
        Some(t)
    }
    fn free_tables(&mut self, base: HostPhysAddr, count: usize) {
        self.log.borrow_mut().push(Ev::Free(base.0, count));
        self.inner.free_tables(base, count)
    }
    fn read(&self, table: HostPhysAddr, index: usize) -> u64 {
        self.inner.read(table, index)
    }
    fn write(&mut self, table: HostPhysAddr, index: usize, desc: u64) {
        self.log.borrow_mut().push(Ev::Write(table.0, index, desc));
        self.inner.write(table, index, desc)
    }
}

struct LogTlb {
    log: Log,
}

impl TlbMaintenance for LogTlb {
    fn invalidate_ipa(&mut self, ipa: GuestPhysAddr, level: Option<u8>) {
        self.log.borrow_mut().push(Ev::Inv(ipa.0, level));
    }
    fn invalidate_vmid(&mut self) {
        self.log.borrow_mut().push(Ev::InvAll);
    }
    fn sync(&mut self) {
        self.log.borrow_mut().push(Ev::Sync);
    }
}

type LogStage2 = Stage2<LogMem, LogTlb>;

fn logged(config: Stage2Config) -> (LogStage2, Log) {
    let log: Log = Rc::default();
    let mem = LogMem {
        inner: FakeMemory::new(),
        log: log.clone(),
    };
    let s2 = Stage2::new(config, mem, LogTlb { log: log.clone() }).unwrap();
    (s2, log)
}

const fn lsize(level: u8) -> u64 {
    1 << (12 + 9 * (3 - level as u32))
}

fn is_leaf(desc: u64, level: u8) -> bool {
    desc & bits::VALID != 0 && ((level == 3) == (desc & bits::TABLE_OR_PAGE != 0)) && level > 0
}

fn is_table(desc: u64, level: u8) -> bool {
    level < 3 && desc & 0b11 == 0b11
}

/// An invalidation requirement: IPA range start and end, level hint,
/// broken slot, done.
type Req = (u64, u64, Option<u8>, Option<(u64, usize)>, bool);

/// Replays a journal and checks break-before-make: a live valid descriptor
/// is only overwritten by a valid one when just its permissions change; a
/// broken entry is only re-made after an invalidation covering everything
/// it mapped and a sync; unlinked tables are freed only once reachable
/// from nowhere and after all invalidations completed; nothing is left
/// un-invalidated at the end.
struct BbmChecker {
    mirror: HashMap<(u64, usize), u64>,
    /// Reachable tables: base IPA and level.
    region: HashMap<u64, (u64, u8)>,
    /// Outstanding invalidation requirements: IPA range, level hint the
    /// invalidation may carry (None: table entry, no hint allowed), the slot
    /// that was broken (if any), invalidated yet.
    reqs: Vec<Req>,
    broken: HashSet<(u64, usize)>,
}

impl BbmChecker {
    fn new(config: &Stage2Config, root: HostPhysAddr) -> Self {
        let mut region = HashMap::new();
        let start = config.start_level();
        for k in 0..config.root_tables() as u64 {
            region.insert(root.0 + k * PAGE_SIZE, (k * 512 * lsize(start), start));
        }
        Self {
            mirror: HashMap::new(),
            region,
            reqs: Vec::new(),
            broken: HashSet::new(),
        }
    }

    fn read(&self, t: u64, i: usize) -> u64 {
        self.mirror.get(&(t, i)).copied().unwrap_or(0)
    }

    fn link(&mut self, table: u64, base: u64, level: u8) {
        self.region.insert(table, (base, level));
        for i in 0..512 {
            let d = self.read(table, i);
            if is_table(d, level) {
                self.link(d & bits::OA_MASK, base + i as u64 * lsize(level), level + 1);
            }
        }
    }

    fn unlink(&mut self, table: u64, base: u64, level: u8, slot: (u64, usize)) {
        self.region.remove(&table);
        for i in 0..512 {
            let d = self.read(table, i);
            let eb = base + i as u64 * lsize(level);
            if is_table(d, level) {
                self.reqs
                    .push((eb, eb + lsize(level), None, Some(slot), false));
                self.unlink(d & bits::OA_MASK, eb, level + 1, slot);
            } else if is_leaf(d, level) {
                self.reqs
                    .push((eb, eb + lsize(level), Some(level), Some(slot), false));
            }
        }
    }

    fn event(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Alloc(t, n) => {
                for k in 0..n as u64 {
                    for i in 0..512 {
                        self.mirror.remove(&(t + k * PAGE_SIZE, i));
                    }
                }
            }
            Ev::Free(t, _) => {
                if self.region.contains_key(&t) {
                    return Err(format!("table {t:#x} freed while reachable"));
                }
                if !self.reqs.is_empty() {
                    return Err(format!(
                        "table {t:#x} freed before invalidations completed: {:x?}",
                        self.reqs
                    ));
                }
            }
            Ev::Write(t, i, new) => {
                let old = self.read(t, i);
                if let Some(&(base, level)) = self.region.get(&t) {
                    let eb = base + i as u64 * lsize(level);
                    let range = (eb, eb + lsize(level));
                    let old_valid = old & bits::VALID != 0;
                    let new_valid = new & bits::VALID != 0;
                    if old_valid && new_valid {
                        if !(is_leaf(old, level)
                            && is_leaf(new, level)
                            && (old ^ new) & !bits::PERMISSION_MASK == 0)
                        {
                            return Err(format!(
                                "live descriptor for IPA {eb:#x} (level {level}) changed \
                                 {old:#x} -> {new:#x} without break-before-make"
                            ));
                        }
                        self.reqs.push((range.0, range.1, Some(level), None, false));
                    } else if old_valid {
                        if is_table(old, level) {
                            self.reqs
                                .push((range.0, range.1, None, Some((t, i)), false));
                            self.unlink(old & bits::OA_MASK, eb, level + 1, (t, i));
                        } else {
                            self.reqs
                                .push((range.0, range.1, Some(level), Some((t, i)), false));
                        }
                        self.broken.insert((t, i));
                    } else if new_valid {
                        if self.broken.contains(&(t, i)) {
                            return Err(format!(
                                "descriptor for IPA {eb:#x} (level {level}) re-made before \
                                 its invalidation completed"
                            ));
                        }
                        if is_table(new, level) {
                            self.link(new & bits::OA_MASK, eb, level + 1);
                        }
                    }
                }
                self.mirror.insert((t, i), new);
            }
            Ev::Inv(ipa, hint) => {
                for r in &mut self.reqs {
                    let level_ok = hint.is_none() || hint == r.2;
                    if ipa >= r.0 && ipa < r.1 && level_ok {
                        r.4 = true;
                    }
                }
            }
            Ev::InvAll => self.reqs.iter_mut().for_each(|r| r.4 = true),
            Ev::Sync => {
                self.reqs.retain(|r| !r.4);
                let still: HashSet<_> = self.reqs.iter().filter_map(|r| r.3).collect();
                self.broken.retain(|s| still.contains(s));
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.reqs.is_empty() {
            Ok(())
        } else {
            Err(format!("invalidations never completed: {:x?}", self.reqs))
        }
    }
}

fn check_journal(s2: &LogStage2, log: &Log) -> Result<(), String> {
    let mut c = BbmChecker::new(s2.config(), s2.root());
    for ev in log.borrow().iter().skip(1) {
        c.event(*ev)?;
    }
    c.finish()
}

#[test]
fn the_checker_catches_violations() {
    let config = cfg(40, 40);
    let root = HostPhysAddr(0x8000_0000);
    let block = |pa: u64| Attrs::RAM.leaf_bits() | pa | 1;
    let run = |evs: &[Ev]| {
        let mut c = BbmChecker::new(&config, root);
        evs.iter()
            .try_for_each(|e| c.event(*e))
            .and_then(|_| c.finish())
    };
    let r = root.0;
    // Valid to valid with a different output address.
    assert!(
        run(&[
            Ev::Write(r, 1, block(0x4000_0000)),
            Ev::Write(r, 1, block(0x8000_0000))
        ])
        .is_err()
    );
    // Break, make without invalidation.
    assert!(
        run(&[
            Ev::Write(r, 1, block(0x4000_0000)),
            Ev::Write(r, 1, 0),
            Ev::Write(r, 1, block(0x8000_0000))
        ])
        .is_err()
    );
    // Invalidation of the wrong address.
    assert!(
        run(&[
            Ev::Write(r, 1, block(0x4000_0000)),
            Ev::Write(r, 1, 0),
            Ev::Inv(0, Some(1)),
            Ev::Sync,
            Ev::Write(r, 1, block(0x8000_0000))
        ])
        .is_err()
    );
    // Invalidated but not synced.
    assert!(
        run(&[
            Ev::Write(r, 1, block(0x4000_0000)),
            Ev::Write(r, 1, 0),
            Ev::Inv(0x4000_0000, Some(1)),
            Ev::Write(r, 1, block(0x8000_0000))
        ])
        .is_err()
    );
    // Removal never invalidated.
    assert!(run(&[Ev::Write(r, 1, block(0x4000_0000)), Ev::Write(r, 1, 0)]).is_err());
    // The correct sequence passes.
    run(&[
        Ev::Write(r, 1, block(0x4000_0000)),
        Ev::Write(r, 1, 0),
        Ev::Inv(0x4000_0000, Some(1)),
        Ev::Sync,
        Ev::Write(r, 1, block(0x8000_0000)),
    ])
    .unwrap();
    // Freeing a linked table.
    let t = 0x9000_0000;
    assert!(run(&[Ev::Alloc(t, 1), Ev::Write(r, 2, t | 3), Ev::Free(t, 1)]).is_err());
}

// ---------------------------------------------------------------------------
// Helpers.

fn cfg(pa: u8, ipa: u8) -> Stage2Config {
    Stage2Config::new(pa, ipa).unwrap()
}

fn g(a: u64, size: u64) -> GuestRange {
    GuestRange::new(GuestPhysAddr(a), size)
}

fn mappings<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<M, T>) -> Vec<Mapping> {
    let mut v = Vec::new();
    s2.for_each_mapping(|m| v.push(m));
    v
}

/// Leaves merged into maximal runs of contiguous IPA and PA with the same
/// attributes: (ipa start, ipa end, pa start, attrs).
type Run = (u64, u64, u64, Attrs);

fn runs<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<M, T>) -> Vec<Run> {
    normalise(
        mappings(s2)
            .into_iter()
            .map(|m| (m.ipa.start.0, m.ipa.start.0 + m.ipa.size, m.pa.0, m.attrs))
            .collect(),
    )
}

fn normalise(v: Vec<Run>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for r in v {
        if let Some(last) = out.last_mut()
            && last.1 == r.0
            && last.2 + (last.1 - last.0) == r.2
            && last.3 == r.3
        {
            last.1 = r.1;
            continue;
        }
        out.push(r);
    }
    out
}

/// Counts tables reachable from the root and checks none below the root is
/// empty.
fn reachable_tables<M: TableMemory, T: TlbMaintenance>(s2: &Stage2<M, T>) -> usize {
    fn walk(m: &impl TableMemory, t: HostPhysAddr, level: u8) -> usize {
        let mut n = 1;
        let mut any = false;
        for i in 0..512 {
            let d = m.read(t, i);
            any |= d & bits::VALID != 0;
            if is_table(d, level) {
                n += walk(m, HostPhysAddr(d & bits::OA_MASK), level + 1);
            }
        }
        assert!(any, "empty table {t:?} at level {level} left linked");
        n
    }
    let c = s2.config();
    let mut n = c.root_tables();
    for idx in 0..c.root_tables() * 512 {
        let t = HostPhysAddr(s2.root().0 + (idx / 512) as u64 * PAGE_SIZE);
        let d = s2.memory().read(t, idx % 512);
        if is_table(d, c.start_level()) {
            n += walk(
                s2.memory(),
                HostPhysAddr(d & bits::OA_MASK),
                c.start_level() + 1,
            );
        }
    }
    n
}

fn ro() -> Attrs {
    Attrs::new(MemoryType::Normal, Access::READ)
}

// ---------------------------------------------------------------------------
// Block selection.

#[test]
fn identity_map_uses_the_largest_blocks() {
    let mut mem = FakeMemory::new();
    let mut s2 = Stage2::new(cfg(40, 40), &mut mem, FakeTlb::default()).unwrap();
    // 2 MiB below 1 GiB, then 1 GiB, then 2 MiB, then two pages.
    let start = 0x3fe0_0000;
    let size = SIZE_2M + SIZE_1G + SIZE_2M + 2 * PAGE_SIZE;
    s2.identity_map(HostRange::new(HostPhysAddr(start), size), Attrs::RAM)
        .unwrap();
    let got: Vec<(u64, u64, u8)> = mappings(&s2)
        .iter()
        .map(|m| (m.ipa.start.0, m.ipa.size, m.level))
        .collect();
    assert_eq!(
        got,
        vec![
            (0x3fe0_0000, SIZE_2M, 2),
            (0x4000_0000, SIZE_1G, 1),
            (0x8000_0000, SIZE_2M, 2),
            (0x8020_0000, PAGE_SIZE, 3),
            (0x8020_1000, PAGE_SIZE, 3),
        ]
    );
    assert!(mappings(&s2).iter().all(|m| m.pa.0 == m.ipa.start.0));
    // Root (2 tables) + level-2 tables for [0, 1G) and [2G, 3G) + one
    // level-3 table.
    assert_eq!(s2.table_count(), 5);
    assert_eq!(reachable_tables(&s2), 5);
    drop(s2);
    assert_eq!(mem.live_tables(), 0, "drop returns every table");
}

#[test]
fn output_alignment_limits_the_block_size() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    // IPA 1 GiB aligned, PA only 2 MiB aligned: 2 MiB blocks.
    s2.map(
        g(0x4000_0000, SIZE_1G),
        HostPhysAddr(0x1_0020_0000),
        Attrs::RAM,
    )
    .unwrap();
    let m = mappings(&s2);
    assert_eq!(m.len(), 512);
    assert!(m.iter().all(|m| m.level == 2));
    // PA only 4 KiB aligned: pages.
    s2.map(
        g(0x8000_0000, SIZE_2M),
        HostPhysAddr(0x2_0000_1000),
        Attrs::RAM,
    )
    .unwrap();
    let t = s2.translate(GuestPhysAddr(0x801f_fabc)).unwrap();
    assert_eq!(t.pa, HostPhysAddr(0x2_0020_0abc));
    assert_eq!((t.block_size, t.level), (PAGE_SIZE, 3));
    assert_eq!(mappings(&s2).len(), 512 + 512);
}

#[test]
fn level0_start_links_level1_tables() {
    let mut s2 = Stage2::new(cfg(48, 48), FakeMemory::new(), FakeTlb::default()).unwrap();
    // Straddles the 512 GiB boundary: two level-1 tables of 1 GiB blocks.
    let start = (512 * SIZE_1G) - 2 * SIZE_1G;
    s2.identity_map(HostRange::new(HostPhysAddr(start), 4 * SIZE_1G), Attrs::RAM)
        .unwrap();
    assert_eq!(s2.table_count(), 3);
    assert!(mappings(&s2).iter().all(|m| m.level == 1));
    let t = s2
        .translate(GuestPhysAddr(start + 3 * SIZE_1G + 5))
        .unwrap();
    assert_eq!(t.pa, HostPhysAddr(start + 3 * SIZE_1G + 5));
    // The very last page of the 48-bit spaces.
    let top = (1u64 << 48) - PAGE_SIZE;
    s2.map(g(top, PAGE_SIZE), HostPhysAddr(top), Attrs::DEVICE)
        .unwrap();
    let t = s2.translate(GuestPhysAddr(top + 0xfff)).unwrap();
    assert_eq!(
        (t.pa, t.attrs, t.level),
        (HostPhysAddr(top + 0xfff), Attrs::DEVICE, 3)
    );
    // A level-1, a level-2 and a level-3 table for it.
    assert_eq!(s2.table_count(), 3 + 3);
    assert!(matches!(
        s2.map(g(top, 2 * PAGE_SIZE), HostPhysAddr(0), Attrs::RAM),
        Err(MapError::IpaOutOfRange { ipa_bits: 48, .. })
    ));
}

#[test]
fn level2_start_with_concatenated_root() {
    // 32-bit IPA: four concatenated level-2 tables; 2 MiB blocks at the root.
    let mut s2 = Stage2::new(cfg(32, 32), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.identity_map(HostRange::new(HostPhysAddr(0), 1 << 32), Attrs::RAM)
        .unwrap();
    assert_eq!(s2.table_count(), 4);
    assert_eq!(mappings(&s2).len(), 2048);
    let t = s2.translate(GuestPhysAddr(0xffff_fff0)).unwrap();
    assert_eq!((t.pa, t.level), (HostPhysAddr(0xffff_fff0), 2));
    assert_eq!(s2.translate(GuestPhysAddr(1 << 32)), None);
    // The root is 16 KiB aligned, so it makes a valid VTTBR.
    let vttbr = s2.vttbr(7).unwrap();
    assert_eq!(vttbr, (7 << 48) | s2.root().0);
}

// ---------------------------------------------------------------------------
// Overlap rules and errors.

#[test]
fn map_refuses_to_overwrite_and_reports_the_first_mapped_page() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.map(
        g(0x4020_3000, PAGE_SIZE),
        HostPhysAddr(0x9000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let before = mappings(&s2);
    let tables = s2.table_count();
    assert_eq!(
        s2.map(
            g(0x4000_0000, SIZE_1G),
            HostPhysAddr(0x4000_0000),
            Attrs::RAM
        ),
        Err(MapError::AlreadyMapped {
            ipa: GuestPhysAddr(0x4020_3000)
        })
    );
    assert_eq!(mappings(&s2), before);
    assert_eq!(s2.table_count(), tables);
    // Identical re-mapping is still an overlap for `map`.
    assert!(matches!(
        s2.map(
            g(0x4020_3000, PAGE_SIZE),
            HostPhysAddr(0x9000_0000),
            Attrs::RAM
        ),
        Err(MapError::AlreadyMapped { .. })
    ));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let mut s2 = Stage2::new(cfg(40, 36), FakeMemory::new(), FakeTlb::default()).unwrap();
    let pa = HostPhysAddr(0x4000_0000);
    assert_eq!(
        s2.map(g(0x1000, 0), pa, Attrs::RAM),
        Err(MapError::EmptyRange(g(0x1000, 0)))
    );
    assert_eq!(
        s2.map(g(0x1800, 0x1000), pa, Attrs::RAM),
        Err(MapError::MisalignedIpa(g(0x1800, 0x1000)))
    );
    assert_eq!(
        s2.map(g(0x1000, 0x1800), pa, Attrs::RAM),
        Err(MapError::MisalignedIpa(g(0x1000, 0x1800)))
    );
    assert_eq!(
        s2.map(g(0x1000, 0x1000), HostPhysAddr(0x4000_0010), Attrs::RAM),
        Err(MapError::MisalignedPa(HostPhysAddr(0x4000_0010)))
    );
    assert_eq!(
        s2.map(g((1 << 36) - 0x1000, 0x2000), pa, Attrs::RAM),
        Err(MapError::IpaOutOfRange {
            range: g((1 << 36) - 0x1000, 0x2000),
            ipa_bits: 36
        })
    );
    assert!(matches!(
        s2.unmap(g(u64::MAX - 0xfff, 0x1000)),
        Err(MapError::IpaOutOfRange { .. })
    ));
    assert_eq!(
        s2.map(g(0, 0x2000), HostPhysAddr((1 << 40) - 0x1000), Attrs::RAM),
        Err(MapError::PaOutOfRange {
            range: HostRange::new(HostPhysAddr((1 << 40) - 0x1000), 0x2000),
            pa_bits: 40
        })
    );
    let xdev = Attrs::new(MemoryType::Device, Access::RWX);
    assert_eq!(
        s2.map(g(0, 0x1000), pa, xdev),
        Err(MapError::ExecutableDevice(g(0, 0x1000)))
    );
    assert_eq!(
        s2.protect(g(0, 0x1000), Attrs::RAM),
        Err(MapError::NotMapped {
            ipa: GuestPhysAddr(0)
        })
    );
    assert!(mappings(&s2).is_empty());
    assert!(
        s2.tlb().ops.is_empty(),
        "failed calls do no TLB maintenance"
    );
    // Messages name the offending range.
    let msg = format!("{}", MapError::MisalignedIpa(g(0x1800, 0x1000)));
    assert!(msg.contains("0x1800+0x1000"), "{msg}");
}

#[test]
fn protect_reports_the_first_hole() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.map(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    s2.unmap(g(0x4010_0000, PAGE_SIZE)).unwrap();
    assert_eq!(
        s2.protect(g(0x4000_0000, SIZE_2M), ro()),
        Err(MapError::NotMapped {
            ipa: GuestPhysAddr(0x4010_0000)
        })
    );
    assert_eq!(
        s2.translate(GuestPhysAddr(0x4000_0000)).unwrap().attrs,
        Attrs::RAM
    );
}

#[test]
fn out_of_memory_leaves_the_tables_untouched() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.map(
        g(0x4000_0000, SIZE_1G),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let before = mappings(&s2);
    let ops = s2.tlb().ops.len();
    let live = s2.memory().live_tables();
    // One spare table, but punching a page out of the 1 GiB block needs two
    // (a level-2 table and a level-3 table).
    s2.memory().set_limit(Some(live + 1));
    assert_eq!(
        s2.unmap(g(0x4123_4000, PAGE_SIZE)),
        Err(MapError::OutOfMemory { tables_needed: 2 })
    );
    assert_eq!(
        s2.remap(g(0x4123_4000, PAGE_SIZE), HostPhysAddr(0x1000), Attrs::RAM),
        Err(MapError::OutOfMemory { tables_needed: 2 })
    );
    assert_eq!(mappings(&s2), before);
    assert_eq!(
        s2.memory().live_tables(),
        live,
        "partial allocations returned"
    );
    assert_eq!(
        s2.tlb().ops.len(),
        ops,
        "no maintenance for a refused update"
    );
    // With room it works.
    s2.memory().set_limit(Some(live + 2));
    s2.unmap(g(0x4123_4000, PAGE_SIZE)).unwrap();
    assert_eq!(s2.translate(GuestPhysAddr(0x4123_4000)), None);
}

// ---------------------------------------------------------------------------
// Splitting and break-before-make.

/// Events after the `n`-th one, for assertions on one operation.
fn since(log: &Log, n: usize) -> Vec<Ev> {
    log.borrow()[n..].to_vec()
}

#[test]
fn splitting_a_block_keeps_the_rest_and_breaks_before_making() {
    let config = cfg(40, 40);
    let (mut s2, log) = logged(config);
    s2.map(
        g(0x4000_0000, SIZE_1G),
        HostPhysAddr(0x1_4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let mark = log.borrow().len();
    s2.unmap(g(0x4123_4000, PAGE_SIZE)).unwrap();

    // The untouched part translates exactly as before.
    for ipa in [
        0x4000_0000u64,
        0x4123_3fff,
        0x4123_5000,
        0x4120_0000,
        0x413f_ffff,
        0x7fff_ffff,
    ] {
        let t = s2.translate(GuestPhysAddr(ipa)).unwrap();
        assert_eq!(t.pa, HostPhysAddr(ipa - 0x4000_0000 + 0x1_4000_0000));
        assert_eq!(t.attrs, Attrs::RAM);
    }
    assert_eq!(s2.translate(GuestPhysAddr(0x4123_4000)), None);
    assert_eq!(s2.translate(GuestPhysAddr(0x4123_4fff)), None);
    // The 2 MiB region around the hole is pages, the rest 2 MiB blocks.
    assert_eq!(s2.translate(GuestPhysAddr(0x4123_5000)).unwrap().level, 3);
    assert_eq!(s2.translate(GuestPhysAddr(0x4100_0000)).unwrap().level, 2);
    assert_eq!(mappings(&s2).len(), 511 + 511);
    assert_eq!(s2.table_count(), 2 + 2);

    // Order on the live root entry: invalid, invalidate the old block (by
    // IPA, level 1), sync, then the new table descriptor.
    // IPA 1 GiB is entry 1 of the first root table.
    let evs = since(&log, mark);
    let root_writes: Vec<(usize, Ev)> = evs
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, e)| matches!(e, Ev::Write(t, 1, _) if *t == s2.root().0))
        .collect();
    assert_eq!(root_writes.len(), 2, "{evs:x?}");
    let (brk, make) = (root_writes[0].0, root_writes[1].0);
    assert_eq!(root_writes[0].1, Ev::Write(s2.root().0, 1, 0));
    assert!(matches!(root_writes[1].1, Ev::Write(_, _, d) if d & 0b11 == 0b11));
    assert_eq!(
        evs[brk + 1..make],
        [Ev::Inv(0x4000_0000, Some(1)), Ev::Sync],
        "{evs:x?}"
    );
    // The new tables were filled before being linked: nothing is written
    // after the table descriptor but the final sync.
    assert_eq!(evs[make + 1..], [Ev::Sync]);
    check_journal(&s2, &log).unwrap();
}

#[test]
fn remap_over_a_live_block_breaks_before_making() {
    let (mut s2, log) = logged(cfg(40, 40));
    s2.map(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let mark = log.borrow().len();
    s2.remap(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x6000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let evs = since(&log, mark);
    let new_block = Attrs::RAM.leaf_bits() | 0x6000_0000 | 1;
    assert!(
        matches!(
            evs[..],
            [Ev::Write(_, 0, 0), Ev::Inv(0x4000_0000, Some(2)), Ev::Sync, Ev::Write(_, 0, d), Ev::Sync] if d == new_block
        ),
        "{evs:x?}"
    );
    assert_eq!(
        s2.translate(GuestPhysAddr(0x4000_1234)).unwrap().pa,
        HostPhysAddr(0x6000_1234)
    );
    // Remapping to the identical mapping writes nothing.
    let mark = log.borrow().len();
    s2.remap(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x6000_0000),
        Attrs::RAM,
    )
    .unwrap();
    assert!(since(&log, mark).is_empty());
    check_journal(&s2, &log).unwrap();
}

#[test]
fn remap_of_a_table_by_a_block_frees_the_table_after_invalidation() {
    let (mut s2, log) = logged(cfg(40, 40));
    // Pages under one 2 MiB entry.
    s2.map(
        g(0x4000_0000, 3 * PAGE_SIZE),
        HostPhysAddr(0x5000_0000),
        Attrs::RAM,
    )
    .unwrap();
    assert_eq!(s2.table_count(), 4);
    s2.remap(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x4000_0000),
        Attrs::DEVICE,
    )
    .unwrap();
    assert_eq!(s2.table_count(), 3);
    let t = s2.translate(GuestPhysAddr(0x4000_2000)).unwrap();
    assert_eq!(
        (t.pa, t.attrs, t.level),
        (HostPhysAddr(0x4000_2000), Attrs::DEVICE, 2)
    );
    // The freed table comes after the sync that completed its invalidation.
    let evs = log.borrow().clone();
    let free = evs.iter().rposition(|e| matches!(e, Ev::Free(..))).unwrap();
    assert!(evs[..free].contains(&Ev::Sync));
    check_journal(&s2, &log).unwrap();
}

#[test]
fn replacing_a_table_of_pages_costs_one_sync() {
    let (mut s2, log) = logged(cfg(40, 40));
    s2.map(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x9000_1000),
        Attrs::RAM,
    )
    .unwrap();
    let mark = log.borrow().len();
    // Still misaligned for a block: 512 live pages replaced one by one.
    s2.remap(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0xa000_3000),
        Attrs::RAM,
    )
    .unwrap();
    let evs = since(&log, mark);
    let syncs = evs.iter().filter(|e| **e == Ev::Sync).count();
    assert_eq!(syncs, 2, "one before the new pages, one at the end");
    // All 512 breaks come before the single whole-VMID invalidation, and
    // every new page after it.
    let inv = evs.iter().position(|e| *e == Ev::InvAll).unwrap();
    assert!(evs[..inv].iter().all(|e| matches!(e, Ev::Write(_, _, 0))));
    assert_eq!(inv, 512);
    assert_eq!(
        s2.translate(GuestPhysAddr(0x401f_f000)).unwrap().pa,
        HostPhysAddr(0xa020_2000)
    );
    check_journal(&s2, &log).unwrap();
}

#[test]
fn permission_changes_are_made_in_place_type_changes_break() {
    let (mut s2, log) = logged(cfg(40, 40));
    s2.map(
        g(0x4000_0000, SIZE_2M),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    let mark = log.borrow().len();
    s2.protect(g(0x4000_0000, SIZE_2M), ro()).unwrap();
    let evs = since(&log, mark);
    assert!(
        matches!(evs[..], [Ev::Write(_, 0, d), Ev::Inv(0x4000_0000, Some(2)), Ev::Sync] if d & 1 == 1),
        "{evs:x?}"
    );
    assert_eq!(
        s2.translate(GuestPhysAddr(0x4000_0000)).unwrap().attrs,
        ro()
    );

    let mark = log.borrow().len();
    let nc = Attrs::new(MemoryType::NormalNonCacheable, Access::RW);
    s2.protect(g(0x4000_0000, SIZE_2M), nc).unwrap();
    let evs = since(&log, mark);
    assert!(
        matches!(
            evs[..],
            [
                Ev::Write(_, 0, 0),
                Ev::Inv(0x4000_0000, Some(2)),
                Ev::Sync,
                Ev::Write(_, 0, _),
                Ev::Sync
            ]
        ),
        "{evs:x?}"
    );
    let t = s2.translate(GuestPhysAddr(0x4000_0000)).unwrap();
    assert_eq!((t.attrs, t.pa), (nc, HostPhysAddr(0x4000_0000)));
    check_journal(&s2, &log).unwrap();
}

#[test]
fn partial_protect_splits_and_keeps_the_rest() {
    let (mut s2, log) = logged(cfg(40, 40));
    s2.map(
        g(0x4000_0000, SIZE_1G),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    s2.protect(g(0x4020_0000, SIZE_2M), ro()).unwrap();
    assert_eq!(
        s2.translate(GuestPhysAddr(0x4020_0000)).unwrap().attrs,
        ro()
    );
    let t = s2.translate(GuestPhysAddr(0x4040_0000)).unwrap();
    assert_eq!((t.attrs, t.level), (Attrs::RAM, 2));
    assert_eq!(s2.table_count(), 3);
    // Protecting with the attributes already there is a no-op.
    let mark = log.borrow().len();
    s2.protect(g(0x4000_0000, 4 * PAGE_SIZE), Attrs::RAM)
        .unwrap();
    assert!(since(&log, mark).is_empty());
    check_journal(&s2, &log).unwrap();
}

#[test]
fn unmapping_everything_frees_every_table() {
    let (mut s2, log) = logged(cfg(44, 44));
    s2.map(
        g(0x7fe0_0000, 4 * SIZE_2M),
        HostPhysAddr(0x1_0000_3000),
        Attrs::RAM,
    )
    .unwrap();
    assert!(s2.table_count() > 1);
    s2.unmap(g(0, 1 << 44)).unwrap();
    assert!(mappings(&s2).is_empty());
    assert_eq!(s2.table_count(), 1);
    assert_eq!(s2.memory().inner.live_tables(), 1);
    // 2048 pages were torn down: one whole-VMID invalidation, not 2048.
    assert!(log.borrow().contains(&Ev::InvAll));
    assert!(
        log.borrow()
            .iter()
            .filter(|e| matches!(e, Ev::Inv(..)))
            .count()
            <= MAX_TLBI_BY_IPA
    );
    check_journal(&s2, &log).unwrap();
}

#[test]
fn unmapping_a_hole_is_a_no_op() {
    let (mut s2, log) = logged(cfg(40, 40));
    s2.unmap(g(0x4000_0000, SIZE_1G)).unwrap();
    assert_eq!(log.borrow().len(), 1, "only the root allocation");
}

#[test]
fn foreign_descriptors_do_not_translate() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.map(
        g(0x4000_0000, PAGE_SIZE),
        HostPhysAddr(0x4000_0000),
        Attrs::RAM,
    )
    .unwrap();
    assert!(s2.translate(GuestPhysAddr(0x4000_0000)).is_some());
    assert_eq!(s2.translate(GuestPhysAddr(1 << 40)), None);
    assert_eq!(s2.translate(GuestPhysAddr(0x4000_1000)), None);
}

#[test]
fn fake_tlb_records_maintenance() {
    let mut s2 = Stage2::new(cfg(40, 40), FakeMemory::new(), FakeTlb::default()).unwrap();
    s2.map(g(0, SIZE_2M), HostPhysAddr(0), Attrs::RAM).unwrap();
    // A fresh mapping needs no invalidation, only a sync.
    assert_eq!(s2.tlb().ops, [TlbOp::Sync]);
    s2.unmap(g(0, SIZE_2M)).unwrap();
    // The 2 MiB block (leaf hint level 2), then the now-empty level-2 table
    // unlinked from the root (no hint), one sync, and the table is freed.
    assert_eq!(
        s2.tlb().ops[1..],
        [
            TlbOp::InvalidateIpa {
                ipa: GuestPhysAddr(0),
                level: Some(2)
            },
            TlbOp::InvalidateIpa {
                ipa: GuestPhysAddr(0),
                level: None
            },
            TlbOp::Sync
        ]
    );
    assert_eq!(s2.tlb().invalidations(), 2);
    assert_eq!(s2.table_count(), 2);
}

// ---------------------------------------------------------------------------
// Property tests.

/// Page-granular reference model kept as runs.
#[derive(Default, Clone, Debug)]
struct Model {
    runs: Vec<Run>,
}

impl Model {
    fn cut(&mut self, s: u64, e: u64) -> Vec<Run> {
        let mut keep = Vec::new();
        let mut cut = Vec::new();
        for &(a, b, pa, at) in &self.runs {
            if b <= s || a >= e {
                keep.push((a, b, pa, at));
                continue;
            }
            if a < s {
                keep.push((a, s, pa, at));
            }
            if b > e {
                keep.push((e, b, pa + (e - a), at));
            }
            let (ca, cb) = (a.max(s), b.min(e));
            cut.push((ca, cb, pa + (ca - a), at));
        }
        keep.sort_by_key(|r| r.0);
        self.runs = keep;
        cut
    }

    fn insert(&mut self, v: Vec<Run>) {
        self.runs.extend(v);
        self.runs.sort_by_key(|r| r.0);
    }

    fn first(&self, s: u64, e: u64, mapped: bool) -> Option<u64> {
        let mut at = s;
        for &(a, b, _, _) in &self.runs {
            if b <= at || a >= e {
                continue;
            }
            if mapped {
                return Some(a.max(s));
            }
            if a > at {
                return Some(at);
            }
            at = b;
        }
        (!mapped && at < e).then_some(at)
    }

    fn apply(&mut self, op: &TestOp) -> Result<(), MapError> {
        match *op {
            TestOp::Map(s, n, pa, at) => {
                if let Some(a) = self.first(s, s + n, true) {
                    return Err(MapError::AlreadyMapped {
                        ipa: GuestPhysAddr(a),
                    });
                }
                self.insert(vec![(s, s + n, pa, at)]);
            }
            TestOp::Remap(s, n, pa, at) => {
                self.cut(s, s + n);
                self.insert(vec![(s, s + n, pa, at)]);
            }
            TestOp::Unmap(s, n) => {
                self.cut(s, s + n);
            }
            TestOp::Protect(s, n, at) => {
                if let Some(a) = self.first(s, s + n, false) {
                    return Err(MapError::NotMapped {
                        ipa: GuestPhysAddr(a),
                    });
                }
                let c = self.cut(s, s + n);
                self.insert(c.into_iter().map(|(a, b, pa, _)| (a, b, pa, at)).collect());
            }
        }
        Ok(())
    }

    fn lookup(&self, ipa: u64) -> Option<(u64, Attrs)> {
        self.runs
            .iter()
            .find(|r| r.0 <= ipa && ipa < r.1)
            .map(|r| (r.2 + (ipa - r.0), r.3))
    }
}

#[derive(Clone, Copy, Debug)]
enum TestOp {
    Map(u64, u64, u64, Attrs),
    Remap(u64, u64, u64, Attrs),
    Unmap(u64, u64),
    Protect(u64, u64, Attrs),
}

impl TestOp {
    fn run(&self, s2: &mut LogStage2) -> Result<(), MapError> {
        match *self {
            Self::Map(s, n, pa, at) => s2.map(g(s, n), HostPhysAddr(pa), at),
            Self::Remap(s, n, pa, at) => s2.remap(g(s, n), HostPhysAddr(pa), at),
            Self::Unmap(s, n) => s2.unmap(g(s, n)),
            Self::Protect(s, n, at) => s2.protect(g(s, n), at),
        }
    }
}

fn attrs_strategy() -> impl Strategy<Value = Attrs> {
    prop_oneof![
        Just(Attrs::RAM),
        Just(ro()),
        Just(Attrs::ROM),
        Just(Attrs::DEVICE),
        Just(Attrs::new(MemoryType::NormalNonCacheable, Access::RW)),
    ]
}

/// (ipa, size, pa offset): ranges clustered around a few hot spots so
/// operations overlap and split each other; 1 GiB ranges only get output
/// offsets that keep 2 MiB alignment, so no case maps 2^18 pages.
fn range_strategy() -> impl Strategy<Value = (u64, u64, u64)> {
    let hot = prop_oneof![
        Just(SIZE_1G),
        Just(2 * SIZE_1G - 2 * SIZE_2M),
        Just(2 * SIZE_1G + 3 * SIZE_2M)
    ];
    let off_small = prop_oneof![
        Just(0u64),
        Just(PAGE_SIZE),
        Just(SIZE_2M),
        Just(SIZE_1G),
        Just(3 * SIZE_1G + 5 * PAGE_SIZE)
    ];
    let off_big = prop_oneof![Just(0u64), Just(SIZE_2M), Just(SIZE_1G), Just(5 * SIZE_1G)];
    prop_oneof![
        (0u64..4, 1u64..=2, off_big).prop_map(|(k, n, o)| (k * SIZE_1G, n * SIZE_1G, o)),
        (hot.clone(), 0u64..6, 1u64..=3, off_small.clone()).prop_map(|(h, k, n, o)| (
            h + k * SIZE_2M,
            n * SIZE_2M,
            o
        )),
        (hot.clone(), 0u64..1024, 1u64..=16, off_small.clone()).prop_map(|(h, k, n, o)| (
            h + k * PAGE_SIZE,
            n * PAGE_SIZE,
            o
        )),
        (hot, 0u64..64, 1u64..=4, off_small).prop_map(|(h, k, n, o)| (
            h + k * 0x1_0000,
            n * 0x1_0000,
            o
        )),
    ]
}

fn op_strategy() -> impl Strategy<Value = TestOp> {
    (0u8..4, range_strategy(), attrs_strategy()).prop_map(|(kind, (s, n, o), at)| match kind {
        0 => TestOp::Map(s, n, s + o, at),
        1 => TestOp::Remap(s, n, s + o, at),
        2 => TestOp::Unmap(s, n),
        _ => TestOp::Protect(s, n, at),
    })
}

fn check_against_model(s2: &LogStage2, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(runs(s2), normalise(model.runs.clone()));
    for &(a, b, _, _) in &model.runs {
        for ipa in [a, b - 1, b, a.saturating_sub(1)] {
            let got = s2.translate(GuestPhysAddr(ipa)).map(|t| (t.pa.0, t.attrs));
            prop_assert_eq!(got, model.lookup(ipa), "translate({:#x})", ipa);
        }
    }
    let reachable = reachable_tables(s2);
    prop_assert_eq!(reachable, s2.table_count());
    prop_assert_eq!(s2.memory().inner.live_tables(), s2.table_count());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_updates_agree_with_the_model(ops in prop::collection::vec(op_strategy(), 1..24)) {
        let (mut s2, log) = logged(cfg(40, 36));
        let mut model = Model::default();
        for op in &ops {
            let want = model.apply(op);
            let got = op.run(&mut s2);
            prop_assert_eq!(got, want, "{:x?}", op);
            check_against_model(&s2, &model)?;
        }
        if let Err(e) = check_journal(&s2, &log) {
            return Err(TestCaseError::fail(e));
        }
        // Dropping returns every table (the root walk stops early once no
        // table is left below it).
        drop(s2);
        let live = log.borrow().iter().fold(0i64, |live, ev| match ev {
            Ev::Alloc(_, n) => live + *n as i64,
            Ev::Free(_, n) => live - *n as i64,
            _ => live,
        });
        prop_assert_eq!(live, 0);
    }

    #[test]
    fn identity_maps_use_the_fewest_tables(
        (pa, ipa) in prop_oneof![Just((40u8, 40u8)), Just((48, 48)), Just((44, 44)), Just((36, 36)), Just((36, 34))],
        gib in 1u64..=64,
        base_gib in 0u64..1024,
        page_offset in prop_oneof![Just(0u64), 0u64..(1 << 18)],
    ) {
        let config = cfg(pa, ipa);
        let space = config.ipa_size();
        let size = (gib * SIZE_1G).min(space);
        // Aligned start (or 4 KiB-granular when page_offset != 0).
        let start = ((base_gib * SIZE_1G) % space + page_offset * PAGE_SIZE) % space;
        prop_assume!(start + size <= space);
        let mut s2 = Stage2::new(config, FakeMemory::new(), FakeTlb::default()).unwrap();
        s2.identity_map(HostRange::new(HostPhysAddr(start), size), Attrs::RAM).unwrap();

        // Minimum: a table at level L (below the start level) is needed for
        // every level-(L-1) region the range touches but cannot map with one
        // leaf: because it covers it only partly, or because level-0
        // entries cannot be blocks.
        let end = start + size;
        let mut min = config.root_tables();
        for level in config.start_level() + 1..=3 {
            let r = lsize(level - 1);
            let mut region = start / r * r;
            while region < end {
                let covered = region >= start && region + r <= end;
                if !covered || level - 1 == 0 {
                    min += 1;
                }
                region += r;
            }
        }
        prop_assert_eq!(s2.table_count(), min);
        prop_assert_eq!(s2.memory().live_tables(), min);
        prop_assert_eq!(runs(&s2), vec![(start, end, start, Attrs::RAM)]);
    }
}
