//! Static pinning: one free physical CPU per vCPU, honouring `xen,vcpu`
//! hard affinity.

use alloc::vec;
use alloc::vec::Vec;

use tessel_config::VcpuAffinity;

/// Whether pCPU `p` is allowed for vCPU `v` by `affinity` (no entry, or an
/// empty list, means any pCPU).
fn allowed(affinity: &[VcpuAffinity], v: u32, p: usize) -> bool {
    affinity.iter().find(|a| a.id == v).is_none_or(|a| {
        a.hard_affinity.is_empty()
            || a.hard_affinity
                .iter()
                .any(|r| (r.first as usize..=r.last as usize).contains(&p))
    })
}

/// Why [`pin`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinError {
    /// Fewer free pCPUs than vCPUs.
    TooFew {
        /// Free pCPUs.
        free: usize,
    },
    /// vCPU `vcpu` cannot get a pCPU within its hard affinity.
    Affinity {
        /// The vCPU.
        vcpu: u32,
    },
}

/// Picks a distinct free pCPU for each of `cpus` vCPUs.
///
/// vCPUs are served in order, each with the lowest free pCPU its affinity
/// allows. When none is left for a vCPU, an earlier vCPU is moved to
/// another allowed pCPU if that frees one (augmenting path), so a
/// pinning is found whenever one exists. `free` is not modified.
pub(crate) fn pin(
    free: &[bool],
    cpus: u32,
    affinity: &[VcpuAffinity],
) -> Result<Vec<usize>, PinError> {
    let free_count = free.iter().filter(|f| **f).count();
    if cpus as usize > free_count {
        return Err(PinError::TooFew { free: free_count });
    }
    // owner[p] = the vCPU pinned to pCPU p so far.
    let mut owner: Vec<Option<u32>> = vec![None; free.len()];
    let mut pcpu_of: Vec<usize> = Vec::with_capacity(cpus as usize);
    for v in 0..cpus {
        let direct =
            (0..free.len()).find(|&p| free[p] && owner[p].is_none() && allowed(affinity, v, p));
        let p = match direct {
            Some(p) => p,
            None => {
                let mut seen = vec![false; free.len()];
                augment(free, affinity, v, &mut owner, &mut pcpu_of, &mut seen)
                    .ok_or(PinError::Affinity { vcpu: v })?
            }
        };
        owner[p] = Some(v);
        pcpu_of.push(p);
    }
    Ok(pcpu_of)
}

/// Finds a pCPU for `v` by moving the current holder of an allowed pCPU
/// elsewhere (Kuhn's augmenting path). Returns the pCPU `v` may take; the
/// moved vCPUs are updated in `owner` and `pcpu_of`.
fn augment(
    free: &[bool],
    affinity: &[VcpuAffinity],
    v: u32,
    owner: &mut Vec<Option<u32>>,
    pcpu_of: &mut Vec<usize>,
    seen: &mut Vec<bool>,
) -> Option<usize> {
    for p in 0..free.len() {
        if !free[p] || seen[p] || !allowed(affinity, v, p) {
            continue;
        }
        seen[p] = true;
        match owner[p] {
            None => return Some(p),
            Some(holder) => {
                if let Some(q) = augment(free, affinity, holder, owner, pcpu_of, seen) {
                    owner[q] = Some(holder);
                    pcpu_of[holder as usize] = q;
                    owner[p] = None;
                    return Some(p);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessel_config::PcpuRange;

    fn aff(id: u32, ranges: &[(u32, u32)]) -> VcpuAffinity {
        VcpuAffinity {
            id,
            hard_affinity: ranges
                .iter()
                .map(|&(first, last)| PcpuRange { first, last })
                .collect(),
        }
    }

    #[test]
    fn lowest_free_first() {
        let free = [false, true, true, true];
        assert_eq!(pin(&free, 2, &[]), Ok(vec![1, 2]));
    }

    #[test]
    fn too_few_counts_free_pcpus() {
        let free = [false, false, true, false];
        assert_eq!(pin(&free, 4, &[]), Err(PinError::TooFew { free: 1 }));
    }

    #[test]
    fn affinity_is_honoured() {
        let free = [true; 4];
        assert_eq!(pin(&free, 2, &[aff(0, &[(2, 3)])]), Ok(vec![2, 0]));
    }

    #[test]
    fn earlier_vcpu_moves_to_make_room() {
        // Greedy would give vCPU0 pCPU0 and leave vCPU1 nothing.
        let free = [true, true];
        let a = [aff(1, &[(0, 0)])];
        assert_eq!(pin(&free, 2, &a), Ok(vec![1, 0]));
    }

    #[test]
    fn impossible_affinity_names_the_vcpu() {
        let free = [true, true, true];
        let a = [aff(0, &[(1, 1)]), aff(1, &[(1, 1)])];
        assert_eq!(pin(&free, 2, &a), Err(PinError::Affinity { vcpu: 1 }));
    }

    #[test]
    fn busy_pcpus_are_never_used() {
        let free = [true, false, true];
        let a = [aff(0, &[(1, 1)])];
        assert_eq!(pin(&free, 1, &a), Err(PinError::Affinity { vcpu: 0 }));
    }
}
