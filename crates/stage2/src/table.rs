//! The stage-2 table object: mapping, unmapping, permission changes and
//! lookups, with block mappings and break-before-make.
//!
//! Every update runs in three steps:
//!
//! 1. *check*: alignment, ranges, attributes and, for [`Stage2::map`] and
//!    [`Stage2::protect`], the existing mappings are validated;
//! 2. *plan*: a read-only walk counts the tables the update will create
//!    (new intermediate tables and blocks split into the next level); all of
//!    them are allocated up front, so running out of table memory is
//!    reported before any descriptor is written;
//! 3. *apply*: the walk is repeated, writing descriptors. New tables are
//!    filled completely while unreachable and linked last; a live valid
//!    descriptor is only replaced by another valid one directly when just
//!    its permissions change, otherwise break-before-make is followed.
//!
//! So an error leaves the tables exactly as they were.

use alloc::vec::Vec;

use tessel_addr::{Address, GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE};

use crate::attrs::{Attrs, bits};
use crate::{ConfigError, ENTRIES_PER_TABLE, MapError, Stage2Config, TableMemory, TlbMaintenance};

/// Largest number of invalidations by IPA one update issues before it
/// switches to a single whole-VMID invalidation.
pub const MAX_TLBI_BY_IPA: usize = 64;

/// Lowest address bit translated by a descriptor at `level` (4 KiB granule).
const fn shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Size of the region one descriptor at `level` maps.
const fn size(level: u8) -> u64 {
    1 << shift(level)
}

/// The result of [`Stage2::translate`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Translation {
    /// The output address of the IPA looked up (offset within the block
    /// included).
    pub pa: HostPhysAddr,
    /// Attributes of the mapping.
    pub attrs: Attrs,
    /// Size of the block or page that maps it (1 GiB, 2 MiB or 4 KiB).
    pub block_size: u64,
    /// Level of the leaf descriptor (1, 2 or 3).
    pub level: u8,
}

/// One leaf descriptor, as reported by [`Stage2::for_each_mapping`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mapping {
    /// The IPA range the descriptor maps (one block or page).
    pub ipa: GuestRange,
    /// Output address of the start of the range.
    pub pa: HostPhysAddr,
    /// Attributes.
    pub attrs: Attrs,
    /// Level of the descriptor (1, 2 or 3).
    pub level: u8,
}

/// A descriptor, decoded according to its level.
#[derive(Clone, Copy)]
enum Entry {
    Invalid,
    Table(HostPhysAddr),
    Leaf(u64),
}

fn classify(desc: u64, level: u8) -> Entry {
    if desc & bits::VALID == 0 {
        return Entry::Invalid;
    }
    let table_or_page = desc & bits::TABLE_OR_PAGE != 0;
    match (level, table_or_page) {
        (3, true) => Entry::Leaf(desc),
        // 0b01 at level 3 is reserved and translates as a fault.
        (3, false) => Entry::Invalid,
        (_, true) => Entry::Table(HostPhysAddr(desc & bits::OA_MASK)),
        // Level 0 has no block descriptors with the 4 KiB granule and a
        // 48-bit output size: such an entry faults.
        (0, false) => Entry::Invalid,
        (_, false) => Entry::Leaf(desc),
    }
}

fn leaf_desc(level: u8, oa: u64, attr_bits: u64) -> u64 {
    let kind = if level == 3 { bits::TABLE_OR_PAGE } else { 0 };
    attr_bits | (oa & bits::OA_MASK) | bits::VALID | kind
}

fn leaf_oa(desc: u64, level: u8) -> u64 {
    desc & bits::OA_MASK & !(size(level) - 1)
}

fn leaf_attr_bits(desc: u64) -> u64 {
    desc & !(bits::OA_MASK | bits::VALID | bits::TABLE_OR_PAGE)
}

fn table_desc(table: HostPhysAddr) -> u64 {
    (table.0 & bits::OA_MASK) | bits::VALID | bits::TABLE_OR_PAGE
}

/// Descriptor `idx` of the next-level table a block `desc` at `level`
/// splits into: same attributes, consecutive output addresses.
fn split_child(desc: u64, level: u8, idx: usize) -> u64 {
    let child = level + 1;
    leaf_desc(
        child,
        leaf_oa(desc, level) + ((idx as u64) << shift(child)),
        leaf_attr_bits(desc),
    )
}

