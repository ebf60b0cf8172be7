//! A minimal spin lock for EL2 state shared between physical CPUs.
//!
//! Only used after the MMU is on (exclusive accesses need Normal cacheable
//! memory to be architecturally reliable). Taking a lock masks IRQs on the
//! calling CPU until the guard is dropped, so an interrupt handler that
//! needs the same lock (the console, a domain's state) can never spin on a
//! lock its own CPU holds.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A test-and-test-and-set spin lock around a `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`, so sharing the lock
// between CPUs is sound whenever `T` may be sent between them.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spins until the lock is ours.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let daif = mask_irqs();
        loop {
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return SpinGuard { lock: self, daif };
            }
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        let daif = mask_irqs();
        let got = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if got {
            Some(SpinGuard { lock: self, daif })
        } else {
            restore_irqs(daif);
            None
        }
    }
}

/// Masks IRQs on this CPU and returns the previous DAIF.
fn mask_irqs() -> u64 {
    let daif: u64;
    // SAFETY: reading DAIF and masking IRQs only affects this CPU's
    // interrupt delivery.
    unsafe {
        core::arch::asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nomem, nostack))
    };
    daif
}

/// Restores DAIF saved by [`mask_irqs`].
fn restore_irqs(daif: u64) {
    // SAFETY: puts back the interrupt mask this CPU had before.
    unsafe { core::arch::asm!("msr daif, {}", in(reg) daif, options(nomem, nostack)) };
}

/// Holds a [`SpinLock`] (with IRQs masked) until dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    daif: u64,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock, so no other reference
        // to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the guard is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        restore_irqs(self.daif);
    }
}

/// A value set once (by the boot CPU) and read freely afterwards.
pub struct Once<T> {
    ready: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is written once before `ready` is published with
// Release and only read after observing `ready` with Acquire.
unsafe impl<T: Send + Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            ready: AtomicBool::new(false),
            value: UnsafeCell::new(None),
        }
    }

    /// Stores `value`; a second call is ignored and returns `false`.
    ///
    /// Only the boot CPU calls this, before the value is shared.
    pub fn set(&self, value: T) -> bool {
        if self.ready.load(Ordering::Acquire) {
            return false;
        }
        // SAFETY: not yet published, and only the boot CPU sets values, so
        // nothing else can be reading or writing the slot.
        unsafe { *self.value.get() = Some(value) };
        self.ready.store(true, Ordering::Release);
        true
    }

    /// The value, once set.
    pub fn get(&self) -> Option<&T> {
        if self.ready.load(Ordering::Acquire) {
            // SAFETY: published and never written again.
            unsafe { (*self.value.get()).as_ref() }
        } else {
            None
        }
    }
}
