//! Register offsets and fields of the GIC distributor and redistributor.
//!
//! References: GIC Architecture Specification IHI 0048B (GICv2), chapter 4
//! "Programmers' Model", and IHI 0069H (GICv3/v4), chapter 12.

// ---- Distributor (GICD), IHI 0048B 4.1.2 table 4-1, IHI 0069H 12.8 ----

/// `GICD_CTLR`, Distributor Control Register (IHI 0048B 4.3.1, IHI 0069H 12.9.4).
pub const GICD_CTLR: u64 = 0x000;
/// `GICD_TYPER`, Interrupt Controller Type Register (IHI 0048B 4.3.2, IHI 0069H 12.9.38).
pub const GICD_TYPER: u64 = 0x004;
/// `GICD_IIDR`, Distributor Implementer Identification (IHI 0048B 4.3.3, IHI 0069H 12.9.23).
pub const GICD_IIDR: u64 = 0x008;
/// `GICD_TYPER2` (GICv3 only, IHI 0069H 12.9.39): RAZ here.
pub const GICD_TYPER2: u64 = 0x00C;
/// `GICD_STATUSR`, error reporting (GICv3, IHI 0069H 12.9.37): RAZ/WI.
pub const GICD_STATUSR: u64 = 0x010;
/// `GICD_IGROUPR<n>` (IHI 0048B 4.3.4, IHI 0069H 12.9.15).
pub const GICD_IGROUPR: u64 = 0x080;
/// `GICD_ISENABLER<n>` (IHI 0048B 4.3.5, IHI 0069H 12.9.30).
pub const GICD_ISENABLER: u64 = 0x100;
/// `GICD_ICENABLER<n>` (IHI 0048B 4.3.6, IHI 0069H 12.9.9).
pub const GICD_ICENABLER: u64 = 0x180;
/// `GICD_ISPENDR<n>` (IHI 0048B 4.3.7, IHI 0069H 12.9.34).
pub const GICD_ISPENDR: u64 = 0x200;
/// `GICD_ICPENDR<n>` (IHI 0048B 4.3.8, IHI 0069H 12.9.13).
pub const GICD_ICPENDR: u64 = 0x280;
/// `GICD_ISACTIVER<n>` (IHI 0048B 4.3.9, IHI 0069H 12.9.28).
pub const GICD_ISACTIVER: u64 = 0x300;
/// `GICD_ICACTIVER<n>` (IHI 0048B 4.3.10, IHI 0069H 12.9.7).
pub const GICD_ICACTIVER: u64 = 0x380;
/// `GICD_IPRIORITYR<n>`, byte-accessible (IHI 0048B 4.3.11, IHI 0069H 12.9.24).
pub const GICD_IPRIORITYR: u64 = 0x400;
/// `GICD_ITARGETSR<n>`, byte-accessible; GICv2 only, RAZ/WI with
/// affinity routing (IHI 0048B 4.3.12, IHI 0069H 12.9.36).
pub const GICD_ITARGETSR: u64 = 0x800;
/// `GICD_ICFGR<n>` (IHI 0048B 4.3.13, IHI 0069H 12.9.11).
pub const GICD_ICFGR: u64 = 0xC00;
/// `GICD_IGRPMODR<n>` (GICv3, IHI 0069H 12.9.16): RAZ/WI for a
/// Non-secure guest.
pub const GICD_IGRPMODR: u64 = 0xD00;
/// `GICD_NSACR<n>` (IHI 0048B 4.3.14, IHI 0069H 12.9.26): RAZ/WI.
pub const GICD_NSACR: u64 = 0xE00;
/// `GICD_SGIR`, write-only (GICv2, IHI 0048B 4.3.15).
pub const GICD_SGIR: u64 = 0xF00;
/// `GICD_CPENDSGIR<n>`, byte-accessible (GICv2, IHI 0048B 4.3.16).
pub const GICD_CPENDSGIR: u64 = 0xF10;
/// `GICD_SPENDSGIR<n>`, byte-accessible (GICv2, IHI 0048B 4.3.17).
pub const GICD_SPENDSGIR: u64 = 0xF20;
/// `GICD_IROUTER<n>` base: INTID n at `0x6000 + 8n`, n >= 32, 64-bit
/// (GICv3, IHI 0069H 12.9.22).
pub const GICD_IROUTER: u64 = 0x6000;
/// End of the `GICD_IROUTER` range (exclusive; INTID 1019 is the last).
pub const GICD_IROUTER_END: u64 = 0x7FE0;
/// `ICPIDR2`/`GICD_PIDR2` in a 4 KiB GICv2 frame (IHI 0048B 4.3.19 table 4-1).
pub const GICD_PIDR2_V2: u64 = 0xFE8;
/// `GICD_PIDR2` in a 64 KiB GICv3 frame (IHI 0069H 12.9.32).
pub const GICD_PIDR2_V3: u64 = 0xFFE8;