/// The table and index holding entry `idx` of a (possibly concatenated)
/// table starting at `table`.
fn slot(table: HostPhysAddr, idx: usize) -> (HostPhysAddr, usize) {
    let page = (idx / ENTRIES_PER_TABLE) as u64;
    (
        HostPhysAddr(table.0 + page * PAGE_SIZE),
        idx % ENTRIES_PER_TABLE,
    )
}

/// What an update does to the IPA range.
#[derive(Clone, Copy)]
enum Op {
    /// Map `[ipa, ..)` to `[pa, ..)` with the given leaf attribute bits,
    /// replacing whatever is there.
    Map { ipa: u64, pa: u64, attrs: u64 },
    /// Remove all mappings.
    Unmap,
    /// Replace the attribute bits of every leaf.
    Protect { attrs: u64 },
}

/// Initial contents of a table about to be created.
#[derive(Clone, Copy)]
enum Fill {
    /// All invalid.
    Empty,
    /// The split of block descriptor `.0` at level `.1`.
    Split(u64, u8),
}

impl Fill {
    fn entry(self, idx: usize) -> Entry {
        match self {
            Self::Empty => Entry::Invalid,
            Self::Split(desc, level) => Entry::Leaf(split_child(desc, level, idx)),
        }
    }
}

/// What to do with one descriptor.
enum Action {
    Skip,
    Write(u64),
    Descend(HostPhysAddr),
    NewTable(Fill),
}

/// Decides what `op` does to one descriptor at `level` covering
/// `[eb, eb + size(level))`, of which `full` says whether the update covers
/// all of it. Ranges are page-aligned, so at level 3 `full` always holds.
fn decide(op: Op, level: u8, entry: Entry, eb: u64, full: bool) -> Action {
    match op {
        Op::Map { ipa, pa, attrs } => {
            if full {
                // `eb >= ipa` since the update covers the whole entry.
                let out = pa + (eb - ipa);
                // Blocks exist at levels 1 and 2, pages at level 3; the
                // output address must be aligned to the block size.
                if level == 3 || (level >= 1 && out & (size(level) - 1) == 0) {
                    let new = leaf_desc(level, out, attrs);
                    return match entry {
                        Entry::Leaf(d) if d == new => Action::Skip,
                        _ => Action::Write(new),
                    };
                }
            }
            match entry {
                Entry::Invalid => Action::NewTable(Fill::Empty),
                Entry::Table(t) => Action::Descend(t),
                Entry::Leaf(d) => Action::NewTable(Fill::Split(d, level)),
            }
        }
        Op::Unmap => match entry {
            Entry::Invalid => Action::Skip,
            _ if full => Action::Write(0),
            Entry::Table(t) => Action::Descend(t),
            Entry::Leaf(d) => Action::NewTable(Fill::Split(d, level)),
        },
        Op::Protect { attrs } => match entry {
            Entry::Invalid => Action::Skip,
            Entry::Table(t) => Action::Descend(t),
            Entry::Leaf(d) => {
                let new = (d & (bits::OA_MASK | bits::VALID | bits::TABLE_OR_PAGE)) | attrs;
                if new == d {
                    Action::Skip
                } else if full {
                    Action::Write(new)
                } else {
                    Action::NewTable(Fill::Split(d, level))
                }
            }
        },
    }
}

/// Where the plan walk reads entries from.
#[derive(Clone, Copy)]
enum PlanNode {
    Real(HostPhysAddr),
    Virtual(Fill),
}

/// State of one update in progress.
struct Ctx {
    /// Tables allocated by the plan step, not yet used.
    pool: Vec<HostPhysAddr>,
    /// Invalidations by IPA not yet issued.
    tlbi: Vec<(GuestPhysAddr, Option<u8>)>,
    /// Too many invalidations: invalidate the whole VMID instead.
    tlbi_all: bool,
    /// Unlinked tables to free once their invalidation has completed.
    to_free: Vec<HostPhysAddr>,
    /// Broken entries waiting for their new descriptor: written after the
    /// next flush, so a table's worth of replacements costs one sync.
    makes: Vec<(HostPhysAddr, usize, u64)>,
    /// Descriptors were written since the last sync.
    dirty: bool,
}

impl Ctx {
    fn invalidate(&mut self, ipa: u64, level: Option<u8>) {
        if self.tlbi_all {
            return;
        }
        // Capacity for MAX_TLBI_BY_IPA entries was reserved up front (or the
        // reservation failed and `tlbi_all` was set), so this never allocates.
        if self.tlbi.len() < self.tlbi.capacity().min(MAX_TLBI_BY_IPA) {
            self.tlbi.push((GuestPhysAddr(ipa), level));
        } else {
            self.tlbi_all = true;
            self.tlbi.clear();
        }
    }
}

/// Stage-2 translation tables of one guest.
///
/// Tables live in `M`; TLB maintenance goes through `T`. Dropping the object
/// returns every table to `M` without TLB maintenance: the guest must no
/// longer run with these tables (its VMID invalidated) by then.
pub struct Stage2<M: TableMemory, T: TlbMaintenance> {
    config: Stage2Config,
    root: HostPhysAddr,
    mem: M,
    tlb: T,
    /// Tables in use below the root.
    tables: usize,
}

impl<M: TableMemory, T: TlbMaintenance> Stage2<M, T> {
    /// Creates empty tables (all IPAs unmapped) with the layout of `config`,
    /// allocating the root tables from `mem`.
    pub fn new(config: Stage2Config, mut mem: M, tlb: T) -> Result<Self, MapError> {
        let root = mem
            .alloc_tables(config.root_tables())
            .ok_or(MapError::OutOfMemory {
                tables_needed: config.root_tables(),
            })?;
        Ok(Self {
            config,
            root,
            mem,
            tlb,
            tables: 0,
        })
    }

    /// The layout.
    pub fn config(&self) -> &Stage2Config {
        &self.config
    }

    /// Physical address of the (first) root table.
    pub fn root(&self) -> HostPhysAddr {
        self.root
    }

    /// The `VTTBR_EL2` value that selects these tables for `vmid`.
    pub fn vttbr(&self, vmid: u16) -> Result<u64, ConfigError> {
        self.config.vttbr(vmid, self.root)
    }

    /// Number of 4 KiB tables in use, root tables included.
    pub fn table_count(&self) -> usize {
        self.config.root_tables() + self.tables
    }

    /// The table memory.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// The TLB maintenance object.
    pub fn tlb(&self) -> &T {
        &self.tlb
    }

    /// The TLB maintenance object, mutably (for example to load another
    /// VMID's context in the hypervisor).
    pub fn tlb_mut(&mut self) -> &mut T {
        &mut self.tlb
    }

    /// Maps `ipa` to the output range starting at `pa`, which must be wholly
    /// unmapped: any existing mapping in the range is an error
    /// ([`MapError::AlreadyMapped`]), never silently replaced. Uses 1 GiB and
    /// 2 MiB blocks wherever the IPA, the output address and the remaining
    /// size allow, 4 KiB pages elsewhere.
    pub fn map(&mut self, ipa: GuestRange, pa: HostPhysAddr, attrs: Attrs) -> Result<(), MapError> {
        let (s, e) = self.check_map(ipa, pa, attrs)?;
        if let Some(a) = self.scan(s, e, true) {
            return Err(MapError::AlreadyMapped {
                ipa: GuestPhysAddr(a),
            });
        }
        self.apply(s, e, Self::map_op(s, pa, attrs))
    }

    /// Maps `ipa` 1:1 (IPA == PA) over the host range, as for a direct-mapped
    /// domain. Same rules as [`map`](Self::map).
    pub fn identity_map(&mut self, range: HostRange, attrs: Attrs) -> Result<(), MapError> {
        let ipa = GuestRange::new(GuestPhysAddr::identity(range.start), range.size);
        self.map(ipa, range.start, attrs)
    }

    /// Maps `ipa` to the output range starting at `pa`, replacing whatever
    /// is mapped there. Live descriptors are replaced with break-before-make;
    /// blocks straddling the range's edges are split so the parts outside it
    /// keep their translation.
    pub fn remap(
        &mut self,
        ipa: GuestRange,
        pa: HostPhysAddr,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let (s, e) = self.check_map(ipa, pa, attrs)?;
        self.apply(s, e, Self::map_op(s, pa, attrs))
    }

    /// Removes every mapping in `ipa` (unmapped parts are fine). Blocks
    /// straddling the edges are split; tables left empty are freed.
    pub fn unmap(&mut self, ipa: GuestRange) -> Result<(), MapError> {
        let (s, e) = self.check_ipa(ipa)?;
        self.apply(s, e, Op::Unmap)
    }