/// `GICD_CTLR.EnableGrp0` (v2) / `EnableGrp1` (v3 Non-secure view), bit 0.
pub const CTLR_ENABLE_G0: u32 = 1 << 0;
/// `GICD_CTLR.EnableGrp1` (v2) / `EnableGrp1A` (v3 Non-secure view), bit 1.
pub const CTLR_ENABLE_G1: u32 = 1 << 1;
/// `GICD_CTLR.ARE_NS`, bit 4: affinity routing, RAO/WI here (IHI 0069H 12.9.4).
pub const CTLR_ARE_NS: u32 = 1 << 4;

/// Implementer JEP106 code of Arm (0x43B) in `IIDR[11:0]`.
pub const IIDR_ARM: u32 = 0x43B;
/// `PIDR2.ArchRev` field shift (`[7:4]`); value 2 = GICv2, 3 = GICv3.
pub const PIDR2_ARCHREV_SHIFT: u32 = 4;
/// `PIDR2` JEDEC bits the Arm implementations report (`0xB` in `[3:0]`).
pub const PIDR2_JEDEC: u32 = 0xB;

/// `GICD_SGIR.TargetListFilter` shift (`[25:24]`, IHI 0048B 4.3.15).
pub const SGIR_FILTER_SHIFT: u32 = 24;
/// `GICD_SGIR.CPUTargetList` shift (`[23:16]`).
pub const SGIR_TARGETS_SHIFT: u32 = 16;
/// `GICD_SGIR.SGIINTID` mask (`[3:0]`).
pub const SGIR_INTID_MASK: u32 = 0xF;

/// `GICD_IROUTER.Interrupt_Routing_Mode`, bit 31 (IHI 0069H 12.9.22).
pub const IROUTER_IRM: u64 = 1 << 31;
/// Writable bits of `GICD_IROUTER`: Aff3 `[39:32]`, IRM, Aff2..Aff0.
pub const IROUTER_MASK: u64 = 0xFF_80FF_FFFF;

// ---- Redistributor RD_base frame, IHI 0069H 12.10 ----

/// `GICR_CTLR` (IHI 0069H 12.11.2): no LPIs, RAZ/WI.
pub const GICR_CTLR: u64 = 0x0000;
/// `GICR_IIDR` (IHI 0069H 12.11.16).
pub const GICR_IIDR: u64 = 0x0004;
/// `GICR_TYPER`, 64-bit (IHI 0069H 12.11.35).
pub const GICR_TYPER: u64 = 0x0008;
/// `GICR_STATUSR` (IHI 0069H 12.11.34): RAZ/WI.
pub const GICR_STATUSR: u64 = 0x0010;
/// `GICR_WAKER` (IHI 0069H 12.11.39).
pub const GICR_WAKER: u64 = 0x0014;
/// `GICR_PROPBASER`, 64-bit (IHI 0069H 12.11.30): RAZ/WI without LPIs.
pub const GICR_PROPBASER: u64 = 0x0070;
/// `GICR_PENDBASER`, 64-bit (IHI 0069H 12.11.28): RAZ/WI without LPIs.
pub const GICR_PENDBASER: u64 = 0x0078;
/// `GICR_INVLPIR`, `GICR_INVALLR` (64-bit) and `GICR_SYNCR`: RAZ/WI.
pub const GICR_INVLPIR: u64 = 0x00A0;
/// `GICR_INVALLR`, 64-bit: RAZ/WI.
pub const GICR_INVALLR: u64 = 0x00B0;
/// `GICR_SYNCR`: reads 0 (not busy).
pub const GICR_SYNCR: u64 = 0x00C0;
/// `GICR_PIDR2` (IHI 0069H 12.11.27).
pub const GICR_PIDR2: u64 = 0xFFE8;
/// Offset of the `SGI_base` frame from `RD_base` (IHI 0069H 12.10).
pub const GICR_SGI_BASE: u64 = 0x1_0000;

/// `GICR_TYPER.Last`, bit 4.
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// `GICR_TYPER.Processor_Number` shift (`[23:8]`).
pub const GICR_TYPER_PROCNUM_SHIFT: u32 = 8;
/// `GICR_TYPER.Affinity_Value` shift (`[63:32]`).
pub const GICR_TYPER_AFF_SHIFT: u32 = 32;
/// `GICR_WAKER.ProcessorSleep`, bit 1.
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`, bit 2, read-only.
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

// ---- ICC_SGI1R_EL1 / ICC_SGI0R_EL1 / ICC_ASGI1R_EL1, IHI 0069H 12.2.23 ----

/// `TargetList` mask (`[15:0]`).
pub const SGI1R_TARGETS_MASK: u64 = 0xFFFF;
/// `Aff1` shift (`[23:16]`).
pub const SGI1R_AFF1_SHIFT: u32 = 16;
/// `INTID` shift (`[27:24]`).
pub const SGI1R_INTID_SHIFT: u32 = 24;
/// `Aff2` shift (`[39:32]`).
pub const SGI1R_AFF2_SHIFT: u32 = 32;
/// `IRM`, bit 40: all PEs but self.
pub const SGI1R_IRM: u64 = 1 << 40;
/// `RS` shift (`[47:44]`): target-list range selector.
pub const SGI1R_RS_SHIFT: u32 = 44;
/// `Aff3` shift (`[55:48]`).
pub const SGI1R_AFF3_SHIFT: u32 = 48;