    /// Changes the attributes of every mapping in `ipa`, which must be mapped
    /// throughout ([`MapError::NotMapped`] otherwise). Output addresses are
    /// kept. A permission-only change is written in place; a change of
    /// memory type goes through break-before-make.
    pub fn protect(&mut self, ipa: GuestRange, attrs: Attrs) -> Result<(), MapError> {
        let (s, e) = self.check_ipa(ipa)?;
        if !attrs.is_mappable() {
            return Err(MapError::ExecutableDevice(ipa));
        }
        if let Some(a) = self.scan(s, e, false) {
            return Err(MapError::NotMapped {
                ipa: GuestPhysAddr(a),
            });
        }
        self.apply(
            s,
            e,
            Op::Protect {
                attrs: attrs.leaf_bits(),
            },
        )
    }

    /// Looks `ipa` up as the hardware walker would: output address,
    /// attributes and size of the leaf, or `None` if it is unmapped, outside
    /// the IPA space, or holds a descriptor this crate never writes (the
    /// tables were modified behind its back).
    pub fn translate(&self, ipa: GuestPhysAddr) -> Option<Translation> {
        if ipa.0 >= self.config.ipa_size() {
            return None;
        }
        let mut level = self.config.start_level();
        let (mut table, mut index) = slot(self.root, (ipa.0 >> shift(level)) as usize);
        loop {
            match classify(self.mem.read(table, index), level) {
                Entry::Invalid => return None,
                Entry::Leaf(d) => {
                    let block_size = size(level);
                    return Some(Translation {
                        pa: HostPhysAddr(leaf_oa(d, level) | (ipa.0 & (block_size - 1))),
                        attrs: Attrs::from_leaf(d)?,
                        block_size,
                        level,
                    });
                }
                Entry::Table(next) if level < 3 => {
                    level += 1;
                    table = next;
                    index = ((ipa.0 >> shift(level)) as usize) % ENTRIES_PER_TABLE;
                }
                Entry::Table(_) => return None,
            }
        }
    }

    /// Calls `f` with every leaf descriptor, in IPA order (descriptors this
    /// crate never writes are skipped, as [`translate`](Self::translate)
    /// treats them as unmapped).
    pub fn for_each_mapping(&self, mut f: impl FnMut(Mapping)) {
        let level = self.config.start_level();
        let entries = (self.config.ipa_size() >> shift(level)) as usize;
        self.visit(self.root, level, 0, entries, &mut f);
    }

    fn visit(
        &self,
        table: HostPhysAddr,
        level: u8,
        base: u64,
        entries: usize,
        f: &mut impl FnMut(Mapping),
    ) {
        for idx in 0..entries {
            let (t, i) = slot(table, idx);
            let eb = base + ((idx as u64) << shift(level));
            match classify(self.mem.read(t, i), level) {
                Entry::Invalid => {}
                Entry::Leaf(d) => {
                    if let Some(attrs) = Attrs::from_leaf(d) {
                        f(Mapping {
                            ipa: GuestRange::new(GuestPhysAddr(eb), size(level)),
                            pa: HostPhysAddr(leaf_oa(d, level)),
                            attrs,
                            level,
                        });
                    }
                }
                Entry::Table(next) if level < 3 => {
                    self.visit(next, level + 1, eb, ENTRIES_PER_TABLE, f)
                }
                Entry::Table(_) => {}
            }
        }
    }

    fn map_op(ipa: u64, pa: HostPhysAddr, attrs: Attrs) -> Op {
        Op::Map {
            ipa,
            pa: pa.0,
            attrs: attrs.leaf_bits(),
        }
    }

    /// Validates an IPA range; returns `[start, end)`.
    fn check_ipa(&self, ipa: GuestRange) -> Result<(u64, u64), MapError> {
        if ipa.is_empty() {
            return Err(MapError::EmptyRange(ipa));
        }
        if !ipa.is_aligned(PAGE_SIZE) {
            return Err(MapError::MisalignedIpa(ipa));
        }
        match ipa.end() {
            Some(end) if end.0 <= self.config.ipa_size() => Ok((ipa.start.0, end.0)),
            _ => Err(MapError::IpaOutOfRange {
                range: ipa,
                ipa_bits: self.config.ipa_bits(),
            }),
        }
    }

    fn check_map(
        &self,
        ipa: GuestRange,
        pa: HostPhysAddr,
        attrs: Attrs,
    ) -> Result<(u64, u64), MapError> {
        let r = self.check_ipa(ipa)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(MapError::MisalignedPa(pa));
        }
        let out = HostRange::new(pa, ipa.size);
        let limit = 1u64 << self.config.pa_bits();
        if out.end().is_none_or(|end| end.0 > limit) {
            return Err(MapError::PaOutOfRange {
                range: out,
                pa_bits: self.config.pa_bits(),
            });
        }
        if !attrs.is_mappable() {
            return Err(MapError::ExecutableDevice(ipa));
        }
        Ok(r)
    }

    /// Indices of the entries of a table at `level` based at `base` that
    /// `[s, e)` touches (`s < e`, both inside the table's region).
    fn index_range(level: u8, base: u64, s: u64, e: u64) -> core::ops::RangeInclusive<usize> {
        let first = ((s - base) >> shift(level)) as usize;
        let last = ((e - 1 - base) >> shift(level)) as usize;
        first..=last
    }

    /// First address in `[s, e)` that is mapped (`want_mapped`) or unmapped
    /// (`!want_mapped`).
    fn scan(&self, s: u64, e: u64, want_mapped: bool) -> Option<u64> {
        self.scan_node(self.root, self.config.start_level(), 0, s, e, want_mapped)
    }

    fn scan_node(
        &self,
        table: HostPhysAddr,
        level: u8,
        base: u64,
        s: u64,
        e: u64,
        want_mapped: bool,
    ) -> Option<u64> {
        for idx in Self::index_range(level, base, s, e) {
            let eb = base + ((idx as u64) << shift(level));
            let (ss, ee) = (s.max(eb), e.min(eb + size(level)));
            let (t, i) = slot(table, idx);
            match classify(self.mem.read(t, i), level) {
                Entry::Invalid if !want_mapped => return Some(ss),
                Entry::Leaf(_) if want_mapped => return Some(ss),
                Entry::Table(next) if level < 3 => {
                    if let Some(a) = self.scan_node(next, level + 1, eb, ss, ee, want_mapped) {
                        return Some(a);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Number of tables `op` on `[s, e)` will allocate.
    fn plan(&self, node: PlanNode, level: u8, base: u64, s: u64, e: u64, op: Op) -> usize {
        // Level-3 entries are pages, never tables, and page-aligned ranges
        // cover them fully, so no update allocates below level 2: skip the
        // walk over the (up to 512) entries of a level-3 table.
        if level >= 3 {
            return 0;
        }
        let mut needed = 0;
        for idx in Self::index_range(level, base, s, e) {
            let eb = base + ((idx as u64) << shift(level));
            let (ss, ee) = (s.max(eb), e.min(eb + size(level)));
            let full = ss == eb && ee == eb + size(level);
            let entry = match node {
                PlanNode::Real(table) => {
                    let (t, i) = slot(table, idx);
                    classify(self.mem.read(t, i), level)
                }
                PlanNode::Virtual(fill) => fill.entry(idx),
            };
            match decide(op, level, entry, eb, full) {
                Action::Descend(next) if level < 3 => {
                    needed += self.plan(PlanNode::Real(next), level + 1, eb, ss, ee, op);
                }
                Action::NewTable(fill) if level < 3 => {
                    needed += 1 + self.plan(PlanNode::Virtual(fill), level + 1, eb, ss, ee, op);
                }
                _ => {}
            }
        }
        needed
    }

    /// Plans, allocates and applies `op` on `[s, e)`.
    fn apply(&mut self, s: u64, e: u64, op: Op) -> Result<(), MapError> {
        let level = self.config.start_level();
        let needed = self.plan(PlanNode::Real(self.root), level, 0, s, e, op);
        let oom = MapError::OutOfMemory {
            tables_needed: needed,
        };
        let mut pool = Vec::new();
        pool.try_reserve_exact(needed).map_err(|_| oom)?;
        for _ in 0..needed {
            match self.mem.alloc_tables(1) {
                Some(t) => pool.push(t),
                None => {
                    for t in pool {
                        self.mem.free_tables(t, 1);
                    }
                    return Err(oom);
                }
            }
        }
        let mut tlbi = Vec::new();
        let tlbi_all = tlbi.try_reserve_exact(MAX_TLBI_BY_IPA).is_err();
        let mut ctx = Ctx {
            pool,
            tlbi,
            tlbi_all,
            to_free: Vec::new(),
            makes: Vec::new(),
            dirty: false,
        };
        let result = self.apply_node(self.root, level, 0, s, e, op, true, &mut ctx);
        self.finish(&mut ctx);
        result
    }

    /// Applies `op` to the entries of `table` (at `level`, based at `base`)
    /// touched by `[s, e)`. `live` says whether the table is reachable by the
    /// hardware walker; unreachable tables are written without
    /// break-before-make.
    #[allow(clippy::too_many_arguments)]
    fn apply_node(
        &mut self,
        table: HostPhysAddr,
        level: u8,
        base: u64,
        s: u64,
        e: u64,
        op: Op,
        live: bool,
        ctx: &mut Ctx,
    ) -> Result<(), MapError> {
        if let (3, false, Op::Map { ipa, pa, attrs }) = (level, live, op) {
            // A page table no walker can reach yet: `decide` would write
            // every page descriptor (or skip one already equal), and
            // `replace` writes directly without maintenance when `!live`.
            // Do just that, without reading and classifying each entry.
            for idx in Self::index_range(level, base, s, e) {
                let eb = base + ((idx as u64) << shift(level));
                self.mem
                    .write(table, idx, leaf_desc(level, pa + (eb - ipa), attrs));
            }
            ctx.dirty = true;
            return Ok(());
        }
        for idx in Self::index_range(level, base, s, e) {
            let eb = base + ((idx as u64) << shift(level));
            let (ss, ee) = (s.max(eb), e.min(eb + size(level)));
            let full = ss == eb && ee == eb + size(level);
            let (t, i) = slot(table, idx);
            let old = self.mem.read(t, i);
            match decide(op, level, classify(old, level), eb, full) {
                Action::Skip => {}
                Action::Write(new) => self.replace(t, i, old, new, level, eb, live, ctx),
                Action::Descend(next) if level < 3 => {
                    if let Err(err) = self.apply_node(next, level + 1, eb, ss, ee, op, live, ctx) {
                        self.make_pending(ctx);
                        return Err(err);
                    }
                    if matches!(op, Op::Unmap) && self.is_empty(next) {
                        self.replace(t, i, old, 0, level, eb, live, ctx);
                    }
                }
                Action::NewTable(fill) if level < 3 => {
                    // The plan allocated every table this walk needs; the
                    // fallback only matters if the two walks disagreed.
                    let new = match ctx.pool.pop() {
                        Some(t) => t,
                        None => self
                            .mem
                            .alloc_tables(1)
                            .ok_or(MapError::OutOfMemory { tables_needed: 1 })?,
                    };
                    self.tables += 1;
                    if let Fill::Split(d, l) = fill {
                        for j in 0..ENTRIES_PER_TABLE {
                            self.mem.write(new, j, split_child(d, l, j));
                        }
                    }
                    if let Err(err) = self.apply_node(new, level + 1, eb, ss, ee, op, false, ctx) {
                        self.make_pending(ctx);
                        self.free_unreachable(new, level + 1);
                        return Err(err);
                    }
                    self.replace(t, i, old, table_desc(new), level, eb, live, ctx);
                }
                // Descending below level 3 is impossible: level-3 entries are
                // never tables and page-aligned ranges cover them fully.
                Action::Descend(_) | Action::NewTable(_) => {}
            }
        }
        self.make_pending(ctx);
        Ok(())
    }

    /// Completes the invalidation of the broken entries waiting in `ctx`,
    /// then writes their new descriptors.
    fn make_pending(&mut self, ctx: &mut Ctx) {
        if ctx.makes.is_empty() {
            return;
        }
        self.flush(ctx);
        for (t, i, new) in ctx.makes.drain(..) {
            self.mem.write(t, i, new);
        }
        ctx.dirty = true;
    }

    fn is_empty(&self, table: HostPhysAddr) -> bool {
        (0..ENTRIES_PER_TABLE).all(|i| self.mem.read(table, i) & bits::VALID == 0)
    }

    /// Replaces descriptor `old` at `(t, i)` (at `level`, mapping from `eb`)
    /// by `new`, with break-before-make when the table is live and the
    /// change needs it.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        t: HostPhysAddr,
        i: usize,
        old: u64,
        new: u64,
        level: u8,
        eb: u64,
        live: bool,
        ctx: &mut Ctx,
    ) {
        ctx.dirty = true;
        let old_entry = classify(old, level);
        if !live {
            self.mem.write(t, i, new);
            if let Entry::Table(child) = old_entry {
                self.free_unreachable(child, level + 1);
            }
            return;
        }
        match old_entry {
            // Invalid entries are never cached by the TLB.
            Entry::Invalid => self.mem.write(t, i, new),
            // Permission-only changes need no break (D8.17.1), only the
            // invalidation of the stale permissions.
            Entry::Leaf(_)
                if matches!(classify(new, level), Entry::Leaf(_))
                    && (old ^ new) & !bits::PERMISSION_MASK == 0 =>
            {
                self.mem.write(t, i, new);
                ctx.invalidate(eb, Some(level));
            }
            Entry::Leaf(_) | Entry::Table(_) => {
                // Break...
                self.mem.write(t, i, 0);
                match old_entry {
                    Entry::Table(child) => {
                        ctx.invalidate(eb, None);
                        self.retire(child, level + 1, eb, ctx);
                    }
                    _ => ctx.invalidate(eb, Some(level)),
                }
                // ...invalidate and wait, then make: batched with the other
                // entries of this table when there is room to queue it.
                if new & bits::VALID != 0 {
                    if ctx.makes.try_reserve(1).is_ok() {
                        ctx.makes.push((t, i, new));
                    } else {
                        self.flush(ctx);
                        self.mem.write(t, i, new);
                        ctx.dirty = true;
                    }
                }
            }
        }
    }

    /// Queues invalidation of every valid entry below the unlinked `table`
    /// and its release once that has completed.
    fn retire(&mut self, table: HostPhysAddr, level: u8, base: u64, ctx: &mut Ctx) {
        for j in 0..ENTRIES_PER_TABLE {
            let eb = base + ((j as u64) << shift(level));
            match classify(self.mem.read(table, j), level) {
                Entry::Invalid => {}
                Entry::Leaf(_) => ctx.invalidate(eb, Some(level)),
                Entry::Table(child) if level < 3 => {
                    ctx.invalidate(eb, None);
                    self.retire(child, level + 1, eb, ctx);
                }
                Entry::Table(_) => {}
            }
        }
        if ctx.to_free.try_reserve(1).is_ok() {
            ctx.to_free.push(table);
        } else {
            // No room to defer: complete the invalidations now instead.
            self.flush(ctx);
            self.mem.free_tables(table, 1);
            self.tables -= 1;
        }
    }

    /// Frees a table no walker can reach, with everything below it.
    fn free_unreachable(&mut self, table: HostPhysAddr, level: u8) {
        if level < 3 {
            for j in 0..ENTRIES_PER_TABLE {
                if let Entry::Table(child) = classify(self.mem.read(table, j), level) {
                    self.free_unreachable(child, level + 1);
                }
            }
        }
        self.mem.free_tables(table, 1);
        self.tables -= 1;
    }

    /// Issues the queued invalidations and waits for them.
    fn flush(&mut self, ctx: &mut Ctx) {
        if ctx.tlbi_all {
            self.tlb.invalidate_vmid();
        } else {
            for (ipa, level) in ctx.tlbi.drain(..) {
                self.tlb.invalidate_ipa(ipa, level);
            }
        }
        self.tlb.sync();
        ctx.tlbi_all = false;
        ctx.dirty = false;
    }

    /// Ends an update: completes maintenance, then frees unlinked tables and
    /// unused pool tables.
    fn finish(&mut self, ctx: &mut Ctx) {
        self.make_pending(ctx);
        if ctx.dirty || ctx.tlbi_all || !ctx.tlbi.is_empty() {
            self.flush(ctx);
        }
        for t in ctx.to_free.drain(..) {
            self.mem.free_tables(t, 1);
            self.tables -= 1;
        }
        for t in ctx.pool.drain(..) {
            self.mem.free_tables(t, 1);
        }
    }
}

impl<M: TableMemory, T: TlbMaintenance> Drop for Stage2<M, T> {
    fn drop(&mut self) {
        let level = self.config.start_level();
        let entries = self.config.root_tables() * ENTRIES_PER_TABLE;
        for idx in 0..entries {
            // `tables` counts the tables below the root and drops as they
            // are freed: once it is zero, the remaining root entries hold
            // only blocks or nothing, so there is no need to read them.
            if self.tables == 0 {
                break;
            }
            let (t, i) = slot(self.root, idx);
            if let Entry::Table(child) = classify(self.mem.read(t, i), level) {
                self.free_unreachable(child, level + 1);
            }
        }
        self.mem.free_tables(self.root, self.config.root_tables());
    }
}
